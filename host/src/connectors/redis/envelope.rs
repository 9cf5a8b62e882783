//! The bus's message format, both ways (pure functions).
//!
//! A message is a JSON envelope `{"id": uuid, "eventType": "TICKET_CREATED",
//! "timestamp": ISO-8601, "payload": {"tenantId": …, …}}`. Read
//! ([`map_message`]): `eventType` → type, `payload.tenantId` → tenant, `id`
//! → idempotency key (in stream mode, an envelope without `id` is keyed by
//! its entry id), the payload as is; `id`, `timestamp` and where the
//! message came from go to metadata. Written ([`envelope`]): what a
//! `redis.publish` event asks for, with a UUID derived from the event's id
//! (the same on every retry, so subscribers can drop duplicates) and a
//! `publisher` field the source recognises, so Hookbox does not read back
//! what it published.

use std::collections::BTreeMap;
use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

use crate::event::{Event, EventInput, validate_type};

/// What a message came to.
#[derive(Debug)]
pub(crate) enum Mapped {
    /// An event to accept.
    Event(Box<EventInput>),
    /// Published by this bus's own sink: not read back.
    Own,
    /// Not an event: why.
    Invalid(String),
}

/// Where a message was read.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Origin<'a> {
    /// A pub/sub channel.
    Channel(&'a str),
    /// A stream entry: key and entry id.
    Entry(&'a str, &'a str),
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    event_type: Option<Value>,
    #[serde(default)]
    timestamp: Option<Value>,
    #[serde(default)]
    payload: Option<Box<RawValue>>,
    #[serde(default)]
    publisher: Option<Value>,
}

#[derive(Deserialize)]
struct Tenant {
    #[serde(rename = "tenantId", default)]
    tenant_id: Option<Value>,
}

/// A string, or a number as text; nothing else.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Maps one message; `own` is this bus's `publisher` mark, `max_bytes` the
/// largest message read (larger ones are not parsed).
pub(crate) fn map_message(own: &str, max_bytes: usize, from: Origin<'_>, raw: &[u8]) -> Mapped {
    if raw.len() > max_bytes {
        return Mapped::Invalid(format!(
            "the message is {} bytes; the limit is {max_bytes}",
            raw.len()
        ));
    }
    let env: Envelope = match serde_json::from_slice(raw) {
        Ok(e) => e,
        Err(e) if e.is_data() => {
            return Mapped::Invalid(format!("not an event envelope: {e}"));
        }
        Err(e) => return Mapped::Invalid(format!("not JSON: {e}")),
    };
    // serde also fills a struct from an array; an envelope is an object.
    if raw.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Mapped::Invalid("not an event envelope: not a JSON object".into());
    }
    if env.publisher.as_ref().and_then(Value::as_str) == Some(own) {
        return Mapped::Own;
    }
    let event_type = match env.event_type.as_ref().and_then(Value::as_str) {
        Some(t) => t.to_string(),
        None => return Mapped::Invalid("no `eventType` string".into()),
    };
    if let Err(e) = validate_type(&event_type) {
        return Mapped::Invalid(format!("`eventType` {event_type:?}: {e}"));
    }
    let Some(payload) = env.payload else {
        return Mapped::Invalid("no `payload`".into());
    };
    if !payload.get().trim_start().starts_with('{') {
        return Mapped::Invalid("`payload` is not an object".into());
    }
    let tenant = match serde_json::from_str::<Tenant>(payload.get()) {
        Ok(Tenant { tenant_id: Some(t) }) => match text(&t) {
            Some(t) if !t.is_empty() => t,
            _ => return Mapped::Invalid("`payload.tenantId` is not a non-empty string".into()),
        },
        Ok(_) => return Mapped::Invalid("no `payload.tenantId`".into()),
        Err(_) => return Mapped::Invalid("`payload` is not an object".into()),
    };
    let id = env.id.as_ref().and_then(text).filter(|s| !s.is_empty());
    let mut metadata = BTreeMap::new();
    if let Some(id) = &id {
        metadata.insert("id".to_string(), id.clone());
    }
    if let Some(ts) = env.timestamp.as_ref().and_then(text) {
        metadata.insert("timestamp".to_string(), ts);
    }
    let fallback_key = match from {
        Origin::Channel(channel) => {
            metadata.insert("redis_channel".to_string(), channel.to_string());
            None
        }
        Origin::Entry(stream, entry) => {
            metadata.insert("redis_stream".to_string(), stream.to_string());
            metadata.insert("redis_entry".to_string(), entry.to_string());
            Some(format!("{stream}/{entry}"))
        }
    };
    Mapped::Event(Box::new(EventInput {
        event_type,
        tenant,
        payload: Some(payload),
        metadata,
        key: None,
        priority: Default::default(),
        idempotency_key: id.or(fallback_key),
    }))
}

