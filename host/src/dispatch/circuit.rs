//! The dispatcher's side of the circuit breakers ([`super::breaker`] is the
//! pure state machine, [`super::breakers`] splits it per tenant): narrowing the scheduler's gate, recording delivery
//! outcomes, announcing transitions as events and auto-disabling handlers.
//!
//! **What counts as a failure:** every attempt that did not end `ok`,
//! except a `handler_error` the guest marked non-retryable — the guest
//! decided the *event* is bad, which says nothing about the handler's
//! health (it is dead-lettered at once) — and `host_error`, which is
//! Hookbox's failure (storage, sandbox pool), not the handler's. Both count
//! as successes for the breaker.
//!
//! **Events.** Transitions are published as `hookbox.handler.circuit_opened`,
//! `hookbox.handler.circuit_closed` and `hookbox.handler.disabled` (see
//! [`events`]), accepted through the normal accept path with source
//! `hookbox`, an empty tenant and a payload naming the handler and the
//! reason (and, for a tenant's breaker, the tenant); handlers and the live
//! stream see them like any event.
//!
//! **No feedback loop.** An event about handler `h` is never routed to `h`
//! itself: otherwise a failing `h` subscribed to `*` would receive (and fail
//! on, and be re-opened by) the news of its own failure. Another handler
//! `g` that fails on news about `h` can only open `g`'s breaker, and news
//! about `g` does not reach `g`; every opening needs a full run of failures
//! and a cool-down, so such chains are slow and end in auto-disable. Events
//! a handler emits in reaction are subject to the usual emit depth limit.

use std::sync::MutexGuard;

use serde_json::json;

use super::breaker::{Admit, BreakerPolicy, Transition};
use super::breakers::{Breakers, Pass, Scoped};
use super::queue::Gate;
use super::throttle::Throttles;
use super::{AcceptError, Incoming, Inner, Origin};
use crate::event::EventInput;
use crate::runtime::{DeliveryReport, Outcome};

/// The events Hookbox itself emits about handlers, and their source.
pub mod events {
    /// The `source` of every event Hookbox emits.
    pub const SOURCE: &str = crate::event::HOOKBOX_SOURCE;
    /// A handler's breaker opened; payload `{handler, reason, open_until_ms}`.
    pub const CIRCUIT_OPENED: &str = "hookbox.handler.circuit_opened";
    /// A handler's breaker closed; payload `{handler, reason}`.
    pub const CIRCUIT_CLOSED: &str = "hookbox.handler.circuit_closed";
    /// A handler was disabled automatically; payload `{handler, reason}`.
    pub const DISABLED: &str = "hookbox.handler.disabled";
}

/// The actor recorded in the audit log for automatic changes.
const AUTO_ACTOR: &str = "hookbox";
/// Longest error text quoted in a breaker reason (errors may be kilobytes).
const REASON_DETAIL_MAX: usize = 256;

/// Why an attempt counts against the breaker, or `None` when it does not.
pub(super) fn failure_of(report: &DeliveryReport) -> Option<String> {
    let bad_event = report.outcome == Outcome::HandlerError && !report.retryable;
    if report.outcome.is_success() || bad_event || report.outcome == Outcome::HostError {
        return None;
    }
    let mut why = report.outcome.as_str().to_string();
    if let Some(e) = &report.error {
        let mut end = e.len().min(REASON_DETAIL_MAX);
        while !e.is_char_boundary(end) {
            end -= 1;
        }
        why.push_str(": ");
        why.push_str(&e[..end]);
        if end < e.len() {
            why.push('…');
        }
    }
    Some(why)
}

impl Inner {
    pub(super) fn breakers(&self) -> MutexGuard<'_, Breakers> {
        // Breaker state is plain counters; a panic elsewhere cannot tear it.
        self.breakers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The breaker settings of a handler's active manifest.
    fn breaker_policy(&self, handler: &str) -> Option<BreakerPolicy> {
        let h = self.registry.get(handler)?;
        Some(
            self.cfg
                .breaker
                .with_overrides(&h.manifest.delivery.breaker),
        )
    }

