//! The routing table: every deployed handler's active version, resolved
//! limits, config and loaded module, plus modules of pinned older versions
//! (dead-letter replays). Loading goes through the compiled-code cache in
//! the store, so a restart or a redeploy of the same bytes never recompiles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use crate::event::Event;
use crate::limits::Limits;
use crate::manifest::{Capability, Manifest};
use crate::runtime::{HandlerModule, Runtime};
use crate::store::{HandlerRecord, Store};

use super::DispatchError;
use super::builtin::BuiltinHandler;
use super::queue::Gate;

/// A handler ready to receive deliveries.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub name: String,
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
    /// A deployed component.
    Wasm(HandlerModule),
    /// A handler implemented by the host ([`super::builtin`]).
    Builtin(Arc<dyn BuiltinHandler>),
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    handlers: RwLock<HashMap<String, Arc<Loaded>>>,
    /// Loaded modules by content hash: versions and handlers sharing code
    /// share one compiled module.
    modules: Mutex<HashMap<String, HandlerModule>>,
}

impl Registry {
    pub fn get(&self, name: &str) -> Option<Arc<Loaded>> {
        self.read().get(name).cloned()
    }

    /// Whether `name` is a loaded built-in handler.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.read()
            .get(name)
            .is_some_and(|h| matches!(h.code, Code::Builtin(_)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Loaded>>> {
        self.handlers.read().unwrap_or_else(|p| p.into_inner())
    }

    pub fn insert(&self, loaded: Loaded) {
        let mut map = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        map.insert(loaded.name.clone(), Arc::new(loaded));
    }

    pub fn remove(&self, name: &str) {
        let mut map = self.handlers.write().unwrap_or_else(|p| p.into_inner());
        map.remove(name);
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// What the scheduler may do with a job for `name`. Jobs for a handler
    /// that is not in the table wait (`Hold`) unless the store no longer
    /// knows it, which `refresh` turns into a removal and the caller into
    /// `Drop` via `deleted`. A runnable handler shares the worker pool
    /// when any other enabled handler is loaded.
    pub fn gate(&self, name: &str, deleted: &dyn Fn(&str) -> bool) -> Gate {
        let map = self.read();
        match map.get(name) {
            Some(h) if h.enabled => Gate::Run {
                concurrency: h.manifest.delivery.concurrency,
                ordered: h.manifest.delivery.ordered,
                shared: map.values().any(|o| o.enabled && o.name != h.name),
            },
            Some(_) => Gate::Hold,
            None if deleted(name) => Gate::Drop,
            None => Gate::Hold,
        }
    }

    /// Names of the enabled handlers whose subscription matches `event`.
    pub fn route(&self, event: &Event) -> Vec<String> {
        let mut names: Vec<String> = self
            .read()
            .values()
            .filter(|h| h.enabled && h.manifest.subscription.matches(event))
            .map(|h| h.name.clone())
            .collect();
        names.sort();
        names
    }

    /// Loads a module by content hash: from memory, else from the store's
    /// compiled-code cache, else by compiling the stored component (and
    /// caching the result). Returns whether compilation was avoided.
    pub fn module(
        &self,
        store: &Store,
        runtime: &Runtime,
        hash: &str,
        caps: &std::collections::BTreeSet<Capability>,
    ) -> Result<(HandlerModule, bool), DispatchError> {
        if let Some(m) = self.cached(store, runtime, hash)? {
            return Ok((m, true));
        }
        let wasm = store
            .module(hash)?
            .ok_or_else(|| DispatchError::NotFound(format!("module {hash}")))?;
        let compiled = runtime
            .compile(&wasm, caps)
            .map_err(|e| DispatchError::Runtime(e.to_string()))?;
        store.put_compiled(hash, &runtime.fingerprint(), &compiled.serialized)?;
        self.modules_lock()
            .insert(hash.to_string(), compiled.module.clone());
        Ok((compiled.module, false))
    }

    /// The module for a content hash if it is loaded or in the store's
    /// compiled-code cache; never compiles.
    pub fn cached(
        &self,
        store: &Store,
        runtime: &Runtime,
        hash: &str,
    ) -> Result<Option<HandlerModule>, DispatchError> {
        if let Some(m) = self.modules_lock().get(hash) {
            return Ok(Some(m.clone()));
        }
        let Some(bytes) = store.compiled(hash, &runtime.fingerprint())? else {
            return Ok(None);
        };
        match runtime.load_precompiled(&bytes) {
            Ok(m) => {
                self.modules_lock().insert(hash.to_string(), m.clone());
                Ok(Some(m))
            }
            Err(e) => {
                tracing::warn!(hash, error = %e, "Cached compiled code did not load; recompiling");
                Ok(None)
            }
        }
    }

    /// Remembers a freshly compiled module under its hash.
    pub fn remember_module(&self, hash: &str, module: HandlerModule) {
        self.modules_lock().insert(hash.to_string(), module);
    }

    fn modules_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HandlerModule>> {
        self.modules.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Builds the routing entry for a handler record from the store.
    pub fn load(
        &self,
        store: &Store,
        runtime: &Runtime,
        record: &HandlerRecord,
        defaults: &Limits,
        ceilings: &Limits,
    ) -> Result<(Loaded, bool), DispatchError> {
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
        let (module, from_cache) = self.module(
            store,
            runtime,
            &version.module_hash,
            &version.manifest.capabilities,
        )?;
        let loaded = Loaded {
            name: record.name.clone(),
            version: version.version,
            config: serde_json::to_string(&record.config).unwrap_or_else(|_| "{}".into()),
            manifest: version.manifest,
            limits,
            enabled: record.enabled,
            code: Code::Wasm(module),
        };
        Ok((loaded, from_cache))
    }

    /// The module of a specific (possibly inactive) version.
    pub fn version_module(
        &self,
        store: &Store,
        runtime: &Runtime,
        name: &str,
        version: u32,
    ) -> Result<HandlerModule, DispatchError> {
        let v = store.version(name, version)?.ok_or_else(|| {
            DispatchError::NotFound(format!("version {version} of handler {name}"))
        })?;
        Ok(self
            .module(store, runtime, &v.module_hash, &v.manifest.capabilities)?
            .0)
    }
}
