//! Publishing on a Redis event bus: the `redis.publish` event.
//!
//! Hookbox's built-in Redis sink publishes the event as the bus's JSON
//! envelope — `{"id", "eventType", "timestamp", "payload": {"tenantId", …}}`
//! on `<prefix>:<eventType>` (or into the stream) — so the application's
//! other subscribers see it like any event of theirs. The handler needs no
//! network access; the delivery is retried and dead-lettered like any.
//!
//! ```
//! use hookbox_sdk::redis;
//!
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("t-1", || -> Result<(), hookbox_sdk::HandlerError> {
//! redis::publish("NOTIFICATION_SENT", &serde_json::json!({"ticketId": "T-9"}))?;
//! # Ok(()) }).unwrap();
//! let sent = &host.emitted()[0];
//! assert_eq!(sent.event_type, redis::PUBLISH_EVENT);
//! assert_eq!(sent.payload_value()["event_type"], "NOTIFICATION_SENT");
//! assert_eq!(sent.tenant, "t-1");
//! ```

use serde::Serialize;

use crate::emit::{EmitError, NewEvent, emit};

/// The event type the Redis sink performs.
pub const PUBLISH_EVENT: &str = "redis.publish";

/// An event to publish on the bus.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[must_use]
pub struct Publish {
    /// The bus event type (`TICKET_CREATED`, …).
    pub event_type: String,
    /// The payload; `tenantId` is filled in from the tenant when missing.
    pub payload: serde_json::Value,
    /// The tenant; `None`: the tenant of the event being handled (the only
    /// one a delivery of an event with a tenant may publish into).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

impl Publish {
    /// An event of `event_type` with `payload` (serialized to JSON).
    pub fn new<T: Serialize + ?Sized>(
        event_type: impl Into<String>,
        payload: &T,
    ) -> Result<Self, EmitError> {
        Ok(Publish {
            event_type: event_type.into(),
            payload: serde_json::to_value(payload)
                .map_err(|e| EmitError::Invalid(format!("payload: {e}")))?,
            tenant: None,
        })
    }

    /// Publishes for `tenant` instead of the current event's tenant.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.tenant = Some(tenant.into());
        self
    }

    /// Queues it (published once the delivery succeeds).
    pub fn send(self) -> Result<(), EmitError> {
        emit(NewEvent::new(PUBLISH_EVENT).payload(&self))
    }
}

/// Publishes `payload` as a `event_type` event of the current tenant.
pub fn publish<T: Serialize + ?Sized>(event_type: &str, payload: &T) -> Result<(), EmitError> {
    Publish::new(event_type, payload)?.send()
}
