//! Handler KV in cluster mode: one JetStream KV bucket, `<prefix>_kv`,
//! shared by every node, with the single-node semantics of `crate::kv`
//! (namespaces, quotas, TTL, atomic increment and compare-and-swap).
//!
//! - **Keys**: `e.<handler>.<tenant>.<key>`, each part `_` + base64url
//!   (no padding) of its bytes, so every handler, tenant and key (whatever
//!   bytes it holds) is one valid token and a namespace's entries are
//!   exactly the keys under `e.<handler>.<tenant>.`. The handler's token
//!   also carries its incarnation (`_<name>=_<incarnation>`; `=` is never
//!   in base64url without padding), so each life of a name has keys of
//!   its own: a delete drops exactly the deleted handler's keys, once this
//!   node's deliveries of it ended, and a late write by one of them never
//!   lands in a handler deployed again under the name. Handlers deployed
//!   before incarnations existed keep the plain `_<name>` token.
//! - **Values**: [`encode_entry`] bytes (expiry + value), as in sled: an
//!   expired entry reads as absent and counts towards its quota until it
//!   is removed (by the periodic sweep, or by a write that would otherwise
//!   be refused), exactly as on one node.
//! - **Atomicity**: every change is a compare-and-set on the key's
//!   revision (create when absent, update at the revision read, delete
//!   expecting it); a lost race reads again and retries, so an increment
//!   or compare-and-swap from two nodes at once behaves as two in turn.
//! - **Quotas**: each namespace's usage is a record, `u.<handler>.<tenant>`,
//!   changed by compare-and-set after each write (made from a scan of the
//!   namespace when missing). A write that would take the namespace past
//!   its quota is refused against that record; writes racing on different
//!   nodes can each pass the check, so a namespace can end up over its
//!   quota by the writes in flight at once (single-node mode checks under a
//!   lock). A node that dies between a write and its usage change leaves
//!   the record off by that write until the sweep, which recounts every
//!   namespace it visits when nothing wrote to it meanwhile.

use std::collections::BTreeMap;

use async_nats::jetstream::{self, kv};
use base64::Engine;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use super::{ClusterError, JetStreamInbox};
use crate::dispatch::SharedKv;
use crate::event::now_ms;
use crate::kv::{
    Kv, KvError, Namespace, Quota, QuotaExceeded, Usage, decode_entry, encode_entry, entry_expiry,
    increment_value,
};
use crate::store::{KvItem, KvPage};

/// Compare-and-set rounds lost in a row before a write gives up.
const CAS_ATTEMPTS: usize = 1000;

pub(super) fn part(bytes: &[u8]) -> String {
    format!(
        "_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

pub(super) fn unpart(token: &str) -> Option<Vec<u8>> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.strip_prefix('_')?)
        .ok()
}

/// The token of a handler's incarnation (see the module docs).
fn handler_token(handler: &str, incarnation: &str) -> String {
    let name = part(handler.as_bytes());
    if incarnation.is_empty() {
        name
    } else {
        format!("{name}={}", part(incarnation.as_bytes()))
    }
}

/// The handler and incarnation a [`handler_token`] stands for.
fn unhandler_token(token: &str) -> Option<(String, String)> {
    let (name, incarnation) = match token.split_once('=') {
        Some((name, inc)) => (name, String::from_utf8(unpart(inc)?).ok()?),
        None => (token, String::new()),
    };
    Some((String::from_utf8(unpart(name)?).ok()?, incarnation))
}

fn ns_tokens(ns: &Namespace) -> String {
    format!(
        "{}.{}",
        handler_token(&ns.handler, &ns.incarnation),
        part(ns.tenant.as_bytes())
    )
}

fn entry_key(ns: &Namespace, key: &[u8]) -> String {
    format!("e.{}.{}", ns_tokens(ns), part(key))
}

fn usage_key(ns: &Namespace) -> String {
    format!("u.{}", ns_tokens(ns))
}

fn storage(what: &str, e: impl std::fmt::Display) -> KvError {
    KvError::Storage(format!("NATS JetStream KV, {what}: {e}"))
}

