//! A handler that does what its event's payload says, in this order: log
//! records, KV calls, emitted events, then an error or a panic. The SDK
//! parity test (`tests/tests/runtime/sdk_parity.rs`) runs the same
//! scenarios through `hookbox_sdk::testing::TestHost` natively and through
//! the real host as a component, and compares the outcomes.

use hookbox_sdk::emit::{self, NewEvent};
use hookbox_sdk::{Event, Handler, HandlerError, kv, log};
use serde::Deserialize;

/// What one delivery does; every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Log records: how many, each with a message of `bytes` bytes and
    /// `fields` fields whose values are `field_bytes` bytes long.
    pub logs: Option<Logs>,
    /// KV sets: `(key, value bytes)`.
    pub kv_set: Vec<(String, usize)>,
    /// KV gets of these keys.
    pub kv_get: Vec<String>,
    /// Emitted events: how many, each a JSON string payload of `bytes`
    /// characters and `metadata` entries.
    pub emits: Option<Emits>,
    /// Return an error with a message of this many bytes.
    pub error_bytes: Option<usize>,
    /// Whether that error is retryable.
    pub retryable: bool,
    /// Panic with this message.
    pub panic: Option<String>,
}

/// Log records to write.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Logs {
    /// Records.
    pub count: usize,
    /// Message bytes per record.
    pub bytes: usize,
    /// Fields per record.
    pub fields: usize,
    /// Value bytes per field (keys are `f0`, `f1`, …).
    pub field_bytes: usize,
}

/// Events to emit.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Emits {
    /// Events.
    pub count: usize,
    /// Characters of each payload string (the JSON text is 2 bytes longer).
    pub bytes: usize,
    /// Metadata entries per event (`m0` = `v`, …).
    pub metadata: usize,
}

/// The probe.
#[derive(Debug)]
pub struct Probe;

impl Handler for Probe {
    fn handle(event: Event) -> Result<(), HandlerError> {
        let s: Scenario = event.payload()?;
        if let Some(l) = &s.logs {
            for _ in 0..l.count {
                let fields: Vec<(String, String)> = (0..l.fields)
                    .map(|i| (format!("f{i}"), "v".repeat(l.field_bytes)))
                    .collect();
                log::log(log::Level::Info, &"m".repeat(l.bytes), &fields);
            }
        }
        for (key, bytes) in &s.kv_set {
            kv::set(key, vec![b'x'; *bytes], None);
        }
        for key in &s.kv_get {
            kv::get(key);
        }
        if let Some(e) = &s.emits {
            for _ in 0..e.count {
                let mut new = NewEvent::new("probe.out").payload(&"p".repeat(e.bytes));
                for i in 0..e.metadata {
                    new = new.metadata(format!("m{i}"), "v");
                }
                emit::emit(new).map_err(|e| HandlerError::fatal(e.to_string()))?;
            }
        }
        if let Some(message) = &s.panic {
            panic!("{message}");
        }
        match s.error_bytes {
            Some(n) if s.retryable => Err(HandlerError::retryable("e".repeat(n))),
            Some(n) => Err(HandlerError::fatal("e".repeat(n))),
            None => Ok(()),
        }
    }
}

hookbox_sdk::export_handler!(Probe);
