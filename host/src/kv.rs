//! The handler key-value store as the runtime sees it: the [`Kv`] trait the
//! `hookbox:handler/kv` imports call, the entry encoding (value + expiry)
//! shared by every backend, the per-namespace quota accounting
//! ([`Ledgers`]), and [`MemoryKv`] for `hookbox run` and tests. The durable
//! backend lives in `store` (sled).
//!
//! Every handler has one namespace per tenant ([`Namespace`]); the runtime
//! builds the namespace from the delivery, never from guest input, so a
//! guest cannot name another handler's or tenant's keys.
//!
//! # Quotas
//!
//! A namespace may hold at most [`Quota::keys`] keys and [`Quota::bytes`]
//! bytes, counted as key plus value over every stored entry (the handler's
//! `kv_quota_keys` and `kv_quota_bytes` limits). A write that would take
//! the namespace past either is refused with [`KvError::Quota`]; a write
//! that does not grow it (an overwrite with a value no larger, a delete) is
//! always allowed, so a handler over a lowered quota can still clean up.
//!
//! Backends implement only raw entry storage ([`KvStorage`]); every [`Kv`]
//! operation is implemented once on top of it, under a per-namespace lock
//! that also guards the namespace's [`Usage`]. The usage is not stored: it
//! is computed by scanning the namespace the first time it is written after
//! the process starts (or after its ledger was evicted), then kept exact by
//! applying each write's difference (old entry out, new entry in). So it is
//! always what the backend holds, across restarts and crashes alike.
//! Expired entries count until they are removed: by the periodic sweep, or
//! by the write that would otherwise be refused, which first purges the
//! namespace's expired entries when it may hold any.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::now_ms;
use crate::limits::Limits;

/// Whose keys: one handler, one tenant.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The handler name.
    pub handler: String,
    /// The tenant of the event being handled.
    pub tenant: String,
    /// Which life of the handler's name (its record's `incarnation`), for
    /// a store whose keys outlive a delete's wait for running deliveries:
    /// the cluster's shared KV, where a delivery on another node can still
    /// write after the delete. Empty for the node's own store (a delete
    /// there waits every delivery out) and for handlers deployed before
    /// incarnations existed.
    pub incarnation: String,
}

/// The most a namespace may hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quota {
    /// Bytes: key plus value, summed over every key.
    pub bytes: u64,
    /// Keys.
    pub keys: u64,
}

impl Quota {
    /// No quota (tests and tools that write outside a delivery).
    pub const UNLIMITED: Quota = Quota {
        bytes: u64::MAX,
        keys: u64::MAX,
    };
}

impl Default for Quota {
    /// The quota of [`Limits::default`].
    fn default() -> Self {
        Quota::from(&Limits::default())
    }
}

impl From<&Limits> for Quota {
    fn from(l: &Limits) -> Self {
        Quota {
            bytes: l.kv_quota_bytes,
            keys: l.kv_quota_keys,
        }
    }
}

/// What a namespace holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Stored keys (expired ones included until they are removed).
    pub keys: u64,
    /// Key plus value bytes, summed over the stored keys.
    pub bytes: u64,
}

/// A write refused because the namespace would go past its [`Quota`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuotaExceeded {
    /// Past [`Quota::bytes`].
    #[error(
        "the kv namespace would hold {would} bytes of keys plus values; \
         the quota `kv_quota_bytes` is {quota}"
    )]
    Bytes {
        /// The namespace's bytes had the write gone through.
        would: u64,
        /// The quota.
        quota: u64,
    },
    /// Past [`Quota::keys`].
    #[error("the kv namespace would hold {would} keys; the quota `kv_quota_keys` is {quota}")]
    Keys {
        /// The namespace's keys had the write gone through.
        would: u64,
        /// The quota.
        quota: u64,
    },
}

/// Why a KV operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KvError {
    /// A storage failure below the KV interface (not a guest mistake).
    #[error("kv storage failed: {0}")]
    Storage(String),
    /// The write would take the namespace past its quota; nothing changed.
    #[error(transparent)]
    Quota(#[from] QuotaExceeded),
}