/// A namespace's usage as stored.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
struct UsageRecord {
    keys: u64,
    bytes: u64,
    /// The earliest expiry of an entry written since the last purge
    /// (a write that would be refused purges first only when it passed).
    next_expiry: Option<u64>,
}

fn entry_bytes(key_len: usize, entry: &[u8]) -> u64 {
    (key_len as u64).saturating_add(entry.len().saturating_sub(8) as u64)
}

impl UsageRecord {
    fn apply(&mut self, key_len: usize, old: Option<&[u8]>, new: Option<&[u8]>) {
        if let Some(o) = old {
            self.keys = self.keys.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(entry_bytes(key_len, o));
        }
        if let Some(n) = new {
            self.keys = self.keys.saturating_add(1);
            self.bytes = self.bytes.saturating_add(entry_bytes(key_len, n));
            if let Some(at) = entry_expiry(n).filter(|&at| at != 0) {
                self.next_expiry = Some(self.next_expiry.map_or(at, |x| x.min(at)));
            }
        }
    }

    fn check(
        &self,
        key_len: usize,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), QuotaExceeded> {
        let mut after = *self;
        after.apply(key_len, old, new);
        if after.keys > quota.keys && after.keys > self.keys {
            return Err(QuotaExceeded::Keys {
                would: after.keys,
                quota: quota.keys,
            });
        }
        if after.bytes > quota.bytes && after.bytes > self.bytes {
            return Err(QuotaExceeded::Bytes {
                would: after.bytes,
                quota: quota.bytes,
            });
        }
        Ok(())
    }
}

/// What a write does to the entry it read.
enum Change {
    Keep,
    Put(Vec<u8>),
    Remove,
}

/// See the module docs.
pub struct ClusterKv {
    handle: Handle,
    kv: kv::Store,
}

impl std::fmt::Debug for ClusterKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterKv")
            .field("bucket", &self.kv.name)
            .finish_non_exhaustive()
    }
}

/// One stored entry: its bytes and revision.
type Read = (Option<Vec<u8>>, Option<u64>);

impl ClusterKv {
    /// Opens (creating when missing) the bucket on the inbox's
    /// connection. Blocking.
    pub fn join(inbox: &JetStreamInbox) -> Result<ClusterKv, ClusterError> {
        let (handle, client, cfg) = inbox.connection();
        let js = jetstream::new(client);
        let cfg = &cfg;
        let kv = handle.block_on(super::journal::bucket(&js, cfg, "kv"))?;
        Ok(ClusterKv { handle, kv })
    }

    /// The entry at `key` (absent or deleted: no bytes) and its revision
    /// (`None`: the key never existed or was purged).
    async fn read(&self, key: &str) -> Result<Read, KvError> {
        let got = self
            .kv
            .entry(key)
            .await
            .map_err(|e| storage("reading", e))?;
        Ok(match got {
            Some(e) if e.operation == kv::Operation::Put => {
                (Some(e.value.to_vec()), Some(e.revision))
            }
            Some(e) => (None, Some(e.revision)),
            None => (None, None),
        })
    }

