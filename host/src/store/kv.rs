//! The durable handler KV: raw entry storage ([`crate::kv::KvStorage`]) on
//! the `kv` tree; every [`Kv`] operation, quotas included, is implemented
//! once on top of it in `crate::kv`.
//!
//! Keys: `lp(handler) lp(tenant) key` — both namespace parts are length
//! prefixed, so no handler, tenant or guest key (whatever bytes it holds)
//! can reach into another namespace, and a namespace's entries are exactly
//! those under its prefix. Values are
//! [`encode_entry`](crate::kv::encode_entry) bytes (expiry + value); expired
//! entries read as absent and are removed by [`Store::sweep_expired_kv`].
//! A namespace's usage is not stored: it is computed from its entries the
//! first time it is written after the store opens, so it is exact across
//! restarts and crashes (see `crate::kv`).

use std::collections::HashSet;

use super::records::page_size;
use super::{KvItem, KvPage, Result, SledExt, Store, StoreError, keys};
use crate::event::now_ms;
use crate::kv::{Kv, KvError, KvStorage, Ledgers, Namespace, decode_entry};

/// `lp(handler) lp(tenant)`: the prefix of every key of the namespace.
fn ns_prefix(ns: &Namespace) -> Vec<u8> {
    keys::parts(&[ns.handler.as_bytes(), ns.tenant.as_bytes()])
}

fn kv_key(ns: &Namespace, key: &[u8]) -> Vec<u8> {
    let mut k = ns_prefix(ns);
    k.extend_from_slice(key);
    k
}

/// The namespace a `kv` tree key belongs to; `None` if it is not one
/// [`kv_key`] makes (only a corrupted store holds such keys).
fn key_namespace(key: &[u8]) -> Option<Namespace> {
    fn part(rest: &mut &[u8]) -> Option<String> {
        let (bytes, tail) = keys::split_part(rest)?;
        *rest = tail;
        String::from_utf8(bytes.to_vec()).ok()
    }
    let mut rest = key;
    let handler = part(&mut rest)?;
    let tenant = part(&mut rest)?;
    Some(Namespace {
        handler,
        tenant,
        incarnation: String::new(),
    })
}

/// A stored entry as operators see it; `None` once it expired.
pub fn kv_item(key: &[u8], entry: &[u8], now: u64) -> Option<KvItem> {
    let value = decode_entry(entry, now)?;
    let (value, encoding) = match std::str::from_utf8(value) {
        Ok(text) => (text.to_string(), "utf8"),
        Err(_) => (hex::encode(value), "hex"),
    };
    Some(KvItem {
        key: String::from_utf8_lossy(key).into_owned(),
        value,
        encoding: encoding.to_string(),
        expires_ms: crate::kv::entry_expiry(entry).filter(|&e| e != 0),
    })
}

fn kv_err(e: StoreError) -> KvError {
    KvError::Storage(e.to_string())
}

impl Store {
    /// Moves the KV writes not in the `kv` tree yet there, for whatever
    /// reads the tree itself (`kvbehind.rs`).
    pub(super) fn kv_written(&self) -> Result<()> {
        self.inner.kv_behind.write_out(&self.t().kv)
    }

    /// Removes expired KV entries; how many. Run it periodically (with
    /// retention): expired entries cost disk, and count towards their
    /// namespace's quota, until then (a write that would be refused purges
    /// its own namespace first).
    pub fn sweep_expired_kv(&self) -> Result<u64> {
        self.kv_written()?;
        let now = now_ms();
        let tree = &self.t().kv;
        let mut namespaces = HashSet::new();
        let mut removed = 0;
        for item in tree.iter() {
            let (k, v) = item.sled()?;
            if decode_entry(&v, now).is_some() {
                continue;
            }
            match key_namespace(&k) {
                Some(ns) => {
                    namespaces.insert(ns);
                }
                // Not in any namespace, so in no usage either: just drop it.
                None => {
                    tree.remove(&k).sled()?;
                    removed += 1;
                }
            }
        }
        // Under each namespace's lock, keeping its usage exact.
        for ns in namespaces {
            removed += self
                .purge_expired(&ns)
                .map_err(|e| StoreError::Sled(e.to_string()))?;
        }
        Ok(removed)
    }

