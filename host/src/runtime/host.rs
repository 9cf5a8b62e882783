//! The data of one sandbox store ([`HostState`]) and Hookbox's side of the
//! WIT contract: the one `bindgen!` of the host, and the `log`, `kv`,
//! `config`, `emit` and `clock` imports.
//!
//! Host functions never panic on guest input. A guest mistake the WIT lets
//! it handle (a malformed emitted event) is returned to the guest; a budget
//! exhausted (log, emit, KV size) or a storage failure ends the call with an
//! error, after recording the outcome in [`CallState::abort`] so that
//! `deliver` reports it by name.
//!
//! Capabilities are granted by use, not by import: every Hookbox interface
//! is linked for every component (toolchains such as componentize-py and
//! componentize-js import all of them), and each function first checks the
//! delivery's grant ([`HostState::require`]); an ungranted one ends the
//! call with `capability_denied`, naming the interface and the function.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::capture::SharedLog;
use super::limiter::Limiter;
use super::outcome::{LogLevel, LogStream, Outcome};
use crate::event::{self, EventInput, Priority};
use crate::kv::{Kv, KvError, Namespace, Quota};
use crate::limits::{EMIT_ENTRY_OVERHEAD, EMIT_OVERHEAD, Limits};
use crate::manifest::Capability;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "hookbox:handler/handler@0.1.0",
    imports: { default: trappable },
});

use self::hookbox::handler::{clock, config, emit, kv, log, types};

/// The error a host function ends the call with once it has recorded its
/// outcome; its text is what the report shows.
#[derive(Debug)]
pub(crate) struct Abort(String);

impl std::fmt::Display for Abort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Abort {}

/// What the host functions need to know about the current delivery. Reset
/// by [`HostState::begin`]; in reuse mode the store outlives a delivery, so
/// nothing here may carry over.
#[derive(Default)]
pub(crate) struct CallState {
    /// The delivery's KV store, lent by [`with_kv`] for the duration of the
    /// call and `None` at any other time. Private to this module: nothing
    /// may copy it out (see the SAFETY comment in [`with_kv`]).
    kv: Option<&'static dyn Kv>,
    /// Built from the delivery (handler name + event tenant), never from
    /// guest input.
    namespace: Option<Namespace>,
    config: String,
    event_tenant: String,
    kv_value_bytes: u64,
    /// The namespace's quota (`kv_quota_bytes`, `kv_quota_keys`).
    kv_quota: Quota,
    /// When the delivery's wall-clock budget ends: host calls that wait
    /// (`wasi:io/poll`, see `poll.rs`) give up at this instant.
    pub(crate) deadline: Option<Instant>,
    /// The capabilities the delivery's manifest grants.
    granted: Grant,
    max_emits: u32,
    emit_calls: u32,
    max_emit_bytes: u64,
    /// What the `emit` calls so far handed over (see [`emit_size`]).
    emit_bytes: u64,
    /// Events accepted by `emit`, handed to the dispatcher on success.
    pub(crate) emitted: Vec<EventInput>,
    /// The outcome a host function ended the call with.
    pub(crate) abort: Option<(Outcome, String)>,
    /// Time the guest waited in `wasi:io/poll` (`poll.rs`).
    pub(crate) waited: Duration,
}

impl std::fmt::Debug for CallState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallState")
            .field("namespace", &self.namespace)
            .field("emitted", &self.emitted.len())
            .field("abort", &self.abort)
            .finish_non_exhaustive()
    }
}

/// The `T` of every `Store<T>` the runtime creates.
pub(crate) struct HostState {
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) log: SharedLog,
    pub(crate) call: CallState,
}

impl std::fmt::Debug for HostState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostState")
            .field("limiter", &self.limiter)
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

/// One delivery's inputs, as [`HostState::begin`] needs them.
pub(crate) struct Begin<'a> {
    pub handler: &'a str,
    pub incarnation: &'a str,
    pub tenant: &'a str,
    pub config: &'a str,
    pub limits: &'a Limits,
    pub capabilities: &'a BTreeSet<Capability>,
    /// Keep what the log holds: the start-up output of an instance
    /// prepared ahead of this delivery (under the same log budget).
    pub keep_log: bool,
}

/// A set of [`Capability`] as bits, checked on every host call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Grant(u8);

impl Grant {
    fn bit(cap: Capability) -> u8 {
        1 << (cap as u8)
    }

