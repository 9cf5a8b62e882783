//! Instances prepared ahead of the event: for a handler whose instantiation
//! is costly — a big component (componentize-py's and componentize-js'
//! interpreters: tens of MB of code, tables of tens of thousands of
//! function references, large memory images) or one whose start functions
//! run guest code — a background thread instantiates the next fresh
//! instance while the handler waits for its next event, so that work is off
//! the event's latency. (What such guests do lazily on their first call
//! stays in the call: it needs the event.)
//!
//! Isolation is unchanged: a prepared instance has never seen an event,
//! tenant, config, grant or KV store (its store's call state is empty, so a
//! start-up that calls a Hookbox import fails to prepare and the handler
//! goes back to instantiating per event, as before); it serves exactly one
//! delivery, taken out of its slot under a lock, and then is dropped (or
//! parked as a warm instance when the delivery asked for `reuse`, as a
//! fresh one would be). Its budgets are the delivery's: it is built with
//! the limits it will serve under and used only if they are still equal,
//! and the fuel its instantiation burnt stays charged to that delivery.
//!
//! Bounded: one prepared instance per module, at most
//! [`RuntimeConfig::prepare_ahead`](super::RuntimeConfig) modules holding
//! one (the oldest is dropped for a newer one), and only modules whose
//! compiled code is at least [`PREPARE_MIN_CODE_BYTES`] or whose
//! instantiation burns at least [`PREPARE_MIN_FUEL`] (a Rust handler: ≈ 1 MB
//! and ≈ 1 k fuel, instantiated in ≈ 10 µs; not worth a pool slot).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak, mpsc};
use std::thread;
use std::time::Duration;

use wasmtime::{Engine, Store};

use super::ModuleInner;
use super::engine::deadline_ticks;
use super::host::{Handler, HostState};
use crate::limits::Limits;

/// Wasm operators an instantiation (start functions) must burn for its
/// module to get prepared instances: a Rust handler burns ≈ 1 k,
/// componentize-py's ≈ 6 k, componentize-js' none (their start-up runs on
/// the first call).
pub(crate) const PREPARE_MIN_FUEL: u64 = 20_000;
/// Compiled code from which a module gets prepared instances whatever its
/// start functions burn: Python and JS components compile to ≈ 40 MB, a
/// Rust handler to ≈ 1 MB (BENCHMARKS.md, "Python and JavaScript handlers").
pub(crate) const PREPARE_MIN_CODE_BYTES: u64 = 8 << 20;
/// Requests waiting for the preparer thread; more are dropped (the next
/// delivery asks again).
const QUEUE: usize = 64;

/// A fresh instance nobody has delivered to.
pub(crate) struct Prepared {
    pub(crate) store: Store<HostState>,
    pub(crate) bindings: Handler,
    /// The limits its store was built and budgeted with.
    limits: Limits,
}

/// Whether a module is worth preparing instances for.
const UNKNOWN: u8 = 0;
const WORTH: u8 = 1;
/// Its start-up burns little fuel, or preparing it failed once.
const NEVER: u8 = 2;

/// One module's prepared instance and what is known about it.
#[derive(Default)]
pub(crate) struct ReadySlot {
    ready: Mutex<Option<Prepared>>,
    state: AtomicU8,
    /// Deliveries served by a prepared instance (tests, metrics).
    served: AtomicU64,
}

impl std::fmt::Debug for ReadySlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadySlot")
            .field("ready", &self.lock().is_some())
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish()
    }
}

impl ReadySlot {
    fn lock(&self) -> MutexGuard<'_, Option<Prepared>> {
        // The slot holds a whole instance, replaced atomically.
        self.ready.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the prepared instance if it was built for `limits`.
    pub(crate) fn take(&self, limits: &Limits) -> Option<Prepared> {
        let prepared = self.lock().take()?;
        if prepared.limits != *limits {
            return None;
        }
        self.served.fetch_add(1, Ordering::Relaxed);
        Some(prepared)
    }

