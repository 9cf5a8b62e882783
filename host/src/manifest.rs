//! A handler's manifest: its name, subscription, limits, config,
//! capabilities and delivery policy — everything about a handler except its
//! code. Parsed strictly (`deny_unknown_fields`) so a typo is an error, not
//! a silently ignored setting.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::event::{self, Event};
use crate::limits::LimitsSpec;

/// Longest handler name; names appear in URLs, keys and metric labels.
pub const NAME_MAX: usize = 64;
/// Subscription patterns per handler.
pub const PATTERNS_MAX: usize = 64;
/// Tenants named in one subscription.
pub const TENANTS_MAX: usize = 1024;
/// Filters per subscription.
pub const FILTERS_MAX: usize = 32;
/// Serialized config size; the guest reads it on every delivery.
pub const CONFIG_BYTES_MAX: usize = 64 * 1024;

/// Everything about a handler but its code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Unique name: lowercase ASCII letters, digits, `-` and `_`.
    #[schema(pattern = "^[a-z0-9][a-z0-9_-]{0,63}$")]
    pub name: String,
    /// Free text for operators.
    #[serde(default)]
    pub description: String,
    /// Which events the handler receives.
    pub subscription: Subscription,
    /// Per-delivery limits; unset fields take the daemon defaults.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Configuration the guest reads with `config.get`: any JSON value.
    #[serde(default = "empty_object")]
    #[schema(value_type = Value)]
    pub config: Value,
    /// The Hookbox interfaces the handler may import.
    #[serde(default = "Capability::all")]
    pub capabilities: BTreeSet<Capability>,
    /// Retries, ordering, concurrency and instance reuse.
    #[serde(default)]
    pub delivery: DeliveryPolicy,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// A Hookbox interface a handler may be granted. WASI 0.2 is always linked,
/// with everything denied, and needs no grant.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Capability {
    /// `hookbox:handler/log`.
    Log,
    /// `hookbox:handler/kv`.
    Kv,
    /// `hookbox:handler/config`.
    Config,
    /// `hookbox:handler/emit`.
    Emit,
    /// `hookbox:handler/clock`.
    Clock,
}

impl Capability {
    /// Every capability (the default grant).
    pub fn all() -> BTreeSet<Capability> {
        [
            Capability::Log,
            Capability::Kv,
            Capability::Config,
            Capability::Emit,
            Capability::Clock,
        ]
        .into_iter()
        .collect()
    }

    /// The WIT interface name (`log`, `kv`, …).
    pub fn interface(self) -> &'static str {
        match self {
            Capability::Log => "log",
            Capability::Kv => "kv",
            Capability::Config => "config",
            Capability::Emit => "emit",
            Capability::Clock => "clock",
        }
    }

    /// The capability for a WIT interface name.
    pub fn from_interface(name: &str) -> Option<Capability> {
        Capability::all()
            .into_iter()
            .find(|c| c.interface() == name)
    }
}

/// Which events reach a handler.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Subscription {
    /// Event-type patterns: an exact type, `prefix.*`, or `*`.
    #[schema(min_items = 1, max_items = 64)]
    pub events: Vec<String>,
    /// Tenants the handler serves; empty means every tenant.
    #[serde(default)]
    pub tenants: Vec<String>,
    /// All filters must hold for an event to match.
    #[serde(default)]
    pub filters: Vec<Filter>,
}

/// A condition on an event beyond its type and tenant.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Filter {
    /// The payload value at a JSON pointer equals `value`.
    Equals {
        /// RFC 6901 pointer into the payload, e.g. `/message/stream_id`.
        pointer: String,
        /// The value it must equal (any JSON value).
        #[schema(value_type = Value)]
        value: Value,
    },
    /// The payload value at a JSON pointer is one of `ids` (or, when it is an
    /// array, contains one of them).
    UserIds {
        /// RFC 6901 pointer, e.g. `/message/sender_id`.
        pointer: String,
        /// Accepted user ids.
        ids: Vec<i64>,
    },
    /// The event is at most this old when its delivery is taken from the
    /// queue (each attempt, retries included); an older one is not run but
    /// recorded with outcome `expired`. Routing at accept ignores it.
    MaxAge {
        /// Age bound in milliseconds.
        max_age_ms: u64,
    },
}

