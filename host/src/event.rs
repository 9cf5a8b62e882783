//! Events as Hookbox sees them: what a producer sends ([`EventInput`]), how
//! it is validated, and the accepted [`Event`] with its assigned id.
//!
//! Validation lives here so that every source (HTTP, CLI, `hookbox run`,
//! events emitted by handlers, Zulip) applies the same rules.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;

/// Limits on the parts of an event. Producers get a precise error naming the
/// field; these are not configurable per handler because they bound the
/// daemon's own memory before any handler is involved.
pub mod bounds {
    /// Event types are identifiers, not prose.
    pub const TYPE_BYTES: usize = 128;
    /// Tenants are realm / organisation / guild names or ids.
    pub const TENANT_BYTES: usize = 256;
    /// Ordering and idempotency keys.
    pub const KEY_BYTES: usize = 256;
    /// Sources such as `zulip:<realm>` or `handler:<name>`.
    pub const SOURCE_BYTES: usize = 300;
    /// Metadata entries per event.
    pub const METADATA_ENTRIES: usize = 64;
    /// One metadata key or value.
    pub const METADATA_ITEM_BYTES: usize = 1024;
    /// Default cap on the payload's JSON text (the daemon config may lower or raise it).
    pub const DEFAULT_PAYLOAD_BYTES: usize = 1024 * 1024;
    /// Deepest nesting of arrays and objects in a payload. Payloads are
    /// carried as text, but everything that looks inside one parses it:
    /// subscription filters and schemas here, serde_json in the guest SDK
    /// and in clients, `hookbox run --json` printing it inside its report.
    /// serde_json refuses past 128 levels; 64 leaves the other 64 for the
    /// documents a payload is embedded in (a report, an API answer), so any
    /// payload Hookbox accepts can be parsed wherever it travels.
    pub const PAYLOAD_DEPTH: usize = 64;
}

/// Delivery priority; higher priorities are dequeued first.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ToSchema,
)]
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
    /// All priorities, most urgent first.
    pub const ALL: [Priority; 4] = [
        Priority::Critical,
        Priority::High,
        Priority::Normal,
        Priority::Low,
    ];

    /// Index into per-priority arrays, 0 being the most urgent.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The lowercase name used in JSON and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// An event as a producer submits it. Hookbox fills in the rest on accept.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventInput {
    /// The event type, e.g. `message` or `TICKET_UPDATED`.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The tenant; empty when the producer has none.
    #[serde(default)]
    pub tenant: String,
    /// The payload (any JSON value; `{}` when omitted).
    #[serde(default)]
    #[schema(value_type = Option<serde_json::Value>)]
    pub payload: Option<Box<RawValue>>,
    /// Free-form string metadata. Parsing stops past
    /// [`bounds::METADATA_ENTRIES`] entries, before the rest is built.
    #[serde(default, deserialize_with = "bounded_metadata")]
    pub metadata: BTreeMap<String, String>,
    /// Events with the same key reach ordered handlers in accept order.
    #[serde(default)]
    pub key: Option<String>,
    /// Delivery priority.
    #[serde(default)]
    pub priority: Priority,
    /// A second event with the same key, accepted within the dedupe window,
    /// is answered with the first event's id instead of being accepted.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// Deserialises a metadata map, refusing it at its 65th entry instead of
/// building a map of any size and counting afterwards.
fn bounded_metadata<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Bounded;
    impl<'de> serde::de::Visitor<'de> for Bounded {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(
                f,
                "a map of at most {} string entries",
                bounds::METADATA_ENTRIES
            )
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some((k, v)) = map.next_entry::<String, String>()? {
                if out.len() == bounds::METADATA_ENTRIES {
                    return Err(serde::de::Error::custom(InvalidEvent::TooManyMetadata(
                        bounds::METADATA_ENTRIES + 1,
                    )));
                }
                out.insert(k, v);
            }
            Ok(out)
        }
    }
    d.deserialize_map(Bounded)
}