    pub(crate) fn contains(self, cap: Capability) -> bool {
        self.0 & Self::bit(cap) != 0
    }
}

impl From<&BTreeSet<Capability>> for Grant {
    fn from(caps: &BTreeSet<Capability>) -> Self {
        Grant(caps.iter().fold(0, |bits, &c| bits | Grant::bit(c)))
    }
}

impl HostState {
    /// A store's data with WASI denied: no preopens, environment, arguments
    /// or network (the `WasiCtx` builder's defaults); stdin is closed and
    /// stdout/stderr go to the delivery log.
    pub(crate) fn new(limits: &Limits) -> Self {
        let log = SharedLog::default();
        let wasi = WasiCtx::builder()
            .stdout(log.pipe(LogStream::Stdout))
            .stderr(log.pipe(LogStream::Stderr))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(limits.memory_bytes, limits.table_elements, limits.instances),
            log,
            call: CallState::default(),
        }
    }

    /// Prepares for a delivery: fresh per-call state, log and limiter budgets.
    pub(crate) fn begin(&mut self, b: Begin<'_>) {
        self.call = CallState {
            kv: None,
            namespace: Some(Namespace {
                handler: b.handler.to_string(),
                tenant: b.tenant.to_string(),
                incarnation: b.incarnation.to_string(),
            }),
            config: b.config.to_string(),
            event_tenant: b.tenant.to_string(),
            kv_value_bytes: b.limits.kv_value_bytes,
            kv_quota: Quota::from(b.limits),
            deadline: Instant::now().checked_add(Duration::from_millis(b.limits.timeout_ms)),
            granted: Grant::from(b.capabilities),
            max_emits: b.limits.emits,
            max_emit_bytes: b.limits.emit_bytes,
            ..CallState::default()
        };
        if !b.keep_log {
            self.log.begin(b.limits.log_bytes);
        }
        self.limiter.begin_delivery(
            b.limits.memory_bytes,
            b.limits.table_elements,
            b.limits.instances,
        );
    }

    /// Prepares a store for instantiating ahead of any delivery (see
    /// `prepare.rs`): the log budget and wall-clock deadline of `limits`,
    /// and no grant, namespace or config (the call state stays empty).
    pub(crate) fn begin_prepare(&mut self, limits: &Limits) {
        self.call.deadline = Instant::now().checked_add(Duration::from_millis(limits.timeout_ms));
        self.log.begin(limits.log_bytes);
    }

    /// Ends a delivery: drops the namespace and config, keeps the results.
    pub(crate) fn end(&mut self) {
        self.call.kv = None;
        self.call.namespace = None;
        self.call.config = String::new();
    }

    pub(crate) fn abort(&mut self, outcome: Outcome, message: String) -> wasmtime::Error {
        self.call.abort.get_or_insert((outcome, message.clone()));
        wasmtime::Error::new(Abort(message))
    }

    /// Ends the call with `capability_denied` unless the delivery's manifest
    /// grants `cap`; `function` is the WIT function being called.
    fn require(&mut self, cap: Capability, function: &str) -> wasmtime::Result<()> {
        if self.call.granted.contains(cap) {
            return Ok(());
        }
        let interface = cap.interface();
        Err(self.abort(
            Outcome::CapabilityDenied,
            format!(
                "`hookbox:handler/{interface}@0.1.0#{function}` is denied: capability \
                 `{interface}` is not granted to this handler (add it to the manifest's \
                 `capabilities`)"
            ),
        ))
    }

    fn check_kv_size(&mut self, key: &str, value_len: usize) -> wasmtime::Result<()> {
        let size = (key.len() + value_len) as u64;
        if size > self.call.kv_value_bytes {
            let limit = self.call.kv_value_bytes;
            return Err(self.abort(
                Outcome::KvLimit,
                format!("kv key plus value is {size} bytes; the limit is {limit}"),
            ));
        }
        Ok(())
    }

    /// Runs a KV operation against the delivery's namespace and quota; a
    /// write past the quota ends the call with `kv_limit`.
    fn with_kv<R>(
        &mut self,
        op: impl FnOnce(&dyn Kv, &Namespace, &Quota) -> Result<R, KvError>,
    ) -> wasmtime::Result<R> {
        let result = match (&self.call.kv, &self.call.namespace) {
            (Some(kv), Some(ns)) => op(*kv, ns, &self.call.kv_quota).map_err(|e| match e {
                KvError::Quota(q) => (Outcome::KvLimit, q.to_string()),
                e => (Outcome::HostError, e.to_string()),
            }),
            _ => Err((Outcome::HostError, "kv called outside a delivery".into())),
        };
        result.map_err(|(outcome, msg)| self.abort(outcome, msg))
    }
}

