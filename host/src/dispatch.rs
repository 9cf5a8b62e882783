//! The dispatcher: accepts events, routes them to the handlers whose
//! subscriptions match, and runs the deliveries on a bounded pool of worker
//! threads, recording every outcome.
//!
//! Flow (DESIGN.md): accept validates the batch, assigns ids, routes it and
//! appends the events with their handlers to the [`Inbox`] in one durable
//! write, and only then answers; the deliveries the inbox made ready go to
//! the [`queue`] scheduler. Workers pop them, run them in a fresh sandbox,
//! and move each on through the inbox: finished, retried later (durably
//! scheduled), or dead-lettered. The dispatcher reaches the inbox only
//! through that trait, so another implementation slots in with
//! [`Dispatcher::start_on`]. Successful deliveries are written by one
//! [`recorder`] thread in batches, so a worker moves on as soon as its
//! delivery ran. On start the inbox replays every unfinished delivery, so
//! an acknowledged event survives a crash (at-least-once).
//!
//! Each handler has a circuit breaker ([`breaker`], wired in by
//! [`circuit`]), and one per tenant whose events fail ([`breakers`]):
//! while one is open the jobs it covers are parked in the scheduler, not
//! failed; transitions are announced as `hookbox.handler.*` events, and a
//! handler that keeps tripping them (not one tenant's traffic alone) is
//! disabled.
//!
//! Workers are plain OS threads: a delivery is synchronous wasm plus sled
//! calls, and WASMTIME-NOTES measured a blocking task per delivery at 3–7x
//! the CPU of a dedicated thread.

mod admission;
mod breaker;
mod breakers;
mod builtin;
mod circuit;
mod claims;
mod handler_log;
mod metrics;
mod queue;
mod recorder;
mod registry;
mod replay;
mod resident;
mod retry;
mod schemas;
mod series;
#[cfg(test)]
mod tests;
mod throttle;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::broadcast;

pub use admission::{Needed, Room};
pub use breaker::{BreakerPolicy, CircuitState, CircuitStatus, TenantCircuitStatus};
pub use builtin::{Builtin, BuiltinError, BuiltinHandler};
pub use circuit::events as internal_events;
pub use handler_log::TARGET as HANDLER_LOG_TARGET;
pub use metrics::Metrics;
pub use metrics::names as metric_names;
pub use registry::Residency;
pub use replay::BulkReplay;
pub use resident::ResidentBudget;
pub use series::{SECONDS as SERIES_SECONDS, SeriesPoint, SeriesWindow};

use crate::event::{self, Event, EventInput, InvalidEvent, now_ms};
use crate::limits::Limits;
use crate::manifest::Manifest;
use crate::runtime::{DeliveryRequest, Runtime, RuntimeError};
use crate::store::{
    EmittedEvent, HandlerLog, HandlerRecord, Inbox, LogEntry, OUTCOME_EXPIRED, Pending, Ready,
    Store, StoreError, VersionRecord,
};

use breakers::{Breakers, Pass};
pub(crate) use queue::Reservation;
use queue::{Job, Refused, Scheduler};
use registry::{Code, Loaded, Registry};

/// Dispatcher settings; see each field for its default.
#[derive(Clone, Debug)]
pub struct DispatchConfig {
    /// Worker threads running deliveries (default: one per core).
    pub workers: usize,
    /// Deliveries held in memory before accept answers "busy" (default
    /// 100 000). Events handlers emit may fill only [`EMITTED_SHARE`] of it.
    pub queue_capacity: usize,
    /// The percentage of `queue_capacity` one tenant may hold while other
    /// tenants want room (default 50; 100: no share). A tenant alone may
    /// fill the whole queue.
    pub tenant_queue_share: u8,
    /// Largest event payload in bytes (default 1 MiB).
    pub max_payload_bytes: usize,
    /// Events per accept call (default 10 000).
    pub max_batch: usize,
    /// Largest component upload in bytes (default 50 MiB).
    pub max_component_bytes: usize,
    /// How many emissions deep an event chain may go (default 8).
    pub max_emit_depth: u32,
    /// How long an idempotency key is remembered (default 24 h).
    pub idempotency_window: Duration,
    /// Limits for handlers that set none.
    pub default_limits: Limits,
    /// Limits no handler may exceed.
    pub ceilings: Limits,
    /// Circuit-breaker and auto-disable settings for handlers that set none.
    pub breaker: BreakerPolicy,
    /// How much compiled code stays loaded; past it the least recently used
    /// handler's code is evicted and loaded again on its next delivery.
    pub resident: ResidentBudget,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            queue_capacity: 100_000,
            tenant_queue_share: 50,
            max_payload_bytes: event::bounds::DEFAULT_PAYLOAD_BYTES,
            max_batch: 10_000,
            max_component_bytes: 50 << 20,
            max_emit_depth: 8,
            idempotency_window: Duration::from_secs(24 * 3600),
            default_limits: Limits::default(),
            ceilings: Limits::default_ceilings(),
            breaker: BreakerPolicy::default(),
            resident: ResidentBudget::default(),
        }
    }
}

/// One accepted (or deduplicated) event.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Accepted {
    /// The event id (the earlier event's id for a duplicate).
    pub id: String,
    /// Whether the idempotency key matched an earlier event.
    pub duplicate: bool,
    /// Handlers the event was routed to.
    pub handlers: Vec<String>,
}

/// Why a batch was not accepted. Nothing of a refused batch is stored.
#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// An event failed validation.
    #[error("event {index}: {error}")]
    Invalid {
        /// Its index in the batch.
        index: usize,
        /// What is wrong.
        error: InvalidEvent,
    },
    /// Too many events in one call.
    #[error("batch of {len} events; the limit is {max}")]
    BatchTooLarge {
        /// Events sent.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// No events at all.
    #[error("no events in the request")]
    Empty,
    /// The batch's deliveries would not fit the delivery queue even empty:
    /// waiting or retrying cannot help, smaller batches can.
    #[error(
        "the batch needs room for {deliveries} deliveries (its events times the handlers each goes to), more than the whole delivery queue holds (`queue_capacity` = {capacity}); send its events in smaller batches"
    )]
    TooManyDeliveries {
        /// Deliveries the batch makes (at least).
        deliveries: usize,
        /// The queue's capacity.
        capacity: usize,
        /// The batch's events, not counted as rejected yet (as for
        /// [`AcceptError::Busy`]).
        events: usize,
    },
    /// The delivery queue is full, or `tenant` holds its share of it
    /// while other tenants wait; try again later.
    #[error("{}; retry after {retry_after:?}", busy_reason(.tenant.as_deref()))]
    Busy {
        /// A hint for `Retry-After`.
        retry_after: Duration,
        /// The tenant refused for holding its share of the queue; `None`:
        /// the queue is full.
        tenant: Option<String>,
        /// What the batch needed, for a caller that waits for it
        /// ([`Dispatcher::admit`]) or counts the refusal
        /// ([`Dispatcher::refused`]).
        needed: Needed,
    },
    /// The daemon is stopping.
    #[error("the daemon is shutting down")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a batch was refused for room, for [`AcceptError::Busy`].
fn busy_reason(tenant: Option<&str>) -> String {
    match tenant {
        None => "the delivery queue is full".to_string(),
        Some(t) => format!(
            "tenant `{t}` holds its share of the delivery queue (`tenant_queue_share`) while other tenants wait"
        ),
    }
}

/// The 429 for a batch the queue refused.
fn busy(refused: Refused, needed: Needed) -> AcceptError {
    AcceptError::Busy {
        retry_after: Duration::from_secs(1),
        tenant: match refused {
            Refused::Full => None,
            Refused::TenantShare(t) => Some(t),
        },
        needed,
    }
}

/// Errors of handler management calls.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// No such handler, version or dead letter.
    #[error("not found: {0}")]
    NotFound(String),
    /// A request that cannot be carried out as asked.
    #[error("{0}")]
    Invalid(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Loading a module failed.
    #[error("runtime: {0}")]
    Runtime(String),
}

/// Why a deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The manifest is invalid.
    #[error("{0}")]
    InvalidManifest(String),
    /// The component is invalid, targets another world or imports what it
    /// was not granted.
    #[error("{0}")]
    InvalidComponent(String),
    /// The component is over the size cap.
    #[error("component is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The compile child could not be run: Hookbox's failure.
    #[error("{0}")]
    Compiler(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The result of a deploy.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct Deployed {
    /// The handler after the deploy.
    pub handler: HandlerRecord,
    /// The new version, now active.
    pub version: VersionRecord,
    /// Whether compiled code was reused rather than compiled.
    pub compiled_from_cache: bool,
    /// What the component imports.
    pub imports: Vec<String>,
    /// The imports the manifest does not grant: Hookbox interfaces left out
    /// of `capabilities`, and `wasi:http`, which Hookbox does not provide.
    /// They are linked; a call to one ends the delivery with
    /// `capability_denied`, naming the interface and the function.
    pub denied_imports: Vec<String>,
}

/// All deliveries of one event, and whether they are all final.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct EventOutcome {
    /// The event id.
    pub id: String,
    /// Whether every delivery reached ok or the dead-letter queue.
    pub complete: bool,
    /// Every attempt so far.
    pub deliveries: Vec<LogEntry>,
}