/// The operations of `hookbox:handler/kv`, atomic per call (increment and
/// compare-and-swap in particular). Writes that may grow a namespace take
/// its [`Quota`]. Implemented for every [`KvStorage`].
pub trait Kv: Send + Sync + 'static {
    /// The live value, or `None` when absent or expired.
    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores a value, expiring `ttl_ms` from now when given.
    fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
        quota: &Quota,
    ) -> Result<(), KvError>;
    /// Deletes a key; whether a live value existed.
    fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError>;
    /// Adds `delta` to the decimal counter at `key`, saturating; the new value.
    fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError>;
    /// Replaces the value (or deletes it, `new` = `None`) if the live value
    /// equals `expected`.
    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<bool, KvError>;
    /// What the namespace holds now.
    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError>;
    /// Removes the namespace's expired entries; how many.
    fn purge_expired(&self, ns: &Namespace) -> Result<u64, KvError>;
}

/// Raw entry storage under a [`Kv`]: entries are [`encode_entry`] bytes.
/// Every write goes through the [`Kv`] implementation, under the
/// namespace's lock in [`KvStorage::ledgers`]; code that removes entries
/// any other way must call [`Ledgers::forget_handler`] afterwards.
pub trait KvStorage: Send + Sync + 'static {
    /// The stored entry, expired or not.
    fn read(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError>;
    /// Stores an entry, or removes it (`None`).
    fn write(&self, ns: &Namespace, key: &[u8], entry: Option<&[u8]>) -> Result<(), KvError>;
    /// Calls `each` with the key and entry of every stored entry of the
    /// namespace, expired or not. `each` must not call back into `self`.
    fn scan(&self, ns: &Namespace, each: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), KvError>;
    /// The namespaces' usage accounting.
    fn ledgers(&self) -> &Ledgers;
}

/// Stored form of a value: 8 bytes of big-endian expiry time in ms since the
/// epoch (0 = never), then the value bytes.
pub fn encode_entry(value: &[u8], ttl_ms: Option<u64>, now: u64) -> Vec<u8> {
    let expiry = ttl_ms.map_or(0, |t| now.saturating_add(t).max(1));
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&expiry.to_be_bytes());
    out.extend_from_slice(value);
    out
}

/// The expiry of a stored entry (0 = never), or `None` when it is too short
/// to be an entry (which only a corrupted store produces).
pub(crate) fn entry_expiry(entry: &[u8]) -> Option<u64> {
    let head = entry.first_chunk::<8>()?;
    Some(u64::from_be_bytes(*head))
}

/// The live value of a stored entry, or `None` when it has expired (or is
/// too short to be an entry, which only a corrupted store produces).
pub fn decode_entry(entry: &[u8], now: u64) -> Option<&[u8]> {
    let expiry = entry_expiry(entry)?;
    (expiry == 0 || expiry > now).then(|| &entry[8..])
}

/// The counter after adding `delta` to a current value; values that are not
/// a decimal `i64` count as 0, and the sum saturates.
pub fn increment_value(current: Option<&[u8]>, delta: i64) -> i64 {
    current
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or(0)
        .saturating_add(delta)
}

/// The bytes an entry counts for: key plus value.
fn entry_bytes(key_len: usize, entry: &[u8]) -> u64 {
    (key_len as u64).saturating_add(entry.len().saturating_sub(8) as u64)
}

/// One namespace's accounting: exactly what the backend stores.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ledger {
    usage: Usage,
    /// No stored entry expires before this (ms since the epoch); `None`
    /// when none expires. A lower bound: removals leave it as it is.
    next_expiry: Option<u64>,
}

impl Ledger {
    fn add(&mut self, key_len: usize, entry: &[u8]) {
        self.usage.keys = self.usage.keys.saturating_add(1);
        self.usage.bytes = self.usage.bytes.saturating_add(entry_bytes(key_len, entry));
        if let Some(at) = entry_expiry(entry).filter(|&at| at != 0) {
            self.next_expiry = Some(self.next_expiry.map_or(at, |n| n.min(at)));
        }
    }

    fn remove(&mut self, key_len: usize, entry: &[u8]) {
        self.usage.keys = self.usage.keys.saturating_sub(1);
        self.usage.bytes = self.usage.bytes.saturating_sub(entry_bytes(key_len, entry));
    }

