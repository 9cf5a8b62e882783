//! Calling a webhook endpoint named in the daemon's config: the
//! `webhook.send` event.
//!
//! A handler names the endpoint (`[[webhook]] name`), never a URL: the
//! config is the allow-list. Hookbox's built-in sink POSTs the body —
//! signed per the Standard Webhooks spec for `standard` endpoints — with
//! retries, rate-limit waits and dead letters. [`crate::discord`] and
//! [`crate::slack`] build the bodies those endpoints expect.
//!
//! ```
//! use hookbox_sdk::webhook;
//!
//! # let mut host = hookbox_sdk::testing::TestHost::new();
//! # host.within("acme", || -> Result<(), hookbox_sdk::HandlerError> {
//! webhook::send("billing", &serde_json::json!({"invoice": "I-7", "state": "finalized"}))?;
//! # Ok(()) }).unwrap();
//! let sent = &host.emitted()[0];
//! assert_eq!(sent.event_type, webhook::SEND_EVENT);
//! assert_eq!(sent.payload_value()["endpoint"], "billing");
//! assert_eq!(sent.payload_value()["body"]["invoice"], "I-7");
//! ```

use serde::Serialize;

use crate::emit::{EmitError, NewEvent, emit};

/// The event type the webhook sinks perform.
pub const SEND_EVENT: &str = "webhook.send";

#[derive(Serialize)]
struct Send<'a, T: ?Sized> {
    endpoint: &'a str,
    body: &'a T,
}

/// Queues a POST of `body` (as JSON) to the configured `endpoint`, made
/// once the delivery succeeds.
pub fn send<T: Serialize + ?Sized>(endpoint: &str, body: &T) -> Result<(), EmitError> {
    emit(NewEvent::new(SEND_EVENT).payload(&Send { endpoint, body }))
}