/// `redis.publish`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Publish {
    event_type: String,
    payload: Box<RawValue>,
    #[serde(default)]
    tenant: Option<String>,
}

/// The envelope a `redis.publish` event asks for: (event type, JSON text).
/// Errors are the payload's faults (no retry changes them).
pub(crate) fn envelope(publisher: &str, event: &Event) -> Result<(String, String), String> {
    let p: Publish = serde_json::from_str(event.payload.get())
        .map_err(|e| format!("invalid `redis.publish` payload: {e}"))?;
    validate_type(&p.event_type).map_err(|e| format!("`event_type`: {e}"))?;
    let tenant = p.tenant.unwrap_or_else(|| event.tenant.clone());
    if tenant.is_empty() {
        return Err("no tenant: set `tenant`, or publish while handling a tenant's event".into());
    }
    let mut payload: serde_json::Map<String, Value> = serde_json::from_str(p.payload.get())
        .map_err(|_| "`payload` must be a JSON object".to_string())?;
    match payload.get("tenantId") {
        None => {
            payload.insert("tenantId".into(), Value::String(tenant));
        }
        Some(Value::String(t)) if *t == tenant => {}
        Some(other) => {
            return Err(format!(
                "`payload.tenantId` {other} differs from the tenant {tenant:?}"
            ));
        }
    }
    let time = UNIX_EPOCH + Duration::from_millis(event.time);
    let envelope = serde_json::json!({
        "id": uuid_of(&event.id),
        "eventType": p.event_type,
        "timestamp": humantime::format_rfc3339_millis(time).to_string(),
        "payload": payload,
        "publisher": publisher,
    });
    Ok((p.event_type, envelope.to_string()))
}