/// An accepted event. Immutable once accepted.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Event {
    /// ULID assigned on accept; sorts by accept time.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The tenant, possibly empty.
    pub tenant: String,
    /// Where the event came from (`http`, `handler:<name>`, `zulip:<realm>`, …).
    pub source: String,
    /// Accept time, milliseconds since the Unix epoch.
    pub time: u64,
    /// Delivery priority.
    pub priority: Priority,
    /// The payload as JSON text, kept byte for byte as the producer sent it.
    #[schema(value_type = serde_json::Value)]
    pub payload: Box<RawValue>,
    /// Producer metadata.
    pub metadata: BTreeMap<String, String>,
    /// Ordering key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Idempotency key given at accept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// How many handler emissions led to this event (0 for external events);
    /// bounded so handlers cannot feed each other forever.
    #[serde(default)]
    pub depth: u32,
}

impl Event {
    /// About how many bytes the event's JSON takes (a little more than
    /// most): its payload, metadata and keys, plus room for the envelope.
    /// Serializing into a buffer this size grows it rarely, where a buffer
    /// grown from empty copies a 1 KiB event three or four times.
    pub fn json_size_hint(&self) -> usize {
        let metadata: usize = self
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len() + 8)
            .sum();
        let strings = self.id.len()
            + self.event_type.len()
            + self.tenant.len()
            + self.source.len()
            + self.key.as_ref().map_or(0, String::len)
            + self.idempotency_key.as_ref().map_or(0, String::len);
        self.payload.get().len() + metadata + strings + 192
    }
}

/// Why an event was refused at accept. Each names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidEvent {
    /// The event type is empty.
    #[error("`type` must not be empty")]
    EmptyType,
    /// A field is longer than its bound.
    #[error("`{field}` is {len} bytes; the limit is {max}")]
    TooLong {
        /// The JSON field name.
        field: String,
        /// Its length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds characters it may not.
    #[error("`{field}` {reason}")]
    BadChars {
        /// The JSON field name.
        field: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Too many metadata entries.
    #[error("`metadata` has {0} entries; the limit is {max}", max = bounds::METADATA_ENTRIES)]
    TooManyMetadata(usize),
    /// The payload text is not JSON.
    #[error("`payload` is not valid JSON: {0}")]
    PayloadNotJson(String),
    /// The payload nests arrays and objects deeper than [`bounds::PAYLOAD_DEPTH`].
    #[error(
        "`payload` nests arrays and objects more than {max} levels deep",
        max = bounds::PAYLOAD_DEPTH
    )]
    PayloadTooDeep,
    /// The payload does not match the schema registered for its type.
    #[error("`payload` does not match the schema for `{event_type}` at {path}: {message}")]
    SchemaMismatch {
        /// The event type whose schema applies.
        event_type: String,
        /// JSON pointer to the failing value (`/` for the whole payload).
        path: String,
        /// What the schema wanted.
        message: String,
    },
    /// The type is in the namespace only Hookbox itself may publish in.
    #[error("`type` {0:?} is reserved: `{RESERVED_PREFIX}*` events come only from Hookbox itself")]
    ReservedType(String),
}

/// Event types Hookbox publishes about itself (`hookbox.handler.circuit_opened`, …);
/// no producer or handler may publish them, so they cannot be forged.
pub const RESERVED_PREFIX: &str = "hookbox.";
/// The source of the events Hookbox publishes about itself.
pub const HOOKBOX_SOURCE: &str = "hookbox";

