//! What each fuzz target checks, for any input bytes: the parser never
//! panics, everything it accepts satisfies the documented bounds, and
//! accepted values survive a round trip through their stored form.
//!
//! Shared by the `cargo fuzz` targets (`tests/fuzz`, nightly) and the
//! stable replay of kept inputs (`tests/tests/hostile/fuzz.rs`), so a
//! crasher found by fuzzing becomes a regression test by saving the input.

use hookbox::config::{Config, ConfigFile, Overrides};
use hookbox::event::{Event, EventInput, bounds, validate_type};
use hookbox::limits::Limits;
use hookbox::manifest::{Manifest, Subscription, pattern_matches, validate_pattern};

/// Payload cap used by the checks (small, so the fuzzer reaches it).
const MAX_PAYLOAD: usize = 4096;

/// `POST /v1/events` bodies: one event or a batch, parsed, validated and
/// accepted as the API does.
pub fn event(data: &[u8]) {
    let inputs = match serde_json::from_slice::<Vec<EventInput>>(data) {
        Ok(batch) => batch,
        Err(_) => match serde_json::from_slice::<EventInput>(data) {
            Ok(one) => vec![one],
            Err(_) => return,
        },
    };
    for input in inputs {
        let valid = input.validate(MAX_PAYLOAD).is_ok();
        let Ok(ev) = input.accept("http", 0, MAX_PAYLOAD) else {
            assert!(!valid, "validate and accept disagree");
            continue;
        };
        assert!(valid, "accept took an event validate refused");
        assert!(validate_type(&ev.event_type).is_ok(), "{:?}", ev.event_type);
        assert!(ev.tenant.len() <= bounds::TENANT_BYTES);
        assert!(!ev.tenant.chars().any(char::is_control), "{:?}", ev.tenant);
        assert!(ev.key.as_ref().is_none_or(|k| k.len() <= bounds::KEY_BYTES));
        assert!(ev.metadata.len() <= bounds::METADATA_ENTRIES);
        assert!(ev.payload.get().len() <= MAX_PAYLOAD);
        // The stored and served form parses back to the same event.
        let text = serde_json::to_string(&ev).expect("an event serializes");
        let back: Event = serde_json::from_str(&text).expect("a stored event parses");
        assert_eq!(back.id, ev.id);
        assert_eq!(back.event_type, ev.event_type);
        assert_eq!(back.tenant, ev.tenant);
        assert_eq!(back.payload.get(), ev.payload.get());
        assert_eq!(back.metadata, ev.metadata);
        assert_eq!(back.key, ev.key);
    }
}

/// Deploy manifests: parsed and validated; a valid one round-trips and
/// its limits resolve (or are refused) without panicking.
pub fn manifest(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(m) = Manifest::from_json(text) else {
        return;
    };
    let again = serde_json::to_string(&m).expect("a manifest serializes");
    let back = Manifest::from_json(&again).expect("a valid manifest stays valid");
    assert_eq!(back, m);
    let ceilings = Limits::default_ceilings();
    if let Ok(limits) = Limits::default().with_overrides(&m.limits, &ceilings) {
        assert_within(&limits, &ceilings);
    }
}

/// Every limit is positive and at most its ceiling (what `with_overrides`
/// promises for whatever it accepts).
fn assert_within(l: &Limits, c: &Limits) {
    let pairs = [
        ("fuel", l.fuel, c.fuel),
        ("timeout_ms", l.timeout_ms, c.timeout_ms),
        ("memory_bytes", l.memory_bytes, c.memory_bytes),
        ("table_elements", l.table_elements, c.table_elements),
        ("instances", l.instances.into(), c.instances.into()),
        ("log_bytes", l.log_bytes, c.log_bytes),
        ("emits", l.emits.into(), c.emits.into()),
        ("emit_bytes", l.emit_bytes, c.emit_bytes),
        ("kv_value_bytes", l.kv_value_bytes, c.kv_value_bytes),
        ("kv_quota_bytes", l.kv_quota_bytes, c.kv_quota_bytes),
        ("kv_quota_keys", l.kv_quota_keys, c.kv_quota_keys),
        ("result_bytes", l.result_bytes, c.result_bytes),
    ];
    for (name, value, ceiling) in pairs {
        assert!(
            0 < value && value <= ceiling,
            "{name} = {value}, ceiling {ceiling}"
        );
    }
}

/// What `pattern_matches` must answer, written the obvious way.
fn oracle(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        // `prefix.*`: the type starts with `prefix.` and goes on.
        Some(dotted) if dotted.ends_with('.') => {
            event_type.len() > dotted.len() && event_type.starts_with(dotted)
        }
        _ => pattern == event_type,
    }
}

/// Subscription matching. The input is NUL-separated: a subscription as
/// JSON, an event type, a tenant and a payload (JSON text); the first part
/// is also read as newline-separated patterns.
pub fn subscription(data: &[u8]) {
    let mut parts = data.split(|b| *b == 0).map(String::from_utf8_lossy);
    let sub_text = parts.next().unwrap_or_default();
    let event_type = parts.next().unwrap_or_default().into_owned();
    let tenant = parts.next().unwrap_or_default().into_owned();
    let payload = parts.next().unwrap_or_default();

    for pattern in sub_text.lines() {
        if validate_pattern(pattern).is_ok() {
            assert_eq!(
                pattern_matches(pattern, &event_type),
                oracle(pattern, &event_type),
                "pattern {pattern:?}, type {event_type:?}"
            );
        }
    }
    let Ok(sub) = serde_json::from_str::<Subscription>(&sub_text) else {
        return;
    };
    if sub.validate().is_err() {
        return;
    }
    let mut input = EventInput::new(event_type, &serde_json::json!({}));
    input.tenant = tenant;
    if let Ok(p) = hookbox::event::parse_payload(&payload) {
        input.payload = Some(p);
    }
    let Ok(ev) = input.accept("http", 0, MAX_PAYLOAD) else {
        return;
    };
    let full = sub.matches(&ev);
    // `max_age` is a bound on the age when a delivery is taken, never on
    // routing; a fresh event (age 0) is never expired.
    assert_eq!(sub.expired(&ev, ev.time), None);
    let cheap = sub.matches_type_and_tenant(&ev.event_type, &ev.tenant);
    assert!(!full || cheap, "filters can only narrow a match");
    let type_ok = sub.events.iter().any(|p| oracle(p, &ev.event_type));
    let tenant_ok = sub.tenants.is_empty() || sub.tenants.contains(&ev.tenant);
    assert_eq!(cheap, type_ok && tenant_ok);
}

/// The daemon config file: parsed, then resolved against no overrides.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = ConfigFile::parse(text) else {
        return;
    };
    if let Ok(cfg) = Config::resolve(file, Overrides::default()) {
        assert!(cfg.dispatch.workers > 0);
        assert_within(&cfg.dispatch.default_limits, &cfg.dispatch.ceilings);
        assert!(cfg.max_body_bytes > 0);
    }
}
