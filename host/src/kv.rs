//! The handler key-value store as the runtime sees it: the [`Kv`] trait the
//! `hookbox:handler/kv` imports call, the entry encoding (value + expiry)
//! shared by every backend, and [`MemoryKv`] for `hookbox run` and tests.
//! The durable backend lives in `store` (sled).
//!
//! Every handler has one namespace per tenant ([`Namespace`]); the runtime
//! builds the namespace from the delivery, never from guest input, so a
//! guest cannot name another handler's or tenant's keys.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::event::now_ms;

/// Whose keys: one handler, one tenant.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace {
    /// The handler name.
    pub handler: String,
    /// The tenant of the event being handled.
    pub tenant: String,
}

/// A storage failure below the KV interface (not a guest mistake).
#[derive(Debug, thiserror::Error)]
#[error("kv storage failed: {0}")]
pub struct KvError(pub String);

/// The operations of `hookbox:handler/kv`. Implementations must be atomic
/// per call (increment and compare-and-swap in particular).
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
    ) -> Result<(), KvError>;
    /// Deletes a key; whether a live value existed.
    fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError>;
    /// Adds `delta` to the decimal counter at `key`, saturating; the new value.
    fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError>;
    /// Replaces the value if the live value equals `expected`.
    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError>;
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

/// The live value of a stored entry, or `None` when it has expired (or is
/// too short to be an entry, which only a corrupted store produces).
pub fn decode_entry(entry: &[u8], now: u64) -> Option<&[u8]> {
    let (head, value) = entry.split_at_checked(8)?;
    let expiry = u64::from_be_bytes(head.try_into().ok()?);
    (expiry == 0 || expiry > now).then_some(value)
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

/// An in-memory [`Kv`]; state is lost with the process.
#[derive(Debug, Default)]
pub struct MemoryKv {
    entries: Mutex<HashMap<(Namespace, String), Vec<u8>>>,
}

impl MemoryKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<R>(&self, f: impl FnOnce(&mut HashMap<(Namespace, String), Vec<u8>>) -> R) -> R {
        // A poisoned lock means a panic elsewhere mid-update of a plain map;
        // the map itself is still consistent, so keep serving.
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl Kv for MemoryKv {
    fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        let now = now_ms();
        Ok(self.with(|m| {
            m.get(&(ns.clone(), key.to_string()))
                .and_then(|e| decode_entry(e, now).map(<[u8]>::to_vec))
        }))
    }

    fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> Result<(), KvError> {
        let entry = encode_entry(value, ttl_ms, now_ms());
        self.with(|m| m.insert((ns.clone(), key.to_string()), entry));
        Ok(())
    }

    fn delete(&self, ns: &Namespace, key: &str) -> Result<bool, KvError> {
        let now = now_ms();
        Ok(self.with(|m| {
            m.remove(&(ns.clone(), key.to_string()))
                .is_some_and(|e| decode_entry(&e, now).is_some())
        }))
    }

    fn increment(&self, ns: &Namespace, key: &str, delta: i64) -> Result<i64, KvError> {
        let now = now_ms();
        Ok(self.with(|m| {
            let k = (ns.clone(), key.to_string());
            let next = increment_value(m.get(&k).and_then(|e| decode_entry(e, now)), delta);
            m.insert(k, encode_entry(next.to_string().as_bytes(), None, now));
            next
        }))
    }

    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool, KvError> {
        let now = now_ms();
        Ok(self.with(|m| {
            let k = (ns.clone(), key.to_string());
            let current = m.get(&k).and_then(|e| decode_entry(e, now));
            if current != expected {
                return false;
            }
            match new {
                Some(v) => m.insert(k, encode_entry(v, None, now)),
                None => m.remove(&k),
            };
            true
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(tenant: &str) -> Namespace {
        Namespace {
            handler: "h".into(),
            tenant: tenant.into(),
        }
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
        kv.set(&ns("a"), "k", b"1", None).unwrap();
        assert_eq!(kv.get(&ns("a"), "k").unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(kv.get(&ns("b"), "k").unwrap(), None);
        assert!(!kv.delete(&ns("b"), "k").unwrap());
        assert!(kv.delete(&ns("a"), "k").unwrap());
    }

    #[test]
    fn memory_kv_cas_and_counter() {
        let kv = MemoryKv::new();
        let n = ns("");
        assert!(kv.compare_and_swap(&n, "k", None, Some(b"x")).unwrap());
        assert!(!kv.compare_and_swap(&n, "k", None, Some(b"y")).unwrap());
        assert!(kv.compare_and_swap(&n, "k", Some(b"x"), None).unwrap());
        assert_eq!(kv.get(&n, "k").unwrap(), None);
        assert_eq!(kv.increment(&n, "c", 2).unwrap(), 2);
        assert_eq!(kv.increment(&n, "c", -5).unwrap(), -3);
        assert_eq!(kv.get(&n, "c").unwrap().as_deref(), Some(&b"-3"[..]));
    }
}