/// How deliveries to a handler are scheduled and retried.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryPolicy {
    /// Attempts before a delivery is dead-lettered (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds.
    pub initial_backoff_ms: u64,
    /// Each retry waits this many times longer than the previous one.
    pub backoff_factor: f64,
    /// Upper bound on a retry delay, in milliseconds.
    pub max_backoff_ms: u64,
    /// Random spread applied to each delay, as a fraction (0.2 = ±20%).
    pub jitter: f64,
    /// Deliver events that share a `key` one at a time, in accept order.
    pub ordered: bool,
    /// Deliveries of this handler that may run at once.
    pub concurrency: u32,
    /// 0: a fresh instance per delivery (the default, nothing leaks between
    /// events). N > 0: an instance serves up to N deliveries of the same
    /// tenant, and is discarded after any trap or limit hit.
    pub reuse: u32,
    /// Circuit breaker and auto-disable; unset fields take the daemon's
    /// `[breaker]` defaults.
    #[serde(skip_serializing_if = "BreakerSpec::is_empty")]
    // No `default` in the document: an object default is `{}` here, which
    // generators refuse on an object-valued property.
    #[schema(default)]
    pub breaker: BreakerSpec,
}

/// A handler's circuit-breaker settings (`delivery.breaker`). Every field is
/// optional: unset ones take the daemon-wide `[breaker]` defaults. The
/// breaker opens after `consecutive_failures` failed attempts in a row, or
/// when at least `min_attempts` attempts in the last `window_ms` failed at
/// `failure_rate` or more; it stays open `cooldown_ms`, then lets one trial
/// delivery through. A handler whose breaker opens `auto_disable_opens`
/// times within `auto_disable_window_ms` is disabled. Events with a tenant
/// count on a breaker of their (handler, tenant) with these settings: it
/// parks only that tenant's deliveries, and tenant breakers disable the
/// handler only when two tenants' breakers reach `auto_disable_opens`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, ToSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerSpec {
    /// Failed attempts in a row that open the breaker; 0 turns this trigger off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// Share of failed attempts in the window (0.0–1.0) that opens the
    /// breaker; 0 turns this trigger off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_rate: Option<f64>,
    /// Attempts the window must hold before `failure_rate` applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_attempts: Option<u32>,
    /// Length of the failure-rate window, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_ms: Option<u64>,
    /// How long the breaker stays open before a trial delivery, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cooldown_ms: Option<u64>,
    /// Openings within `auto_disable_window_ms` that disable the handler; 0: never.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_disable_opens: Option<u32>,
    /// The period `auto_disable_opens` is counted over, in milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_disable_window_ms: Option<u64>,
}

/// Longest breaker window, cool-down or auto-disable period (7 days).
pub const BREAKER_PERIOD_MAX_MS: u64 = 7 * 24 * 3600 * 1000;

impl BreakerSpec {
    /// Whether no field is set (every value comes from the daemon).
    pub fn is_empty(&self) -> bool {
        self == &BreakerSpec::default()
    }

