//! The durable handler KV: [`crate::kv::Kv`] on the `kv` tree.
//!
//! Keys: `lp(handler) lp(tenant) key` — both namespace parts are length
//! prefixed, so no handler, tenant or guest key (whatever bytes it holds)
//! can reach into another namespace. Values are
//! [`encode_entry`](crate::kv::encode_entry) bytes (expiry + value); expired
//! entries read as absent and are removed by [`Store::sweep_expired_kv`].
//! Increment and compare-and-swap are sled compare-and-swap loops, atomic
//! against every other writer of the key.

use super::{Result, SledExt, Store, keys};
use crate::event::now_ms;
use crate::kv::{Kv, KvError, Namespace, decode_entry, encode_entry, increment_value};

fn kv_key(ns: &Namespace, key: &str) -> Vec<u8> {
    let mut k = keys::parts(&[ns.handler.as_bytes(), ns.tenant.as_bytes()]);
    k.extend_from_slice(key.as_bytes());
    k
}

fn kv_err(e: super::StoreError) -> KvError {
    KvError(e.to_string())
}

impl Store {
    /// Removes expired KV entries; how many. Run it periodically (with
    /// retention): expired entries cost disk until then, never correctness.
    pub fn sweep_expired_kv(&self) -> Result<u64> {
        let now = now_ms();
        let tree = &self.t().kv;
        let mut removed = 0;
        for item in tree.iter() {
            let (k, v) = item.sled()?;
            if decode_entry(&v, now).is_none() {
                // Only if unchanged: a concurrent `set` wins.
                if tree
                    .compare_and_swap(&k, Some(&v), None::<&[u8]>)
                    .sled()?
                    .is_ok()
                {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

impl Kv for Store {
    fn get(&self, ns: &Namespace, key: &str) -> std::result::Result<Option<Vec<u8>>, KvError> {
        let entry = self.t().kv.get(kv_key(ns, key)).sled().map_err(kv_err)?;
        Ok(entry.and_then(|e| decode_entry(&e, now_ms()).map(<[u8]>::to_vec)))
    }

    fn set(
        &self,
        ns: &Namespace,
        key: &str,
        value: &[u8],
        ttl_ms: Option<u64>,
    ) -> std::result::Result<(), KvError> {
        let entry = encode_entry(value, ttl_ms, now_ms());
        self.t()
            .kv
            .insert(kv_key(ns, key), entry)
            .sled()
            .map_err(kv_err)
            .map(drop)
    }

    fn delete(&self, ns: &Namespace, key: &str) -> std::result::Result<bool, KvError> {
        let old = self.t().kv.remove(kv_key(ns, key)).sled().map_err(kv_err)?;
        Ok(old.is_some_and(|e| decode_entry(&e, now_ms()).is_some()))
    }

    fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
    ) -> std::result::Result<i64, KvError> {
        let now = now_ms();
        let mut result = 0;
        self.t()
            .kv
            .update_and_fetch(kv_key(ns, key), |cur| {
                result = increment_value(cur.and_then(|e| decode_entry(e, now)), delta);
                Some(encode_entry(result.to_string().as_bytes(), None, now))
            })
            .sled()
            .map_err(kv_err)?;
        Ok(result)
    }

    fn compare_and_swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> std::result::Result<bool, KvError> {
        let k = kv_key(ns, key);
        let tree = &self.t().kv;
        let mut current = tree.get(&k).sled().map_err(kv_err)?;
        loop {
            let now = now_ms();
            let live = current.as_deref().and_then(|e| decode_entry(e, now));
            if live != expected {
                return Ok(false);
            }
            let next = new.map(|v| encode_entry(v, None, now));
            match tree
                .compare_and_swap(&k, current.as_ref(), next)
                .sled()
                .map_err(kv_err)?
            {
                Ok(()) => return Ok(true),
                Err(cas) => current = cas.current,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use std::sync::Arc;

    fn ns(handler: &str, tenant: &str) -> Namespace {
        Namespace {
            handler: handler.into(),
            tenant: tenant.into(),
        }
    }

    #[test]
    fn namespaces_are_isolated() {
        let (_d, s) = temp();
        s.set(&ns("a", "x"), "k", b"ax", None).unwrap();
        s.set(&ns("b", "x"), "k", b"bx", None).unwrap();
        s.set(&ns("a", "y"), "k", b"ay", None).unwrap();
        assert_eq!(
            s.get(&ns("a", "x"), "k").unwrap().as_deref(),
            Some(&b"ax"[..])
        );
        assert_eq!(
            s.get(&ns("b", "x"), "k").unwrap().as_deref(),
            Some(&b"bx"[..])
        );
        assert_eq!(
            s.get(&ns("a", "y"), "k").unwrap().as_deref(),
            Some(&b"ay"[..])
        );
        assert_eq!(s.get(&ns("b", "y"), "k").unwrap(), None);
        // Separator-looking bytes cannot shift a key into another namespace.
        s.set(&ns("a", "x/y"), "k", b"1", None).unwrap();
        assert_eq!(s.get(&ns("a", "x"), "y/k").unwrap(), None);
        s.set(&ns("a", ""), "\0\0\0\u{1}xk", b"2", None).unwrap();
        assert_eq!(
            s.get(&ns("a", "x"), "k").unwrap().as_deref(),
            Some(&b"ax"[..])
        );
        assert!(!s.delete(&ns("b", "y"), "k").unwrap());
        assert!(s.delete(&ns("a", "x"), "k").unwrap());
        assert_eq!(
            s.get(&ns("a", "y"), "k").unwrap().as_deref(),
            Some(&b"ay"[..])
        );
    }

    #[test]
    fn ttl_expiry_and_sweep() {
        let (_d, s) = temp();
        let n = ns("h", "");
        s.set(&n, "short", b"v", Some(1)).unwrap();
        s.set(&n, "long", b"v", Some(60_000)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.get(&n, "short").unwrap(), None);
        assert!(!s.delete(&n, "short").unwrap());
        s.set(&n, "short", b"v", Some(1)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.sweep_expired_kv().unwrap(), 1);
        assert_eq!(s.get(&n, "long").unwrap().as_deref(), Some(&b"v"[..]));
        // An expired value counts as absent for CAS and increment.
        s.set(&n, "c", b"41", Some(1)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.increment(&n, "c", 1).unwrap(), 1);
    }

    #[test]
    fn increment_and_cas_are_atomic_across_threads() {
        let (_d, s) = temp();
        let s = Arc::new(s);
        let n = ns("h", "t");
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (s, n) = (Arc::clone(&s), n.clone());
                std::thread::spawn(move || {
                    let mut won = 0;
                    for _ in 0..200 {
                        s.increment(&n, "count", 1).unwrap();
                        // CAS-increment a second counter: retry until it lands.
                        loop {
                            let cur = s.get(&n, "cas").unwrap();
                            let v = cur
                                .as_deref()
                                .map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                            let next = (v + 1u64).to_string();
                            if s.compare_and_swap(&n, "cas", cur.as_deref(), Some(next.as_bytes()))
                                .unwrap()
                            {
                                won += 1;
                                break;
                            }
                        }
                    }
                    won
                })
            })
            .collect();
        let won: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(won, 1600);
        assert_eq!(s.get(&n, "count").unwrap().as_deref(), Some(&b"1600"[..]));
        assert_eq!(s.get(&n, "cas").unwrap().as_deref(), Some(&b"1600"[..]));
        assert!(s.compare_and_swap(&n, "cas", Some(b"1600"), None).unwrap());
        assert!(!s.compare_and_swap(&n, "cas", Some(b"1600"), None).unwrap());
    }
}