    /// Writes `new` (or deletes, `None`) at `key` if it is still at
    /// `revision`; false when another write got there first.
    async fn swap(
        &self,
        key: &str,
        had: bool,
        revision: Option<u64>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        match (new, had, revision) {
            (Some(v), true, Some(r)) => match self.kv.update(key, v.to_vec().into(), r).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(storage("writing", e)),
            },
            (Some(v), _, _) => match self.kv.create(key, v.to_vec().into()).await {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(storage("writing", e)),
            },
            (None, true, r) => match self.kv.delete_expect_revision(key, r).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Ok(false),
                Err(e) => Err(storage("deleting", e)),
            },
            (None, false, _) => Ok(true),
        }
    }

    /// Every stored entry of the namespace, expired or not: (key bytes,
    /// entry bytes, revision).
    async fn scan(&self, ns: &Namespace) -> Result<Vec<(Vec<u8>, Vec<u8>, u64)>, KvError> {
        let filter = format!("{}e.{}.>", self.kv.prefix, ns_tokens(ns));
        let mut subjects = self
            .kv
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| storage("listing a namespace", e))?;
        let mut names = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| storage("listing a namespace", e))?;
            if let Some(k) = subject.strip_prefix(self.kv.prefix.as_str()) {
                names.push(k.to_string());
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let Some(key) = name.rsplit('.').next().and_then(unpart) else {
                continue;
            };
            if let (Some(entry), Some(rev)) = self.read(&name).await? {
                out.push((key, entry, rev));
            }
        }
        Ok(out)
    }

    /// The namespace's usage record and its revision, made from a scan
    /// when missing.
    async fn usage_record(
        &self,
        ns: &Namespace,
    ) -> Result<(UsageRecord, Option<u64>, bool), KvError> {
        let key = usage_key(ns);
        if let (Some(b), rev) = self.read(&key).await? {
            let rec = serde_json::from_slice(&b)
                .map_err(|e| KvError::Storage(format!("KV usage record {key}: {e}")))?;
            return Ok((rec, rev, true));
        }
        let mut rec = UsageRecord::default();
        for (k, entry, _) in self.scan(ns).await? {
            rec.apply(k.len(), None, Some(&entry));
        }
        Ok((rec, None, false))
    }

    /// Applies one write's difference to the namespace's usage record.
    async fn account(
        &self,
        ns: &Namespace,
        key_len: usize,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<(), KvError> {
        let key = usage_key(ns);
        for _ in 0..CAS_ATTEMPTS {
            let (mut rec, rev, had) = self.usage_record(ns).await?;
            if had {
                rec.apply(key_len, old, new);
            }
            // Made from a scan: the write is in it already.
            let bytes = serde_json::to_vec(&rec).map_err(|e| KvError::Storage(e.to_string()))?;
            if self.swap(&key, had, rev, Some(&bytes)).await? {
                return Ok(());
            }
        }
        Err(KvError::Storage(format!(
            "KV usage record {key}: too many concurrent writes"
        )))
    }

    /// Removes the namespace's expired entries (each only if unchanged
    /// since it was read), then recounts its usage if nothing else wrote
    /// to the record meanwhile; how many were removed.
    async fn purge(&self, ns: &Namespace) -> Result<u64, KvError> {
        let now = now_ms();
        let (_, urev, had) = self.usage_record(ns).await?;
        let mut kept = UsageRecord::default();
        let mut removed = 0;
        for (key, entry, rev) in self.scan(ns).await? {
            if decode_entry(&entry, now).is_some() {
                kept.apply(key.len(), None, Some(&entry));
                continue;
            }
            if self
                .swap(&entry_key(ns, &key), true, Some(rev), None)
                .await?
            {
                removed += 1;
            } else {
                // Written meanwhile: the recount below would be stale.
                self.reset_usage(ns).await?;
                return Ok(removed);
            }
        }
        let bytes = serde_json::to_vec(&kept).map_err(|e| KvError::Storage(e.to_string()))?;
        if !self.swap(&usage_key(ns), had, urev, Some(&bytes)).await? {
            // Another write changed the record meanwhile: the recount may
            // miss it.
            self.reset_usage(ns).await?;
        }
        Ok(removed)
    }

    /// Drops the namespace's usage record: the next write recounts it
    /// from a scan, which is right whatever happened meanwhile.
    async fn reset_usage(&self, ns: &Namespace) -> Result<(), KvError> {
        self.kv
            .purge(usage_key(ns))
            .await
            .map_err(|e| storage("resetting a usage record", e))
    }

    /// A write: reads the entry, lets `op` decide, checks the quota and
    /// stores it by compare-and-set, again from the read when another
    /// write got there first.
    async fn update<R>(
        &self,
        ns: &Namespace,
        key: &str,
        quota: &Quota,
        mut op: impl FnMut(Option<&[u8]>, u64) -> (Change, R),
    ) -> Result<R, KvError> {
        let k = entry_key(ns, key.as_bytes());
        let key_len = key.len();
        for _ in 0..CAS_ATTEMPTS {
            let (old, rev) = self.read(&k).await?;
            let now = now_ms();
            let live = old.as_deref().and_then(|e| decode_entry(e, now));
            let (change, result) = op(live, now);
            let new = match change {
                Change::Keep => return Ok(result),
                Change::Remove if old.is_none() => return Ok(result),
                Change::Put(entry) => Some(entry),
                Change::Remove => None,
            };
            let (usage, _, _) = self.usage_record(ns).await?;
            if let Err(exceeded) = usage.check(key_len, old.as_deref(), new.as_deref(), quota) {
                let may_hold_expired = usage.next_expiry.is_some_and(|at| at <= now);
                if !may_hold_expired {
                    return Err(exceeded.into());
                }
                self.purge(ns).await?;
                let (usage, _, _) = self.usage_record(ns).await?;
                let (old, _) = self.read(&k).await?;
                usage.check(key_len, old.as_deref(), new.as_deref(), quota)?;
                continue;
            }
            if self.swap(&k, old.is_some(), rev, new.as_deref()).await? {
                self.account(ns, key_len, old.as_deref(), new.as_deref())
                    .await?;
                return Ok(result);
            }
        }
        Err(KvError::Storage(format!(
            "KV key {key}: {CAS_ATTEMPTS} concurrent writes in a row"
        )))
    }

    /// Every namespace with an entry in the bucket.
    async fn namespaces(&self) -> Result<Vec<Namespace>, KvError> {
        let filter = format!("{}e.>", self.kv.prefix);
        let mut subjects = self
            .kv
            .stream
            .info_with_subjects(&filter)
            .await
            .map_err(|e| storage("listing the namespaces", e))?;
        let mut out = std::collections::BTreeSet::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| storage("listing the namespaces", e))?;
            let mut parts = subject.rsplit('.').skip(1);
            let (Some(t), Some(h)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Some(t), Some((handler, incarnation))) = (unpart(t), unhandler_token(h)) else {
                continue;
            };
            if let Ok(tenant) = String::from_utf8(t) {
                out.insert((handler, tenant, incarnation));
            }
        }
        Ok(out
            .into_iter()
            .map(|(handler, tenant, incarnation)| Namespace {
                handler,
                tenant,
                incarnation,
            })
            .collect())
    }
}