    /// Accounts for the entry at a key going from `old` to `new`.
    fn replace(&mut self, key_len: usize, old: Option<&[u8]>, new: Option<&[u8]>) {
        if let Some(old) = old {
            self.remove(key_len, old);
        }
        if let Some(new) = new {
            self.add(key_len, new);
        }
    }

    /// Refuses a change that would grow the namespace past `quota`; a change
    /// that does not grow it passes even when the namespace is already over.
    fn check(
        &self,
        key_len: usize,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<(), QuotaExceeded> {
        let mut after = self.clone();
        after.replace(key_len, old, new);
        let (now, next) = (self.usage, after.usage);
        if next.keys > quota.keys && next.keys > now.keys {
            return Err(QuotaExceeded::Keys {
                would: next.keys,
                quota: quota.keys,
            });
        }
        if next.bytes > quota.bytes && next.bytes > now.bytes {
            return Err(QuotaExceeded::Bytes {
                would: next.bytes,
                quota: quota.bytes,
            });
        }
        Ok(())
    }

    /// Whether an entry may have expired by `now`.
    fn may_hold_expired(&self, now: u64) -> bool {
        self.next_expiry.is_some_and(|at| at <= now)
    }
}

/// Ledgers kept in memory; past this many, the idle ones are dropped (and
/// recomputed by a scan when their namespace is next written).
const LEDGERS_KEPT: usize = 65_536;

type Slot = Arc<Mutex<Option<Ledger>>>;

/// The usage accounting of a backend's namespaces, one lock per namespace
/// (held for the whole of each write, so writes to one namespace are
/// serialised and the accounting is exact). Each ledger is computed by
/// scanning its namespace on first use, so nothing here needs storing.
#[derive(Debug, Default)]
pub struct Ledgers {
    slots: Mutex<HashMap<Namespace, Slot>>,
}

/// Locks a mutex whose data stays consistent across a panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Ledgers {
    /// The namespace's slot, created empty (not yet computed) if new.
    fn slot(&self, ns: &Namespace) -> Slot {
        let mut slots = lock(&self.slots);
        if let Some(s) = slots.get(ns) {
            return Arc::clone(s);
        }
        if slots.len() >= LEDGERS_KEPT {
            // Slots are handed out only here, under this lock: one nobody
            // else holds is idle, and its ledger can be recomputed later.
            slots.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(slots.entry(ns.clone()).or_default())
    }

    /// Locks a slot. A panic mid-write may have left its ledger behind the
    /// storage, so a poisoned one is recomputed.
    fn lock_slot(slot: &Slot) -> MutexGuard<'_, Option<Ledger>> {
        match slot.lock() {
            Ok(g) => g,
            Err(poisoned) => {
                slot.clear_poison();
                let mut g = poisoned.into_inner();
                *g = None;
                g
            }
        }
    }

    /// Forgets the ledgers of every namespace of `handler`: call it after
    /// removing the handler's entries other than through [`Kv`] (deleting
    /// the handler). Its deliveries must have stopped by then.
    pub fn forget_handler(&self, handler: &str) {
        lock(&self.slots).retain(|ns, _| ns.handler != handler);
    }
}

/// The ledger in `guard`, computed by scanning the namespace if need be.
fn loaded<'g, S: KvStorage + ?Sized>(
    s: &S,
    ns: &Namespace,
    guard: &'g mut Option<Ledger>,
) -> Result<&'g mut Ledger, KvError> {
    if let Some(l) = guard {
        return Ok(l);
    }
    let mut ledger = Ledger::default();
    s.scan(ns, &mut |key, entry| ledger.add(key.len(), entry))?;
    Ok(guard.insert(ledger))
}

/// Removes the namespace's entries that have expired by `now` (and any too
/// short to be entries), keeping `ledger` exact; how many.
fn purge<S: KvStorage + ?Sized>(
    s: &S,
    ns: &Namespace,
    now: u64,
    ledger: &mut Ledger,
) -> Result<u64, KvError> {
    let mut expired = Vec::new();
    let mut kept = Ledger::default();
    s.scan(ns, &mut |key, entry| {
        if decode_entry(entry, now).is_some() {
            kept.add(key.len(), entry);
        } else {
            expired.push((key.to_vec(), entry_bytes(key.len(), entry)));
        }
    })?;
    let removed = expired.len() as u64;
    for (key, bytes) in expired {
        s.write(ns, &key, None)?;
        ledger.usage.keys = ledger.usage.keys.saturating_sub(1);
        ledger.usage.bytes = ledger.usage.bytes.saturating_sub(bytes);
    }
    ledger.next_expiry = kept.next_expiry;
    Ok(removed)
}

