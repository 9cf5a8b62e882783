//! One delivery: take a sandbox (a fresh instance from the module's
//! `InstancePre`, or a warm one in reuse mode), set its budgets, call
//! `handle`, and turn whatever happened into a [`DeliveryReport`].
//!
//! Warm instances ([`WarmPool`]) are keyed by handler and tenant, serve at
//! most `reuse` deliveries, and go back to the pool only after an `ok` or a
//! `handler_error`: any trap or limit poisons or taints the instance, so it
//! is dropped.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use wasmtime::{PoolConcurrencyLimitError, Store, Trap, WasmBacktrace};

use super::engine::deadline_ticks;
use super::host::hookbox::handler::types::HandlerError;
use super::host::{Begin, Handler, HostState, to_wit_event, with_kv};
use super::outcome::{Failure, Outcome, TrapKind, classify};
use super::{DeliveryReport, DeliveryRequest, HandlerModule, Runtime};
use crate::limits::Limits;

/// Idle warm instances kept per module. Each holds a pool slot (memory,
/// tables) while idle, so the pool must stay small next to `pool_instances`.
const MAX_IDLE_WARM: usize = 8;
/// Stderr kept in a trap's message: enough for a Rust panic message.
const STDERR_IN_ERROR: usize = 2048;

/// A store with an instantiated handler.
pub(crate) struct Sandbox {
    store: Store<HostState>,
    bindings: Handler,
    served: u32,
}

/// Idle warm sandboxes of one module, most recently parked last.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: Mutex<VecDeque<((String, String), Sandbox)>>,
}

impl std::fmt::Debug for WarmPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmPool")
            .field("idle", &self.lock().len())
            .finish()
    }
}

impl WarmPool {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<((String, String), Sandbox)>> {
        // Entries are whole sandboxes, pushed and popped atomically.
        self.idle.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take(&self, key: &(String, String)) -> Option<Sandbox> {
        let mut idle = self.lock();
        let at = idle.iter().rposition(|(k, _)| k == key)?;
        idle.remove(at).map(|(_, s)| s)
    }

    fn park(&self, key: (String, String), sandbox: Sandbox) {
        let evicted = {
            let mut idle = self.lock();
            idle.push_back((key, sandbox));
            (idle.len() > MAX_IDLE_WARM).then(|| idle.pop_front())
        };
        // Drop the evicted store outside the lock.
        drop(evicted);
    }