/// Runs `f` (instantiate and call) with `kv` lent to the store's KV host
/// functions; the loan is revoked before this returns, also on unwind.
#[allow(unsafe_code)]
pub(crate) fn with_kv<R>(
    store: &mut Store<HostState>,
    kv: &dyn Kv,
    f: impl FnOnce(&mut Store<HostState>) -> R,
) -> R {
    /// Clears the loan when dropped.
    struct Revoke<'s>(&'s mut Store<HostState>);
    impl Drop for Revoke<'_> {
        fn drop(&mut self) {
            self.0.data_mut().call.kv = None;
        }
    }
    // SAFETY: wasmtime requires store data to be `'static`, but the caller
    // lends the KV store only for this call, so the reference's lifetime is
    // extended here and the extension is made unobservable: the `'static`
    // reference is written only to `CallState::kv`, a private field no code
    // copies out of (host functions use it in place, during the call); the
    // store is mutably borrowed for the whole loan, so nothing else can
    // reach it; and `Revoke` sets the field back to `None` before this
    // function returns or unwinds, while `kv` is still borrowed by the
    // caller. (`dyn Kv` is already `'static` as a type: `Kv: 'static`.)
    let lent: &'static dyn Kv = unsafe { std::mem::transmute::<&dyn Kv, &'static dyn Kv>(kv) };
    store.data_mut().call.kv = Some(lent);
    let guard = Revoke(store);
    f(&mut *guard.0)
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl log::Host for HostState {
    fn log(
        &mut self,
        level: log::Level,
        message: String,
        fields: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.require(Capability::Log, "log")?;
        let level = match level {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        let result = self.log.lock().log(level, message, fields);
        result.map_err(|full| self.abort(Outcome::LogLimit, full.to_string()))
    }
}

impl kv::Host for HostState {
    fn get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        self.require(Capability::Kv, "get")?;
        self.check_kv_size(&key, 0)?;
        self.with_kv(|kv, ns, _| kv.get(ns, &key))
    }

    fn set(&mut self, key: String, value: Vec<u8>, ttl_ms: Option<u64>) -> wasmtime::Result<()> {
        self.require(Capability::Kv, "set")?;
        self.check_kv_size(&key, value.len())?;
        self.with_kv(|kv, ns, quota| kv.set(ns, &key, &value, ttl_ms, quota))
    }

    fn delete(&mut self, key: String) -> wasmtime::Result<bool> {
        self.require(Capability::Kv, "delete")?;
        self.check_kv_size(&key, 0)?;
        self.with_kv(|kv, ns, _| kv.delete(ns, &key))
    }

    fn increment(&mut self, key: String, delta: i64) -> wasmtime::Result<i64> {
        self.require(Capability::Kv, "increment")?;
        self.check_kv_size(&key, 0)?;
        self.with_kv(|kv, ns, quota| kv.increment(ns, &key, delta, quota))
    }

    fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> wasmtime::Result<bool> {
        self.require(Capability::Kv, "compare-and-swap")?;
        let largest = expected
            .as_ref()
            .map_or(0, Vec::len)
            .max(new.as_ref().map_or(0, Vec::len));
        self.check_kv_size(&key, largest)?;
        self.with_kv(|kv, ns, quota| {
            kv.compare_and_swap(ns, &key, expected.as_deref(), new.as_deref(), quota)
        })
    }
}

impl config::Host for HostState {
    fn get(&mut self) -> wasmtime::Result<String> {
        self.require(Capability::Config, "get")?;
        Ok(self.call.config.clone())
    }
}

