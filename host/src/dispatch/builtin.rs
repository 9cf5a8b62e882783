//! Built-in handlers: handlers the host implements in Rust (the Zulip reply
//! sink), routed, queued, retried, circuit-broken and dead-lettered exactly
//! like deployed components, so they inherit the durable queue.
//!
//! They are handed to [`Dispatcher::start_with`](super::Dispatcher::start_with)
//! and registered before pending deliveries are recovered and before the
//! workers start, so a restart finds them in place. Their names contain a
//! `:` (`zulip:acme`), which deployed handler names may not, so a deploy can
//! never replace one. They are not in the store's handler table: the
//! handler admin routes do not list them; their deliveries, stats and dead
//! letters are recorded under their name like any other.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::limits::Limits;
use crate::manifest::{DeliveryPolicy, InvalidManifest, Manifest, NAME_MAX, Subscription};
use crate::runtime::{DeliveryReport, Outcome};

use super::registry::{Code, Loaded};

/// A handler implemented by the host. `deliver` runs on a dispatcher worker
/// thread and may block (network I/O), bounded by its own timeouts.
pub trait BuiltinHandler: Send + Sync + std::fmt::Debug {
    /// Handles one delivery of `event` (`attempt` counts from 1).
    fn deliver(&self, event: &Event, attempt: u32) -> Result<(), BuiltinError>;
}

/// Why a built-in delivery failed; recorded as a `handler_error` outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinError {
    /// What went wrong (kept in the delivery log and dead letter).
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl BuiltinError {
    /// A failure a later attempt may not have.
    pub fn retryable(message: impl Into<String>) -> Self {
        BuiltinError {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure no retry can fix (dead-lettered at once).
    pub fn fatal(message: impl Into<String>) -> Self {
        BuiltinError {
            message: message.into(),
            retryable: false,
        }
    }
}

/// A built-in handler with its routing entry.
#[derive(Clone, Debug)]
pub struct Builtin {
    /// Its name; must contain a `:`.
    pub name: String,
    /// Which events it receives.
    pub subscription: Subscription,
    /// Retries, ordering and concurrency.
    pub delivery: DeliveryPolicy,
    /// The implementation.
    pub handler: Arc<dyn BuiltinHandler>,
}

impl Builtin {
    /// Checks the name, subscription and policy.
    pub fn validate(&self) -> Result<(), InvalidManifest> {
        if !self.name.contains(':') || self.name.len() > NAME_MAX + 16 {
            return Err(InvalidManifest(format!(
                "built-in handler name {:?} must contain `:` and be at most {} bytes",
                self.name,
                NAME_MAX + 16
            )));
        }
        if self.name.chars().any(char::is_control) {
            return Err(InvalidManifest(format!(
                "built-in handler name {:?} contains control characters",
                self.name
            )));
        }
        self.subscription.validate()?;
        self.delivery.validate()
    }
}

/// The routing entry of a (validated) built-in handler: version 0, always
/// enabled, no config, no capabilities.
pub(crate) fn loaded(b: Builtin, limits: Limits) -> Loaded {
    Loaded {
        manifest: Manifest {
            name: b.name.clone(),
            description: "built-in handler".into(),
            subscription: b.subscription,
            limits: Default::default(),
            config: serde_json::Value::Object(Default::default()),
            capabilities: Default::default(),
            delivery: b.delivery,
        },
        name: b.name,
        version: 0,
        limits,
        config: "{}".into(),
        enabled: true,
        code: Code::Builtin(b.handler),
    }
}

/// Runs a built-in delivery and describes it the way the runtime describes
/// a sandboxed one.
pub(crate) fn deliver(handler: &dyn BuiltinHandler, event: &Event, attempt: u32) -> DeliveryReport {
    let started = Instant::now();
    let result = handler.deliver(event, attempt);
    report(result, started.elapsed())
}

fn report(result: Result<(), BuiltinError>, duration: Duration) -> DeliveryReport {
    let (outcome, error, retryable) = match result {
        Ok(()) => (Outcome::Ok, None, false),
        Err(e) => (Outcome::HandlerError, Some(e.message), e.retryable),
    };
    DeliveryReport {
        outcome,
        error,
        retryable,
        fuel_used: 0,
        duration,
        peak_memory_bytes: 0,
        logs: Vec::new(),
        emitted: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Nop;

    impl BuiltinHandler for Nop {
        fn deliver(&self, _: &Event, _: u32) -> Result<(), BuiltinError> {
            Ok(())
        }
    }

    fn builtin(name: &str) -> Builtin {
        Builtin {
            name: name.into(),
            subscription: Subscription {
                events: vec!["zulip.send_message".into()],
                tenants: vec![],
                filters: vec![],
            },
            delivery: DeliveryPolicy::default(),
            handler: Arc::new(Nop),
        }
    }

    #[test]
    fn names_must_be_unlike_deployed_handlers() {
        assert!(builtin("zulip:acme").validate().is_ok());
        assert!(builtin("zulip-acme").validate().is_err());
        assert!(builtin("zulip:a\nb").validate().is_err());
        assert!(
            builtin(&format!("zulip:{}", "a".repeat(80)))
                .validate()
                .is_err()
        );
        let mut b = builtin("zulip:acme");
        b.subscription.events.clear();
        assert!(b.validate().is_err());
    }

    #[test]
    fn results_become_reports() {
        let ok = report(Ok(()), Duration::from_millis(3));
        assert_eq!(ok.outcome, Outcome::Ok);
        assert_eq!(ok.error, None);
        let retry = report(Err(BuiltinError::retryable("503")), Duration::ZERO);
        assert_eq!(retry.outcome, Outcome::HandlerError);
        assert!(retry.retryable);
        assert_eq!(retry.error.as_deref(), Some("503"));
        let fatal = report(Err(BuiltinError::fatal("bad payload")), Duration::ZERO);
        assert!(!fatal.retryable);
    }
}