    /// What the scheduler may do with a job of `handler`: the routing
    /// table's answer, narrowed by the breaker (open: hold; half-open: one
    /// delivery at a time, the trial).
    pub(super) fn gate(
        &self,
        handler: &str,
        tenant: &str,
        breakers: &Breakers,
        throttles: &Throttles,
        deleted: &dyn Fn(&str) -> bool,
        now: u64,
    ) -> Gate {
        match self.registry.gate(handler, deleted) {
            // A rate limit is waited out, whatever the breaker says.
            Gate::Run { .. } if throttles.holds(handler, now) => Gate::Hold,
            Gate::Run {
                concurrency,
                ordered,
                shared,
            } => match breakers.admit(handler, tenant, now) {
                Admit::Run => Gate::Run {
                    concurrency,
                    ordered,
                    shared,
                },
                Admit::One => Gate::Run {
                    concurrency: 1,
                    ordered,
                    shared,
                },
                Admit::Hold => Gate::Hold,
                Admit::HoldTenant => Gate::HoldTenant,
            },
            other => other,
        }
    }

    /// Starts `handler`'s breaker afresh with its current settings (after
    /// a deploy or an operator's change); announces the closing if it was
    /// open. No-op for a handler that is not loaded.
    pub(super) fn reset_breaker(&self, handler: &str, why: &str) {
        let Some(policy) = self.breaker_policy(handler) else {
            return;
        };
        let mut breakers = self.breakers();
        let was_open = breakers.reset(handler, policy);
        if was_open {
            self.metrics.circuit_closed(handler);
            self.metrics.tenant_circuits(handler, 0, false);
        }
        drop(breakers);
        if was_open {
            self.announce(
                handler,
                Scoped {
                    tenant: String::new(),
                    transition: Transition::Closed {
                        reason: why.to_string(),
                    },
                },
            );
        }
    }

    /// Forgets a deleted handler's breaker.
    pub(super) fn forget_breaker(&self, handler: &str) {
        self.breakers().remove(handler);
        self.throttles().remove(handler);
        self.metrics.circuit_forget(handler);
    }

    /// Feeds one delivery's outcome to its handler's breaker. The breaker
    /// metrics change here, under the breakers' lock, with the state they
    /// describe: whoever sees the state (the API, or anything a later step
    /// of [`Self::announce`] stores, such as an auto-disable) sees the
    /// metrics agree, and two transitions cannot land in the metrics in the
    /// opposite order.
    pub(super) fn record_outcome(
        &self,
        handler: &str,
        pass: Option<Pass>,
        report: &DeliveryReport,
        now: u64,
    ) -> Option<Scoped> {
        let failure = failure_of(report);
        let mut breakers = self.breakers();
        let scoped = breakers.record(handler, pass, failure.as_deref(), now)?;
        let tenants_open = breakers.tenants_open(handler);
        let opened = matches!(scoped.transition, Transition::Opened { .. });
        match (opened, scoped.tenant.is_empty()) {
            (true, true) => self.metrics.circuit_opened(handler),
            (false, true) => self.metrics.circuit_closed(handler),
            (_, false) => self.metrics.tenant_circuits(handler, tenants_open, opened),
        }
        Some(scoped)
    }

    /// Acts on a transition (the metrics already changed with the state):
    /// waking parked jobs on closing, the event, and the auto-disable an
    /// opening may ask for. A tenant's breaker's events name the tenant.
    pub(super) fn announce(&self, handler: &str, scoped: Scoped) {
        let Scoped { tenant, transition } = scoped;
        let with_tenant = |mut payload: serde_json::Value| {
            if !tenant.is_empty() {
                payload["tenant"] = json!(tenant);
            }
            payload
        };
        match transition {
            Transition::Opened {
                reason,
                until_ms,
                disable,
            } => {
                if tenant.is_empty() {
                    tracing::warn!(%handler, %reason, open_until_ms = until_ms, "Circuit breaker opened; deliveries wait");
                } else {
                    tracing::warn!(%handler, %tenant, %reason, open_until_ms = until_ms, "Circuit breaker of a tenant opened; that tenant's deliveries wait");
                }
                self.emit_internal(
                    events::CIRCUIT_OPENED,
                    handler,
                    with_tenant(
                        json!({"handler": handler, "reason": reason, "open_until_ms": until_ms}),
                    ),
                );
                if let Some(why) = disable {
                    self.auto_disable(handler, &why);
                }
            }
            Transition::Closed { reason } => {
                if tenant.is_empty() {
                    tracing::info!(%handler, %reason, "Circuit breaker closed");
                    self.unpark(handler);
                } else {
                    tracing::info!(%handler, %tenant, %reason, "Circuit breaker of a tenant closed");
                    self.sched().unpark_tenant(handler, &tenant);
                    self.wake.notify_all();
                }
                self.emit_internal(
                    events::CIRCUIT_CLOSED,
                    handler,
                    with_tenant(json!({"handler": handler, "reason": reason})),
                );
            }
        }
    }