    /// Checks the ranges of the fields that are set.
    pub fn validate(&self) -> Result<(), InvalidManifest> {
        if let Some(r) = self.failure_rate
            && !(0.0..=1.0).contains(&r)
        {
            return invalid("`delivery.breaker.failure_rate` must be 0.0 to 1.0");
        }
        if self.min_attempts == Some(0) {
            return invalid("`delivery.breaker.min_attempts` must be at least 1");
        }
        if self.consecutive_failures.is_some_and(|n| n > 10_000) {
            return invalid("`delivery.breaker.consecutive_failures` must be at most 10000");
        }
        if self.auto_disable_opens.is_some_and(|n| n > 1_000) {
            return invalid("`delivery.breaker.auto_disable_opens` must be at most 1000");
        }
        for (name, v) in [
            ("window_ms", self.window_ms),
            ("cooldown_ms", self.cooldown_ms),
            ("auto_disable_window_ms", self.auto_disable_window_ms),
        ] {
            if let Some(ms) = v
                && !(1..=BREAKER_PERIOD_MAX_MS).contains(&ms)
            {
                return invalid(format!(
                    "`delivery.breaker.{name}` must be 1 ms to 7 days, got {ms}"
                ));
            }
        }
        Ok(())
    }
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        DeliveryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 500,
            backoff_factor: 2.0,
            max_backoff_ms: 60_000,
            jitter: 0.2,
            ordered: false,
            concurrency: 16,
            reuse: 0,
            breaker: BreakerSpec::default(),
        }
    }
}

/// Why a manifest was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid manifest: {0}")]
pub struct InvalidManifest(pub String);

fn invalid<T>(msg: impl Into<String>) -> Result<T, InvalidManifest> {
    Err(InvalidManifest(msg.into()))
}

/// Handler names: 1–64 of `a-z 0-9 - _`, starting with a letter or digit.
pub fn validate_name(name: &str) -> Result<(), InvalidManifest> {
    if name.is_empty() || name.len() > NAME_MAX {
        return invalid(format!(
            "`name` must be 1 to {NAME_MAX} characters, got {}",
            name.len()
        ));
    }
    let ok_first = name
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let ok_rest = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if !ok_first || !ok_rest {
        return invalid(format!(
            "`name` {name:?} may contain only a-z, 0-9, `-` and `_`, and must start with a letter or digit"
        ));
    }
    Ok(())
}

/// Checks one subscription pattern.
pub fn validate_pattern(p: &str) -> Result<(), InvalidManifest> {
    if p == "*" {
        return Ok(());
    }
    let base = p.strip_suffix(".*").unwrap_or(p);
    if base.contains('*') {
        return invalid(format!(
            "event pattern {p:?}: `*` may only stand alone or end a pattern as `.*`"
        ));
    }
    event::validate_type(base).map_err(|e| InvalidManifest(format!("event pattern {p:?}: {e}")))
}

/// Whether one pattern matches an event type.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix(".*") {
        Some(prefix) => event_type
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.') && rest.len() > 1),
        None => pattern == event_type,
    }
}

impl Manifest {
    /// Parses a manifest from JSON text, validating it.
    pub fn from_json(text: &str) -> Result<Manifest, InvalidManifest> {
        let mut de = serde_json::Deserializer::from_str(text);
        let m: Manifest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => InvalidManifest(e.into_inner().to_string()),
                _ => InvalidManifest(format!("{path}: {}", e.into_inner())),
            }
        })?;
        de.end().map_err(|e| InvalidManifest(e.to_string()))?;
        m.validate()?;
        Ok(m)
    }

    /// Checks everything serde cannot.
    pub fn validate(&self) -> Result<(), InvalidManifest> {
        validate_name(&self.name)?;
        if self.description.len() > 4096 {
            return invalid("`description` is over 4096 bytes");
        }
        self.subscription.validate()?;
        let config_len = serde_json::to_string(&self.config)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if config_len > CONFIG_BYTES_MAX {
            return invalid(format!(
                "`config` is {config_len} bytes; the limit is {CONFIG_BYTES_MAX}"
            ));
        }
        self.delivery.validate()
    }
}

