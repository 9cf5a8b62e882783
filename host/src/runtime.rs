//! The sandbox: compiles handler components and runs one delivery at a time
//! in a fresh (or, on request, warm) wasmtime instance under per-delivery
//! limits. This module and its children are the only code that touches
//! wasmtime; everything else speaks the types defined here.
//!
//! - [`Runtime::new`] builds the engine (fuel + epochs, pooling allocator),
//!   the epoch ticker and the linker: WASI 0.2 with everything denied, plus
//!   the `hookbox:handler@0.1.0` interfaces.
//! - [`Runtime::compile`] checks a component at upload (size, kind, imports,
//!   the `handle` export) and compiles it; imports of capabilities the
//!   manifest does not grant are accepted and listed as denied (calling one
//!   ends the delivery with `capability_denied`);
//!   [`Compiled::serialized`] is the cacheable form, reloaded with
//!   [`Runtime::load_precompiled`] under the key [`Runtime::fingerprint`].
//! - [`Runtime::deliver`] runs one event and reports a named [`Outcome`].
//!   It blocks the calling thread while the guest runs: call it from
//!   dedicated worker threads (or `spawn_blocking`), not from an async task
//!   (WASI's stdout/stderr plumbing enters a tokio runtime).

mod capture;
mod deliver;
mod engine;
mod host;
mod isolate;
mod limiter;
mod outcome;
mod poll;
mod prepare;
mod validate;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Engine;
use wasmtime::component::{Component, HasSelf, Linker};

use self::deliver::WarmPool;
use self::host::{Handler, HandlerPre, HostState};
pub use self::isolate::{
    CompileLimits, SUBCOMMAND as COMPILE_SUBCOMMAND, worker as compile_worker,
};
pub use self::outcome::{LogLevel, LogRecord, LogStream, Outcome};
use crate::event::{Event, EventInput};
use crate::kv::Kv;
use crate::limits::Limits;
use crate::manifest::Capability;

/// Daemon-wide sandbox settings (per-handler budgets are [`Limits`]).
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Wasm stack per call, in bytes; must stay below wasmtime's 2 MiB async
    /// stack. Exhausting it is `stack_overflow`.
    pub max_wasm_stack: usize,
    /// Use the pooling allocator (falls back to on-demand, with a warning,
    /// when its address space cannot be reserved).
    pub pooling: bool,
    /// Component instances alive at once (deliveries in flight plus idle
    /// warm instances); a delivery past it ends in `host_error`.
    pub pool_instances: u32,
    /// Largest linear memory of one pool slot: the ceiling above any
    /// handler's `memory_bytes`.
    pub pool_memory_bytes: u64,
    /// Epoch interval: timeouts are enforced to this granularity.
    pub epoch_tick: Duration,
    /// Largest component accepted by [`Runtime::compile`].
    pub max_component_bytes: usize,
    /// Where and under which caps [`Runtime::compile`] compiles (the
    /// daemon and `hookbox run`: a child process).
    pub compile: CompileLimits,
    /// Handlers that may hold one instance prepared ahead of their next
    /// event (0: none). Only big components (Python, JavaScript) and those
    /// whose start functions run much guest code get one; each holds a pool slot
    /// while it waits, so at most a quarter of `pool_instances` are used.
    pub prepare_ahead: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            max_wasm_stack: 512 << 10,
            pooling: true,
            pool_instances: 256,
            pool_memory_bytes: 256 << 20,
            epoch_tick: Duration::from_millis(10),
            max_component_bytes: 50 << 20,
            compile: CompileLimits::default(),
            prepare_ahead: 16,
        }
    }
}

/// Why a runtime could not be built or a component was refused.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A [`RuntimeConfig`] value is out of range.
    #[error("invalid runtime configuration: {0}")]
    Config(String),
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    /// The component is over [`RuntimeConfig::max_component_bytes`].
    #[error("component is {size} bytes; the limit is {max} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The bytes are not WebAssembly.
    #[error("not a WebAssembly binary (it does not start with `\\0asm`)")]
    NotWasm,
    /// A core module was uploaded instead of a component.
    #[error(
        "this is a core WebAssembly module, not a component: build the handler for the \
         `wasm32-wasip2` target (or wrap the module with `wasm-tools component new`)"
    )]
    CoreModule,
    /// The component failed validation or compilation.
    #[error("invalid component: {0}")]
    Invalid(String),
    /// An import the handler may not use.
    #[error("component imports `{name}`: {reason}")]
    ForbiddenImport {
        /// The import as the component names it.
        name: String,
        /// Why it is refused.
        reason: String,
    },
    /// The component does not export `handle` with the WIT type.
    #[error(
        "component does not target world hookbox:handler/handler@0.1.0 \
         (export `handle: func(event) -> result<_, handler-error>`): {0}"
    )]
    Export(String),
    /// The imports do not type-check against what Hookbox provides.
    #[error("component cannot be linked: {0}")]
    Link(String),
    /// Serialized code could not be produced or loaded.
    #[error("compiled-code cache: {0}")]
    Precompiled(String),
    /// Compiling needed more memory or time than [`CompileLimits`] allow.
    #[error("compile limit: {0}")]
    CompileLimit(String),
    /// The compile child could not be run (Hookbox's failure, not the
    /// component's).
    #[error("compiler process: {0}")]
    Compiler(String),
}

