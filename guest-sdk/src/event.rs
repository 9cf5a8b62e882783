//! [`Event`], the event a handler is given, its [`Priority`], and the
//! [`EventBuilder`] tests use to make one.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::HandlerError;
use crate::zulip::{self, ZulipEvent};

/// How urgently an event should be delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Delivered before anything else.
    Critical,
    /// Delivered before normal and low events.
    High,
    /// The default.
    #[default]
    Normal,
    /// Delivered when nothing more urgent waits.
    Low,
}

impl Priority {
    /// The name Hookbox uses for the priority: `critical`, `high`, `normal`
    /// or `low`.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// One event delivered to a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Hookbox-assigned identifier (a ULID: sortable by accept time).
    pub id: String,
    /// The event type, e.g. `message`, `reaction.add`, `TICKET_UPDATED`.
    pub event_type: String,
    /// The realm, organisation or guild the event belongs to; may be empty.
    pub tenant: String,
    /// Where the event came from: `http`, `zulip:<realm>`, `handler:<name>`…
    pub source: String,
    /// When Hookbox accepted the event, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The delivery priority.
    pub priority: Priority,
    /// The event payload as JSON text.
    pub payload: String,
    /// Free-form string metadata attached by the producer.
    pub metadata: Vec<(String, String)>,
    /// The ordering key, when the producer set one.
    pub key: Option<String>,
    /// Which attempt this is, starting at 1.
    pub attempt: u32,
}

impl Event {
    /// Deserializes the payload. A payload that does not fit `T` is a fatal
    /// error: it will not fit on the next attempt either.
    pub fn payload<T: DeserializeOwned>(&self) -> Result<T, HandlerError> {
        serde_json::from_str(&self.payload).map_err(|e| {
            HandlerError::fatal(format!(
                "invalid payload for event type `{}`: {e}",
                self.event_type
            ))
        })
    }

    /// The payload as an untyped JSON value.
    pub fn payload_value(&self) -> Result<serde_json::Value, HandlerError> {
        self.payload()
    }

    /// Parses the payload as a Zulip event (see [`zulip`]). Malformed
    /// payloads are fatal errors.
    pub fn zulip(&self) -> Result<ZulipEvent, HandlerError> {
        Ok(ZulipEvent::from_json(&self.payload)?)
    }

    /// The first metadata value stored under `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The Zulip user id of the realm's bot (the one Hookbox polls and
    /// replies as), when the event came from a Zulip realm that knows it.
    pub fn zulip_bot_user_id(&self) -> Option<u64> {
        self.metadata("zulip_bot_user_id")?.parse().ok()
    }

    /// Whether the realm's bot itself caused this Zulip event (its own
    /// message, reaction or edit). Hookbox delivers those only when the
    /// realm sets `own_events = true`.
    pub fn is_own_zulip_event(&self) -> bool {
        self.metadata("zulip_own_event") == Some("true")
    }

    /// Whether this is a redelivery (`attempt > 1`).
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }

    /// Starts building an event of type `event_type`, for tests and tools.
    ///
    /// Defaults: a fresh ULID-shaped `id`, `time_ms` =
    /// [`EventBuilder::DEFAULT_TIME_MS`], empty tenant, source `test`,
    /// priority normal, payload `{}`, no metadata, no key, attempt 1.
    ///
    /// ```
    /// use hookbox_sdk::{Event, Priority};
    ///
    /// let event = Event::builder("TICKET_CREATED")
    ///     .tenant("acme")
    ///     .payload_json(&serde_json::json!({"tenantId": "acme", "ticketId": 7}))
    ///     .priority(Priority::High)
    ///     .build();
    /// assert_eq!(event.attempt, 1);
    /// assert_eq!(event.id.len(), 26);
    /// ```
    pub fn builder(event_type: impl Into<String>) -> EventBuilder {
        EventBuilder {
            event: Event {
                id: String::new(),
                event_type: event_type.into(),
                tenant: String::new(),
                source: "test".to_owned(),
                time_ms: EventBuilder::DEFAULT_TIME_MS,
                priority: Priority::Normal,
                payload: "{}".to_owned(),
                metadata: Vec::new(),
                key: None,
                attempt: 1,
            },
        }
    }

    /// Starts building the event Hookbox makes from a raw Zulip event: type
    /// from [`zulip::hookbox_type`], payload the Zulip JSON, source `zulip`.
    /// Set the tenant (the realm) with [`EventBuilder::tenant`].
    pub fn from_zulip(zulip_event: &serde_json::Value) -> EventBuilder {
        Event::builder(zulip::hookbox_type(zulip_event))
            .source("zulip")
            .payload_json(zulip_event)
    }
}

/// Builds an [`Event`]; see [`Event::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct EventBuilder {
    event: Event,
}