impl Subscription {
    /// Checks patterns, tenants and filters.
    pub fn validate(&self) -> Result<(), InvalidManifest> {
        if self.events.is_empty() {
            return invalid("`subscription.events` must name at least one pattern (`*` for all)");
        }
        if self.events.len() > PATTERNS_MAX {
            return invalid(format!(
                "`subscription.events` has {} patterns; the limit is {PATTERNS_MAX}",
                self.events.len()
            ));
        }
        for p in &self.events {
            validate_pattern(p)?;
        }
        if self.tenants.len() > TENANTS_MAX {
            return invalid(format!(
                "`subscription.tenants` has {} entries; the limit is {TENANTS_MAX}",
                self.tenants.len()
            ));
        }
        if self.filters.len() > FILTERS_MAX {
            return invalid(format!(
                "`subscription.filters` has {} entries; the limit is {FILTERS_MAX}",
                self.filters.len()
            ));
        }
        for f in &self.filters {
            match f {
                Filter::Equals { pointer, .. } | Filter::UserIds { pointer, .. } => {
                    if !(pointer.is_empty() || pointer.starts_with('/')) {
                        return invalid(format!(
                            "filter pointer {pointer:?} must be empty or start with `/` (RFC 6901)"
                        ));
                    }
                }
                Filter::MaxAge { .. } => {}
            }
        }
        Ok(())
    }

    /// Whether the event's type and tenant match (the cheap part of routing).
    pub fn matches_type_and_tenant(&self, event_type: &str, tenant: &str) -> bool {
        (self.tenants.is_empty() || self.tenants.iter().any(|t| t == tenant))
            && self.events.iter().any(|p| pattern_matches(p, event_type))
    }

    /// Whether every event of this type and tenant is routed to the
    /// handler, whatever its payload: they match, and no filter reads it.
    pub fn matches_any_payload(&self, event_type: &str, tenant: &str) -> bool {
        self.matches_type_and_tenant(event_type, tenant) && !self.filters_payload()
    }

    /// Whether a filter reads the payload (all but `max_age`).
    fn filters_payload(&self) -> bool {
        self.filters
            .iter()
            .any(|f| !matches!(f, Filter::MaxAge { .. }))
    }

    /// Whether an event is routed to the handler: type, tenant and the
    /// payload filters. `max_age` is not checked here (an event is new when
    /// it is routed) but when a delivery is taken: [`Subscription::expired`].
    pub fn matches(&self, event: &Event) -> bool {
        if !self.matches_type_and_tenant(&event.event_type, &event.tenant) {
            return false;
        }
        if !self.filters_payload() {
            return true;
        }
        let payload: Value = match serde_json::from_str(event.payload.get()) {
            Ok(v) => v,
            Err(_) => return false,
        };
        self.filters.iter().all(|f| match f {
            Filter::Equals { pointer, value } => payload.pointer(pointer) == Some(value),
            Filter::UserIds { pointer, ids } => match payload.pointer(pointer) {
                Some(Value::Array(items)) => items
                    .iter()
                    .any(|v| v.as_i64().is_some_and(|id| ids.contains(&id))),
                Some(v) => v.as_i64().is_some_and(|id| ids.contains(&id)),
                None => false,
            },
            Filter::MaxAge { .. } => true,
        })
    }

    /// The tightest `max_age_ms` of the filters, when there is one.
    pub fn max_age_ms(&self) -> Option<u64> {
        self.filters
            .iter()
            .filter_map(|f| match f {
                Filter::MaxAge { max_age_ms } => Some(*max_age_ms),
                _ => None,
            })
            .min()
    }

    /// When the event is older at `now_ms` than the handler's `max_age`
    /// allows: its age and the bound, in milliseconds. The dispatcher asks
    /// this each time it takes a delivery of the event.
    pub fn expired(&self, event: &Event, now_ms: u64) -> Option<(u64, u64)> {
        let max = self.max_age_ms()?;
        let age = now_ms.saturating_sub(event.time);
        (age > max).then_some((age, max))
    }
}