/// What an update does to the entry at its key.
enum Change {
    Keep,
    Put(Vec<u8>),
    Remove,
}

/// Runs one write under the namespace's lock: `op` sees the live value and
/// the time, and says what to store. A change that would take the namespace
/// past `quota` is refused, after purging expired entries if there may be
/// any.
fn update<S: KvStorage + ?Sized, R>(
    s: &S,
    ns: &Namespace,
    key: &str,
    quota: &Quota,
    op: impl FnOnce(Option<&[u8]>, u64) -> (Change, R),
) -> Result<R, KvError> {
    let key = key.as_bytes();
    let slot = s.ledgers().slot(ns);
    let mut guard = Ledgers::lock_slot(&slot);
    let ledger = loaded(s, ns, &mut guard)?;
    let now = now_ms();
    let mut old = s.read(ns, key)?;
    let (change, result) = op(old.as_deref().and_then(|e| decode_entry(e, now)), now);
    let new = match change {
        Change::Keep => return Ok(result),
        Change::Remove if old.is_none() => return Ok(result),
        Change::Put(entry) => Some(entry),
        Change::Remove => None,
    };
    if let Err(exceeded) = ledger.check(key.len(), old.as_deref(), new.as_deref(), quota) {
        if !ledger.may_hold_expired(now) {
            return Err(exceeded.into());
        }
        purge(s, ns, now, ledger)?;
        old = s.read(ns, key)?;
        ledger.check(key.len(), old.as_deref(), new.as_deref(), quota)?;
    }
    s.write(ns, key, new.as_deref())?;
    ledger.replace(key.len(), old.as_deref(), new.as_deref());
    Ok(result)
}

impl<S: KvStorage> Kv for S {
    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let entry = self.read(ns, key.as_bytes())?;
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
        update(self, ns, key, quota, |_, now| {
            (Change::Put(encode_entry(value, ttl_ms, now)), ())
        })
    }

    fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        // A delete never grows the namespace: no quota applies.
        update(self, ns, key, &Quota::UNLIMITED, |live, _| {
            (Change::Remove, live.is_some())
        })
    }

    fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, KvError> {
        update(self, ns, key, quota, |live, now| {
            let next = increment_value(live, delta);
            let entry = encode_entry(next.to_string().as_bytes(), None, now);
            (Change::Put(entry), next)
        })
    }

    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
        quota: &Quota,
    ) -> Result<bool, KvError> {
        update(self, ns, key, quota, |live, now| {
            if live != expected {
                return (Change::Keep, false);
            }
            match new {
                Some(v) => (Change::Put(encode_entry(v, None, now)), true),
                None => (Change::Remove, true),
            }
        })
    }

    fn usage(&self, ns: &Namespace) -> Result<Usage, KvError> {
        let slot = self.ledgers().slot(ns);
        let mut guard = Ledgers::lock_slot(&slot);
        Ok(loaded(self, ns, &mut guard)?.usage)
    }

    fn purge_expired(&self, ns: &Namespace) -> Result<u64, KvError> {
        let slot = self.ledgers().slot(ns);
        let mut guard = Ledgers::lock_slot(&slot);
        let ledger = loaded(self, ns, &mut guard)?;
        purge(self, ns, now_ms(), ledger)
    }
}

/// One namespace's entries in a [`MemoryKv`]: key → [`encode_entry`] bytes.
type Entries = HashMap<Vec<u8>, Vec<u8>>;