/// `{:#}` prints a wasmtime error with its whole cause chain.
fn chain(e: &wasmtime::Error) -> String {
    format!("{e:#}")
}

struct RuntimeInner {
    engine: Engine,
    linker: Linker<HostState>,
    cfg: RuntimeConfig,
    pooling: bool,
    fingerprint: String,
    preparer: prepare::Preparer,
    _ticker: engine::Ticker,
}

/// The sandbox runtime. Cheap to clone; all clones share one engine.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<RuntimeInner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cfg", &self.inner.cfg)
            .field("pooling", &self.inner.pooling)
            .field("fingerprint", &self.inner.fingerprint)
            .finish_non_exhaustive()
    }
}

/// A freshly compiled component.
#[derive(Debug)]
pub struct Compiled {
    /// The compiled code, for the cache (load with [`Runtime::load_precompiled`]).
    pub serialized: Vec<u8>,
    /// The component's imports, e.g. `hookbox:handler/kv@0.1.0`.
    pub imports: Vec<String>,
    /// The imports the grant it was compiled for does not allow (see
    /// [`Runtime::denied_imports`]).
    pub denied_imports: Vec<String>,
    /// Ready to deliver to.
    pub module: HandlerModule,
}

struct ModuleInner {
    pre: HandlerPre<HostState>,
    imports: Vec<String>,
    warm: WarmPool,
    /// The instance prepared ahead of the next event (see `prepare.rs`).
    ready: prepare::ReadySlot,
    /// Size of the loaded code image (text, data, metadata).
    code_bytes: u64,
}

/// A compiled, linked handler. Cheap to clone; clones share warm instances.
#[derive(Clone)]
pub struct HandlerModule {
    inner: Arc<ModuleInner>,
}

impl std::fmt::Debug for HandlerModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandlerModule")
            .field("imports", &self.inner.imports)
            .field("warm", &self.inner.warm)
            .finish_non_exhaustive()
    }
}

impl HandlerModule {
    /// The component's imports.
    pub fn imports(&self) -> &[String] {
        &self.inner.imports
    }

    /// Warm instances currently parked (reuse mode).
    pub fn idle_instances(&self) -> usize {
        self.inner.warm.len()
    }

    /// Whether an instance prepared ahead of the next event is waiting.
    pub fn has_prepared_instance(&self) -> bool {
        self.inner.ready.is_ready()
    }

    /// Deliveries served by an instance prepared ahead of the event.
    pub fn prepared_deliveries(&self) -> u64 {
        self.inner.ready.served()
    }

    /// Bytes of the compiled code image: what keeping this module
    /// resident costs at most (a mapped file is resident only where touched).
    pub fn code_bytes(&self) -> u64 {
        self.inner.code_bytes
    }
}

/// One event for one handler.
#[derive(Clone, Copy)]
pub struct DeliveryRequest<'a> {
    /// The handler's name: with the event's tenant, its KV namespace and
    /// warm-instance key.
    pub handler: &'a str,
    /// The event.
    pub event: &'a Event,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Budgets for this delivery.
    pub limits: &'a Limits,
    /// The handler's configuration as JSON text (`{}` when none).
    pub config: &'a str,
    /// The KV store; the guest sees only the namespace of `handler` and the
    /// event's tenant.
    pub kv: &'a dyn Kv,
    /// The handler's incarnation if `kv` keys by it (see
    /// [`crate::kv::Namespace::incarnation`]), else empty.
    pub kv_incarnation: &'a str,
    /// What the handler's manifest grants: a call into any other Hookbox
    /// interface ends the delivery with `capability_denied`.
    pub capabilities: &'a BTreeSet<Capability>,
    /// 0: a fresh instance (the default). N: a warm instance serves up to N
    /// deliveries of this handler and tenant, and is discarded after any
    /// outcome other than `ok` / `handler_error`.
    pub reuse: u32,
}