impl DeliveryPolicy {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), InvalidManifest> {
        if !(1..=100).contains(&self.max_attempts) {
            return invalid("`delivery.max_attempts` must be 1 to 100");
        }
        if !(1.0..=10.0).contains(&self.backoff_factor) {
            return invalid("`delivery.backoff_factor` must be 1.0 to 10.0");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return invalid("`delivery.jitter` must be 0.0 to 1.0");
        }
        if self.max_backoff_ms < self.initial_backoff_ms {
            return invalid("`delivery.max_backoff_ms` must be at least `initial_backoff_ms`");
        }
        if self.max_backoff_ms > 7 * 24 * 3600 * 1000 {
            return invalid("`delivery.max_backoff_ms` must be at most 7 days");
        }
        if !(1..=1024).contains(&self.concurrency) {
            return invalid("`delivery.concurrency` must be 1 to 1024");
        }
        if self.reuse > 100_000 {
            return invalid("`delivery.reuse` must be at most 100000");
        }
        self.breaker.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventInput;
    use serde_json::json;

    fn manifest(v: Value) -> Result<Manifest, InvalidManifest> {
        Manifest::from_json(&v.to_string())
    }

    #[test]
    fn minimal_manifest_takes_defaults() {
        let m =
            manifest(json!({"name": "logger", "subscription": {"events": ["message"]}})).unwrap();
        assert_eq!(m.config, json!({}));
        assert_eq!(m.capabilities, Capability::all());
        assert_eq!(m.delivery, DeliveryPolicy::default());
    }

    #[test]
    fn typos_are_errors() {
        let err = manifest(json!({"name": "a", "subscription": {"events": ["x"]}, "limts": {}}))
            .unwrap_err();
        assert!(err.0.contains("limts"), "{err}");
        let err = manifest(json!({"name": "a", "subscription": {"event": ["x"]}})).unwrap_err();
        assert!(err.0.contains("event"), "{err}");
    }

