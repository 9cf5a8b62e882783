//! Idempotency keys being accepted. The inbox's lookup of a key and its
//! write of it are separate calls, with the append (and its fsync) in
//! between, so two batches carrying one key must not both look it up
//! before either wrote it. A batch claims its keys for that span; a batch
//! that needs a key another one holds waits until it is released, then
//! finds the key stored (a duplicate) or not (the first batch failed).
//! Batches with different keys, and batches without keys, never wait for
//! each other, so their appends share group-commit rounds.

use std::collections::HashSet;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

/// A key: tenant and idempotency key.
pub(super) type Key = (String, String);

/// The keys claimed now. Shared by every accept of a dispatcher.
#[derive(Debug, Default)]
pub(super) struct KeyClaims {
    held: Mutex<HashSet<Key>>,
    released: Condvar,
}

/// Keys one batch holds until it is dropped.
#[derive(Debug)]
pub(super) struct Claim {
    claims: Arc<KeyClaims>,
    keys: Vec<Key>,
}

impl KeyClaims {
    fn held(&self) -> MutexGuard<'_, HashSet<Key>> {
        // A set changed whole in one step: nothing half-done to repair.
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claims `keys` (duplicates among them are fine), waiting while
    /// another batch holds any of them. Blocking.
    pub(super) fn claim(self: &Arc<Self>, keys: Vec<Key>) -> Claim {
        if keys.is_empty() {
            return self.none();
        }
        let mut held = self.held();
        while keys.iter().any(|k| held.contains(k)) {
            held = self.released.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        self.take(held, keys)
    }

    /// Claims `keys` if no other batch holds any of them; `None` (and
    /// nothing claimed) otherwise. Never waits.
    pub(super) fn try_claim(self: &Arc<Self>, keys: Vec<Key>) -> Option<Claim> {
        if keys.is_empty() {
            return Some(self.none());
        }
        let held = self.held();
        if keys.iter().any(|k| held.contains(k)) {
            return None;
        }
        Some(self.take(held, keys))
    }

    /// The claim of a batch without keys: nothing to wait for or hold.
    fn none(self: &Arc<Self>) -> Claim {
        Claim {
            claims: self.clone(),
            keys: Vec::new(),
        }
    }

    fn take(self: &Arc<Self>, mut held: MutexGuard<'_, HashSet<Key>>, mut keys: Vec<Key>) -> Claim {
        keys.sort_unstable();
        keys.dedup();
        held.extend(keys.iter().cloned());
        Claim {
            claims: self.clone(),
            keys,
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.keys.is_empty() {
            return;
        }
        let mut held = self.claims.held();
        for k in &self.keys {
            held.remove(k);
        }
        drop(held);
        self.claims.released.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    fn key(tenant: &str, k: &str) -> Key {
        (tenant.to_string(), k.to_string())
    }

    #[test]
    fn a_held_key_makes_another_batch_wait_and_other_keys_do_not() {
        let claims = Arc::new(KeyClaims::default());
        let first = claims.claim(vec![key("acme", "a"), key("acme", "a")]);
        // Another key, or the same key in another tenant: no wait.
        let other = claims.try_claim(vec![key("acme", "b"), key("globex", "a")]);
        assert!(other.is_some());
        assert!(
            claims
                .try_claim(vec![key("acme", "c"), key("acme", "a")])
                .is_none()
        );
        // Nothing of the refused claim stuck: "c" is free.
        drop(claims.try_claim(vec![key("acme", "c")]).expect("c is free"));

        let (tx, rx) = mpsc::channel();
        let waiter = {
            let claims = claims.clone();
            std::thread::spawn(move || {
                let _c = claims.claim(vec![key("acme", "a")]);
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "claimed a held key"
        );
        drop(first);
        rx.recv_timeout(Duration::from_secs(10))
            .expect("released, the waiter claims the key");
        waiter.join().unwrap();
        assert!(claims.try_claim(vec![key("acme", "a")]).is_some());
    }
}
