//! Handlers and their versions: deploy, rollback, enable/disable, config,
//! delete. Every change writes an audit entry in the same transaction.
//!
//! Keys: `handlers` = name; `versions` = `lp(name) u32 version` (so a
//! handler's versions are one prefix, in version order).
//!
//! Administration is serialised by `Inner::admin`: picking the next version
//! number and deleting a handler's keys need scans a transaction cannot do.

use serde_json::json;
use sled::Transactional;

use super::{
    AbortExt, HandlerRecord, Result, SledExt, Store, StoreError, VersionRecord, decode, encode,
    keys, tx_err,
};
use crate::event::now_ms;
use crate::manifest::{self, Manifest};

/// Keys removed per sled batch when a delete sweeps a prefix.
const SWEEP_BATCH: usize = 1000;

pub(super) fn version_key(name: &str, version: u32) -> Vec<u8> {
    let mut k = keys::parts(&[name.as_bytes()]);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

fn bad(e: manifest::InvalidManifest) -> StoreError {
    StoreError::BadInput(e.0)
}

impl Store {
    /// Stores `manifest` as version N+1 of its handler (1 for a new handler)
    /// and makes it active; a new handler starts enabled, an existing one
    /// keeps its enabled state. The handler's config becomes the manifest's.
    /// The module must have been stored with [`Store::put_module`].
    pub fn deploy(
        &self,
        manifest: &Manifest,
        module_hash: &str,
        module_bytes: u64,
        actor: &str,
    ) -> Result<(HandlerRecord, VersionRecord)> {
        let name = manifest.name.as_str();
        manifest::validate_name(name).map_err(bad)?;
        if !self.has_module(module_hash)? {
            return Err(StoreError::NotFound(format!("module {module_hash}")));
        }
        let _admin = self.admin_lock();
        let last = self.versions_raw(name).next_back().transpose()?;
        let version = last.map_or(1, |v| v.version.saturating_add(1));
        let now = now_ms();
        let record = VersionRecord {
            name: name.into(),
            version,
            manifest: manifest.clone(),
            module_hash: module_hash.into(),
            module_bytes,
            created_ms: now,
            deployed_by: actor.into(),
        };
        let vbytes = encode(&record)?;
        let detail = json!({"version": version, "module": module_hash});
        let (akey, aval) = self.audit_record(actor, "deploy", name, detail)?;
        // Used only if the name is new (or was deleted).
        let incarnation = self.new_id();
        let t = self.t();
        let handler = (&t.handlers, &t.versions, &t.audit)
            .transaction(|(handlers, versions, audit)| {
                let h = match handlers.get(name)? {
                    Some(b) => HandlerRecord {
                        active_version: version,
                        config: manifest.config.clone(),
                        updated_ms: now,
                        ..decode("handlers", name.as_bytes(), &b).abort()?
                    },
                    None => HandlerRecord {
                        name: name.into(),
                        active_version: version,
                        enabled: true,
                        disabled_reason: None,
                        config: manifest.config.clone(),
                        created_ms: now,
                        updated_ms: now,
                        incarnation: incarnation.clone(),
                    },
                };
                handlers.insert(name, encode(&h).abort()?)?;
                versions.insert(version_key(name, version), vbytes.as_slice())?;
                audit.insert(akey.as_slice(), aval.as_slice())?;
                Ok(h)
            })
            .map_err(tx_err)?;
        self.admin_flush()?;
        Ok((handler, record))
    }

    /// One handler.
    pub fn handler(&self, name: &str) -> Result<Option<HandlerRecord>> {
        self.t()
            .handlers
            .get(name)
            .sled()?
            .map(|b| decode("handlers", name.as_bytes(), &b))
            .transpose()
    }

    /// Every handler, by name.
    pub fn handlers(&self) -> Result<Vec<HandlerRecord>> {
        self.t()
            .handlers
            .iter()
            .map(|item| {
                let (k, v) = item.sled()?;
                decode("handlers", &k, &v)
            })
            .collect()
    }

    /// One version of a handler.
    pub fn version(&self, name: &str, version: u32) -> Result<Option<VersionRecord>> {
        let key = version_key(name, version);
        self.t()
            .versions
            .get(&key)
            .sled()?
            .map(|b| decode("versions", &key, &b))
            .transpose()
    }

    /// Every version of a handler, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        self.versions_raw(name).collect()
    }

    fn versions_raw(&self, name: &str) -> impl DoubleEndedIterator<Item = Result<VersionRecord>> {
        self.t()
            .versions
            .scan_prefix(keys::parts(&[name.as_bytes()]))
            .map(|item| {
                let (k, v) = item.sled()?;
                decode("versions", &k, &v)
            })
    }

    /// Points the handler at another existing version: `to`, or with `None`
    /// the highest version below the active one. Config is left as it is.
    pub fn rollback(&self, name: &str, to: Option<u32>, actor: &str) -> Result<HandlerRecord> {
        let _admin = self.admin_lock();
        let current = self
            .handler(name)?
            .ok_or_else(|| StoreError::NotFound(format!("handler {name}")))?;
        let target = match to {
            Some(v) => {
                self.version(name, v)?
                    .ok_or_else(|| StoreError::NotFound(format!("version {v} of handler {name}")))?
                    .version
            }
            None => {
                let mut below = self.versions_raw(name).rev().filter(|v| {
                    v.as_ref()
                        .map_or(true, |v| v.version < current.active_version)
                });
                match below.next().transpose()? {
                    Some(v) => v.version,
                    None => {
                        return Err(StoreError::NotFound(format!(
                            "no version of handler {name} before {}",
                            current.active_version
                        )));
                    }
                }
            }
        };
        let detail = json!({"from": current.active_version, "to": target});
        self.update_handler(name, actor, "rollback", detail, |h| {
            h.active_version = target;
        })
    }

    /// Enables or disables a handler; `reason` is kept while disabled.
    pub fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
        reason: Option<&str>,
        actor: &str,
    ) -> Result<HandlerRecord> {
        let _admin = self.admin_lock();
        let action = if enabled { "enable" } else { "disable" };
        let reason = (!enabled).then(|| reason.map(str::to_string)).flatten();
        self.update_handler(name, actor, action, json!({"reason": reason}), |h| {
            h.enabled = enabled;
            h.disabled_reason = reason.clone();
        })
    }

    /// Replaces a handler's config (read by the guest on its next delivery).
    pub fn set_config(
        &self,
        name: &str,
        config: &serde_json::Value,
        actor: &str,
    ) -> Result<HandlerRecord> {
        let len = encode(config)?.len();
        if len > manifest::CONFIG_BYTES_MAX {
            return Err(StoreError::BadInput(format!(
                "config is {len} bytes; the limit is {}",
                manifest::CONFIG_BYTES_MAX
            )));
        }
        let _admin = self.admin_lock();
        self.update_handler(name, actor, "config", json!({"bytes": len}), |h| {
            h.config = config.clone();
        })
    }

    /// Read-modify-write of one handler record plus its audit entry, in one
    /// transaction. Callers hold the admin lock.
    fn update_handler(
        &self,
        name: &str,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
        change: impl Fn(&mut HandlerRecord),
    ) -> Result<HandlerRecord> {
        let (akey, aval) = self.audit_record(actor, action, name, detail)?;
        let now = now_ms();
        let t = self.t();
        let h = (&t.handlers, &t.audit)
            .transaction(|(handlers, audit)| {
                let Some(b) = handlers.get(name)? else {
                    return Err(StoreError::NotFound(format!("handler {name}"))).abort();
                };
                let mut h: HandlerRecord = decode("handlers", name.as_bytes(), &b).abort()?;
                change(&mut h);
                h.updated_ms = now;
                handlers.insert(name, encode(&h).abort()?)?;
                audit.insert(akey.as_slice(), aval.as_slice())?;
                Ok(h)
            })
            .map_err(tx_err)?;
        self.admin_flush()?;
        Ok(h)
    }

    /// Deletes a handler with its versions, KV namespaces, stats, pending
    /// deliveries and dead letters. Modules stay (another handler may share
    /// them); delivery-log lines stay until retention drops them.
    ///
    /// The handler is disabled first and its record removed last, so a crash
    /// midway leaves a disabled handler on which `delete_handler` can simply
    /// be called again. Take it out of routing before calling this, or a
    /// delivery accepted meanwhile may outlive it (`pending` would return it).
    pub fn delete_handler(&self, name: &str, actor: &str) -> Result<()> {
        let _admin = self.admin_lock();
        self.update_handler(name, actor, "disable", json!({"reason": "deleting"}), |h| {
            h.enabled = false;
            h.disabled_reason = Some("deleting".into());
        })?;
        let prefix = keys::parts(&[name.as_bytes()]);
        sweep_prefix(&self.t().versions, &prefix)?;
        self.kv_written()?;
        sweep_prefix(&self.t().kv, &prefix)?;
        self.forget_kv_usage(name);
        self.discard_pending(name)?;
        self.purge_dead_letters(Some(name), None)?;
        self.forget_stats(name)?;
        let (akey, aval) = self.audit_record(actor, "delete", name, json!({}))?;
        let t = self.t();
        (&t.handlers, &t.audit)
            .transaction(|(handlers, audit)| {
                handlers.remove(name)?;
                audit.insert(akey.as_slice(), aval.as_slice())?;
                Ok(())
            })
            .map_err(tx_err)?;
        self.admin_flush()
    }
}

/// Removes every key under `prefix`, in batches; how many.
pub(super) fn sweep_prefix(tree: &sled::Tree, prefix: &[u8]) -> Result<u64> {
    let mut removed = 0u64;
    loop {
        let keys: Vec<_> = tree
            .scan_prefix(prefix)
            .keys()
            .take(SWEEP_BATCH)
            .collect::<sled::Result<_>>()
            .sled()?;
        if keys.is_empty() {
            return Ok(removed);
        }
        let mut batch = sled::Batch::default();
        for k in &keys {
            batch.remove(k.clone());
        }
        tree.apply_batch(batch).sled()?;
        removed += keys.len() as u64;
    }
}

#[cfg(test)]
mod tests;