impl emit::Host for HostState {
    fn emit(&mut self, new: emit::NewEvent) -> wasmtime::Result<Result<(), emit::EmitError>> {
        self.require(Capability::Emit, "emit")?;
        // Every call counts, valid or not: host-side validation is work the
        // guest's fuel does not pay for.
        self.call.emit_calls = self.call.emit_calls.saturating_add(1);
        if self.call.emit_calls > self.call.max_emits {
            let max = self.call.max_emits;
            return Err(self.abort(
                Outcome::EmitLimit,
                format!("the handler emitted more than {max} events"),
            ));
        }
        // So are the bytes, before anything is parsed or copied again.
        self.call.emit_bytes = self.call.emit_bytes.saturating_add(emit_size(&new));
        if self.call.emit_bytes > self.call.max_emit_bytes {
            let max = self.call.max_emit_bytes;
            return Err(self.abort(
                Outcome::EmitBytesLimit,
                format!(
                    "the handler's emitted events came to more than {max} bytes (each event \
                     counts {EMIT_OVERHEAD} bytes and each metadata entry \
                     {EMIT_ENTRY_OVERHEAD} besides their text)"
                ),
            ));
        }
        match to_event_input(new, &self.call.event_tenant) {
            Ok(input) => {
                self.call.emitted.push(input);
                Ok(Ok(()))
            }
            Err(msg) => Ok(Err(emit::EmitError::Invalid(msg))),
        }
    }
}

impl clock::Host for HostState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.require(Capability::Clock, "now-ms")?;
        Ok(event::now_ms())
    }
}

/// What an emitted event counts against `emit_bytes`: its text plus the
/// per-event and per-entry overheads.
fn emit_size(new: &emit::NewEvent) -> u64 {
    let text = new.type_.len()
        + new.tenant.as_ref().map_or(0, String::len)
        + new.payload.len()
        + new.key.as_ref().map_or(0, String::len)
        + new
            .metadata
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>();
    (text as u64)
        .saturating_add(EMIT_OVERHEAD)
        .saturating_add(EMIT_ENTRY_OVERHEAD.saturating_mul(new.metadata.len() as u64))
}

/// An emitted event under the same rules as any producer's ([`EventInput`]).
fn to_event_input(new: emit::NewEvent, event_tenant: &str) -> Result<EventInput, String> {
    // Counts first: nothing is copied into a map that is refused anyway.
    if new.metadata.len() > event::bounds::METADATA_ENTRIES {
        return Err(event::InvalidEvent::TooManyMetadata(new.metadata.len()).to_string());
    }
    // Refuse oversized payloads before spending time parsing them.
    if new.payload.len() > event::bounds::DEFAULT_PAYLOAD_BYTES {
        return Err(format!(
            "`payload` is {} bytes; the limit is {}",
            new.payload.len(),
            event::bounds::DEFAULT_PAYLOAD_BYTES
        ));
    }
    let payload = event::parse_payload(&new.payload).map_err(|e| e.to_string())?;
    let mut metadata = BTreeMap::new();
    for (k, v) in new.metadata {
        if metadata.contains_key(&k) {
            return Err(format!("metadata key {k:?} is given twice"));
        }
        metadata.insert(k, v);
    }
    let tenant = match new.tenant {
        None => event_tenant.to_string(),
        // Code serving one tenant stays in it: another tenant's handlers
        // and sinks (a Discord endpoint restricted to that tenant, its
        // Redis bus) trust that their events come from that tenant's
        // producers. Only an event without a tenant — which only an
        // unscoped producer can publish — may fan out into tenants.
        Some(t) if !event_tenant.is_empty() && t != event_tenant => {
            return Err(format!(
                "a delivery of tenant {event_tenant:?} may emit only into that tenant, not {t:?}"
            ));
        }
        Some(t) => t,
    };
    let input = EventInput {
        event_type: new.type_,
        tenant,
        payload: Some(payload),
        metadata,
        key: new.key,
        priority: new.priority.map_or(Priority::Normal, from_wit_priority),
        idempotency_key: None,
    };
    input
        .validate(event::bounds::DEFAULT_PAYLOAD_BYTES)
        .map_err(|e| e.to_string())?;
    Ok(input)
}

fn from_wit_priority(p: types::Priority) -> Priority {
    match p {
        types::Priority::Critical => Priority::Critical,
        types::Priority::High => Priority::High,
        types::Priority::Normal => Priority::Normal,
        types::Priority::Low => Priority::Low,
    }
}

/// The WIT form of an event being delivered.
pub(crate) fn to_wit_event(event: &event::Event, attempt: u32) -> types::Event {
    types::Event {
        id: event.id.clone(),
        type_: event.event_type.clone(),
        tenant: event.tenant.clone(),
        source: event.source.clone(),
        time: event.time,
        priority: match event.priority {
            Priority::Critical => types::Priority::Critical,
            Priority::High => types::Priority::High,
            Priority::Normal => types::Priority::Normal,
            Priority::Low => types::Priority::Low,
        },
        payload: event.payload.get().to_string(),
        metadata: event
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        key: event.key.clone(),
        attempt,
    }
}