    /// Records how much fuel an instantiation burnt, for a module of
    /// `code_bytes` of compiled code; true when the module should have
    /// instances prepared.
    pub(crate) fn note_instantiation(&self, fuel: u64, code_bytes: u64) -> bool {
        let worth = fuel >= PREPARE_MIN_FUEL || code_bytes >= PREPARE_MIN_CODE_BYTES;
        let _ = self.state.compare_exchange(
            UNKNOWN,
            if worth { WORTH } else { NEVER },
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.state.load(Ordering::Relaxed) == WORTH
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.lock().is_some()
    }

    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

struct Job {
    module: Weak<ModuleInner>,
    limits: Limits,
}

/// The preparer thread and the modules holding a prepared instance.
pub(crate) struct Preparer {
    jobs: Option<mpsc::SyncSender<Job>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Preparer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Preparer")
            .field("running", &self.jobs.is_some())
            .finish()
    }
}

impl Preparer {
    /// Starts the thread; `max_modules == 0` disables preparing.
    pub(crate) fn start(
        engine: Engine,
        tick: Duration,
        max_modules: usize,
    ) -> Result<Preparer, std::io::Error> {
        if max_modules == 0 {
            return Ok(Preparer {
                jobs: None,
                thread: None,
            });
        }
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE);
        let thread = thread::Builder::new()
            .name("hookbox-prepare".into())
            .spawn(move || {
                let mut holders: VecDeque<Weak<ModuleInner>> = VecDeque::new();
                while let Ok(job) = queue.recv() {
                    let Some(module) = job.module.upgrade() else {
                        continue;
                    };
                    if module.ready.is_ready() {
                        continue;
                    }
                    let Some(prepared) = instantiate(&engine, tick, &module, job.limits) else {
                        // Its start-up needs something only a delivery
                        // has (or failed): instantiate per event.
                        module.ready.state.store(NEVER, Ordering::Relaxed);
                        continue;
                    };
                    *module.ready.lock() = Some(prepared);
                    holders.retain(|h| h.strong_count() > 0 && !Weak::ptr_eq(h, &job.module));
                    holders.push_back(job.module);
                    while holders.len() > max_modules {
                        if let Some(old) = holders.pop_front().and_then(|w| w.upgrade()) {
                            drop(old.ready.lock().take());
                        }
                    }
                }
            })?;
        Ok(Preparer {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Asks for a prepared instance of `module` under `limits`, unless one
    /// is queued or ready; never blocks (a full queue drops the request).
    pub(crate) fn request(&self, module: &Arc<ModuleInner>, limits: &Limits) {
        if let Some(jobs) = &self.jobs
            && !module.ready.is_ready()
        {
            let _ = jobs.try_send(Job {
                module: Arc::downgrade(module),
                limits: limits.clone(),
            });
        }
    }
}

impl Drop for Preparer {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            // The thread ends after the instantiation in progress; a panic
            // in it is not ours to rethrow.
            let _ = t.join();
        }
    }
}

/// A fresh store and instance under `limits`, as a delivery would build it,
/// with the start-up bounded by the same fuel and deadline.
fn instantiate(
    engine: &Engine,
    tick: Duration,
    module: &ModuleInner,
    limits: Limits,
) -> Option<Prepared> {
    let mut store = Store::new(engine, HostState::new(&limits));
    store.limiter(|s| &mut s.limiter);
    store.data_mut().begin_prepare(&limits);
    store.set_fuel(limits.fuel).ok()?;
    store.set_epoch_deadline(deadline_ticks(
        Duration::from_millis(limits.timeout_ms),
        tick,
    ));
    let bindings = module.pre.instantiate(&mut store).ok()?;
    if store.data().call.abort.is_some() || store.data().limiter.denied().is_some() {
        return None;
    }
    Some(Prepared {
        store,
        bindings,
        limits,
    })
}
