//! Emitting new events back into Hookbox.
//!
//! Emitted events are queued and accepted only once the delivery succeeds;
//! those emitted by a delivery that fails are discarded with it. The host
//! caps how many events one delivery may emit (exceeding it ends the
//! delivery with `emit_limit`).
//!
//! ```
//! use hookbox_sdk::emit::{NewEvent, emit};
//! use hookbox_sdk::Priority;
//!
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("acme", || -> Result<(), hookbox_sdk::HandlerError> {
//! emit(
//!     NewEvent::new("notification")
//!         .payload(&serde_json::json!({"text": "ticket 7 closed"}))
//!         .metadata("ticket", "7")
//!         .priority(Priority::High),
//! )?;
//! # Ok(()) }).unwrap();
//! # assert_eq!(host.emitted()[0].tenant, "acme");
//! ```

use std::fmt;

use serde::Serialize;

use crate::{HandlerError, Priority, sys};

/// An event a handler asks Hookbox to accept; build it with
/// [`NewEvent::new`] and the setters.
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct NewEvent {
    /// The event type.
    pub event_type: String,
    /// The tenant; `None` means the tenant of the event being handled. A
    /// delivery of an event that has a tenant may emit only into that tenant
    /// (the host refuses another); one without a tenant may name any.
    pub tenant: Option<String>,
    /// The payload as JSON text, or why it could not be serialized.
    payload: Result<String, String>,
    /// Metadata for the new event.
    pub metadata: Vec<(String, String)>,
    /// An ordering key.
    pub key: Option<String>,
    /// The priority; `None` means normal.
    pub priority: Option<Priority>,
}

impl NewEvent {
    /// A new event of type `event_type` with payload `{}`, the current
    /// tenant, no metadata, no key and normal priority.
    pub fn new(event_type: impl Into<String>) -> Self {
        NewEvent {
            event_type: event_type.into(),
            tenant: None,
            payload: Ok("{}".to_owned()),
            metadata: Vec::new(),
            key: None,
            priority: None,
        }
    }

    /// Sends the event to `tenant` instead of the current event's tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Sets the payload to `value` serialized as JSON. If serialization
    /// fails, [`emit`] reports it as [`EmitError::Invalid`].
    pub fn payload<T: Serialize + ?Sized>(mut self, value: &T) -> Self {
        self.payload = serde_json::to_string(value).map_err(|e| format!("payload: {e}"));
        self
    }

    /// Sets the payload to JSON text as is, e.g. to forward an event's
    /// payload unchanged. The host refuses text that is not JSON.
    pub fn raw_payload(mut self, json: impl Into<String>) -> Self {
        self.payload = Ok(json.into());
        self
    }

    /// Adds a metadata entry.
    pub fn metadata(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.push((key.into(), value.into()));
        self
    }

    /// Sets the ordering key.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = Some(priority);
        self
    }

    /// The payload JSON text, or why it could not be serialized.
    pub fn payload_json(&self) -> Result<&str, &str> {
        self.payload.as_deref().map_err(String::as_str)
    }
}

/// Why an emitted event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EmitError {
    /// The payload is not valid JSON, or a field is malformed.
    Invalid(String),
}

impl fmt::Display for EmitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EmitError::Invalid(reason) => write!(f, "emitted event refused: {reason}"),
        }
    }
}

impl std::error::Error for EmitError {}

/// A refused event will be refused again: fatal.
impl From<EmitError> for HandlerError {
    fn from(e: EmitError) -> Self {
        HandlerError::fatal(e.to_string())
    }
}

/// Queues `event` for acceptance once the delivery succeeds.
pub fn emit(mut event: NewEvent) -> Result<(), EmitError> {
    let payload =
        std::mem::replace(&mut event.payload, Ok(String::new())).map_err(EmitError::Invalid)?;
    sys::emit(event, payload)
}