impl SharedKv for ClusterKv {
    /// Removes expired entries in every namespace (run with retention, as
    /// `Store::sweep_expired_kv`); how many. Blocking.
    fn sweep(&self) -> Result<u64, KvError> {
        self.handle.block_on(async {
            let mut removed = 0;
            for ns in self.namespaces().await? {
                removed += self.purge(&ns).await?;
            }
            Ok(removed)
        })
    }

    /// Drops every entry and usage record of one incarnation of `handler`
    /// (it was deleted). Blocking.
    fn drop_handler(&self, handler: &str, incarnation: &str) -> Result<(), KvError> {
        let h = handler_token(handler, incarnation);
        self.handle.block_on(async {
            for filter in [format!("e.{h}.>"), format!("u.{h}.>")] {
                self.kv
                    .stream
                    .purge()
                    .filter(format!("{}{filter}", self.kv.prefix))
                    .await
                    .map_err(|e| storage("dropping a deleted handler's keys", e))?;
            }
            Ok(())
        })
    }

    /// The live entries of a namespace whose keys start with `prefix`, in
    /// key order, after `cursor`, at most `limit` (as `Store::kv_list`).
    /// Blocking.
    fn list(
        &self,
        ns: &Namespace,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        let now = now_ms();
        let all = self.handle.block_on(self.scan(ns))?;
        let sorted: BTreeMap<Vec<u8>, Vec<u8>> = all
            .into_iter()
            .filter(|(k, _, _)| k.starts_with(prefix.as_bytes()))
            .filter(|(k, _, _)| cursor.is_none_or(|c| k.as_slice() > c.as_bytes()))
            .map(|(k, e, _)| (k, e))
            .collect();
        let mut page = KvPage::default();
        for (k, e) in sorted {
            if let Some(item) = crate::store::kv_item(&k, &e, now) {
                page.entries.push(item);
                if page.entries.len() == limit {
                    page.next_cursor = page.entries.last().map(|e| e.key.clone());
                    break;
                }
            }
        }
        Ok(page)
    }