impl std::fmt::Debug for DeliveryRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryRequest")
            .field("handler", &self.handler)
            .field("event", &self.event.id)
            .field("attempt", &self.attempt)
            .field("reuse", &self.reuse)
            .finish_non_exhaustive()
    }
}

/// What happened in one delivery.
#[derive(Clone, Debug)]
pub struct DeliveryReport {
    /// How it ended.
    pub outcome: Outcome,
    /// The handler's error message, or what went wrong (trap text with the
    /// guest's panic message and wasm backtrace, the limit exceeded…).
    pub error: Option<String>,
    /// Whether to try again later: the guest's flag for `handler_error`;
    /// true for `timeout`, `trap`, `host_error`; false for budget outcomes.
    pub retryable: bool,
    /// Fuel consumed by instantiation and the call. After a `timeout` this
    /// is a lower bound (wasmtime's counter may miss the last stretch).
    pub fuel_used: u64,
    /// Wall time of instantiation (if fresh and not prepared ahead of the
    /// event) and the call.
    pub duration: Duration,
    /// What of `duration` the handler spent waiting by its own choice: a
    /// guest's waits in `wasi:io/poll`, a built-in's whole delivery
    /// (network I/O). With the worker thread's CPU time it is what the
    /// scheduler judges a handler's speed by; the time the thread was
    /// preempted or waited on the host's own locks and disks is not the
    /// handler's doing and is left out.
    pub waited: Duration,
    /// Highest linear memory, all memories together, during the delivery.
    pub peak_memory_bytes: u64,
    /// Log records and stdout/stderr lines, in order, up to the failure.
    pub logs: Vec<LogRecord>,
    /// Emitted events, validated; empty unless the outcome is `ok`.
    pub emitted: Vec<EventInput>,
}