    /// Idle warm instances (for tests and metrics).
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

fn trap_kind(err: &wasmtime::Error) -> TrapKind {
    match err.downcast_ref::<Trap>() {
        Some(Trap::OutOfFuel) => TrapKind::OutOfFuel,
        Some(Trap::Interrupt) => TrapKind::Interrupt,
        Some(Trap::StackOverflow) => TrapKind::StackOverflow,
        Some(_) => TrapKind::Other,
        None => TrapKind::None,
    }
}

/// The error text: the trap (or the error's causes), the guest's last
/// stderr lines when it died on `unreachable` (how a Rust guest panics), and
/// the wasm backtrace.
fn error_text(err: &wasmtime::Error, state: &HostState) -> String {
    let trap = err.downcast_ref::<Trap>();
    let backtrace = err.downcast_ref::<WasmBacktrace>().map(ToString::to_string);
    let mut text = match trap {
        Some(trap) => trap.to_string(),
        // The backtrace is a context in the chain; it is appended below.
        None => err
            .chain()
            .map(ToString::to_string)
            .filter(|e| Some(e) != backtrace.as_ref())
            .collect::<Vec<_>>()
            .join(": "),
    };
    if matches!(trap, Some(Trap::UnreachableCodeReached)) {
        let tail = state.log.lock().stderr_tail(STDERR_IN_ERROR);
        let tail = tail.trim();
        if !tail.is_empty() {
            text.push_str("\nguest stderr:\n");
            text.push_str(tail);
        }
    }
    if let Some(frames) = backtrace {
        // Its Display starts with a header line meant for a whole error.
        let frames = frames.split_once('\n').map_or("", |(_, rest)| rest);
        if !frames.trim().is_empty() {
            text.push_str("\nwasm backtrace:\n");
            text.push_str(frames.trim_end());
        }
    }
    text
}

/// How a delivery ended, and whether its instance may serve another one.
struct Verdict {
    outcome: Outcome,
    error: Option<String>,
    retryable: bool,
    /// Only `ok` and `handler_error` leave an instance fit for reuse.
    keep: bool,
}

type CallResult = wasmtime::Result<(Handler, Result<(), HandlerError>)>;

fn verdict(result: &CallResult, state: &HostState, limits: &Limits) -> Verdict {
    let v = |outcome: Outcome, error: Option<String>, retryable, keep| Verdict {
        outcome,
        error,
        retryable,
        keep,
    };
    match result {
        Ok((_, Ok(()))) => v(Outcome::Ok, None, false, true),
        Ok((_, Err(he))) => {
            let len = he.message.len() as u64;
            if len > limits.result_bytes {
                let msg = format!(
                    "handler error message is {len} bytes; the limit is {}",
                    limits.result_bytes
                );
                v(Outcome::ResultLimit, Some(msg), false, false)
            } else {
                v(
                    Outcome::HandlerError,
                    Some(he.message.clone()),
                    he.retryable,
                    true,
                )
            }
        }
        Err(err) => {
            // stdout/stderr writes past the budget end the call from inside
            // WASI, so the log book, not `abort`, records them.
            let host_abort = state.call.abort.clone().or_else(|| {
                state.log.lock().is_full().then(|| {
                    let budget = limits.log_bytes;
                    let msg = format!("log output exceeded the limit of {budget} bytes");
                    (Outcome::LogLimit, msg)
                })
            });
            let failure = Failure {
                host_abort,
                trap: trap_kind(err),
                denied: state.limiter.denied(),
                pool_exhausted: err.downcast_ref::<PoolConcurrencyLimitError>().is_some(),
                message: error_text(err, state),
            };
            let (outcome, msg) = classify(&failure);
            v(outcome, Some(msg), outcome.default_retryable(), false)
        }
    }
}

impl Runtime {
    pub(super) fn deliver_inner(
        &self,
        module: &HandlerModule,
        req: DeliveryRequest<'_>,
    ) -> DeliveryReport {
        let key = (req.handler.to_string(), req.event.tenant.clone());
        let warm = if req.reuse > 0 {
            module.inner.warm.take(&key)
        } else {
            None
        };
        // No warm instance: one prepared ahead of the event, if it was
        // built under these limits (see `prepare.rs`).
        let prepared = match warm {
            None => module.inner.ready.take(req.limits),
            Some(_) => None,
        };
        let from_prepared = prepared.is_some();
        let (mut store, bindings, served) = match (warm, prepared) {
            (Some(s), _) => (s.store, Some(s.bindings), s.served),
            (None, Some(p)) => (p.store, Some(p.bindings), 0),
            (None, None) => {
                let mut store = Store::new(&self.inner.engine, HostState::new(req.limits));
                store.limiter(|s| &mut s.limiter);
                (store, None, 0)
            }
        };

        store.data_mut().begin(Begin {
            handler: req.handler,
            incarnation: req.kv_incarnation,
            tenant: &req.event.tenant,
            config: req.config,
            limits: req.limits,
            capabilities: req.capabilities,
            keep_log: from_prepared,
        });
        let fuel = req.limits.fuel;
        // A prepared instance keeps the fuel its instantiation left: that
        // work is charged to this delivery, as if it had happened now.
        let budgets = if from_prepared {
            Ok(())
        } else {
            store.set_fuel(fuel)
        }
        .map(|()| {
            let timeout = Duration::from_millis(req.limits.timeout_ms);
            store.set_epoch_deadline(deadline_ticks(timeout, self.inner.cfg.epoch_tick));
        });

        let started = Instant::now();
        let mut instantiation_fuel = None;
        let result = with_kv(&mut store, req.kv, |store| {
            budgets
                .and_then(|()| match bindings {
                    Some(b) => Ok(b),
                    None => {
                        let b = module.inner.pre.instantiate(&mut *store)?;
                        instantiation_fuel = Some(fuel.saturating_sub(store.get_fuel()?));
                        Ok(b)
                    }
                })
                .and_then(|b| {
                    let event = to_wit_event(req.event, req.attempt);
                    let r = b.call_handle(&mut *store, &event);
                    r.map(|r| (b, r))
                })
        });
        let duration = started.elapsed();
        let waited = store.data().call.waited;

        // After an epoch interrupt the fuel counter may not reflect the last
        // stretch of work (WASMTIME-NOTES): `fuel_used` is then a lower bound.
        let fuel_used = fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let state = store.data_mut();
        let peak_memory_bytes = state.limiter.peak();
        let verdict = verdict(&result, state, req.limits);
        let logs = state.log.finish();
        let emitted = std::mem::take(&mut state.call.emitted);
        state.end();

        let parked = verdict.keep && req.reuse > 0 && served + 1 < req.reuse;
        if parked && let Ok((bindings, _)) = result {
            module.inner.warm.park(
                key,
                Sandbox {
                    store,
                    bindings,
                    served: served + 1,
                },
            );
        } else {
            drop((store, result));
        }
        // The next fresh instance, prepared while the handler waits, for a
        // module whose start-up is worth it.
        let worth = from_prepared
            || instantiation_fuel.is_some_and(|f| {
                module
                    .inner
                    .ready
                    .note_instantiation(f, module.code_bytes())
            });
        if worth && !parked {
            self.inner.preparer.request(&module.inner, req.limits);
        }

        let outcome = verdict.outcome;
        DeliveryReport {
            outcome,
            error: verdict.error,
            retryable: verdict.retryable,
            fuel_used,
            duration,
            waited,
            peak_memory_bytes,
            logs,
            emitted: if outcome.is_success() {
                emitted
            } else {
                Vec::new()
            },
        }
    }
}