/// One finished delivery attempt, as sent on the live stream.
#[derive(Clone, Debug, Serialize)]
pub struct DeliveryNotice {
    /// The handler.
    pub handler: String,
    /// The handler version that ran.
    pub version: u32,
    /// The event.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// The event tenant.
    pub tenant: String,
    /// The outcome name (`ok`, `out_of_fuel`, …).
    pub outcome: String,
    /// The error, when not ok.
    pub error: Option<String>,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// False when a retry is scheduled.
    pub final_attempt: bool,
    /// Instantiate + call time.
    pub duration_us: u64,
    /// Fuel consumed.
    pub fuel: u64,
    /// Peak linear memory.
    pub memory_bytes: u64,
    /// When it finished.
    pub time_ms: u64,
    /// What the handler logged during the attempt.
    pub logs: Vec<HandlerLog>,
    /// The notice as JSON, made by the first live-stream subscriber to
    /// send it and reused by the others ([`DeliveryNotice::json`]).
    #[serde(skip)]
    pub(crate) json: std::sync::OnceLock<String>,
}

impl DeliveryNotice {
    /// The notice as JSON, serialized once however many live streams send
    /// it: each open dashboard and `hookbox logs --follow` is one, and
    /// serializing per subscriber cost ≈ 2 µs per notice each at 22k
    /// notices/s (BENCHMARKS.md, issue 14, eighth round).
    pub fn json(&self) -> Result<&str, serde_json::Error> {
        if let Some(json) = self.json.get() {
            return Ok(json);
        }
        let json = serde_json::to_string(self)?;
        Ok(self.json.get_or_init(|| json))
    }
}

/// A handler registry shared with other nodes (cluster mode), kept as the
/// source of truth outside this node's store; the store holds what it last
/// applied. Blocking.
pub trait SharedRegistry: Send + Sync + std::fmt::Debug {
    /// Commits a deploy for every node: stores the component where all
    /// nodes find it, picks the next version number atomically (two nodes
    /// deploying one name at once get distinct versions), and applies the
    /// result to this node's store.
    fn deploy(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        hash: &str,
        actor: &str,
    ) -> Result<(HandlerRecord, VersionRecord), StoreError>;

    /// Shares the state this node's store has for handler `name` after an
    /// operator changed it (rollback, enable, disable, config, delete).
    fn publish(&self, name: &str) -> Result<(), StoreError>;

    /// This node and every node whose heartbeat is current.
    fn nodes(&self) -> Result<ClusterStatus, StoreError>;

    /// This node's name.
    fn node(&self) -> String;

    /// Stores a new API token (its record and the secret's hash, as
    /// [`Store::new_token`] encodes them) for every node.
    fn put_token(&self, id: &str, stored: &[u8]) -> Result<(), StoreError>;

    /// Revokes an API token on every node.
    fn delete_token(&self, id: &str) -> Result<(), StoreError>;

    /// Registers (or, `None`, removes) an event type's payload schema on
    /// every node.
    fn put_schema(
        &self,
        event_type: &str,
        schema: Option<&serde_json::Value>,
    ) -> Result<(), StoreError>;
}

/// Handler KV shared with other nodes (cluster mode): what deliveries
/// read and write instead of this node's store, and what operators list.
/// Blocking.
pub trait SharedKv: crate::kv::Kv + std::fmt::Debug {
    /// As [`Store::kv_list`].
    fn list(
        &self,
        ns: &crate::kv::Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::KvPage, crate::kv::KvError>;
    /// As [`Store::kv_get`].
    fn item(
        &self,
        ns: &crate::kv::Namespace,
        key: &str,
    ) -> Result<Option<crate::store::KvItem>, crate::kv::KvError>;
    /// As [`Store::sweep_expired_kv`].
    fn sweep(&self) -> Result<u64, crate::kv::KvError>;
    /// Drops the entries of one incarnation of a deleted handler (every
    /// tenant's), and nothing of another incarnation of its name.
    fn drop_handler(&self, handler: &str, incarnation: &str) -> Result<(), crate::kv::KvError>;
}

/// `handler`'s namespace of `tenant` in the shared KV, whose keys carry
/// the handler's incarnation.
fn shared_namespace(handler: &HandlerRecord, tenant: &str) -> crate::kv::Namespace {
    crate::kv::Namespace {
        handler: handler.name.clone(),
        tenant: tenant.to_string(),
        incarnation: handler.incarnation.clone(),
    }
}

/// One node of a cluster, as its last heartbeat says.
#[derive(Clone, Debug, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct NodeStatus {
    /// The node's name (`[cluster] node`, else made up once and kept in
    /// its data directory).
    pub node: String,
    /// Where its admin API listens, as it was configured.
    pub api: Option<String>,
    /// When it joined, ms since the epoch.
    pub started_ms: u64,
    /// Its last heartbeat, ms since the epoch.
    pub seen_ms: u64,
    /// Deliveries queued on it (all priorities).
    pub queued: u64,
    /// Deliveries it holds from the shared inbox (fetched, not final).
    pub held: u64,
    /// Handlers it takes deliveries for.
    pub runs: Vec<String>,
}

/// `GET /v1/cluster`.
#[derive(Clone, Debug, Serialize, utoipa::ToSchema)]
pub struct ClusterStatus {
    /// `single` (no `[cluster]` section) or `cluster`.
    pub mode: String,
    /// The node that answered (cluster mode).
    pub node: Option<String>,
    /// Every node with a current heartbeat, by name (cluster mode).
    pub nodes: Vec<NodeStatus>,
}

/// Per-job data the scheduler carries.
#[derive(Debug)]
struct JobData {
    pending: Pending,
    event: Arc<Event>,
}

/// The share of `queue_capacity` events emitted by handlers may fill, as
/// a fraction: past it their emissions are dropped (and counted), and the
/// rest stays for producers, so a handler emitting in a loop (a fan-out
/// grows as emits^depth) cannot turn external events away.
pub const EMITTED_SHARE: (usize, usize) = (9, 10);

/// Where a batch comes from, which decides how much of the queue it may fill.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// A producer (`POST /v1/events`, the CLI, Zulip): up to `queue_capacity`,
    /// else [`AcceptError::Busy`] (429).
    External,
    /// Events a delivery emitted: up to [`EMITTED_SHARE`] of it.
    Emitted,
    /// Hookbox's own news about a handler: a few per breaker transition,
    /// never refused for room.
    Hookbox,
}

/// Events to append, each with the handlers it was routed to.
type RoutedBatch = Vec<(Arc<Event>, Vec<String>)>;

/// A batch to accept ([`Inner::accept`]), and where it comes from.
struct Incoming<'a> {
    inputs: Vec<EventInput>,
    /// The events' `source`.
    source: &'a str,
    /// How many emits deep its events are (0: a producer's).
    depth: u32,
    origin: Origin,
    /// A handler its events must not be routed to (Hookbox's own events
    /// about it).
    exclude: Option<&'a str>,
    /// Room held for it ([`Dispatcher::admit`]).
    room: Option<Room>,
}

impl<'a> Incoming<'a> {
    /// A producer's batch.
    fn external(inputs: Vec<EventInput>, source: &'a str, room: Option<Room>) -> Self {
        Incoming {
            inputs,
            source,
            depth: 0,
            origin: Origin::External,
            exclude: None,
            room,
        }
    }
}

/// The idempotency keys of a batch, with their tenants.
fn keys_of(inputs: &[EventInput]) -> Vec<claims::Key> {
    inputs
        .iter()
        .filter_map(|i| Some((i.tenant.clone(), i.idempotency_key.clone()?)))
        .collect()
}

/// Capacity of the notice channel; a slower subscriber sees `Lagged`.
const NOTICE_CHANNEL: usize = 16_384;
/// The largest batch [`Dispatcher::accept_spawned`] validates, routes and
/// encodes on the reactor thread (tens of microseconds per event): a
/// larger one pays for its handoff to the blocking pool many times over.
pub const QUEUED_ACCEPT_MAX: usize = 16;
/// How often a synchronous wait looks at its events without a notice.
const WAIT_POLL: Duration = Duration::from_millis(250);
/// Pause before a job whose outcome could not be stored is tried again.
const STORE_ERROR_PAUSE_MS: u64 = 1_000;