    /// Disables a handler that keeps failing: the store records it with an
    /// audit entry (actor `hookbox`), the routing table stops sending it
    /// events, its queued deliveries wait, and the news goes out as an event.
    /// An operator re-enables it (`POST /v1/handlers/{name}/enable`). The
    /// counter counts stored disables, so it moves just after the store
    /// does: a reader that sees the handler disabled may see it a moment
    /// later.
    fn auto_disable(&self, handler: &str, reason: &str) {
        if self.registry.is_builtin(handler) {
            // Not in the handler table, so an operator could not enable it
            // again: its breaker keeps holding it between trials instead.
            tracing::error!(%handler, %reason, "A built-in handler keeps failing; it is not disabled, its breaker keeps opening");
            return;
        }
        let record = match self
            .store
            .set_enabled(handler, false, Some(reason), AUTO_ACTOR)
        {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(%handler, error = %e, "Auto-disabling a handler failed");
                return;
            }
        };
        self.metrics.auto_disabled(handler);
        if let Err(e) = self.load(&record) {
            // Not in the routing table any more: its jobs wait all the same.
            tracing::error!(%handler, error = %e, "Reloading an auto-disabled handler failed");
            self.registry.remove(handler);
        }
        self.unpark(handler);
        tracing::error!(%handler, %reason, "Handler disabled automatically; enable it to resume deliveries");
        self.emit_internal(
            events::DISABLED,
            handler,
            json!({"handler": handler, "reason": reason}),
        );
    }

    /// Accepts an event Hookbox emits about `subject` (see the module docs:
    /// it is not routed to `subject`).
    fn emit_internal(&self, event_type: &str, subject: &str, payload: serde_json::Value) {
        let input = EventInput::new(event_type, &payload);
        let incoming = Incoming {
            inputs: vec![input],
            source: events::SOURCE,
            depth: 0,
            origin: Origin::Hookbox,
            exclude: Some(subject),
            room: None,
        };
        match self.accept(incoming) {
            Ok(_) => {}
            Err(AcceptError::ShuttingDown) => {}
            Err(e) => {
                tracing::warn!(handler = %subject, %event_type, error = %e, "A Hookbox event was not accepted");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn report(outcome: Outcome, retryable: bool, error: Option<&str>) -> DeliveryReport {
        DeliveryReport {
            outcome,
            error: error.map(String::from),
            retryable,
            fuel_used: 0,
            duration: Duration::ZERO,
            waited: Duration::ZERO,
            peak_memory_bytes: 0,
            logs: Vec::new(),
            emitted: Vec::new(),
        }
    }

    #[test]
    fn what_counts_as_a_failure() {
        let table = [
            (Outcome::Ok, false, None, None),
            (Outcome::HandlerError, false, Some("bad event"), None),
            (
                Outcome::HandlerError,
                true,
                Some("try later"),
                Some("handler_error: try later"),
            ),
            (Outcome::Trap, true, None, Some("trap")),
            (Outcome::OutOfFuel, false, Some("x"), Some("out_of_fuel: x")),
            (Outcome::HostError, true, Some("pool exhausted"), None),
        ];
        for (outcome, retryable, error, want) in table {
            assert_eq!(
                failure_of(&report(outcome, retryable, error)).as_deref(),
                want,
                "{outcome}"
            );
        }
    }

    #[test]
    fn long_errors_are_cut_on_a_char_boundary() {
        let long = "é".repeat(1000);
        let why = failure_of(&report(Outcome::Trap, true, Some(&long))).unwrap();
        assert!(why.starts_with("trap: é"));
        assert!(why.ends_with('…'));
        assert!(why.len() <= "trap: ".len() + REASON_DETAIL_MAX + '…'.len_utf8());
    }
}