    #[test]
    fn errors_name_the_field_at_fault() {
        let err = manifest(json!({"name": 1, "subscription": {"events": ["x"]}})).unwrap_err();
        assert!(err.0.starts_with("name: "), "{err}");
        let err = manifest(json!({"name": "a", "subscription": {"events": [1]}})).unwrap_err();
        assert!(err.0.starts_with("subscription.events[0]: "), "{err}");
        let err = Manifest::from_json(r#"{"name": "a", "subscription": {"events": ["x"]}} x"#)
            .unwrap_err();
        assert!(err.0.contains("trailing"), "{err}");
    }

    #[test]
    fn names() {
        for ok in ["a", "keyword-responder", "t_1", &"x".repeat(NAME_MAX)] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "A",
            "a/b",
            "../x",
            "a b",
            "a\u{7}",
            "é",
            &"x".repeat(NAME_MAX + 1),
            &"x".repeat(10_000),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn patterns() {
        let table = [
            ("*", "anything", true),
            ("message", "message", true),
            ("message", "message.x", false),
            ("reaction.*", "reaction.add", true),
            ("reaction.*", "reaction", false),
            ("reaction.*", "reactions.add", false),
            ("reaction.*", "reaction.", false),
            ("zulip.*", "zulip.a.b", true),
        ];
        for (p, t, want) in table {
            assert_eq!(pattern_matches(p, t), want, "{p} vs {t}");
        }
        assert!(validate_pattern("a*").is_err());
        assert!(validate_pattern("*.x").is_err());
        assert!(validate_pattern("a.*").is_ok());
        assert!(validate_pattern("a b").is_err());
    }

    fn event(t: &str, tenant: &str, payload: Value) -> Event {
        let mut input = EventInput::new(t, &payload);
        input.tenant = tenant.into();
        input.accept("http", 0, 1 << 20).unwrap()
    }

    #[test]
    fn subscription_matching() {
        let sub = Subscription {
            events: vec!["message".into()],
            tenants: vec!["acme".into()],
            filters: vec![
                Filter::UserIds {
                    pointer: "/message/sender_id".into(),
                    ids: vec![7, 8],
                },
                Filter::Equals {
                    pointer: "/message/type".into(),
                    value: json!("stream"),
                },
            ],
        };
        let hit = json!({"message": {"sender_id": 8, "type": "stream"}});
        assert!(sub.matches(&event("message", "acme", hit.clone())));
        assert!(!sub.matches(&event("message", "other", hit.clone())));
        assert!(!sub.matches(&event("reaction.add", "acme", hit)));
        let wrong_user = json!({"message": {"sender_id": 9, "type": "stream"}});
        assert!(!sub.matches(&event("message", "acme", wrong_user)));
        let private = json!({"message": {"sender_id": 7, "type": "private"}});
        assert!(!sub.matches(&event("message", "acme", private)));

        let ids_array = Subscription {
            events: vec!["*".into()],
            tenants: vec![],
            filters: vec![Filter::UserIds {
                pointer: "/user_ids".into(),
                ids: vec![3],
            }],
        };
        assert!(ids_array.matches(&event("x", "", json!({"user_ids": [1, 3]}))));
        assert!(!ids_array.matches(&event("x", "", json!({"user_ids": [1]}))));
    }

    #[test]
    fn max_age_filter() {
        let sub = Subscription {
            events: vec!["*".into()],
            tenants: vec![],
            filters: vec![Filter::MaxAge { max_age_ms: 1000 }],
        };
        let ev = event("x", "", json!({}));
        // Routing ignores the age: an event is new when it is routed.
        assert!(sub.matches(&ev));
        assert_eq!(sub.expired(&ev, ev.time + 1000), None);
        assert_eq!(sub.expired(&ev, ev.time + 1001), Some((1001, 1000)));
        // A clock behind the event's time is age 0, not an underflow.
        assert_eq!(sub.expired(&ev, ev.time - 5), None);
        // The tightest of several bounds applies.
        let two = Subscription {
            filters: vec![
                Filter::MaxAge { max_age_ms: 1000 },
                Filter::MaxAge { max_age_ms: 10 },
            ],
            ..sub.clone()
        };
        assert_eq!(two.expired(&ev, ev.time + 11), Some((11, 10)));
        let none = Subscription {
            filters: vec![],
            ..sub
        };
        assert_eq!(none.expired(&ev, u64::MAX), None);
    }

    #[test]
    fn delivery_policy_ranges() {
        let bad = [
            json!({"max_attempts": 0}),
            json!({"jitter": 2.0}),
            json!({"concurrency": 0}),
            json!({"initial_backoff_ms": 10, "max_backoff_ms": 5}),
            json!({"breaker": {"failure_rate": 1.5}}),
            json!({"breaker": {"min_attempts": 0}}),
            json!({"breaker": {"cooldown_ms": 0}}),
            json!({"breaker": {"window_ms": 8 * 24 * 3600 * 1000u64}}),
            json!({"breaker": {"cooldwn_ms": 10}}),
        ];
        for d in bad {
            let err =
                manifest(json!({"name": "a", "subscription": {"events": ["x"]}, "delivery": d}));
            assert!(err.is_err(), "{d}");
        }
    }

    #[test]
    fn breaker_settings_are_optional_and_round_trip() {
        let m = manifest(json!({
            "name": "a", "subscription": {"events": ["x"]},
            "delivery": {"breaker": {"consecutive_failures": 0, "cooldown_ms": 250}},
        }))
        .unwrap();
        assert_eq!(m.delivery.breaker.consecutive_failures, Some(0));
        assert_eq!(m.delivery.breaker.cooldown_ms, Some(250));
        assert_eq!(m.delivery.breaker.failure_rate, None);
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(Manifest::from_json(&text).unwrap(), m);
        // Unset, the section is left out, so stored manifests keep their shape.
        let plain = manifest(json!({"name": "a", "subscription": {"events": ["x"]}})).unwrap();
        let v = serde_json::to_value(&plain).unwrap();
        assert!(v["delivery"].get("breaker").is_none(), "{v}");
    }
}