/// Event types: ASCII letters, digits and `._:-/`, so that they can appear in
/// subscription patterns, metric labels and URLs without escaping.
pub fn validate_type(t: &str) -> Result<(), InvalidEvent> {
    if t.is_empty() {
        return Err(InvalidEvent::EmptyType);
    }
    check_len("type", t, bounds::TYPE_BYTES)?;
    if !t
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-' | b'/'))
    {
        return Err(InvalidEvent::BadChars {
            field: "type".into(),
            reason: "may contain only ASCII letters, digits and . _ : - /",
        });
    }
    Ok(())
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), InvalidEvent> {
    if value.len() > max {
        return Err(InvalidEvent::TooLong {
            field: field.to_string(),
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn check_text(field: &str, value: &str, max: usize) -> Result<(), InvalidEvent> {
    check_len(field, value, max)?;
    if value.chars().any(char::is_control) {
        return Err(InvalidEvent::BadChars {
            field: field.to_string(),
            reason: "must not contain control characters",
        });
    }
    Ok(())
}

impl EventInput {
    /// A minimal input: a type and a JSON payload.
    pub fn new(event_type: impl Into<String>, payload: &serde_json::Value) -> Self {
        EventInput {
            event_type: event_type.into(),
            tenant: String::new(),
            payload: Some(
                serde_json::value::to_raw_value(payload).expect("a Value always serializes"),
            ),
            metadata: BTreeMap::new(),
            key: None,
            priority: Priority::Normal,
            idempotency_key: None,
        }
    }

    /// Checks every field against its bound; `max_payload` caps the payload text.
    pub fn validate(&self, max_payload: usize) -> Result<(), InvalidEvent> {
        validate_type(&self.event_type)?;
        check_text("tenant", &self.tenant, bounds::TENANT_BYTES)?;
        if let Some(k) = &self.key {
            check_text("key", k, bounds::KEY_BYTES)?;
        }
        if let Some(k) = &self.idempotency_key {
            check_text("idempotency_key", k, bounds::KEY_BYTES)?;
        }
        if self.metadata.len() > bounds::METADATA_ENTRIES {
            return Err(InvalidEvent::TooManyMetadata(self.metadata.len()));
        }
        for (k, v) in &self.metadata {
            check_text("metadata key", k, bounds::METADATA_ITEM_BYTES)?;
            check_len("metadata value", v, bounds::METADATA_ITEM_BYTES)?;
        }
        if let Some(p) = &self.payload {
            check_len("payload", p.get(), max_payload)?;
            check_depth(p.get())?;
        }
        Ok(())
    }

    /// Validates and turns the input into an accepted event with a fresh id.
    pub fn accept(
        self,
        source: &str,
        depth: u32,
        max_payload: usize,
    ) -> Result<Event, InvalidEvent> {
        self.validate(max_payload)?;
        self.into_event(source, depth)
    }

    /// [`Self::accept`] for an input that [`Self::validate`] passed already:
    /// the payload is not scanned a second time.
    pub(crate) fn into_event(self, source: &str, depth: u32) -> Result<Event, InvalidEvent> {
        check_text("source", source, bounds::SOURCE_BYTES)?;
        let time = now_ms();
        Ok(Event {
            id: next_id().to_string(),
            event_type: self.event_type,
            tenant: self.tenant,
            source: source.to_string(),
            time,
            priority: self.priority,
            payload: self.payload.unwrap_or_else(empty_payload),
            metadata: self.metadata,
            key: self.key,
            idempotency_key: self.idempotency_key,
            depth,
        })
    }
}

/// The bytes of JSON text that lie outside strings (brackets, braces,
/// commas, colons, scalars), in one pass without allocating. String
/// contents, most of an event's bytes, are skipped with `memchr` rather
/// than walked byte by byte.
fn outside_strings(json: &[u8]) -> OutsideStrings<'_> {
    OutsideStrings { json, at: 0 }
}

/// See [`outside_strings`].
struct OutsideStrings<'a> {
    json: &'a [u8],
    /// The next byte to look at.
    at: usize,
}

impl Iterator for OutsideStrings<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        loop {
            let Some(&b) = self.json.get(self.at) else {
                self.at = self.json.len();
                return None;
            };
            self.at += 1;
            if b != b'"' {
                return Some(b);
            }
            // A string: on to its closing quote, over escaped bytes.
            loop {
                let rest = self.json.get(self.at..).unwrap_or_default();
                let Some(k) = memchr::memchr2(b'"', b'\\', rest) else {
                    // Unterminated: the rest is inside it.
                    self.at = self.json.len();
                    return None;
                };
                self.at += k + 1;
                if rest[k] == b'"' {
                    break;
                }
                self.at += 1;
            }
        }
    }
}