    /// The live entries of `handler`'s namespace for `tenant` whose keys
    /// start with `prefix`, in key order, after `cursor` (the last key of
    /// the previous page). Read-only: for operators, not for handlers.
    pub fn kv_list(
        &self,
        handler: &str,
        tenant: &str,
        prefix: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> Result<KvPage> {
        self.kv_written()?;
        let limit = page_size(limit);
        let ns = Namespace {
            handler: handler.to_string(),
            tenant: tenant.to_string(),
            incarnation: String::new(),
        };
        let base = ns_prefix(&ns);
        let start = kv_key(&ns, cursor.unwrap_or(prefix).as_bytes());
        let now = now_ms();
        let mut page = KvPage::default();
        for item in self.t().kv.range(start..) {
            let (k, v) = item.sled()?;
            let Some(key) = k.strip_prefix(base.as_slice()) else {
                break;
            };
            if !key.starts_with(prefix.as_bytes()) {
                break;
            }
            if cursor.is_some_and(|c| key == c.as_bytes()) {
                continue;
            }
            let Some(entry) = kv_item(key, &v, now) else {
                continue;
            };
            page.entries.push(entry);
            if page.entries.len() == limit {
                page.next_cursor = page.entries.last().map(|e| e.key.clone());
                break;
            }
        }
        Ok(page)
    }

    /// One live entry of `handler`'s namespace for `tenant`.
    pub fn kv_get(&self, handler: &str, tenant: &str, key: &str) -> Result<Option<KvItem>> {
        let ns = Namespace {
            handler: handler.to_string(),
            tenant: tenant.to_string(),
            incarnation: String::new(),
        };
        let entry = self.kv_entry(&kv_key(&ns, key.as_bytes()))?;
        Ok(entry.and_then(|v| kv_item(key.as_bytes(), &v, now_ms())))
    }

    /// The entry at a full `kv` tree key, written behind or in sled.
    fn kv_entry(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        match self.inner.kv_behind.get(key) {
            Some(entry) => Ok(entry),
            None => Ok(self.t().kv.get(key).sled()?.map(|e| e.to_vec())),
        }
    }

    /// Drops the in-memory KV usage of `handler`'s namespaces, after its
    /// entries were removed wholesale (`delete_handler`).
    pub(super) fn forget_kv_usage(&self, handler: &str) {
        self.inner.kv_ledgers.forget_handler(handler);
    }
}

impl KvStorage for Store {
    fn read(&self, ns: &Namespace, key: &[u8]) -> std::result::Result<Option<Vec<u8>>, KvError> {
        self.kv_entry(&kv_key(ns, key)).map_err(kv_err)
    }

    fn write(
        &self,
        ns: &Namespace,
        key: &[u8],
        entry: Option<&[u8]>,
    ) -> std::result::Result<(), KvError> {
        let over = self
            .inner
            .kv_behind
            .put(kv_key(ns, key), entry.map(<[u8]>::to_vec));
        if over {
            self.kv_written().map_err(kv_err)?;
        }
        Ok(())
    }

    fn scan(
        &self,
        ns: &Namespace,
        each: &mut dyn FnMut(&[u8], &[u8]),
    ) -> std::result::Result<(), KvError> {
        self.kv_written().map_err(kv_err)?;
        let prefix = ns_prefix(ns);
        for item in self.t().kv.scan_prefix(&prefix) {
            let (k, v) = item.sled().map_err(kv_err)?;
            each(&k[prefix.len()..], &v);
        }
        Ok(())
    }