    /// One live entry (as `Store::kv_get`). Blocking.
    fn item(&self, ns: &Namespace, key: &str) -> Result<Option<KvItem>, KvError> {
        let (entry, _) = self
            .handle
            .block_on(self.read(&entry_key(ns, key.as_bytes())))?;
        Ok(entry.and_then(|e| crate::store::kv_item(key.as_bytes(), &e, now_ms())))
    }
}

impl Kv for ClusterKv {
    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let (entry, _) = self
            .handle
            .block_on(self.read(&entry_key(ns, key.as_bytes())))?;
        Ok(entry.and_then(|e| decode_entry(&e, now_ms()).map(<[u8]>::to_vec)))
    }

    fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
        quota: &Quota,
    ) -> Result<(), KvError> {
        self.handle.block_on(self.update(ns, key, quota, |_, now| {
            (Change::Put(encode_entry(value, ttl_ms, now)), ())
        }))
    }

    fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        self.handle
            .block_on(self.update(ns, key, &Quota::UNLIMITED, |live, _| {
                (Change::Remove, live.is_some())
            }))
    }

    fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError> {
        self.handle
            .block_on(self.update(ns, key, quota, |live, now| {
                let next = increment_value(live, delta);
                let entry = encode_entry(next.to_string().as_bytes(), None, now);
                (Change::Put(entry), next)
            }))
    }

    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<bool, KvError> {
        self.handle
            .block_on(self.update(ns, key, quota, |live, now| {
                if live != expected {
                    return (Change::Keep, false);
                }
                match new {
                    Some(v) => (Change::Put(encode_entry(v, None, now)), true),
                    None => (Change::Remove, true),
                }
            }))
    }

    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError> {
        let (rec, _, _) = self.handle.block_on(self.usage_record(ns))?;
        Ok(Usage {
            keys: rec.keys,
            bytes: rec.bytes,
        })
    }

    fn purge_expired(&self, ns: &Namespace) -> Result<u64, KvError> {
        self.handle.block_on(self.purge(ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_valid_tokens_and_namespaces_do_not_overlap() {
        let ns = |h: &str, t: &str| Namespace {
            handler: h.into(),
            tenant: t.into(),
            ..Namespace::default()
        };
        let a = entry_key(&ns("h", ""), b"x.y>*");
        let b = entry_key(&ns("h", "x"), b"");
        let later = Namespace {
            incarnation: "01JA0000000000000000000000".into(),
            ..ns("h", "x")
        };
        let c = entry_key(&later, b"");
        for k in [&a, &b, &c, &usage_key(&ns("h", "")), &usage_key(&later)] {
            assert!(
                k.bytes()
                    .all(|c| c.is_ascii_alphanumeric() || b"-_.=".contains(&c)),
                "{k}"
            );
            assert!(k.split('.').all(|t| !t.is_empty()), "{k}");
        }
        assert_ne!(a, b);
        assert_eq!(unpart(a.rsplit('.').next().unwrap()).unwrap(), b"x.y>*");
        // Each incarnation of a name has its own handler token: a drop's
        // filter `e.<token>.>` reaches one incarnation's keys only, and
        // the sweep reads the namespace back from a key.
        let (plain, with) = (
            handler_token("h", ""),
            handler_token("h", &later.incarnation),
        );
        assert_ne!(plain, with);
        assert!(b.starts_with(&format!("e.{plain}.")) && !c.starts_with(&format!("e.{plain}.")));
        assert!(c.starts_with(&format!("e.{with}.")) && !b.starts_with(&format!("e.{with}.")));
        assert_eq!(
            unhandler_token(&with),
            Some(("h".to_string(), later.incarnation.clone()))
        );
        assert_eq!(
            unhandler_token(&plain),
            Some(("h".to_string(), String::new()))
        );
        assert_eq!(
            unhandler_token("_aA=x"),
            None,
            "not a token this module makes"
        );
        let mut u = UsageRecord::default();
        let e = encode_entry(b"vv", Some(5), 10);
        u.apply(1, None, Some(&e));
        assert_eq!((u.keys, u.bytes, u.next_expiry), (1, 3, Some(15)));
        let q = Quota { bytes: 3, keys: 1 };
        assert!(u.check(1, Some(&e), Some(&e), &q).is_ok(), "no growth");
        assert!(u.check(2, None, Some(&e), &q).is_err());
    }
}