/// The UUID spelling of an event id (a ULID is 128 bits too).
fn uuid_of(id: &str) -> String {
    match ulid::Ulid::from_string(id) {
        Ok(u) => {
            let n = u128::from(u);
            format!(
                "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
                n >> 96,
                (n >> 80) & 0xffff,
                (n >> 64) & 0xffff,
                (n >> 48) & 0xffff,
                n & 0xffff_ffff_ffff
            )
        }
        Err(_) => id.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const OWN: &str = "hookbox:bus";
    const CH: Origin<'static> = Origin::Channel("event::TICKET_CREATED");

    fn map(raw: &str) -> Mapped {
        map_message(OWN, 1 << 20, CH, raw.as_bytes())
    }

    fn invalid(raw: &str) -> String {
        match map(raw) {
            Mapped::Invalid(why) => why,
            other => panic!("{raw}: {other:?}"),
        }
    }

    #[test]
    fn a_seed_envelope_becomes_an_event() {
        let raw = r#"{"id":"6f1c","eventType":"TICKET_CREATED","timestamp":"2024-05-01T12:00:00.000Z","payload":{"tenantId":"t-1","ticketId":"T-9"}}"#;
        let Mapped::Event(e) = map(raw) else { panic!() };
        assert_eq!(
            (e.event_type.as_str(), e.tenant.as_str()),
            ("TICKET_CREATED", "t-1")
        );
        assert_eq!(e.idempotency_key.as_deref(), Some("6f1c"));
        assert_eq!(
            e.payload.unwrap().get(),
            r#"{"tenantId":"t-1","ticketId":"T-9"}"#
        );
        assert_eq!(e.metadata["timestamp"], "2024-05-01T12:00:00.000Z");
        assert_eq!(e.metadata["redis_channel"], "event::TICKET_CREATED");

        let no_id = r#"{"eventType":"X","payload":{"tenantId":7}}"#;
        let Mapped::Event(e) =
            map_message(OWN, 1 << 20, Origin::Entry("s", "1-0"), no_id.as_bytes())
        else {
            panic!()
        };
        assert_eq!(
            (e.tenant.as_str(), e.idempotency_key.as_deref()),
            ("7", Some("s/1-0"))
        );
        let Mapped::Event(e) = map(no_id) else {
            panic!()
        };
        assert_eq!(e.idempotency_key, None);
    }

    #[test]
    fn malformed_messages_say_why() {
        assert!(
            invalid("not json").starts_with("not JSON"),
            "{}",
            invalid("not json")
        );
        assert!(invalid("[1,2]").starts_with("not an event envelope"));
        assert_eq!(
            invalid(r#"{"payload":{"tenantId":"t"}}"#),
            "no `eventType` string"
        );
        assert!(
            invalid(r#"{"eventType":"a b","payload":{"tenantId":"t"}}"#).contains("`eventType`")
        );
        assert_eq!(invalid(r#"{"eventType":"X"}"#), "no `payload`");
        assert_eq!(
            invalid(r#"{"eventType":"X","payload":{}}"#),
            "no `payload.tenantId`"
        );
        assert!(invalid(r#"{"eventType":"X","payload":{"tenantId":""}}"#).contains("non-empty"));
        assert!(invalid(r#"{"eventType":"X","payload":[1]}"#).contains("not an object"));
        let big = format!(
            r#"{{"eventType":"X","payload":{{"tenantId":"t","x":"{}"}}}}"#,
            "a".repeat(100)
        );
        let Mapped::Invalid(why) = map_message(OWN, 50, CH, big.as_bytes()) else {
            panic!()
        };
        assert!(why.contains("the limit is 50"), "{why}");
        assert!(matches!(
            map(r#"{"eventType":"X","payload":{"tenantId":"t"},"publisher":"hookbox:bus"}"#),
            Mapped::Own
        ));
    }

    fn publish(payload: serde_json::Value, tenant: &str) -> Event {
        let mut input = EventInput::new("redis.publish", &payload);
        input.tenant = tenant.into();
        input.accept("handler:x", 1, 1 << 20).unwrap()
    }

    #[test]
    fn envelopes_round_trip_and_are_stable() {
        let event = publish(
            json!({"event_type": "NOTIFICATION_SENT", "payload": {"ticketId": "T-1"}}),
            "acme",
        );
        let (t, text) = envelope(OWN, &event).unwrap();
        assert_eq!(t, "NOTIFICATION_SENT");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["payload"], json!({"ticketId": "T-1", "tenantId": "acme"}));
        assert_eq!(v["publisher"], OWN);
        assert_eq!(v["id"].as_str().unwrap().len(), 36);
        assert_eq!(
            envelope(OWN, &event).unwrap().1,
            text,
            "a retry publishes the same envelope"
        );
        assert!(matches!(
            map_message(OWN, 1 << 20, CH, text.as_bytes()),
            Mapped::Own
        ));
        let Mapped::Event(back) = map_message("hookbox:other", 1 << 20, CH, text.as_bytes()) else {
            panic!()
        };
        assert_eq!(
            (back.event_type.as_str(), back.tenant.as_str()),
            ("NOTIFICATION_SENT", "acme")
        );
        assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    }

    #[test]
    fn bad_publish_payloads_name_the_problem() {
        let cases = [
            (json!({"event_type": "X", "payload": {}}), "", "no tenant"),
            (
                json!({"event_type": "X", "payload": [1]}),
                "a",
                "JSON object",
            ),
            (
                json!({"event_type": "", "payload": {}}),
                "a",
                "`event_type`",
            ),
            (
                json!({"event_type": "X", "payload": {"tenantId": "b"}}),
                "a",
                "differs",
            ),
            (
                json!({"event_type": "X", "payload": {}, "tennant": "a"}),
                "a",
                "tennant",
            ),
        ];
        for (payload, tenant, expected) in cases {
            let err = envelope(OWN, &publish(payload.clone(), tenant)).unwrap_err();
            assert!(err.contains(expected), "{payload}: {err}");
        }
        let ok = publish(
            json!({"event_type": "X", "payload": {}, "tenant": "b"}),
            "a",
        );
        assert!(envelope(OWN, &ok).unwrap().1.contains(r#""tenantId":"b""#));
    }
}