    fn ledgers(&self) -> &Ledgers {
        &self.inner.kv_ledgers
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::kv::{Quota, QuotaExceeded, Usage};
    use std::sync::Arc;

    fn ns(handler: &str, tenant: &str) -> Namespace {
        Namespace {
            handler: handler.into(),
            tenant: tenant.into(),
            ..Namespace::default()
        }
    }

    const NONE: &Quota = &Quota::UNLIMITED;

    #[test]
    fn namespaces_are_isolated() {
        let (_d, s) = temp();
        s.set(&ns("a", "x"), "k", b"ax", None, NONE).unwrap();
        s.set(&ns("b", "x"), "k", b"bx", None, NONE).unwrap();
        s.set(&ns("a", "y"), "k", b"ay", None, NONE).unwrap();
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
        s.set(&ns("a", "x/y"), "k", b"1", None, NONE).unwrap();
        assert_eq!(s.get(&ns("a", "x"), "y/k").unwrap(), None);
        s.set(&ns("a", ""), "\0\0\0\u{1}xk", b"2", None, NONE)
            .unwrap();
        assert_eq!(
            s.get(&ns("a", "x"), "k").unwrap().as_deref(),
            Some(&b"ax"[..])
        );
        // Nor into another namespace's usage.
        assert_eq!(s.usage(&ns("a", "x")).unwrap(), Usage { keys: 1, bytes: 3 });
        assert!(!s.delete(&ns("b", "y"), "k").unwrap());
        assert!(s.delete(&ns("a", "x"), "k").unwrap());
        assert_eq!(
            s.get(&ns("a", "y"), "k").unwrap().as_deref(),
            Some(&b"ay"[..])
        );
    }

    #[test]
    fn operators_list_and_get_a_namespace() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::testutil::open(dir.path());
        let ns = |t: &str| Namespace {
            handler: "h".into(),
            tenant: t.into(),
            ..Namespace::default()
        };
        let now = now_ms();
        for (t, k, v, ttl) in [
            ("acme", "seen:a", &b"1"[..], None),
            ("acme", "seen:b", &b"\xff\x00"[..], Some(60_000)),
            ("acme", "seen:c", &b"3"[..], None),
            ("acme", "other", &b"x"[..], None),
            ("acme", "seen:gone", &b"x"[..], Some(0)),
            ("globex", "seen:a", &b"9"[..], None),
        ] {
            let entry = crate::kv::encode_entry(v, ttl, now.saturating_sub(1));
            store.write(&ns(t), k.as_bytes(), Some(&entry)).unwrap();
        }
        let page = store.kv_list("h", "acme", "seen:", None, 2).unwrap();
        let keys: Vec<&str> = page.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["seen:a", "seen:b"]);
        assert_eq!(page.entries[1].encoding, "hex");
        assert_eq!(page.entries[1].value, "ff00");
        assert!(page.entries[1].expires_ms.is_some());
        let next = store
            .kv_list("h", "acme", "seen:", page.next_cursor.as_deref(), 2)
            .unwrap();
        let keys: Vec<&str> = next.entries.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["seen:c"], "expired entries are left out");
        assert_eq!(next.next_cursor, None);
        let one = store.kv_get("h", "globex", "seen:a").unwrap().unwrap();
        assert_eq!((one.value.as_str(), one.encoding.as_str()), ("9", "utf8"));
        assert_eq!(one.expires_ms, None);
        assert_eq!(store.kv_get("h", "globex", "seen:b").unwrap(), None);
        assert_eq!(store.kv_get("other", "acme", "seen:a").unwrap(), None);
    }

    #[test]
    fn keys_name_their_namespace() {
        let n = ns("h", "t\0/\u{1}");
        assert_eq!(key_namespace(&kv_key(&n, b"any key")), Some(n.clone()));
        assert_eq!(key_namespace(&kv_key(&n, b"")), Some(n));
        assert_eq!(key_namespace(b"\0\0\0\x09short"), None);
        assert_eq!(key_namespace(b""), None);
    }

    #[test]
    fn ttl_expiry_and_sweep() {
        let (_d, s) = temp();
        let n = ns("h", "");
        s.set(&n, "short", b"v", Some(1), NONE).unwrap();
        s.set(&n, "long", b"v", Some(60_000), NONE).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.get(&n, "short").unwrap(), None);
        assert!(!s.delete(&n, "short").unwrap());
        s.set(&n, "short", b"v", Some(1), NONE).unwrap();
        s.set(&ns("other", "t"), "gone", b"v", Some(1), NONE)
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.sweep_expired_kv().unwrap(), 2);
        assert_eq!(s.get(&n, "long").unwrap().as_deref(), Some(&b"v"[..]));
        // The sweep kept the usage exact.
        assert_eq!(s.usage(&n).unwrap(), Usage { keys: 1, bytes: 5 });
        assert_eq!(s.usage(&ns("other", "t")).unwrap(), Usage::default());
        // An expired value counts as absent for CAS and increment.
        s.set(&n, "c", b"41", Some(1), NONE).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(s.increment(&n, "c", 1, NONE).unwrap(), 1);
    }

    #[test]
    fn usage_and_quota_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let n = ns("h", "acme");
        let quota = Quota {
            bytes: 1_000,
            keys: 10,
        };
        let expected = {
            let s = open(dir.path());
            for i in 0..10 {
                s.set(&n, &format!("k{i}"), &[b'x'; 50], None, &quota)
                    .unwrap();
            }
            // Overwrites, deletes, a counter, a TTL entry.
            s.set(&n, "k0", b"", None, &quota).unwrap();
            assert!(s.delete(&n, "k1").unwrap());
            assert!(
                s.compare_and_swap(&n, "k2", Some(&[b'x'; 50]), None, &quota)
                    .unwrap()
            );
            s.increment(&n, "count", 100, &quota).unwrap();
            s.set(&n, "k3", b"ttl", Some(3_600_000), &quota).unwrap();
            // k0 2, k3 5, k4..k9 6 × 52, count 8.
            let usage = s.usage(&n).unwrap();
            assert_eq!(
                usage,
                Usage {
                    keys: 9,
                    bytes: 2 + 5 + 6 * 52 + 8
                }
            );
            usage
        };
        let s = open(dir.path());
        assert_eq!(s.usage(&n).unwrap(), expected);
        let tight = Quota {
            bytes: expected.bytes,
            keys: expected.keys,
        };
        let err = s.set(&n, "new", b"", None, &tight).unwrap_err();
        assert!(
            matches!(err, KvError::Quota(QuotaExceeded::Keys { would: 10, .. })),
            "{err}"
        );
        let err = s.set(&n, "k0", b"12", None, &tight).unwrap_err();
        assert!(
            matches!(err, KvError::Quota(QuotaExceeded::Bytes { .. })),
            "{err}"
        );
        // A delete makes room for both.
        assert!(s.delete(&n, "k4").unwrap());
        s.set(&n, "k0", b"12", None, &tight).unwrap();
        s.set(&n, "new", b"", None, &tight).unwrap();
    }

    #[test]
    fn deleting_a_handler_resets_its_usage() {
        let (_d, s) = temp();
        deploy(&s, "gone");
        let n = ns("gone", "t");
        s.set(&n, "k", b"value", None, NONE).unwrap();
        s.set(&ns("kept", "t"), "k", b"value", None, NONE).unwrap();
        assert_eq!(s.usage(&n).unwrap(), Usage { keys: 1, bytes: 6 });
        s.delete_handler("gone", "test").unwrap();
        assert_eq!(s.usage(&n).unwrap(), Usage::default());
        assert_eq!(
            s.usage(&ns("kept", "t")).unwrap(),
            Usage { keys: 1, bytes: 6 }
        );
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
                        s.increment(&n, "count", 1, NONE).unwrap();
                        // CAS-increment a second counter: retry until it lands.
                        loop {
                            let cur = s.get(&n, "cas").unwrap();
                            let v = cur
                                .as_deref()
                                .map_or(0, |b| std::str::from_utf8(b).unwrap().parse().unwrap());
                            let next = (v + 1u64).to_string();
                            if s.compare_and_swap(
                                &n,
                                "cas",
                                cur.as_deref(),
                                Some(next.as_bytes()),
                                NONE,
                            )
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
        assert_eq!(
            s.usage(&n).unwrap(),
            Usage {
                keys: 2,
                bytes: 5 + 3 + 4 + 4
            }
        );
        assert!(
            s.compare_and_swap(&n, "cas", Some(b"1600"), None, NONE)
                .unwrap()
        );
        assert!(
            !s.compare_and_swap(&n, "cas", Some(b"1600"), None, NONE)
                .unwrap()
        );
    }
}