#[cfg(test)]
mod tests {
    use std::panic::{AssertUnwindSafe, catch_unwind};

    use super::*;
    use crate::kv::MemoryKv;

    #[test]
    fn the_kv_loan_ends_with_the_call_even_on_unwind() {
        let engine = wasmtime::Engine::default();
        let mut store = Store::new(&engine, HostState::new(&Limits::default()));
        let kv = MemoryKv::new();
        with_kv(&mut store, &kv, |s| assert!(s.data().call.kv.is_some()));
        assert!(store.data().call.kv.is_none());
        let unwound = catch_unwind(AssertUnwindSafe(|| {
            with_kv(&mut store, &kv, |_| panic!("a host function panicked"))
        }));
        assert!(unwound.is_err());
        assert!(store.data().call.kv.is_none());
    }

    fn new_event(payload: &str) -> emit::NewEvent {
        emit::NewEvent {
            type_: "reply".into(),
            tenant: None,
            payload: payload.into(),
            metadata: vec![("a".into(), "1".into())],
            key: Some("k".into()),
            priority: Some(types::Priority::High),
        }
    }

    #[test]
    fn emitted_event_defaults_to_the_delivered_tenant() {
        let input = to_event_input(new_event(r#"{"x":1}"#), "acme").unwrap();
        assert_eq!(input.tenant, "acme");
        assert_eq!(input.priority, Priority::High);
        assert_eq!(input.payload.unwrap().get(), r#"{"x":1}"#);
        let mut same = new_event("{}");
        same.tenant = Some("acme".into());
        same.priority = None;
        let input = to_event_input(same, "acme").unwrap();
        assert_eq!(input.tenant, "acme");
        assert_eq!(input.priority, Priority::Normal);
    }

    #[test]
    fn a_delivery_emits_only_into_its_own_tenant() {
        for foreign in ["zeta", "", "ACME", "acme "] {
            let mut other = new_event("{}");
            other.tenant = Some(foreign.into());
            let err = to_event_input(other, "acme").unwrap_err();
            assert!(err.contains("only into that tenant"), "{foreign:?}: {err}");
        }
        // An event without a tenant (only an unscoped producer sends one)
        // may fan out into tenants.
        let mut fan_out = new_event("{}");
        fan_out.tenant = Some("zeta".into());
        assert_eq!(to_event_input(fan_out, "").unwrap().tenant, "zeta");
    }

    #[test]
    fn emitted_events_follow_producer_rules() {
        let err = to_event_input(new_event("{not json"), "").unwrap_err();
        assert!(err.contains("payload"), "{err}");
        let mut bad_type = new_event("{}");
        bad_type.type_ = "has space".into();
        let err = to_event_input(bad_type, "").unwrap_err();
        assert!(err.contains("type"), "{err}");
        let mut dup = new_event("{}");
        dup.metadata.push(("a".into(), "2".into()));
        let err = to_event_input(dup, "").unwrap_err();
        assert!(err.contains("twice"), "{err}");
        let huge = format!("\"{}\"", "x".repeat(event::bounds::DEFAULT_PAYLOAD_BYTES));
        let err = to_event_input(new_event(&huge), "").unwrap_err();
        assert!(err.contains("limit"), "{err}");
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = to_event_input(new_event(&deep), "").unwrap_err();
        assert!(err.contains("levels deep"), "{err}");
        let mut many = new_event("{}");
        many.metadata = vec![(String::new(), String::new()); 1_000];
        let err = to_event_input(many, "").unwrap_err();
        assert!(err.contains("1000 entries"), "{err}");
    }

    #[test]
    fn emitted_bytes_count_text_and_overheads() {
        let mut e = new_event("{}");
        // "reply" + "{}" + "k" + "a" + "1", one entry.
        assert_eq!(emit_size(&e), 10 + EMIT_OVERHEAD + EMIT_ENTRY_OVERHEAD);
        e.metadata = vec![(String::new(), String::new()); 1_000_000];
        e.key = None;
        assert_eq!(
            emit_size(&e),
            7 + EMIT_OVERHEAD + 1_000_000 * EMIT_ENTRY_OVERHEAD
        );
    }
}