/// An in-memory [`Kv`]; state is lost with the process.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<Namespace, Entries>>,
    ledgers: Ledgers,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvStorage for MemoryKv {
    fn read(&self, ns: &Namespace, key: &[u8]) -> Result<Option<Vec<u8>>, KvError> {
        Ok(lock(&self.entries)
            .get(ns)
            .and_then(|m| m.get(key))
            .cloned())
    }

    fn write(&self, ns: &Namespace, key: &[u8], entry: Option<&[u8]>) -> Result<(), KvError> {
        let mut entries = lock(&self.entries);
        match entry {
            Some(e) => {
                entries
                    .entry(ns.clone())
                    .or_default()
                    .insert(key.to_vec(), e.to_vec());
            }
            None => {
                if let Some(m) = entries.get_mut(ns) {
                    m.remove(key);
                    if m.is_empty() {
                        entries.remove(ns);
                    }
                }
            }
        }
        Ok(())
    }

    fn scan(&self, ns: &Namespace, each: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), KvError> {
        if let Some(m) = lock(&self.entries).get(ns) {
            for (k, e) in m {
                each(k, e);
            }
        }
        Ok(())
    }

    fn ledgers(&self) -> &Ledgers {
        &self.ledgers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(tenant: &str) -> Namespace {
        Namespace {
            handler: "h".into(),
            tenant: tenant.into(),
            ..Namespace::default()
        }
    }

    const NONE: &Quota = &Quota::UNLIMITED;

    /// The usage a fresh scan of the namespace finds, for comparison with
    /// the ledger kept up to date write by write.
    fn rescanned(kv: &MemoryKv, n: &Namespace) -> Usage {
        let mut l = Ledger::default();
        kv.scan(n, &mut |k, e| l.add(k.len(), e)).unwrap();
        l.usage
    }

    #[test]
    fn entry_expiry() {
        let e = encode_entry(b"v", Some(10), 1000);
        assert_eq!(decode_entry(&e, 1009), Some(&b"v"[..]));
        assert_eq!(decode_entry(&e, 1010), None);
        let forever = encode_entry(b"v", None, 1000);
        assert_eq!(decode_entry(&forever, u64::MAX), Some(&b"v"[..]));
        assert_eq!(decode_entry(b"short", 0), None);
    }

    #[test]
    fn increment_rules() {
        assert_eq!(increment_value(None, 5), 5);
        assert_eq!(increment_value(Some(b"41"), 1), 42);
        assert_eq!(increment_value(Some(b"not a number"), 2), 2);
        assert_eq!(
            increment_value(Some(i64::MAX.to_string().as_bytes()), 1),
            i64::MAX
        );
        assert_eq!(
            increment_value(Some(i64::MIN.to_string().as_bytes()), -1),
            i64::MIN
        );
    }

    #[test]
    fn memory_kv_namespaces_are_separate() {
        let kv = MemoryKv::new();
        kv.set(&ns("a"), "k", b"1", None, NONE).unwrap();
        assert_eq!(kv.get(&ns("a"), "k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get(&ns("b"), "k").unwrap(), None);
        assert!(!kv.delete(&ns("b"), "k").unwrap());
        assert_eq!(kv.usage(&ns("b")).unwrap(), Usage::default());
        assert!(kv.delete(&ns("a"), "k").unwrap());
    }

    #[test]
    fn memory_kv_cas_and_counter() {
        let kv = MemoryKv::new();
        let n = ns("");
        assert!(
            kv.compare_and_swap(&n, "k", None, Some(b"x"), NONE)
                .unwrap()
        );
        assert!(
            !kv.compare_and_swap(&n, "k", None, Some(b"y"), NONE)
                .unwrap()
        );
        assert!(
            kv.compare_and_swap(&n, "k", Some(b"x"), None, NONE)
                .unwrap()
        );
        assert_eq!(kv.get(&n, "k").unwrap(), None);
        assert_eq!(kv.increment(&n, "c", 2, NONE).unwrap(), 2);
        assert_eq!(kv.increment(&n, "c", -5, NONE).unwrap(), -3);
        assert_eq!(kv.get(&n, "c").unwrap().as_deref(), Some(&b"-3"[..]));
    }

    #[test]
    fn usage_counts_keys_plus_values_through_every_write() {
        let kv = MemoryKv::new();
        let n = ns("t");
        let usage = |keys, bytes| Usage { keys, bytes };
        kv.set(&n, "ab", b"12345", None, NONE).unwrap();
        assert_eq!(kv.usage(&n).unwrap(), usage(1, 7));
        // An overwrite replaces the old value's bytes, a TTL costs nothing.
        kv.set(&n, "ab", b"1", Some(60_000), NONE).unwrap();
        assert_eq!(kv.usage(&n).unwrap(), usage(1, 3));
        kv.increment(&n, "c", 9, NONE).unwrap();
        assert_eq!(kv.usage(&n).unwrap(), usage(2, 5));
        kv.increment(&n, "c", 1, NONE).unwrap(); // "10": one byte more
        assert_eq!(kv.usage(&n).unwrap(), usage(2, 6));
        assert!(
            kv.compare_and_swap(&n, "x", None, Some(b"yz"), NONE)
                .unwrap()
        );
        assert_eq!(kv.usage(&n).unwrap(), usage(3, 9));
        // A failed compare-and-swap changes nothing.
        assert!(
            !kv.compare_and_swap(&n, "x", None, Some(b"!"), NONE)
                .unwrap()
        );
        assert_eq!(kv.usage(&n).unwrap(), usage(3, 9));
        assert!(
            kv.compare_and_swap(&n, "x", Some(b"yz"), None, NONE)
                .unwrap()
        );
        assert!(kv.delete(&n, "ab").unwrap());
        assert!(!kv.delete(&n, "ab").unwrap());
        assert_eq!(kv.usage(&n).unwrap(), usage(1, 3));
        assert!(kv.delete(&n, "c").unwrap());
        assert_eq!(kv.usage(&n).unwrap(), Usage::default());
        assert_eq!(kv.usage(&ns("other")).unwrap(), Usage::default());
    }

    #[test]
    fn the_ledger_always_equals_a_fresh_scan() {
        // A deterministic mix of every write over a few keys, with quotas
        // that refuse some of them: after each step, the kept usage is what
        // scanning the namespace finds, and never past the quota.
        let kv = MemoryKv::new();
        let n = ns("t");
        let quota = Quota {
            bytes: 200,
            keys: 6,
        };
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut refused = 0;
        for step in 0..5_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let key = format!("k{}", x % 9);
            let value = vec![b'v'; (x >> 8) as usize % 40];
            let result = match (x >> 16) % 5 {
                0 => kv.set(&n, &key, &value, None, &quota).map(drop),
                1 => kv.delete(&n, &key).map(drop),
                2 => kv
                    .increment(&n, &key, (x >> 24) as i64 % 1000, &quota)
                    .map(drop),
                3 => {
                    let cur = kv.get(&n, &key).unwrap();
                    kv.compare_and_swap(&n, &key, cur.as_deref(), Some(&value), &quota)
                        .map(drop)
                }
                _ => {
                    let cur = kv.get(&n, &key).unwrap();
                    kv.compare_and_swap(&n, &key, cur.as_deref(), None, &quota)
                        .map(drop)
                }
            };
            match result {
                Ok(()) => {}
                Err(KvError::Quota(_)) => refused += 1,
                Err(e) => panic!("step {step}: {e}"),
            }
            let usage = kv.usage(&n).unwrap();
            assert_eq!(usage, rescanned(&kv, &n), "step {step}");
            assert!(usage.bytes <= quota.bytes && usage.keys <= quota.keys);
        }
        assert!(refused > 100, "the quota was exercised: {refused} refusals");
    }

    #[test]
    fn a_write_past_the_quota_is_refused_naming_it() {
        let kv = MemoryKv::new();
        let n = ns("t");
        let quota = Quota { bytes: 10, keys: 2 };
        kv.set(&n, "a", b"1234", None, &quota).unwrap(); // 5 bytes
        kv.set(&n, "b", b"1234", None, &quota).unwrap(); // 10 bytes: at the quota
        let err = kv.set(&n, "c", b"", None, &quota).unwrap_err().to_string();
        assert!(
            err.contains("3 keys") && err.contains("`kv_quota_keys` is 2"),
            "{err}"
        );
        let err = kv
            .set(&n, "a", b"12345", None, &quota)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("11 bytes") && err.contains("`kv_quota_bytes` is 10"),
            "{err}"
        );
        let err = kv.increment(&n, "c", 1, &quota).unwrap_err().to_string();
        assert!(err.contains("kv_quota_keys"), "{err}");
        // A counter growing by a digit is a growing write too.
        let err = kv
            .increment(&n, "a", 9_000, &quota)
            .unwrap_err()
            .to_string();
        assert!(err.contains("kv_quota_bytes"), "{err}");
        // Nothing changed; an overwrite of the same size still fits.
        assert_eq!(kv.get(&n, "a").unwrap().as_deref(), Some(&b"1234"[..]));
        kv.set(&n, "a", b"abcd", None, &quota).unwrap();
        assert!(
            kv.compare_and_swap(&n, "b", Some(b"1234"), Some(b"wxyz"), &quota)
                .unwrap()
        );
        // A delete makes room.
        assert!(kv.delete(&n, "b").unwrap());
        kv.set(&n, "c", b"1234", None, &quota).unwrap();
        assert_eq!(kv.usage(&n).unwrap(), Usage { keys: 2, bytes: 10 });
        // Another namespace has its own quota.
        kv.set(&ns("u"), "a", b"1234", None, &quota).unwrap();
    }

    #[test]
    fn over_a_lowered_quota_only_shrinking_writes_pass() {
        let kv = MemoryKv::new();
        let n = ns("t");
        for k in ["a", "b", "c"] {
            kv.set(&n, k, b"123456789", None, NONE).unwrap();
        }
        let lowered = Quota { bytes: 5, keys: 1 };
        kv.set(&n, "a", b"1", None, &lowered).unwrap();
        assert!(
            kv.compare_and_swap(&n, "b", Some(b"123456789"), None, &lowered)
                .unwrap()
        );
        let err = kv.set(&n, "a", b"12", None, &lowered).unwrap_err();
        assert!(
            matches!(err, KvError::Quota(QuotaExceeded::Bytes { .. })),
            "{err}"
        );
        let err = kv.set(&n, "d", b"", None, &lowered).unwrap_err();
        assert!(
            matches!(err, KvError::Quota(QuotaExceeded::Keys { .. })),
            "{err}"
        );
    }

    #[test]
    fn expired_entries_make_room_when_the_quota_is_reached() {
        let kv = MemoryKv::new();
        let n = ns("t");
        let quota = Quota {
            bytes: 100,
            keys: 2,
        };
        kv.set(&n, "old", b"x", Some(1), &quota).unwrap();
        kv.set(&n, "keep", b"x", None, &quota).unwrap();
        // Expired entries count until removed...
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(kv.usage(&n).unwrap(), Usage { keys: 2, bytes: 9 });
        // ...and a write that would be refused removes them first.
        kv.set(&n, "new", b"x", None, &quota).unwrap();
        assert_eq!(kv.usage(&n).unwrap(), Usage { keys: 2, bytes: 9 });
        assert_eq!(kv.get(&n, "old").unwrap(), None);
        // With nothing expired, the refusal stands.
        let err = kv.set(&n, "more", b"x", Some(60_000), &quota).unwrap_err();
        assert!(matches!(err, KvError::Quota(_)), "{err}");
        // An explicit purge removes only what has expired.
        kv.set(&n, "new", b"x", Some(1), &quota).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(kv.purge_expired(&n).unwrap(), 1);
        assert_eq!(kv.usage(&n).unwrap(), Usage { keys: 1, bytes: 5 });
        assert_eq!(kv.usage(&n).unwrap(), rescanned(&kv, &n));
    }

    #[test]
    fn forgotten_and_evicted_ledgers_are_recomputed_exactly() {
        let kv = MemoryKv::new();
        let n = ns("t");
        kv.set(&n, "a", b"123", None, NONE).unwrap();
        kv.set(&n, "b", b"1", Some(60_000), NONE).unwrap();
        let before = kv.usage(&n).unwrap();
        kv.ledgers().forget_handler("h");
        assert!(lock(&kv.ledgers().slots).is_empty());
        assert_eq!(kv.usage(&n).unwrap(), before);
        // Past `LEDGERS_KEPT` namespaces, the idle ones are dropped.
        for i in 0..LEDGERS_KEPT {
            kv.ledgers().slot(&ns(&i.to_string()));
        }
        let held = kv.ledgers().slot(&ns("held"));
        assert!(
            lock(&kv.ledgers().slots).len() <= 2,
            "idle slots are evicted"
        );
        assert!(lock(&kv.ledgers().slots).contains_key(&ns("held")));
        drop(held);
        assert_eq!(kv.usage(&n).unwrap(), before);
    }
}