impl Runtime {
    /// Builds the engine, the epoch ticker and the linker.
    pub fn new(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let (engine, pooling) = engine::build(&cfg)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("linking WASI: {}", chain(&e))))?;
        poll::add_to_linker(&mut linker)
            .map_err(|e| RuntimeError::Engine(format!("linking wasi:io/poll: {}", chain(&e))))?;
        Handler::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)
            .map_err(|e| RuntimeError::Engine(format!("linking hookbox:handler: {}", chain(&e))))?;
        let fingerprint = engine::fingerprint(&engine);
        let ticker = engine::Ticker::start(engine.clone(), cfg.epoch_tick)?;
        // Prepared instances hold pool slots: at most a quarter of them.
        let max_prepared = if pooling {
            cfg.prepare_ahead.min(cfg.pool_instances as usize / 4)
        } else {
            cfg.prepare_ahead
        };
        let preparer = prepare::Preparer::start(engine.clone(), cfg.epoch_tick, max_prepared)
            .map_err(|e| RuntimeError::Engine(format!("cannot start the preparer thread: {e}")))?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cfg,
                pooling,
                fingerprint,
                preparer,
                _ticker: ticker,
            }),
        })
    }

    /// Whether the pooling allocator is in use (false after a fallback).
    pub fn pooling(&self) -> bool {
        self.inner.pooling
    }

    /// Hex key under which compiled code may be cached: equal fingerprints
    /// mean [`Compiled::serialized`] from one runtime loads in the other.
    pub fn fingerprint(&self) -> String {
        self.inner.fingerprint.clone()
    }

    /// Checks and compiles a component for a handler granted `caps`. The
    /// grant does not change the compiled code; it only decides
    /// [`Compiled::denied_imports`].
    pub fn compile(
        &self,
        wasm: &[u8],
        caps: &BTreeSet<Capability>,
    ) -> Result<Compiled, RuntimeError> {
        validate::check_binary(wasm, self.inner.cfg.max_component_bytes)?;
        validate::check_compile_budget(wasm)?;
        let (component, serialized) = match &self.inner.cfg.compile.isolate {
            Some(exe) => {
                let serialized = isolate::compile_in_child(exe, &self.inner.cfg, wasm)?;
                (self.deserialize_child_code(&serialized)?, serialized)
            }
            None => {
                let component = Component::from_binary(&self.inner.engine, wasm)
                    .map_err(|e| RuntimeError::Invalid(chain(&e)))?;
                let serialized = component
                    .serialize()
                    .map_err(|e| RuntimeError::Precompiled(chain(&e)))?;
                (component, serialized)
            }
        };
        let imports = validate::check_imports(&self.inner.engine, &component)?;
        let denied_imports = validate::denied_imports(&imports, caps);
        let module = self.link(component, imports.clone())?;
        Ok(Compiled {
            serialized,
            imports,
            denied_imports,
            module,
        })
    }

    /// The imports of `module` a handler granted `caps` may not use: Hookbox
    /// interfaces whose capability is not granted, and WASI interfaces
    /// Hookbox does not provide (`wasi:http`). They are linked; calling one
    /// of their functions ends the delivery with `capability_denied`.
    pub fn denied_imports(
        &self,
        module: &HandlerModule,
        caps: &BTreeSet<Capability>,
    ) -> Vec<String> {
        validate::denied_imports(module.imports(), caps)
    }

    /// Loads code produced by [`Runtime::compile`] on a runtime with the same
    /// [`Runtime::fingerprint`]. Its imports were checked when it was
    /// compiled.
    #[allow(unsafe_code)]
    pub fn load_precompiled(&self, serialized: &[u8]) -> Result<HandlerModule, RuntimeError> {
        // SAFETY: `Component::deserialize` maps the bytes as executable code
        // without validating them. Only bytes produced by `Component::serialize`
        // in `compile` (then stored by Hookbox, keyed by content hash and
        // engine fingerprint) may reach this function, never bytes from a
        // user; wasmtime itself rejects bytes from an incompatible engine.
        let component = unsafe { Component::deserialize(&self.inner.engine, serialized) }
            .map_err(|e| RuntimeError::Precompiled(chain(&e)))?;
        self.link_loaded(component)
    }

    /// Loads the code a compile child wrote.
    #[allow(unsafe_code)]
    fn deserialize_child_code(&self, serialized: &[u8]) -> Result<Component, RuntimeError> {
        // SAFETY: the bytes are what `Component::serialize` wrote in the
        // compile child (`isolate`): our own binary, run by us, given the
        // component on stdin; never bytes from a user. wasmtime checks that
        // they were made for an engine with this one's settings. What
        // fails here is what compiling in this engine refuses: a component
        // that does not fit the instance pool (a 10-million-element table).
        unsafe { Component::deserialize(&self.inner.engine, serialized) }
            .map_err(|e| RuntimeError::Invalid(chain(&e)))
    }

    /// [`Runtime::load_precompiled`] from a file written by the store's
    /// compiled-code cache: wasmtime maps the file instead of copying it,
    /// so the code is file-backed memory, resident only where touched.
    #[allow(unsafe_code)]
    pub fn load_precompiled_file(&self, path: &Path) -> Result<HandlerModule, RuntimeError> {
        // SAFETY: as for `load_precompiled`: the file is written only by the
        // store, from its compiled-code cache (bytes from `compile`), under a
        // name keyed by content hash and engine fingerprint; and it is not
        // modified while mapped (the store writes a new file and renames it
        // into place, which leaves an existing mapping on the old inode).
        let component = unsafe { Component::deserialize_file(&self.inner.engine, path) }
            .map_err(|e| RuntimeError::Precompiled(chain(&e)))?;
        self.link_loaded(component)
    }

    fn link_loaded(&self, component: Component) -> Result<HandlerModule, RuntimeError> {
        let imports = component
            .component_type()
            .imports(&self.inner.engine)
            .map(|(name, _)| name.to_string())
            .collect();
        self.link(component, imports)
    }

    /// Links a compiled component and type-checks its `handle` export.
    fn link(
        &self,
        component: Component,
        imports: Vec<String>,
    ) -> Result<HandlerModule, RuntimeError> {
        validate::check_export(&self.inner.engine, &component)?;
        let image = component.image_range();
        let code_bytes = (image.end as usize).saturating_sub(image.start as usize) as u64;
        let pre = match self.inner.linker.instantiate_pre(&component) {
            Ok(pre) => pre,
            Err(first) => {
                // Imports were checked to be WASI 0.2 or Hookbox functions;
                // a WASI interface wasmtime-wasi does not implement (e.g.
                // `wasi:http/types`, imported by JS toolchains) is linked
                // as denied: `capability_denied` when called.
                let mut lenient = self.inner.linker.clone();
                validate::link_denied_imports(&mut lenient, &self.inner.engine, &component)
                    .and_then(|()| lenient.instantiate_pre(&component))
                    .map_err(|_| RuntimeError::Link(chain(&first)))?
            }
        };
        let pre = HandlerPre::new(pre).map_err(|e| RuntimeError::Export(chain(&e)))?;
        Ok(HandlerModule {
            inner: Arc::new(ModuleInner {
                pre,
                imports,
                warm: WarmPool::default(),
                ready: prepare::ReadySlot::default(),
                code_bytes,
            }),
        })
    }

    /// Runs one delivery. Never panics on guest behaviour; every failure is
    /// an [`Outcome`] in the report.
    pub fn deliver(&self, module: &HandlerModule, req: DeliveryRequest<'_>) -> DeliveryReport {
        self.deliver_inner(module, req)
    }
}