impl EventBuilder {
    /// The default `time_ms` of built events, and the starting time of
    /// `testing::TestHost`'s clock: 2023-11-14T22:13:20Z.
    pub const DEFAULT_TIME_MS: u64 = 1_700_000_000_000;

    /// Sets the id (default: a fresh ULID-shaped id).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.event.id = id.into();
        self
    }

    /// Sets the tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.event.tenant = tenant.into();
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: impl Into<String>) -> Self {
        self.event.source = source.into();
        self
    }

    /// Sets the accept time.
    pub fn time_ms(mut self, time_ms: u64) -> Self {
        self.event.time_ms = time_ms;
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.event.priority = priority;
        self
    }

    /// Sets the payload to `value` serialized as JSON.
    ///
    /// # Panics
    /// If `value` cannot be serialized (a map with non-string keys, or a
    /// failing `Serialize` impl): a bug in the test that builds the event.
    pub fn payload_json<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.event.payload =
            serde_json::to_string(value).expect("test event payload must serialize to JSON");
        self
    }

    /// Sets the payload text as is; it need not be valid JSON, so tests can
    /// check how a handler treats a malformed payload.
    pub fn payload_raw(mut self, payload: impl Into<String>) -> Self {
        self.event.payload = payload.into();
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.event.metadata.push((key.into(), value.into()));
        self
    }

    /// Sets the ordering key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.event.key = Some(key.into());
        self
    }

    /// Sets the attempt number (default 1).
    pub fn attempt(mut self, attempt: u32) -> Self {
        self.event.attempt = attempt;
        self
    }

    /// Finishes the event.
    pub fn build(mut self) -> Event {
        if self.event.id.is_empty() {
            self.event.id = next_ulid(self.event.time_ms);
        }
        self.event
    }
}

/// Makes a ULID-shaped id (26 Crockford base-32 characters) from the time
/// and a process-wide counter, so built ids are unique and sort by time and
/// then by creation order, like Hookbox's.
fn next_ulid(time_ms: u64) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    let value = (u128::from(time_ms & 0xFFFF_FFFF_FFFF) << 80) | u128::from(counter);
    (0..26)
        .rev()
        .map(|i| char::from(ALPHABET[((value >> (i * 5)) & 31) as usize]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_defaults() {
        let e = Event::builder("message").build();
        assert_eq!(e.event_type, "message");
        assert_eq!(e.tenant, "");
        assert_eq!(e.source, "test");
        assert_eq!(e.time_ms, EventBuilder::DEFAULT_TIME_MS);
        assert_eq!(e.priority, Priority::Normal);
        assert_eq!(e.payload, "{}");
        assert_eq!(e.attempt, 1);
        assert!(e.key.is_none());
        assert!(!e.is_retry());
    }

    #[test]
    fn built_ids_are_unique_and_sort_by_time_then_order() {
        let a = Event::builder("x").time_ms(1_000).build().id;
        let b = Event::builder("x").time_ms(1_000).build().id;
        let c = Event::builder("x").time_ms(999).build().id;
        assert_ne!(a, b);
        assert!(a < b, "{a} < {b}");
        assert!(c < a, "{c} < {a}");
        assert!(a.chars().all(|ch| ch.is_ascii_alphanumeric()) && a.len() == 26);
    }

    #[test]
    fn explicit_id_is_kept() {
        assert_eq!(Event::builder("x").id("01ABC").build().id, "01ABC");
    }

    #[test]
    fn metadata_returns_first_match() {
        let e = Event::builder("x")
            .metadata("a", "1")
            .metadata("a", "2")
            .build();
        assert_eq!(e.metadata("a"), Some("1"));
        assert_eq!(e.metadata("b"), None);
    }

    #[test]
    fn payload_errors_are_fatal_and_name_the_type() {
        #[derive(Deserialize, Debug)]
        struct P {
            #[allow(dead_code)]
            n: u32,
        }
        let e = Event::builder("TICKET_CREATED")
            .payload_raw(r#"{"n": "seven"}"#)
            .build();
        let err = e.payload::<P>().unwrap_err();
        assert!(!err.retryable);
        assert!(err.message.contains("TICKET_CREATED"), "{}", err.message);
    }

    #[test]
    fn from_zulip_maps_type_and_keeps_payload() {
        let v = serde_json::json!({"type": "reaction", "op": "add", "message_id": 1});
        let e = Event::from_zulip(&v).tenant("zulip").build();
        assert_eq!(e.event_type, "reaction.add");
        assert_eq!(e.source, "zulip");
        assert_eq!(e.payload_value().unwrap(), v);
    }

    #[test]
    fn priority_names() {
        for (p, name) in [
            (Priority::Critical, "critical"),
            (Priority::High, "high"),
            (Priority::Normal, "normal"),
            (Priority::Low, "low"),
        ] {
            assert_eq!(p.as_str(), name);
            assert_eq!(serde_json::to_value(p).unwrap(), name);
        }
    }
}
