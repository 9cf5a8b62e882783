//! The routing table: every deployed handler's active version, resolved
//! limits, config and the content hash of its code, plus the resident set
//! of compiled modules ([`super::resident`]). Start-up and redeploys read
//! only what routing needs; a handler's compiled code is loaded when a
//! delivery first needs it, from the store's compiled-code cache (a mapped
//! file), and evicted again when it has been least recently used and the
//! resident budget is exceeded. Only a cache miss (an engine upgrade)
//! compiles, and the result is cached.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::event::Event;
use crate::limits::Limits;
use crate::manifest::{Capability, Manifest};
use crate::runtime::{HandlerModule, Runtime};
use crate::store::{HandlerRecord, Store};

use super::DispatchError;
use super::builtin::BuiltinHandler;
use super::metrics::Metrics;
use super::queue::Gate;
use super::resident::{Resident, ResidentBudget};

/// A handler ready to receive deliveries.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub name: String,
    /// The record's `incarnation`: the shared KV's keys carry it.
    pub incarnation: String,
    pub version: u32,
    pub manifest: Manifest,
    pub limits: Limits,
    /// The current config as JSON text (what `config.get` returns).
    pub config: String,
    pub enabled: bool,
    pub code: Code,
}

/// What runs a handler's deliveries.
#[derive(Clone, Debug)]
pub(crate) enum Code {
    /// A deployed component, by content hash; its module is resident only
    /// while in use ([`Registry::module`]).
    Wasm(String),
    /// A handler implemented by the host ([`super::builtin`]).
    Builtin(Arc<dyn BuiltinHandler>),
}

/// The handlers by name, how many of them are enabled (the scheduler asks
/// for every job it looks at), and who subscribes to which tenant, so that
/// routing an event looks at the handlers of its tenant and those of every
/// tenant, not at every handler deployed.
#[derive(Debug, Default)]
struct Table {
    map: HashMap<String, Arc<Loaded>>,
    enabled: usize,
    by_tenant: HashMap<String, BTreeSet<String>>,
    every_tenant: BTreeSet<String>,
}

impl Table {
    fn put(&mut self, loaded: Arc<Loaded>) {
        self.take(&loaded.name);
        self.enabled += usize::from(loaded.enabled);
        let tenants = &loaded.manifest.subscription.tenants;
        if tenants.is_empty() {
            self.every_tenant.insert(loaded.name.clone());
        }
        for t in tenants {
            self.by_tenant
                .entry(t.clone())
                .or_default()
                .insert(loaded.name.clone());
        }
        self.map.insert(loaded.name.clone(), loaded);
    }

    fn take(&mut self, name: &str) -> Option<Arc<Loaded>> {
        let old = self.map.remove(name)?;
        self.enabled -= usize::from(old.enabled);
        self.every_tenant.remove(name);
        for t in &old.manifest.subscription.tenants {
            if let Some(names) = self.by_tenant.get_mut(t) {
                names.remove(name);
                if names.is_empty() {
                    self.by_tenant.remove(t);
                }
            }
        }
        Some(old)
    }

    /// Handlers that may take events of `tenant`, by name, in order.
    fn candidates<'a>(&'a self, tenant: &str) -> impl Iterator<Item = &'a Arc<Loaded>> + 'a {
        let own = self.by_tenant.get(tenant).into_iter().flatten();
        let mut names: Vec<&String> = own.chain(self.every_tenant.iter()).collect();
        names.sort();
        names.dedup();
        names.into_iter().filter_map(|n| self.map.get(n))
    }
}

/// How much compiled code is resident, for `/v1/stats`.
#[derive(Clone, Copy, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Residency {
    /// Handlers (deployed components) whose code is loaded.
    pub handlers: usize,
    /// Handlers routed to, resident or not.
    pub deployed: usize,
    /// Distinct compiled modules loaded (handlers with equal bytes share one).
    pub modules: usize,
    /// Bytes of compiled code loaded.
    pub code_bytes: u64,
    /// `[runtime] resident_handlers`.
    pub budget_modules: usize,
    /// `[runtime] resident_mb`, in bytes.
    pub budget_bytes: u64,
    /// Modules loaded since start (from the compiled-code cache, or
    /// compiled on a cache miss), deploys included.
    pub loads: u64,
    /// Modules evicted since start.
    pub evictions: u64,
    /// Mean time of a load when a delivery needed the code (map the cached
    /// file, link), in microseconds; absent before the first such load
    /// (a deploy loads its code without being timed here).
    pub load_mean_us: Option<u64>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Registry {
    handlers: RwLock<Table>,
    /// Loaded modules by content hash: versions and handlers sharing code
    /// share one compiled module.
    resident: Mutex<Resident<HandlerModule>>,
    budget: ResidentBudget,
}