/// See the module docs. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    /// Where accepted events wait for their deliveries (the store's sled
    /// inbox unless [`Dispatcher::start_on`] was given another): accept,
    /// the workers, the recorder and recovery reach it only through the
    /// [`Inbox`] trait.
    inbox: Arc<dyn Inbox>,
    runtime: Runtime,
    cfg: DispatchConfig,
    registry: Registry,
    sched: Mutex<Scheduler<JobData>>,
    /// Taken after `sched` when both are needed, never the other way round.
    breakers: Mutex<Breakers>,
    /// Built-in sinks waiting out a rate limit; taken after `breakers`.
    throttles: Mutex<throttle::Throttles>,
    wake: Condvar,
    /// Idempotency keys of batches being accepted, claimed across the
    /// store's check and write of them, so two racing requests with one
    /// key cannot both be accepted (`claims.rs`).
    idempotency: Arc<claims::KeyClaims>,
    /// Requests waiting for room in the queue ([`admission`]).
    waiting: Arc<admission::Waiting>,
    /// Outcomes handed to the recorder, and written.
    recorder_progress: recorder::Progress,
    /// Payload schemas by event type, checked at accept.
    schemas: schemas::Schemas,
    notices: broadcast::Sender<Arc<DeliveryNotice>>,
    metrics: Metrics,
    stopping: AtomicBool,
    ready: AtomicBool,
    workers: Mutex<Vec<JoinHandle<()>>>,
    /// The thread recording successful outcomes ([`recorder`]).
    recorder: Mutex<Option<JoinHandle<()>>>,
    /// Cluster mode's shared registry, once the node joined it.
    shared: std::sync::OnceLock<Arc<dyn SharedRegistry>>,
    /// Cluster mode's shared handler KV.
    shared_kv: std::sync::OnceLock<Arc<dyn SharedKv>>,
}

impl Dispatcher {
    /// Loads every deployed handler, queues every unfinished delivery from
    /// the store, and starts the workers.
    pub fn start(
        store: Store,
        runtime: Runtime,
        cfg: DispatchConfig,
    ) -> Result<Dispatcher, DispatchError> {
        Self::start_with(store, runtime, cfg, Vec::new())
    }

    /// [`Dispatcher::start`] with built-in handlers registered before the
    /// unfinished deliveries are queued again (so theirs are not dropped).
    pub fn start_with(
        store: Store,
        runtime: Runtime,
        cfg: DispatchConfig,
        builtins: Vec<Builtin>,
    ) -> Result<Dispatcher, DispatchError> {
        let inbox: Arc<dyn Inbox> = Arc::new(store.clone());
        Self::start_on(store, inbox, runtime, cfg, builtins)
    }