/// Refuses JSON text nesting arrays and objects deeper than
/// [`bounds::PAYLOAD_DEPTH`]. One pass over the bytes, no allocation: the
/// text is already known to be JSON, so only brackets outside strings count.
pub fn check_depth(json: &str) -> Result<(), InvalidEvent> {
    let mut depth = 0usize;
    for b in outside_strings(json.as_bytes()) {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > bounds::PAYLOAD_DEPTH {
                    return Err(InvalidEvent::PayloadTooDeep);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// The number of elements of the JSON array `json` (its top-level commas
/// plus one), counted without parsing it, for the message of a batch
/// refused for its length. Meaningful for valid JSON only.
pub fn array_len(json: &[u8]) -> usize {
    let (mut depth, mut commas, mut empty) = (0usize, 0usize, true);
    for b in outside_strings(json) {
        match b {
            b'[' | b'{' => depth += 1,
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' if depth == 1 => commas += 1,
            _ => {}
        }
        if depth >= 1 && !matches!(b, b'[' | b' ' | b'\n' | b'\r' | b'\t') || depth >= 2 {
            empty = false;
        }
    }
    if empty { 0 } else { commas + 1 }
}

/// Parses JSON payload text into the raw form events carry.
pub fn parse_payload(text: &str) -> Result<Box<RawValue>, InvalidEvent> {
    serde_json::from_str::<Box<RawValue>>(text)
        .map_err(|e| InvalidEvent::PayloadNotJson(e.to_string()))
}

/// `{}`, the payload of an event that gave none.
pub fn empty_payload() -> Box<RawValue> {
    RawValue::from_string("{}".to_string()).expect("`{}` is JSON")
}

/// A fresh event id. Ids sort in accept order, within a millisecond too
/// (a monotonic ULID generator: the random part counts up), because a
/// restart puts deliveries due at the same time back in event-id order,
/// and `delivery.ordered` depends on it.
fn next_id() -> ulid::Ulid {
    static IDS: std::sync::Mutex<ulid::Generator> = std::sync::Mutex::new(ulid::Generator::new());
    // A generator is a plain value updated in one call.
    let mut g = IDS.lock().unwrap_or_else(|p| p.into_inner());
    // Fails only when 2^80 ids were made within one millisecond.
    g.generate().unwrap_or_else(|_| ulid::Ulid::new())
}

/// Milliseconds since the Unix epoch, saturating on a clock before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Hookbox event type for a Zulip event: `type`, or `type.op` when the
/// event has a non-empty `op` (`message`, `reaction.add`,
/// `subscription.peer_add`); `None` without a string `type`. The guest
/// SDK's `zulip::hookbox_type` applies the same rule.
pub fn zulip_event_type(event: &serde_json::Value) -> Option<String> {
    let t = event.get("type")?.as_str()?;
    Some(match event.get("op").and_then(|o| o.as_str()) {
        Some(op) if !op.is_empty() => format!("{t}.{op}"),
        _ => t.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept_assigns_sortable_ids_and_defaults() {
        let a = EventInput::new("message", &json!({"x": 1}))
            .accept("http", 0, 1024)
            .unwrap();
        let b = EventInput::new("message", &json!({}))
            .accept("http", 0, 1024)
            .unwrap();
        assert_eq!(a.id.len(), 26);
        assert!(a.id < b.id);
        // In accept order within a millisecond too (a restart replays
        // deliveries due at the same time in id order).
        let ids: Vec<String> = (0..1000)
            .map(|_| {
                EventInput::new("message", &json!({}))
                    .accept("http", 0, 1024)
                    .unwrap()
                    .id
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        assert_eq!(a.priority, Priority::Normal);
        assert_eq!(a.payload.get(), r#"{"x":1}"#);
    }

    #[test]
    fn the_json_size_hint_covers_the_json() {
        let plain = EventInput::new("message", &json!({"content": "hi"}))
            .accept("http", 0, 1024)
            .unwrap();
        let mut input = EventInput::new("stream", &json!({"op": "add", "streams": [1, 2, 3]}));
        input.tenant = "acme-corp".into();
        input.key = Some("stream-42".into());
        input.idempotency_key = Some("delivery-0001".into());
        input.priority = Priority::High;
        for i in 0..20 {
            input
                .metadata
                .insert(format!("key-{i}"), format!("a value with \"quotes\" {i}"));
        }
        let full = input.accept("zulip:chat.example.com", 3, 1024).unwrap();
        for event in [plain, full] {
            let json = serde_json::to_vec(&event).unwrap();
            let hint = event.json_size_hint();
            // Enough that serializing never grows the buffer, and not
            // much more.
            assert!(hint >= json.len(), "hint {hint} < {} bytes", json.len());
            assert!(
                hint <= json.len() + 256,
                "hint {hint} for {} bytes",
                json.len()
            );
        }
    }

    #[test]
    fn omitted_payload_is_empty_object() {
        let input: EventInput = serde_json::from_str(r#"{"type":"ping"}"#).unwrap();
        let ev = input.accept("http", 0, 1024).unwrap();
        assert_eq!(ev.payload.get(), "{}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_json::from_str::<EventInput>(r#"{"type":"x","tenat":"a"}"#).unwrap_err();
        assert!(err.to_string().contains("tenat"), "{err}");
    }

    #[test]
    fn type_rules() {
        assert_eq!(validate_type(""), Err(InvalidEvent::EmptyType));
        assert!(validate_type("reaction.add").is_ok());
        assert!(validate_type("TICKET_UPDATED").is_ok());
        assert!(matches!(
            validate_type("a b"),
            Err(InvalidEvent::BadChars { .. })
        ));
        assert!(matches!(
            validate_type(&"x".repeat(bounds::TYPE_BYTES + 1)),
            Err(InvalidEvent::TooLong { .. })
        ));
        assert!(validate_type(&"x".repeat(bounds::TYPE_BYTES)).is_ok());
    }

    #[test]
    fn field_bounds_name_the_field() {
        let mut input = EventInput::new("t", &json!({}));
        input.tenant = "a\u{0}b".into();
        let err = input.validate(1024).unwrap_err();
        assert!(err.to_string().contains("tenant"), "{err}");

        let mut input = EventInput::new("t", &json!({"s": "x".repeat(100)}));
        input.tenant = "ünïcødé-テナント".into();
        let err = input.validate(50).unwrap_err();
        assert!(err.to_string().contains("payload"), "{err}");

        let mut input = EventInput::new("t", &json!({}));
        for i in 0..=bounds::METADATA_ENTRIES {
            input.metadata.insert(i.to_string(), String::new());
        }
        assert!(matches!(
            input.validate(1024),
            Err(InvalidEvent::TooManyMetadata(_))
        ));
    }

    #[test]
    fn payload_depth_is_bounded_and_strings_do_not_count() {
        let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(check_depth(&nested(bounds::PAYLOAD_DEPTH)).is_ok());
        assert_eq!(
            check_depth(&nested(bounds::PAYLOAD_DEPTH + 1)),
            Err(InvalidEvent::PayloadTooDeep)
        );
        let objects = format!(
            "{}1{}",
            r#"{"a":"#.repeat(bounds::PAYLOAD_DEPTH + 1),
            "}".repeat(bounds::PAYLOAD_DEPTH + 1)
        );
        assert_eq!(check_depth(&objects), Err(InvalidEvent::PayloadTooDeep));
        // Brackets and escaped quotes inside strings are text.
        let text = format!(r#"{{"s": "\"{}\\", "t": [1]}}"#, "[{".repeat(1000));
        assert!(check_depth(&text).is_ok(), "{text}");
        let mut input = EventInput::new("t", &json!({}));
        input.payload = Some(parse_payload(&nested(100_000)).unwrap());
        let err = input.validate(usize::MAX).unwrap_err();
        assert!(err.to_string().contains("64 levels"), "{err}");
    }

    #[test]
    fn metadata_parsing_stops_past_the_bound() {
        let entries: Vec<String> = (0..=bounds::METADATA_ENTRIES)
            .map(|i| format!(r#""k{i}": "v""#))
            .collect();
        let text = format!(r#"{{"type": "t", "metadata": {{{}}}}}"#, entries.join(","));
        let err = serde_json::from_str::<EventInput>(&text).unwrap_err();
        assert!(err.to_string().contains("65 entries"), "{err}");
        let text = format!(
            r#"{{"type": "t", "metadata": {{{}}}}}"#,
            entries[1..].join(",")
        );
        let ok: EventInput = serde_json::from_str(&text).unwrap();
        assert_eq!(ok.metadata.len(), bounds::METADATA_ENTRIES);
    }

    /// The byte-by-byte definition [`outside_strings`] must agree with.
    fn outside_strings_by_byte(json: &[u8]) -> Vec<u8> {
        let (mut in_string, mut escaped) = (false, false);
        json.iter()
            .copied()
            .filter(move |&b| {
                if in_string {
                    match b {
                        _ if escaped => escaped = false,
                        b'\\' => escaped = true,
                        b'"' => in_string = false,
                        _ => {}
                    }
                    return false;
                }
                in_string = b == b'"';
                !in_string
            })
            .collect()
    }

    #[test]
    fn bytes_outside_strings_skip_strings_escapes_and_unterminated_tails() {
        for text in [
            "",
            r#""""#,
            r#"{"a": "b\"c", "d": [1, "\\"], "e": "x\\\"y"}"#,
            r#"["unterminated, [ {"#,
            "[\"ends in a backslash\\",
            "\"\\",
        ] {
            let got: Vec<u8> = outside_strings(text.as_bytes()).collect();
            assert_eq!(got, outside_strings_by_byte(text.as_bytes()), "{text}");
        }
        // Every string over a small alphabet of the bytes that matter, by a
        // fixed pseudo-random sequence.
        let alphabet = b"\"\\[]{},a ";
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let text: Vec<u8> = (0..len)
                .map(|i| alphabet[((x >> (i * 2 % 60)) % alphabet.len() as u64) as usize])
                .collect();
            let got: Vec<u8> = outside_strings(&text).collect();
            assert_eq!(
                got,
                outside_strings_by_byte(&text),
                "{:?}",
                String::from_utf8_lossy(&text)
            );
        }
    }

    #[test]
    fn array_lengths_are_counted_without_parsing() {
        assert_eq!(array_len(b"[]"), 0);
        assert_eq!(array_len(b" [ ] "), 0);
        assert_eq!(array_len(br#"[{"type": "a,b"}]"#), 1);
        assert_eq!(array_len(br#"[{"a": [1, 2]}, {"s": "\",["}, 3]"#), 3);
        let batch = format!("[{}]", vec![r#"{"type":"x"}"#; 1000].join(","));
        assert_eq!(array_len(batch.as_bytes()), 1000);
    }

    #[test]
    fn reserved_prefix_error_names_the_rule() {
        let e = InvalidEvent::ReservedType("hookbox.handler.disabled".into());
        assert!(e.to_string().contains("reserved"), "{e}");
        assert!("hookbox.handler.disabled".starts_with(RESERVED_PREFIX));
    }

    #[test]
    fn zulip_type_mapping() {
        assert_eq!(
            zulip_event_type(&json!({"type": "message"})).as_deref(),
            Some("message")
        );
        assert_eq!(
            zulip_event_type(&json!({"type": "reaction", "op": "add"})).as_deref(),
            Some("reaction.add")
        );
        assert_eq!(
            zulip_event_type(&json!({"type": "typing", "op": ""})).as_deref(),
            Some("typing")
        );
        assert_eq!(zulip_event_type(&json!({"op": "add"})), None);
    }
}
