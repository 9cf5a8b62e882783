//! [`HandlerError`]: why a handler did not handle an event, and whether
//! trying again later may help.

use std::fmt;

/// Why a handler did not handle an event.
///
/// `retryable` decides what Hookbox does next: `true` schedules another
/// attempt (within the handler's retry policy), `false` sends the delivery
/// straight to the dead-letter queue. Errors that come from the event itself
/// (a malformed payload, a bad config) will fail the same way every time, so
/// the `From` conversions in this crate make them fatal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerError {
    /// A human-readable explanation, kept in the delivery log.
    pub message: String,
    /// Whether delivering the same event again later may succeed.
    pub retryable: bool,
}

impl HandlerError {
    /// An error that may go away if the event is delivered again later, e.g.
    /// a lost race on a KV key.
    pub fn retryable(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            retryable: true,
        }
    }

    /// An error that will happen again on every attempt, e.g. a payload
    /// missing a required field. The delivery goes to the dead-letter queue.
    pub fn fatal(message: impl Into<String>) -> Self {
        HandlerError {
            message: message.into(),
            retryable: false,
        }
    }

    /// Prefixes the message with `context`, keeping `retryable`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.message = format!("{context}: {}", self.message);
        self
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = if self.retryable { "retryable" } else { "fatal" };
        write!(f, "{} ({kind})", self.message)
    }
}

impl std::error::Error for HandlerError {}

/// Malformed JSON will be malformed on the next attempt too: fatal.
impl From<serde_json::Error> for HandlerError {
    fn from(e: serde_json::Error) -> Self {
        HandlerError::fatal(format!("invalid JSON: {e}"))
    }
}

/// Text that is not UTF-8 stays that way: fatal.
impl From<std::string::FromUtf8Error> for HandlerError {
    fn from(e: std::string::FromUtf8Error) -> Self {
        HandlerError::fatal(format!("invalid UTF-8: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors_set_retryable() {
        assert!(HandlerError::retryable("x").retryable);
        assert!(!HandlerError::fatal("x").retryable);
    }

    #[test]
    fn context_prefixes_and_keeps_kind() {
        let e = HandlerError::retryable("busy").context("ticket 7");
        assert_eq!(e.message, "ticket 7: busy");
        assert!(e.retryable);
        assert_eq!(e.to_string(), "ticket 7: busy (retryable)");
    }

    #[test]
    fn json_errors_are_fatal() {
        let e: HandlerError = serde_json::from_str::<u32>("\"x\"").unwrap_err().into();
        assert!(!e.retryable);
        assert!(e.message.starts_with("invalid JSON: "), "{}", e.message);
    }
}