    /// [`Dispatcher::start_with`] on an inbox of the caller's choosing;
    /// `store` keeps handlers, modules, the delivery log's readers and KV.
    pub fn start_on(
        store: Store,
        inbox: Arc<dyn Inbox>,
        runtime: Runtime,
        cfg: DispatchConfig,
        builtins: Vec<Builtin>,
    ) -> Result<Dispatcher, DispatchError> {
        let (notices, _) = broadcast::channel(NOTICE_CHANNEL);
        let scheduler = Scheduler::new(cfg.workers.max(1));
        let registry = Registry::new(cfg.resident);
        let inner = Arc::new(Inner {
            store,
            inbox,
            runtime,
            cfg,
            registry,
            sched: Mutex::new(scheduler),
            breakers: Mutex::new(Breakers::default()),
            throttles: Mutex::default(),
            wake: Condvar::new(),
            idempotency: Arc::default(),
            waiting: Arc::default(),
            recorder_progress: recorder::Progress::default(),
            schemas: schemas::Schemas::default(),
            notices,
            metrics: Metrics::default(),
            stopping: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            workers: Mutex::new(Vec::new()),
            recorder: Mutex::new(None),
            shared: std::sync::OnceLock::new(),
            shared_kv: std::sync::OnceLock::new(),
        });
        let started = Instant::now();
        for (event_type, schema) in inner.store.schemas()? {
            match schemas::compile(&schema) {
                Ok(v) => inner.schemas.set(&event_type, v),
                // Registered schemas compiled when they were registered; one
                // that no longer does (a crate upgrade) must not stop the
                // daemon, nor silently let everything through unnoticed.
                Err(e) => {
                    tracing::error!(%event_type, error = %e, "Payload schema did not compile; events of this type are not validated")
                }
            }
        }
        for record in inner.store.handlers()? {
            match inner.load(&record) {
                Ok(()) => inner.reset_breaker(&record.name, "the daemon started"),
                Err(e) => tracing::error!(
                    handler = %record.name,
                    error = %e,
                    "Handler did not load; its deliveries wait until it is redeployed"
                ),
            }
        }
        for b in builtins {
            b.validate()
                .map_err(|e| DispatchError::Invalid(e.to_string()))?;
            let loaded = builtin::loaded(b, inner.cfg.default_limits.clone());
            let name = loaded.name.clone();
            inner.registry.insert(loaded);
            inner.reset_breaker(&name, "the daemon started");
        }
        inner.inbox.attach(inner.hooks());
        let recovered = inner.recover()?;
        tracing::info!(
            handlers = inner.registry.len(),
            recovered,
            took_ms = started.elapsed().as_millis() as u64,
            "Dispatcher loaded"
        );
        let (to_recorder, from_workers) = recorder::channel();
        let recorder = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("hookbox-recorder".into())
                .spawn(move || inner.record_loop(from_workers))
                .map_err(|e| DispatchError::Runtime(format!("spawning the recorder: {e}")))?
        };
        *inner.recorder.lock().unwrap_or_else(|p| p.into_inner()) = Some(recorder);
        // Each worker holds a sender: the recorder stops once every worker
        // has stopped and it has written what they handed over.
        let workers = (0..inner.cfg.workers.max(1))
            .map(|i| {
                let inner = inner.clone();
                let to_recorder = to_recorder.clone();
                std::thread::Builder::new()
                    .name(format!("hookbox-worker-{i}"))
                    .spawn(move || inner.work(&to_recorder))
                    .map_err(|e| DispatchError::Runtime(format!("spawning a worker: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        drop(to_recorder);
        *inner.workers_lock() = workers;
        inner.ready.store(true, Ordering::SeqCst);
        Ok(Dispatcher { inner })
    }

    /// The store this dispatcher writes to.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// An accepted event while it still has unfinished deliveries. Blocking.
    pub fn event(&self, id: &str) -> Result<Option<Arc<Event>>, StoreError> {
        self.inner.inbox.event(id)
    }

    /// An event whose deliveries ended, while the delivery log keeps its
    /// lines (`store/archive.rs`). Blocking.
    pub fn finished_event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        self.inner.store.archived_event(id)
    }

    /// Counters for `/metrics`.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// How much compiled handler code is loaded, against the budget.
    pub fn residency(&self) -> Residency {
        let mut r = self.inner.registry.residency();
        (r.loads, r.evictions) = self.inner.metrics.module_loads_and_evictions();
        r.load_mean_us = self.inner.metrics.module_load_mean_us();
        r
    }

    /// Ready deliveries per priority, most urgent first.
    pub fn queue_depths(&self) -> [usize; 4] {
        self.inner.sched().depths()
    }

    /// Whether the dispatcher has loaded its state and is not stopping.
    pub fn is_ready(&self) -> bool {
        self.inner.ready.load(Ordering::SeqCst) && !self.inner.stopping.load(Ordering::SeqCst)
    }

    /// A live feed of delivery outcomes.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<DeliveryNotice>> {
        self.inner.notices.subscribe()
    }

    /// Accepts a batch of external events. Blocking (sled): call it from a
    /// blocking context. The batch is accepted whole or not at all.
    pub fn accept(
        &self,
        inputs: Vec<EventInput>,
        source: &str,
    ) -> Result<Vec<Accepted>, AcceptError> {
        self.check_external(&inputs)?;
        self.inner
            .accept(Incoming::external(inputs, source, None))
            .inspect_err(|e| self.refused(e))
    }

    /// [`Dispatcher::accept`] for the async API, without a blocking thread
    /// per request where it can: a batch of at most [`QUEUED_ACCEPT_MAX`]
    /// events, none of whose idempotency keys another batch is accepting
    /// now, is validated, routed and queued on the calling (reactor)
    /// thread when the inbox can append without waiting
    /// ([`Inbox::queues_appends`]), and a spawned task completes it once
    /// the inbox's group commit made it durable. Anything else (the sled
    /// and JetStream inboxes) runs [`Dispatcher::accept`] on the blocking
    /// pool (where a batch waits for its keys). Either way the work
    /// goes on to its end if the returned handle is dropped (the client
    /// hung up), so an event that became durable is counted and delivered.
    /// `room`: what [`Dispatcher::admit`] held for the batch, swapped for
    /// its own reservation. Call it inside a tokio runtime.
    pub fn accept_spawned(
        &self,
        inputs: Vec<EventInput>,
        source: &str,
        room: Option<Room>,
    ) -> Result<tokio::task::JoinHandle<Result<Vec<Accepted>, AcceptError>>, AcceptError> {
        self.check_external(&inputs)?;
        let inner = self.inner.clone();
        // Other inboxes look keys up over the network, or have no queued
        // append: their accepts stay off the reactor.
        let claim = (inputs.len() <= QUEUED_ACCEPT_MAX && inner.inbox.queues_appends())
            .then(|| inner.idempotency.try_claim(keys_of(&inputs)))
            .flatten();
        let Some(claim) = claim else {
            let source = source.to_string();
            return Ok(tokio::task::spawn_blocking(move || {
                inner.accept(Incoming::external(inputs, &source, room))
            }));
        };
        let (out, batch, reserved) = self
            .inner
            .prepare(Incoming::external(inputs, source, room))?;
        let started = Instant::now();
        let appending = self.inner.inbox.append_queued(&batch);
        Ok(tokio::spawn(async move {
            let appended = match appending {
                Ok(rest) => rest.await,
                Err(e) => Err(e),
            };
            drop(claim);
            inner.appended(out, batch.len(), reserved, appended, started)
        }))
    }

    /// What [`Dispatcher::accept`] refuses before looking at any event.
    fn check_external(&self, inputs: &[EventInput]) -> Result<(), AcceptError> {
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(AcceptError::ShuttingDown);
        }
        if inputs.is_empty() {
            return Err(AcceptError::Empty);
        }
        if inputs.len() > self.inner.cfg.max_batch {
            self.inner.metrics.rejected(inputs.len() as u64);
            return Err(AcceptError::BatchTooLarge {
                len: inputs.len(),
                max: self.inner.cfg.max_batch,
            });
        }
        Ok(())
    }

    /// Registers (or replaces) the payload schema of an event type; later
    /// events of that type are refused at accept unless they match. Blocking.
    pub fn put_schema(
        &self,
        event_type: &str,
        schema: &serde_json::Value,
        actor: &str,
    ) -> Result<(), DispatchError> {
        event::validate_type(event_type).map_err(|e| DispatchError::Invalid(e.to_string()))?;
        let validator = schemas::compile(schema).map_err(DispatchError::Invalid)?;
        // Shared first: refused by the cluster, it changes nothing here.
        if let Some(shared) = self.inner.shared.get() {
            shared.put_schema(event_type, Some(schema))?;
        }
        self.inner.store.put_schema(event_type, schema, actor)?;
        self.inner.schemas.set(event_type, validator);
        Ok(())
    }

    /// Removes the payload schema of an event type; whether it had one. Blocking.
    pub fn delete_schema(&self, event_type: &str, actor: &str) -> Result<bool, DispatchError> {
        if let Some(shared) = self.inner.shared.get() {
            // Decided before sharing: this node's own watch may apply the
            // removal to the store before the line below runs.
            let existed = self.inner.store.schema(event_type)?.is_some();
            shared.put_schema(event_type, None)?;
            self.inner.store.delete_schema(event_type, actor)?;
            self.inner.schemas.remove(event_type);
            return Ok(existed);
        }
        let existed = self.inner.store.delete_schema(event_type, actor)?;
        self.inner.schemas.remove(event_type);
        Ok(existed)
    }

    /// A schema change another node made (cluster mode): applied here,
    /// shared no further. Blocking.
    pub fn apply_shared_schema(
        &self,
        event_type: &str,
        schema: Option<&serde_json::Value>,
    ) -> Result<(), DispatchError> {
        let store = &self.inner.store;
        match schema {
            Some(s) => {
                if store.schema(event_type)?.as_ref() == Some(s) {
                    return Ok(());
                }
                let validator = schemas::compile(s).map_err(DispatchError::Invalid)?;
                store.put_schema(event_type, s, "cluster")?;
                self.inner.schemas.set(event_type, validator);
            }
            None => {
                store.delete_schema(event_type, "cluster")?;
                self.inner.schemas.remove(event_type);
            }
        }
        Ok(())
    }

    /// Creates an API token (see [`Store::create_token`]), in cluster mode
    /// for every node: it is stored in the cluster first, and a refusal
    /// there creates nothing. Blocking.
    pub fn create_token(
        &self,
        name: &str,
        scopes: &[crate::store::Scope],
        tenants: Vec<String>,
        event_types: Vec<String>,
        expires_ms: Option<u64>,
    ) -> Result<(crate::store::TokenRecord, String), StoreError> {
        let store = &self.inner.store;
        match self.inner.shared.get() {
            Some(shared) => {
                let (record, secret, stored) =
                    store.new_token(name, scopes, tenants, event_types, expires_ms)?;
                shared.put_token(&record.id, &stored)?;
                store.insert_shared_token(&stored)?;
                Ok((record, secret))
            }
            None => store.create_token(name, scopes, tenants, event_types, expires_ms),
        }
    }

    /// Revokes an API token; whether it existed here. In cluster mode it is
    /// revoked in the cluster first (a refusal there revokes nothing).
    /// Blocking.
    pub fn revoke_token(&self, id: &str) -> Result<bool, StoreError> {
        if let Some(shared) = self.inner.shared.get() {
            // Decided before sharing: this node's own watch may revoke it in
            // the store before the line below runs.
            if !self.inner.store.token_exists(id)? {
                return Ok(false);
            }
            shared.delete_token(id)?;
            self.inner.store.revoke_token(id)?;
            return Ok(true);
        }
        self.inner.store.revoke_token(id)
    }

    /// One handler's circuit breaker, when the handler is loaded.
    pub fn circuit(&self, handler: &str) -> Option<CircuitStatus> {
        self.inner.breakers().status(handler, now_ms())
    }

    /// The most events one accept takes (`[dispatch] max_batch`).
    pub fn max_batch(&self) -> usize {
        self.inner.cfg.max_batch
    }

    /// Every loaded handler's circuit breaker, by name.
    pub fn circuits(&self) -> Vec<CircuitStatus> {
        self.inner.breakers().statuses(now_ms())
    }

    /// Waits until every delivery of the given events is final or `timeout`
    /// passes, then reports what happened to each.
    pub async fn wait_for(&self, ids: Vec<String>, timeout: Duration) -> Vec<EventOutcome> {
        let mut rx = self.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut open: HashSet<String> = ids.iter().cloned().collect();
        loop {
            let still_open = self.open_events(open.iter().cloned().collect()).await;
            open = still_open;
            if open.is_empty() {
                break;
            }
            let wait = async {
                loop {
                    match rx.recv().await {
                        Ok(n) if n.final_attempt && open.contains(&n.event_id) => return true,
                        Ok(_) => continue,
                        Err(broadcast::error::RecvError::Lagged(_)) => return true,
                        Err(broadcast::error::RecvError::Closed) => return false,
                    }
                }
            };
            // Look again now and then even without a notice: in cluster
            // mode another node may run the delivery.
            let poll = (tokio::time::Instant::now() + WAIT_POLL).min(deadline);
            match tokio::time::timeout_at(poll, wait).await {
                Ok(true) => continue,
                Err(_) if poll < deadline => continue,
                Ok(false) | Err(_) => break,
            }
        }
        let store = self.inner.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .map(|id| EventOutcome {
                    complete: !open.contains(&id),
                    deliveries: store.deliveries_of(&id).unwrap_or_default(),
                    id,
                })
                .collect::<Vec<_>>()
        })
        .await;
        result.unwrap_or_default()
    }

    /// The subset of `ids` whose deliveries are not all final yet.
    async fn open_events(&self, ids: Vec<String>) -> HashSet<String> {
        let inbox = self.inner.inbox.clone();
        tokio::task::spawn_blocking(move || {
            ids.into_iter()
                .filter(|id| !matches!(inbox.event(id), Ok(None)))
                .collect::<HashSet<_>>()
        })
        .await
        .unwrap_or_default()
    }

    /// Validates, compiles and activates a new handler version. Blocking.
    pub fn deploy(
        &self,
        manifest: Manifest,
        wasm: &[u8],
        actor: &str,
    ) -> Result<Deployed, DeployError> {
        let inner = &self.inner;
        if wasm.len() > inner.cfg.max_component_bytes {
            return Err(DeployError::TooLarge {
                len: wasm.len(),
                max: inner.cfg.max_component_bytes,
            });
        }
        manifest
            .validate()
            .map_err(|e| DeployError::InvalidManifest(e.0))?;
        let limits = inner
            .cfg
            .default_limits
            .with_overrides(&manifest.limits, &inner.cfg.ceilings)
            .map_err(|e| DeployError::InvalidManifest(format!("invalid manifest: {e}")))?;
        // The same bytes compiled before (by any handler or version) are
        // reused: only the new manifest's grant needs checking.
        let hash = {
            use sha2::{Digest, Sha256};
            hex::encode(Sha256::digest(wasm))
        };
        let cached = inner
            .registry
            .cached(&inner.store, &inner.runtime, &hash)
            .map_err(|e| match e {
                DispatchError::Store(e) => DeployError::Store(e),
                other => DeployError::InvalidComponent(other.to_string()),
            })?;
        let (module, from_cache) = match cached {
            Some(module) => (module, true),
            None => {
                let compiled = inner
                    .runtime
                    .compile(wasm, &manifest.capabilities)
                    .map_err(|e| match e {
                        e @ RuntimeError::Compiler(_) => DeployError::Compiler(e.to_string()),
                        e => DeployError::InvalidComponent(e.to_string()),
                    })?;
                inner.store.put_compiled(
                    &hash,
                    &inner.runtime.fingerprint(),
                    &compiled.serialized,
                )?;
                (compiled.module, false)
            }
        };
        let (handler, version) = match inner.shared.get() {
            Some(shared) => shared.deploy(&manifest, wasm, &hash, actor)?,
            None => {
                let stored = inner.store.put_module(wasm)?;
                debug_assert_eq!(stored, hash, "the store addresses modules by sha256");
                inner
                    .store
                    .deploy(&manifest, &hash, wasm.len() as u64, actor)?
            }
        };
        inner.metrics.module_loaded(from_cache);
        let imports = module.imports().to_vec();
        let denied_imports = inner
            .runtime
            .denied_imports(&module, &manifest.capabilities);
        // Just compiled or checked: keep it resident for the first deliveries.
        inner
            .registry
            .remember_module(&hash, module, &inner.metrics);
        // In cluster mode another node's deploy of this name may have been
        // applied meanwhile: route by what the store holds now.
        let newer = match inner.shared.get() {
            Some(_) => inner
                .store
                .handler(&handler.name)?
                .filter(|h| h.active_version != version.version),
            None => None,
        };
        match newer {
            Some(record) => inner.load(&record).map_err(|e| match e {
                DispatchError::Store(e) => DeployError::Store(e),
                other => DeployError::InvalidComponent(other.to_string()),
            })?,
            None => inner.registry.insert(Loaded {
                name: handler.name.clone(),
                incarnation: handler.incarnation.clone(),
                version: version.version,
                config: serde_json::to_string(&handler.config).unwrap_or_else(|_| "{}".into()),
                manifest,
                limits,
                enabled: handler.enabled,
                code: Code::Wasm(hash),
            }),
        }
        inner.reset_breaker(&handler.name, "a new version was deployed");
        inner.unpark(&handler.name);
        tracing::info!(handler = %handler.name, version = version.version, %actor, "Deployed");
        Ok(Deployed {
            handler,
            version,
            compiled_from_cache: from_cache,
            imports,
            denied_imports,
        })
    }

    /// Reloads a handler's routing entry after a change in the store
    /// (rollback, enable/disable, config, delete). Blocking. Any such change
    /// also starts the handler's circuit breaker afresh (closed, no
    /// history): an operator who re-enables or fixes a handler wants its
    /// deliveries to run.
    pub fn refresh_handler(&self, name: &str) -> Result<(), DispatchError> {
        self.reload_handler(name)?;
        if let Some(shared) = self.inner.shared.get() {
            shared.publish(name)?;
        }
        Ok(())
    }

    /// Waits until none of `name`'s deliveries is running here, for at
    /// most as long as one may run (its wall-clock limit, or the daemon's
    /// ceiling if it is not loaded) and a second more for its retry or dead
    /// letter to be stored, and then until the recorder wrote the outcomes
    /// handed to it by then; whether none runs and all are written. A
    /// delete calls it once the handler is out of routing (no new delivery
    /// of it starts), so that no delivery still running writes KV, a retry,
    /// a dead letter or its stats after the handler's data is swept: the
    /// next handler deployed under the name would find them. Blocking.
    pub fn wait_until_idle(&self, name: &str) -> bool {
        let limit_ms = self
            .inner
            .registry
            .get(name)
            .map_or(self.inner.cfg.ceilings.timeout_ms, |h| h.limits.timeout_ms);
        let deadline = Instant::now() + Duration::from_millis(limit_ms) + Duration::from_secs(1);
        loop {
            if self.inner.sched().running_of(name) == 0 {
                return self.inner.recorder_progress.wait_written(deadline);
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The cluster's nodes, or single-node mode. Blocking.
    pub fn cluster(&self) -> Result<ClusterStatus, StoreError> {
        match self.inner.shared.get() {
            Some(shared) => shared.nodes(),
            None => Ok(ClusterStatus {
                mode: "single".into(),
                node: None,
                nodes: Vec::new(),
            }),
        }
    }

    /// Prometheus text of the cluster: this node's name (nothing in
    /// single-node mode).
    pub fn render_cluster_metrics(&self) -> String {
        self.inner
            .shared
            .get()
            .map(|s| metrics::render_node(&s.node()))
            .unwrap_or_default()
    }

    /// Joins a shared registry (cluster mode): deploys and operator changes
    /// go through it from now on.
    pub fn share_registry(&self, shared: Arc<dyn SharedRegistry>) {
        let _ = self.inner.shared.set(shared);
    }

    /// Uses a shared handler KV (cluster mode) from now on: deliveries read
    /// and write it, operators list it.
    pub fn share_kv(&self, kv: Arc<dyn SharedKv>) {
        let _ = self.inner.shared_kv.set(kv);
    }

    /// The live entries of a handler's namespace (see [`Store::kv_list`]),
    /// in cluster mode from the shared KV. Blocking.
    pub fn kv_list(
        &self,
        handler: &HandlerRecord,
        tenant: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<crate::store::KvPage, StoreError> {
        match self.inner.shared_kv.get() {
            Some(kv) => kv
                .list(
                    &shared_namespace(handler, tenant),
                    prefix,
                    cursor,
                    crate::store::page_size(limit),
                )
                .map_err(|e| StoreError::Unavailable(e.to_string())),
            None => self
                .inner
                .store
                .kv_list(&handler.name, tenant, prefix, cursor, limit),
        }
    }

    /// One live KV entry (see [`Store::kv_get`]), in cluster mode from the
    /// shared KV. Blocking.
    pub fn kv_get(
        &self,
        handler: &HandlerRecord,
        tenant: &str,
        key: &str,
    ) -> Result<Option<crate::store::KvItem>, StoreError> {
        match self.inner.shared_kv.get() {
            Some(kv) => kv
                .item(&shared_namespace(handler, tenant), key)
                .map_err(|e| StoreError::Unavailable(e.to_string())),
            None => self.inner.store.kv_get(&handler.name, tenant, key),
        }
    }

    /// Drops the shared KV (cluster mode) of `deleted`'s incarnation, as
    /// the store's delete drops a node's own: called by every node once
    /// the handler is deleted and none of its deliveries runs here any
    /// more ([`Dispatcher::wait_until_idle`]), so that the last node to
    /// finish one drops what it wrote. A handler deployed again under the
    /// name meanwhile has keys of its own and keeps them. A failure is
    /// logged: the keys are left behind, never read again. Blocking.
    pub fn drop_shared_kv(&self, deleted: &HandlerRecord) {
        if let Some(kv) = self.inner.shared_kv.get()
            && let Err(e) = kv.drop_handler(&deleted.name, &deleted.incarnation)
        {
            tracing::warn!(handler = %deleted.name, error = %e, "Dropping a deleted handler's shared KV entries failed");
        }
    }

    /// Removes expired KV entries, in cluster mode from the shared KV;
    /// how many. Blocking.
    pub fn sweep_expired_kv(&self) -> Result<u64, StoreError> {
        match self.inner.shared_kv.get() {
            Some(kv) => kv
                .sweep()
                .map_err(|e| StoreError::Unavailable(e.to_string())),
            None => self.inner.store.sweep_expired_kv(),
        }
    }

    /// [`Dispatcher::refresh_handler`] for a change that came from the
    /// shared registry (made on another node): reloads, shares nothing.
    pub fn reload_handler(&self, name: &str) -> Result<(), DispatchError> {
        let inner = &self.inner;
        match inner.store.handler(name)? {
            Some(record) => {
                inner.load(&record)?;
                inner.reset_breaker(name, "the handler was changed by an operator");
            }
            None => {
                inner.registry.remove(name);
                inner.forget_breaker(name);
                // Its jobs still queued go now, not when a worker comes to
                // them: by then a handler deployed again under the name
                // would pass the gate and run them. Its shared KV (cluster
                // mode) goes in `drop_shared_kv`.
                inner.inbox.discard(name)?;
                inner.sched().drop_handler(name);
            }
        }
        inner.unpark(name);
        Ok(())
    }

    /// Stops taking work, waits up to `grace` for in-flight deliveries, and
    /// flushes the store. Unfinished deliveries stay pending in the store
    /// and run again on the next start.
    pub fn shutdown(&self, grace: Duration) {
        let inner = &self.inner;
        inner.stopping.store(true, Ordering::SeqCst);
        inner.wake.notify_all();
        let deadline = Instant::now() + grace;
        let workers = std::mem::take(&mut *inner.workers_lock());
        for w in workers {
            join_by(
                w,
                deadline,
                "A delivery outlived the shutdown grace period; it will run again on the next start",
            );
        }
        // The recorder ends once the workers are gone and what they handed
        // over is written; a worker past the grace period keeps it alive, so
        // wait for it at least a little (a batch takes milliseconds).
        let recorder = inner
            .recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(r) = recorder {
            join_by(
                r,
                deadline.max(Instant::now() + Duration::from_secs(2)),
                "Outcomes not yet recorded at shutdown will run again on the next start",
            );
        }
        if let Err(e) = inner.inbox.flush().and_then(|()| inner.store.flush()) {
            tracing::error!(error = %e, "Flushing the store at shutdown failed");
        }
    }
}

/// Joins `thread` if it ends by `deadline`; otherwise leaves it and warns.
fn join_by(thread: JoinHandle<()>, deadline: Instant, warning: &str) {
    while !thread.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if thread.is_finished() {
        let _ = thread.join();
    } else {
        tracing::warn!("{warning}");
    }
}

impl Inner {
    fn sched(&self) -> MutexGuard<'_, Scheduler<JobData>> {
        self.sched.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn workers_lock(&self) -> MutexGuard<'_, Vec<JoinHandle<()>>> {
        self.workers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Puts a handler's routing entry in the table; its code is loaded on
    /// its first delivery.
    fn load(&self, record: &HandlerRecord) -> Result<(), DispatchError> {
        let loaded = self.registry.load(
            &self.store,
            record,
            &self.cfg.default_limits,
            &self.cfg.ceilings,
        )?;
        self.registry.insert(loaded);
        Ok(())
    }

    /// Keeps the events of final deliveries for `GET /v1/events/{id}`
    /// after the inbox drops them (`store/archive.rs`); a failure costs
    /// only that lookup, so it is logged, not retried.
    fn archive(&self, events: &[&Event]) {
        if events.is_empty() || self.inbox.keeps_finished_events() {
            return;
        }
        if let Err(e) = self.store.archive_events(events) {
            tracing::warn!(error = %e, "Keeping finished events for lookup failed");
        }
    }

    fn unpark(&self, name: &str) {
        self.sched().unpark_all(name);
        self.wake.notify_all();
    }

    /// How an inbox with background intake reaches this dispatcher: it
    /// wakes the feed, and asks which handlers run here.
    fn hooks(self: &Arc<Self>) -> crate::store::InboxHooks {
        let wake = Arc::downgrade(self);
        let serves = Arc::downgrade(self);
        crate::store::InboxHooks {
            wake: Arc::new(move || {
                if let Some(inner) = wake.upgrade()
                    && let Err(e) = inner.feed(Reservation::default())
                {
                    tracing::error!(error = %e, "Taking deliveries from the inbox failed");
                }
            }),
            serves: Arc::new(move |name: &str| {
                serves
                    .upgrade()
                    .is_some_and(|inner| inner.registry.get(name).is_some())
            }),
        }
    }

    /// Queues every unfinished delivery the inbox replays.
    fn recover(&self) -> Result<usize, DispatchError> {
        let n = self.inbox.replay()?;
        self.feed(Reservation::default())?;
        Ok(n)
    }

    /// Moves every delivery the inbox has ready into the scheduler, and
    /// gives back `reserved` room (reserved for them before their append)
    /// under the same lock, so no other batch can slip into it meanwhile.
    fn feed(&self, reserved: Reservation) -> Result<usize, StoreError> {
        let ready = self.inbox.take_ready(usize::MAX);
        let now = now_ms();
        let mut s = self.sched();
        s.unreserve(reserved);
        let ready = ready?;
        let n = ready.len();
        for Ready { pending, event } in ready {
            let due = pending.due_ms;
            let retry = pending.attempt > 1;
            let mut job = Job::new(
                pending.handler.clone(),
                event.key.clone(),
                event.priority,
                JobData {
                    pending,
                    event: event.clone(),
                },
            )
            .with_tenant(event.tenant.clone());
            // A retry held its key before the restart (ordered handlers):
            // later events with the key wait behind it again.
            if retry {
                s.hold_key(&mut job);
            }
            if due > now {
                s.push_delayed(due, job);
            } else {
                s.push(job);
            }
        }
        drop(s);
        if n > 0 {
            self.wake.notify_all();
        }
        Ok(n)
    }

    /// The most jobs the scheduler may hold after accepting a batch from
    /// `origin`; `None`: no limit.
    fn queue_limit(&self, origin: Origin) -> Option<usize> {
        let capacity = self.cfg.queue_capacity;
        match origin {
            Origin::External => Some(capacity),
            Origin::Emitted => {
                let (num, den) = EMITTED_SHARE;
                // capacity × num / den, rounded down, without overflowing.
                Some(capacity / den * num + capacity % den * num / den)
            }
            Origin::Hookbox => None,
        }
    }

    /// The most jobs one tenant may hold while others want room; `None`:
    /// no share.
    fn tenant_share(&self) -> Option<usize> {
        let pct = usize::from(self.cfg.tenant_queue_share);
        (pct < 100).then(|| {
            let capacity = self.cfg.queue_capacity;
            // capacity × pct / 100, rounded down, without overflowing.
            capacity / 100 * pct + capacity % 100 * pct / 100
        })
    }

    /// Validates, routes and stores a batch, refused whole with
    /// [`AcceptError::Busy`] when its jobs do not fit the queue limit of
    /// its origin.
    fn accept(&self, incoming: Incoming<'_>) -> Result<Vec<Accepted>, AcceptError> {
        // Keys are looked up in `prepare` and written by the append: two
        // batches with one key must not both find it new.
        let _claim = self.idempotency.claim(keys_of(&incoming.inputs));
        let (out, batch, reserved) = self.prepare(incoming)?;
        let started = Instant::now();
        let appended = self.inbox.append(&batch);
        self.appended(out, batch.len(), reserved, appended, started)
    }

    /// The first half of [`Inner::accept`]: validates and routes the
    /// batch, answers duplicates of idempotency keys, and reserves the
    /// room its deliveries take in the queue. What to answer, what to
    /// append, and the reservation [`Inner::appended`] uses. The caller
    /// holds the claim of the batch's idempotency keys until the append
    /// is done. `room` held for the batch ([`Dispatcher::admit`]) is given
    /// back in the same step that reserves the batch's own.
    fn prepare(
        &self,
        incoming: Incoming<'_>,
    ) -> Result<(Vec<Accepted>, RoutedBatch, Reservation), AcceptError> {
        let Incoming {
            inputs,
            source,
            depth,
            origin,
            exclude,
            room,
        } = incoming;
        let max_payload = self.cfg.max_payload_bytes;
        let mut out = Vec::with_capacity(inputs.len());
        let mut batch: RoutedBatch = Vec::with_capacity(inputs.len());
        let mut keys_in_batch: HashMap<(String, String), String> = HashMap::new();
        for (index, input) in inputs.into_iter().enumerate() {
            let invalid = |error| AcceptError::Invalid { index, error };
            input.validate(max_payload).map_err(invalid)?;
            if source != event::HOOKBOX_SOURCE
                && input.event_type.starts_with(event::RESERVED_PREFIX)
            {
                return Err(invalid(InvalidEvent::ReservedType(input.event_type)));
            }
            self.schemas
                .check(&input.event_type, input.payload.as_deref())
                .map_err(invalid)?;
            if let Some(key) = &input.idempotency_key {
                let k = (input.tenant.clone(), key.clone());
                let earlier = match keys_in_batch.get(&k) {
                    Some(id) => Some(id.clone()),
                    None => {
                        self.inbox
                            .idempotent_id(&input.tenant, key, self.cfg.idempotency_window)?
                    }
                };
                if let Some(id) = earlier {
                    out.push(Accepted {
                        id,
                        duplicate: true,
                        handlers: Vec::new(),
                    });
                    continue;
                }
            }
            let idem = input
                .idempotency_key
                .clone()
                .map(|k| (input.tenant.clone(), k));
            // Validated at the top of the loop.
            let event = input.into_event(source, depth).map_err(invalid)?;
            if let Some(k) = idem {
                keys_in_batch.insert(k, event.id.clone());
            }
            let mut handlers = self.registry.route(&event);
            if let Some(x) = exclude {
                handlers.retain(|h| h != x);
            }
            out.push(Accepted {
                id: event.id.clone(),
                duplicate: false,
                handlers: handlers.clone(),
            });
            batch.push((Arc::new(event), handlers));
        }
        // The room is reserved before the (slow, flushed) write and used
        // after it, so concurrent batches cannot all pass the check.
        let reserved = match self.queue_limit(origin) {
            Some(limit) => {
                let jobs = Reservation::of(batch.iter().map(|(e, h)| (e.tenant.as_str(), h.len())));
                // A producer's batch that never fits is refused as such
                // (the held room, if any, goes back on drop; emitted events
                // past their share are dropped as busy, which names that
                // share). One that did not come through the line (its body
                // was not sketched, or the queue looked idle) does not take
                // room ahead of requests of its tenants waiting in it:
                // refused, its caller waits in line too.
                if origin == Origin::External {
                    if let Some(refused) = self.never_fits(&jobs, batch.len()) {
                        return Err(refused);
                    }
                    if room.is_none() && !self.waiting.may_try(&jobs, None) {
                        return Err(busy(Refused::Full, Needed::new(jobs, batch.len())));
                    }
                }
                let mut s = self.sched();
                if let Some(room) = room {
                    s.unreserve(room.take());
                }
                let reserved = s.reserve(&jobs, limit, self.tenant_share(), now_ms());
                drop(s);
                match reserved {
                    Ok(()) => jobs,
                    // Counted by whoever answers the refusal: a caller
                    // that waits for the room may not refuse in the end.
                    Err(refused) => {
                        return Err(busy(refused, Needed::new(jobs, batch.len())));
                    }
                }
            }
            None => Reservation::default(),
        };
        Ok((out, batch, reserved))
    }

    /// The second half of [`Inner::accept`], once the inbox's append of
    /// `events` events ended (`appended`, begun at `started`): counts and
    /// feeds the deliveries to the scheduler, or gives the reservation
    /// back.
    fn appended(
        &self,
        out: Vec<Accepted>,
        events: usize,
        reserved: Reservation,
        appended: Result<Vec<String>, StoreError>,
        started: Instant,
    ) -> Result<Vec<Accepted>, AcceptError> {
        crate::store::warn_if_slow(
            "Appending accepted events to the inbox",
            events,
            started.elapsed(),
            recorder::SLOW_WRITE,
        );
        if let Err(e) = appended {
            self.sched().unreserve(reserved);
            return Err(e.into());
        }
        self.metrics.accepted(events as u64);
        self.metrics
            .duplicate(out.iter().filter(|a| a.duplicate).count() as u64);
        // Durable now: a failure to hand the deliveries over is the
        // inbox's to retry (they stay ready), not the producer's.
        if let Err(e) = self.feed(reserved) {
            tracing::error!(error = %e, "Taking accepted deliveries from the inbox failed");
        }
        Ok(out)
    }

    /// A worker thread: pop, run, repeat until stopping.
    fn work(&self, recorder: &recorder::Recorder) {
        cpu_since_last_reading();
        loop {
            let (job, ticket) = {
                let mut s = self.sched();
                loop {
                    if self.stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let now = now_ms();
                    s.promote_due(now);
                    let mut b = self.breakers();
                    // Cool-downs that ended: their parked jobs may run a trial.
                    for (h, tenant) in b.due(now) {
                        if tenant.is_empty() {
                            s.unpark_handler(&h);
                        } else {
                            s.unpark_tenant(&h, &tenant);
                        }
                    }
                    let mut t = self.throttles();
                    // Rate-limit windows that ended: their jobs may run.
                    for h in t.due(now) {
                        s.unpark_handler(&h);
                    }
                    let deleted = |name: &str| matches!(self.store.handler(name), Ok(None));
                    if let Some(job) =
                        s.pop(|j| self.gate(&j.handler, &j.tenant, &b, &t, &deleted, now))
                    {
                        let ticket = b.start(&job.handler, &job.tenant, now);
                        if job.lent {
                            self.metrics.lent();
                        }
                        break (job, ticket);
                    }
                    let next = [s.next_due(), b.next_wakeup(), t.next_wakeup()]
                        .into_iter()
                        .flatten()
                        .min();
                    drop(t);
                    drop(b);
                    let wait = next
                        .map_or(1_000, |due| due.saturating_sub(now))
                        .clamp(1, 1_000);
                    s = self
                        .wake
                        .wait_timeout(s, Duration::from_millis(wait))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            };
            self.run(job, ticket, recorder);
        }
    }

    /// Runs one delivery and moves its pending entry on.
    fn run(&self, mut job: Job<JobData>, ticket: Option<Pass>, recorder: &recorder::Recorder) {
        let handler_name = job.handler.clone();
        let Some(h) = self.registry.get(&handler_name) else {
            // Unloaded since it was popped: wait for a reload or deletion.
            self.breakers().abandon(&handler_name, ticket);
            self.requeue(job, now_ms());
            return;
        };
        // `max_age` is checked each time a delivery is taken, retries
        // included: the event's age is what it waited in the queue.
        if let Some((age, max)) = h.manifest.subscription.expired(&job.data.event, now_ms()) {
            self.skip_expired(job, ticket, &h, age, max, recorder);
            return;
        }
        let pending = &job.data.pending;
        let event = job.data.event.clone();
        let (report, version) = match &h.code {
            Code::Builtin(b) => match builtin::deliver(b.as_ref(), &event, pending.attempt) {
                builtin::Delivered::Ran(report) => (report, h.version),
                builtin::Delivered::Throttled { wait, message } => {
                    self.throttle(job, ticket, wait, &message);
                    return;
                }
            },
            Code::Wasm(hash) => {
                let (loaded, version) = match pending.version {
                    Some(v) if v != h.version => (
                        self.registry.version_module(
                            &self.store,
                            &self.runtime,
                            &h.name,
                            v,
                            &self.metrics,
                        ),
                        v,
                    ),
                    _ => (
                        self.registry.module(
                            &self.store,
                            &self.runtime,
                            hash,
                            &h.manifest.capabilities,
                            &self.metrics,
                        ),
                        h.version,
                    ),
                };
                let module = match loaded {
                    Ok(m) => m,
                    Err(e) => {
                        self.breakers().abandon(&h.name, ticket);
                        self.load_failed(&h, version, e);
                        self.requeue(job, now_ms() + STORE_ERROR_PAUSE_MS);
                        return;
                    }
                };
                // The shared KV keys by incarnation; the node's own
                // store needs none (a delete here waits every delivery out).
                let (kv, kv_incarnation): (&dyn crate::kv::Kv, &str) = match self.shared_kv.get() {
                    Some(kv) => (kv.as_ref(), &h.incarnation),
                    None => (&self.store, ""),
                };
                let report = self.runtime.deliver(
                    &module,
                    DeliveryRequest {
                        handler: &h.name,
                        event: &event,
                        attempt: pending.attempt,
                        limits: &h.limits,
                        config: &h.config,
                        kv,
                        kv_incarnation,
                        capabilities: &h.manifest.capabilities,
                        reuse: h.manifest.delivery.reuse,
                    },
                );
                (report, version)
            }
        };
        let now = now_ms();
        let busy = cpu_since_last_reading() + report.waited;
        let ran = Some(queue::Ran {
            took_us: u64::try_from(busy.as_micros()).unwrap_or(u64::MAX),
            at_ms: now,
        });
        let outcome = report.outcome.as_str();
        let (emitted, emitted_total) = EmittedEvent::summary(&report.emitted);
        let entry = LogEntry {
            id: String::new(),
            handler: h.name.clone(),
            version,
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            tenant: event.tenant.clone(),
            outcome: outcome.to_string(),
            error: report.error.clone(),
            duration_us: report.duration.as_micros() as u64,
            fuel: report.fuel_used,
            memory_bytes: report.peak_memory_bytes,
            attempt: pending.attempt,
            time_ms: now,
            logs: handler_log::to_store(&report.logs),
            emitted,
            emitted_total,
        };
        self.metrics
            .delivery(&h.name, outcome, report.duration, report.fuel_used);
        let transition = self.record_outcome(&h.name, ticket, &report, now);
        handler_log::forward(&h.name, &event, pending.attempt, &report.logs);

        if report.outcome.is_success() {
            if !report.emitted.is_empty() {
                self.accept_emitted(&h.name, &event, report.emitted);
                // The daemon's work, not the next delivery's.
                cpu_since_last_reading();
            }
            if let Some(t) = transition {
                self.announce(&h.name, t);
            }
            // The slot is free now; the key stays held until the recorder
            // has written the outcome.
            self.recorder_progress.hand_over();
            self.sched()
                .finish(&job.handler, job.key.as_deref(), false, true, ran);
            self.wake.notify_one();
            if let Err(std::sync::mpsc::SendError(done)) =
                recorder.send(recorder::Finished { job, entry })
            {
                // The recorder is gone (it panicked): record it here.
                self.record(vec![done]);
            }
            return;
        }
        let policy = &h.manifest.delivery;
        let stored: Result<Option<(u64, Pending)>, StoreError> =
            if retry::should_retry(policy, pending.attempt, report.retryable) {
                let delay = retry::backoff(policy, pending.attempt + 1, rand::random::<f64>());
                let due = now + delay.as_millis() as u64;
                self.inbox
                    .retry_at(pending, &entry, due)
                    .map(|p| Some((due, p)))
            } else {
                self.inbox.dead_letter(pending, &entry).map(|_| None)
            };
        if let Some(t) = transition {
            self.announce(&h.name, t);
        }
        // Storing the retry or dead letter: not the next delivery's work.
        cpu_since_last_reading();
        let final_attempt = match stored {
            Ok(None) => {
                self.archive(&[&*event]);
                self.metrics.dead_lettered();
                self.sched()
                    .finish(&job.handler, job.key.as_deref(), job.holds_key, true, ran);
                true
            }
            Ok(Some((due, next))) => {
                self.metrics.retry_scheduled();
                job.data.pending = next;
                let mut s = self.sched();
                if self.inbox.redelivers_retries() {
                    // The inbox runs it again at `due`, maybe on another node.
                    s.finish(&job.handler, job.key.as_deref(), job.holds_key, true, ran);
                } else {
                    s.finish(&job.handler, job.key.as_deref(), job.holds_key, false, ran);
                    s.push_delayed(due, job);
                }
                false
            }
            Err(e) => {
                // The durable pending entry is untouched: try the delivery
                // again after a pause (at-least-once; the log may show it twice).
                tracing::error!(handler = %h.name, event = %event.id, error = %e, "Recording a delivery outcome failed; will retry it");
                self.requeue(job, now + STORE_ERROR_PAUSE_MS);
                return;
            }
        };
        self.wake.notify_one();
        let _ = self
            .notices
            .send(Arc::new(recorder::notice(entry, final_attempt)));
    }

    /// Finishes a delivery without running it: its event is `age` ms old,
    /// past the handler's `max_age` of `max` ms. It is logged with outcome
    /// `expired` (final; neither a success nor a failure, so the breaker
    /// does not count it) and written by the recorder like a success.
    fn skip_expired(
        &self,
        job: Job<JobData>,
        ticket: Option<Pass>,
        h: &Loaded,
        age: u64,
        max: u64,
        recorder: &recorder::Recorder,
    ) {
        self.breakers().abandon(&h.name, ticket);
        let pending = &job.data.pending;
        let event = &job.data.event;
        let entry = LogEntry {
            id: String::new(),
            handler: h.name.clone(),
            version: pending.version.unwrap_or(h.version),
            event_id: event.id.clone(),
            event_type: event.event_type.clone(),
            tenant: event.tenant.clone(),
            outcome: OUTCOME_EXPIRED.to_string(),
            error: Some(format!(
                "not run: the event was {age} ms old when the delivery was taken; the handler's max_age is {max} ms"
            )),
            attempt: pending.attempt,
            time_ms: now_ms(),
            // Nothing ran: no duration, fuel, memory, logs or emits.
            ..LogEntry::default()
        };
        self.metrics.expired(&h.name);
        self.recorder_progress.hand_over();
        self.sched()
            .finish(&job.handler, job.key.as_deref(), false, true, None);
        self.wake.notify_one();
        if let Err(std::sync::mpsc::SendError(done)) =
            recorder.send(recorder::Finished { job, entry })
        {
            self.record(vec![done]);
        }
    }

    /// A handler's code did not load for a delivery. A storage failure may
    /// pass: the job is tried again after a pause. Anything else (the
    /// component is gone, or its code neither loads nor compiles) will not:
    /// the handler leaves the routing table, as a handler that fails to
    /// load at start does, and its deliveries wait until it is redeployed
    /// or changed.
    fn load_failed(&self, h: &Arc<Loaded>, version: u32, e: DispatchError) {
        if matches!(e, DispatchError::Store(_)) {
            tracing::error!(handler = %h.name, version, error = %e, "Handler code did not load; will try again");
            return;
        }
        if version != h.version {
            // Only a pinned replay's old version is broken; the handler stays.
            tracing::error!(handler = %h.name, version, error = %e, "Pinned version did not load");
            return;
        }
        tracing::error!(handler = %h.name, version, error = %e, "Handler code did not load; its deliveries wait until it is redeployed");
        self.registry.remove_if_current(h);
    }

    /// Backpressure from a built-in sink: puts the job back as it was (no
    /// attempt used, no breaker failure) and holds the handler's jobs until
    /// the window ends ([`throttle`]).
    fn throttle(&self, job: Job<JobData>, ticket: Option<Pass>, wait: Duration, why: &str) {
        let now = now_ms();
        let until = now.saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        self.breakers().abandon(&job.handler, ticket);
        self.throttles().pause(&job.handler, until);
        self.metrics.throttled(&job.handler);
        tracing::info!(handler = %job.handler, event = %job.data.pending.event_id, wait_ms = until - now, reason = %why, "Delivery throttled; the handler's deliveries wait for the window");
        self.requeue(job, until);
        self.wake.notify_all();
    }

    fn throttles(&self) -> MutexGuard<'_, throttle::Throttles> {
        self.throttles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Gives an in-flight job back to the scheduler, due at `due_ms`.
    fn requeue(&self, job: Job<JobData>, due_ms: u64) {
        let mut s = self.sched();
        s.finish(&job.handler, job.key.as_deref(), false, false, None);
        s.push_delayed(due_ms, job);
    }

    /// Accepts what a successful delivery emitted, one emission deeper, as
    /// one batch: all of it, or (past the emit depth limit, past the
    /// emitted share of the queue, or invalid) none of it, dropped and
    /// counted. The delivery itself stays `ok`.
    fn accept_emitted(&self, handler: &str, parent: &Event, emitted: Vec<EventInput>) {
        let depth = parent.depth + 1;
        if depth > self.cfg.max_emit_depth {
            self.metrics.emits_dropped(emitted.len() as u64);
            tracing::warn!(
                %handler,
                event = %parent.id,
                depth,
                dropped = emitted.len(),
                "Emitted events dropped: the emit depth limit was reached"
            );
            return;
        }
        let n = emitted.len();
        let source = format!("handler:{handler}");
        let incoming = Incoming {
            inputs: emitted,
            source: &source,
            depth,
            origin: Origin::Emitted,
            exclude: None,
            room: None,
        };
        match self.accept(incoming) {
            Ok(_) => {}
            Err(AcceptError::Busy {
                tenant: Some(tenant),
                ..
            }) => {
                self.metrics.emits_dropped(n as u64);
                tracing::warn!(
                    %handler,
                    event = %parent.id,
                    dropped = n,
                    %tenant,
                    limit = self.tenant_share(),
                    "Emitted events dropped: their tenant holds its share of the delivery queue while other tenants wait"
                );
            }
            Err(AcceptError::Busy { tenant: None, .. }) => {
                self.metrics.emits_dropped(n as u64);
                tracing::warn!(
                    %handler,
                    event = %parent.id,
                    dropped = n,
                    queued = self.sched().len(),
                    limit = self.queue_limit(Origin::Emitted),
                    "Emitted events dropped: the delivery queue is at the share emitted events may fill"
                );
            }
            Err(e) => {
                self.metrics.emits_dropped(n as u64);
                tracing::warn!(%handler, event = %parent.id, dropped = n, error = %e, "Emitted events were not accepted");
            }
        }
    }
}

thread_local! {
    /// The calling thread's CPU time at its last [`cpu_since_last_reading`].
    static CPU_READ: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// CPU time the calling thread used since its last call: only while it
/// ran, not while it was preempted or blocked. A worker reads it once per
/// delivery, after it ran (a reading costs a system call, ≈ 0.5 µs here),
/// so a delivery's figure also holds the worker's own work since the one
/// before: finishing that one and taking this one, usually a few µs. The
/// heavier steps are left out, each read past: accepting a delivery's
/// emitted events, storing a retry or dead letter (`Inner::run`), and a
/// module load (`Registry::module`).
fn cpu_since_last_reading() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    let now = Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    );
    CPU_READ.with(|read| now.saturating_sub(read.replace(now)))
}
