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
//!
//! **Backpressure.** A sink whose far side asks it to slow down (an HTTP
//! 429 with `Retry-After`) answers [`BuiltinError::rate_limited`]: the
//! dispatcher puts the delivery back without using up an attempt or
//! counting a breaker failure, and holds the handler's deliveries until the
//! window ends ([`super::throttle`]). Any built-in sink can use it.
//!
//! Built-in handlers are never disabled automatically (an operator could
//! not re-enable one: they are not in the handler table); a failing one's
//! breaker keeps opening, with one trial delivery per cool-down. Their dead
//! letters are replayed like any other (there is one version, 0).

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

/// Why a built-in delivery failed; recorded as a `handler_error` outcome,
/// unless it is backpressure (`wait` set).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BuiltinError {
    /// What went wrong (kept in the delivery log and dead letter).
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
    /// Backpressure: the far side asked for this pause before the next
    /// call. The delivery is put back as it was, not failed.
    pub wait: Option<Duration>,
}

impl BuiltinError {
    /// A failure a later attempt may not have.
    pub fn retryable(message: impl Into<String>) -> Self {
        BuiltinError {
            message: message.into(),
            retryable: true,
            wait: None,
        }
    }

    /// A failure no retry can fix (dead-lettered at once).
    pub fn fatal(message: impl Into<String>) -> Self {
        BuiltinError {
            message: message.into(),
            retryable: false,
            wait: None,
        }
    }

    /// A rate limit: send nothing more for `wait`, then try this delivery
    /// again (see the module docs).
    pub fn rate_limited(message: impl Into<String>, wait: Duration) -> Self {
        BuiltinError {
            message: message.into(),
            retryable: true,
            wait: Some(wait),
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
        // Built-in handlers keep no KV.
        incarnation: String::new(),
        version: 0,
        limits,
        config: "{}".into(),
        enabled: true,
        code: Code::Builtin(b.handler),
    }
}

/// What a built-in delivery came to.
#[derive(Debug)]
pub(crate) enum Delivered {
    /// It ran: the report, as the runtime describes a sandboxed delivery.
    Ran(DeliveryReport),
    /// Backpressure: nothing happened; try again after `wait`.
    Throttled {
        /// The pause asked for.
        wait: Duration,
        /// Why.
        message: String,
    },
}

/// Runs a built-in delivery.
pub(crate) fn deliver(handler: &dyn BuiltinHandler, event: &Event, attempt: u32) -> Delivered {
    let started = Instant::now();
    match handler.deliver(event, attempt) {
        Err(BuiltinError {
            wait: Some(wait),
            message,
            ..
        }) => Delivered::Throttled { wait, message },
        result => Delivered::Ran(report(result, started.elapsed())),
    }
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
        // Network waits: they hold the worker all the same.
        waited: duration,
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

    #[derive(Debug)]
    struct Limited;

    impl BuiltinHandler for Limited {
        fn deliver(&self, _: &Event, _: u32) -> Result<(), BuiltinError> {
            Err(BuiltinError::rate_limited(
                "slow down",
                Duration::from_millis(2900),
            ))
        }
    }

    #[test]
    fn a_rate_limit_is_backpressure_not_a_report() {
        let event = crate::event::EventInput::new("zulip.send_message", &serde_json::json!({}))
            .accept("test", 0, 1 << 20)
            .unwrap();
        match deliver(&Limited, &event, 1) {
            Delivered::Throttled { wait, message } => {
                assert_eq!(wait, Duration::from_millis(2900));
                assert_eq!(message, "slow down");
            }
            Delivered::Ran(r) => panic!("a throttled delivery was reported: {r:?}"),
        }
        assert!(matches!(deliver(&Nop, &event, 1), Delivered::Ran(_)));
    }
}