impl Registry {
    pub fn new(budget: ResidentBudget) -> Registry {
        Registry {
            handlers: RwLock::default(),
            resident: Mutex::new(Resident::new(budget)),
            budget,
        }
    }

    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.read().map.get(name).cloned()
    }

    /// Whether `name` is a loaded built-in handler.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.read()
            .map
            .get(name)
            .is_some_and(|h| matches!(h.code, Code::Builtin(_)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.handlers.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Table> {
        self.handlers.write().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, loaded: Loaded) {
        self.write().put(Arc::new(loaded));
    }

    pub fn remove(&self, name: &str) {
        self.write().take(name);
    }

    /// Removes `name` only if its entry is still `loaded` (not replaced by
    /// a deploy or refresh meanwhile).
    pub fn remove_if_current(&self, loaded: &Arc<Loaded>) {
        let mut table = self.write();
        if table
            .map
            .get(&loaded.name)
            .is_some_and(|cur| Arc::ptr_eq(cur, loaded))
        {
            table.take(&loaded.name);
        }
    }

    pub fn len(&self) -> usize {
        self.read().map.len()
    }

    /// What the scheduler may do with a job for `name`. Jobs for a handler
    /// that is not in the table wait (`Hold`) unless the store no longer
    /// knows it, which `refresh` turns into a removal and the caller into
    /// `Drop` via `deleted`. A runnable handler shares the worker pool
    /// when any other enabled handler is loaded.
    pub fn gate(&self, name: &str, deleted: &dyn Fn(&str) -> bool) -> Gate {
        let table = self.read();
        match table.map.get(name) {
            Some(h) if h.enabled => Gate::Run {
                concurrency: h.manifest.delivery.concurrency,
                ordered: h.manifest.delivery.ordered,
                shared: table.enabled > 1,
            },
            Some(_) => Gate::Hold,
            None if deleted(name) => Gate::Drop,
            None => Gate::Hold,
        }
    }

    /// Names of the enabled handlers whose subscription matches `event`,
    /// sorted.
    pub fn route(&self, event: &Event) -> Vec<String> {
        self.read()
            .candidates(&event.tenant)
            .filter(|h| h.enabled && h.manifest.subscription.matches(event))
            .map(|h| h.name.clone())
            .collect()
    }

    /// How many handlers an event of this type and tenant is routed to
    /// whatever its payload: a lower bound of [`Registry::route`]'s count.
    pub fn routed_at_least(&self, event_type: &str, tenant: &str) -> usize {
        self.read()
            .candidates(tenant)
            .filter(|h| {
                h.enabled
                    && h.manifest
                        .subscription
                        .matches_any_payload(event_type, tenant)
            })
            .count()
    }

    /// The module for a content hash: resident, else loaded from the
    /// store's compiled-code cache, else compiled from the stored component
    /// (and cached). A load is counted and timed in `metrics`; it may evict
    /// the least recently used modules.
    pub fn module(
        &self,
        store: &Store,
        runtime: &Runtime,
        hash: &str,
        caps: &BTreeSet<Capability>,
        metrics: &Metrics,
    ) -> Result<HandlerModule, DispatchError> {
        if let Some(m) = self.resident_lock().get(hash) {
            return Ok(m);
        }
        let started = Instant::now();
        let (module, from_cache) = match load_cached(store, runtime, hash)? {
            Some(m) => (m, true),
            None => {
                let wasm = store
                    .module(hash)?
                    .ok_or_else(|| DispatchError::NotFound(format!("module {hash}")))?;
                let compiled = runtime
                    .compile(&wasm, caps)
                    .map_err(|e| DispatchError::Runtime(e.to_string()))?;
                store.put_compiled(hash, &runtime.fingerprint(), &compiled.serialized)?;
                (compiled.module, false)
            }
        };
        metrics.module_loaded(from_cache);
        metrics.module_load_took(started.elapsed());
        // Loading is the daemon's work, not the handler's: on a worker it
        // does not count towards the delivery's busy time.
        super::cpu_since_last_reading();
        Ok(self.remember_module(hash, module, metrics))
    }

    /// The module for a content hash if it is resident or in the store's
    /// compiled-code cache; never compiles, and does not make it resident.
    pub fn cached(
        &self,
        store: &Store,
        runtime: &Runtime,
        hash: &str,
    ) -> Result<Option<HandlerModule>, DispatchError> {
        if let Some(m) = self.resident_lock().get(hash) {
            return Ok(Some(m));
        }
        load_cached(store, runtime, hash)
    }

    /// Makes a module resident under its hash, evicting the least recently
    /// used past the budget; returns the resident module (an equal one
    /// another thread loaded first wins, so warm instances are shared).
    pub fn remember_module(
        &self,
        hash: &str,
        module: HandlerModule,
        metrics: &Metrics,
    ) -> HandlerModule {
        let bytes = module.code_bytes();
        let mut resident = self.resident_lock();
        let inserted = resident.insert(hash, module, bytes);
        metrics.resident(resident.len(), resident.bytes());
        drop(resident);
        metrics.modules_evicted(inserted.evicted);
        // Dropped outside the lock: unmapping code takes a while.
        drop(inserted.dropped);
        inserted.module
    }

    fn resident_lock(&self) -> std::sync::MutexGuard<'_, Resident<HandlerModule>> {
        self.resident.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How much code is resident now.
    pub fn residency(&self) -> Residency {
        // The only place holding both locks: `resident`, then `handlers`.
        let resident = self.resident_lock();
        let table = self.read();
        let mut handlers = 0;
        let mut deployed = 0;
        for h in table.map.values() {
            if let Code::Wasm(hash) = &h.code {
                deployed += 1;
                handlers += usize::from(resident.contains(hash));
            }
        }
        Residency {
            handlers,
            deployed,
            modules: resident.len(),
            code_bytes: resident.bytes(),
            budget_modules: self.budget.modules,
            budget_bytes: self.budget.bytes,
            loads: 0,
            evictions: 0,
            load_mean_us: None,
        }
    }

    /// Builds the routing entry for a handler record from the store: its
    /// active version's manifest and limits. Reads no code.
    pub fn load(
        &self,
        store: &Store,
        record: &HandlerRecord,
        defaults: &Limits,
        ceilings: &Limits,
    ) -> Result<Loaded, DispatchError> {
        let version = store
            .version(&record.name, record.active_version)?
            .ok_or_else(|| {
                DispatchError::NotFound(format!(
                    "version {} of handler {}",
                    record.active_version, record.name
                ))
            })?;
        let limits = defaults
            .with_overrides(&version.manifest.limits, ceilings)
            .map_err(DispatchError::Invalid)?;
        Ok(Loaded {
            name: record.name.clone(),
            incarnation: record.incarnation.clone(),
            version: version.version,
            config: serde_json::to_string(&record.config).unwrap_or_else(|_| "{}".into()),
            manifest: version.manifest,
            limits,
            enabled: record.enabled,
            code: Code::Wasm(version.module_hash),
        })
    }

    /// The module of a specific (possibly inactive) version.
    pub fn version_module(
        &self,
        store: &Store,
        runtime: &Runtime,
        name: &str,
        version: u32,
        metrics: &Metrics,
    ) -> Result<HandlerModule, DispatchError> {
        let v = store.version(name, version)?.ok_or_else(|| {
            DispatchError::NotFound(format!("version {version} of handler {name}"))
        })?;
        self.module(
            store,
            runtime,
            &v.module_hash,
            &v.manifest.capabilities,
            metrics,
        )
    }
}

/// Loads cached compiled code, mapped from the store's file. `None` when
/// nothing is cached for this engine; code the runtime refuses is reported,
/// dropped from the cache and treated as not cached, so it is compiled
/// again.
fn load_cached(
    store: &Store,
    runtime: &Runtime,
    hash: &str,
) -> Result<Option<HandlerModule>, DispatchError> {
    let fingerprint = runtime.fingerprint();
    let Some(path) = store.compiled_file(hash, &fingerprint)? else {
        return Ok(None);
    };
    match runtime.load_precompiled_file(&path) {
        Ok(m) => Ok(Some(m)),
        Err(e) => {
            tracing::warn!(hash, error = %e, "Cached compiled code did not load; recompiling");
            store.discard_compiled_file(hash, &fingerprint);
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::EventInput;

    fn handler(name: &str, tenants: &[&str], enabled: bool) -> Loaded {
        let manifest = Manifest::from_json(
            &serde_json::json!({
                "name": name,
                "subscription": {"events": ["message"], "tenants": tenants},
            })
            .to_string(),
        )
        .unwrap();
        Loaded {
            name: name.into(),
            incarnation: String::new(),
            version: 1,
            manifest,
            limits: Limits::default(),
            config: "{}".into(),
            enabled,
            code: Code::Wasm(format!("hash-{name}")),
        }
    }

    fn event(event_type: &str, tenant: &str) -> Event {
        let mut input = EventInput::new(event_type, &serde_json::json!({}));
        input.tenant = tenant.into();
        input.accept("test", 0, 1 << 20).unwrap()
    }

    #[test]
    fn routes_by_tenant_exactly_like_a_full_scan() {
        let r = Registry::new(ResidentBudget::default());
        r.insert(handler("all", &[], true));
        r.insert(handler("acme", &["acme"], true));
        r.insert(handler("both", &["acme", "globex"], true));
        r.insert(handler("off", &["acme"], false));
        let route = |ty: &str, t: &str| r.route(&event(ty, t));
        assert_eq!(route("message", "acme"), ["acme", "all", "both"]);
        assert_eq!(route("message", "globex"), ["all", "both"]);
        assert_eq!(route("message", ""), ["all"]);
        assert!(route("reaction.add", "acme").is_empty());
        // A redeploy with other tenants moves the handler in the index.
        r.insert(handler("both", &["initech"], true));
        assert_eq!(route("message", "acme"), ["acme", "all"]);
        assert_eq!(route("message", "initech"), ["all", "both"]);
        r.insert(handler("all", &["acme"], true));
        assert_eq!(route("message", "globex"), Vec::<String>::new());
        r.remove("acme");
        assert_eq!(route("message", "acme"), ["all"]);
        // Enabling counts for the scheduler's `shared` flag.
        let gate = |n: &str| r.gate(n, &|_| false);
        assert!(matches!(gate("all"), Gate::Run { shared: true, .. }));
        r.remove("both");
        assert!(matches!(gate("all"), Gate::Run { shared: false, .. }));
        assert!(matches!(gate("off"), Gate::Hold));
        assert!(matches!(gate("gone"), Gate::Hold));
        assert!(matches!(r.gate("gone", &|_| true), Gate::Drop));
    }

    #[test]
    fn the_handlers_sure_to_be_routed_are_those_without_payload_filters() {
        let r = Registry::new(ResidentBudget::default());
        r.insert(handler("all", &[], true));
        r.insert(handler("acme", &["acme"], true));
        r.insert(handler("off", &["acme"], false));
        // A handler of `acme`'s `message` events with this filter.
        let filtered = |name: &str, filter: serde_json::Value| {
            let mut h = handler(name, &["acme"], true);
            h.manifest = Manifest::from_json(
                &serde_json::json!({
                    "name": name,
                    "subscription": {"events": ["message"], "tenants": ["acme"],
                        "filters": [filter]},
                })
                .to_string(),
            )
            .unwrap();
            h
        };
        r.insert(filtered(
            "filtered",
            serde_json::json!({"kind": "equals", "pointer": "/a", "value": 1}),
        ));
        r.insert(filtered(
            "aged",
            serde_json::json!({"kind": "max_age", "max_age_ms": 1000}),
        ));
        // `filtered` is routed an event whose `/a` is 1, and only then.
        assert_eq!(r.route(&event("message", "acme")), ["acme", "aged", "all"]);
        assert_eq!(r.routed_at_least("message", "acme"), 3);
        assert_eq!(r.routed_at_least("message", "globex"), 1);
        assert_eq!(r.routed_at_least("reaction.add", "acme"), 0);
    }

    #[test]
    fn a_stale_entry_is_not_removed_over_a_newer_one() {
        let r = Registry::new(ResidentBudget::default());
        r.insert(handler("h", &[], true));
        let old = r.get("h").unwrap();
        r.insert(handler("h", &["acme"], true));
        r.remove_if_current(&old);
        assert!(r.get("h").is_some(), "the redeployed entry stays");
        let current = r.get("h").unwrap();
        r.remove_if_current(&current);
        assert!(r.get("h").is_none());
        assert_eq!(r.residency().deployed, 0);
    }
}
