//! The resident set: compiled handler modules kept in memory, by content
//! hash, under a budget of modules and bytes. A module is loaded when a
//! delivery first needs it and the least recently used ones are evicted
//! when the budget is exceeded, so idle handlers cost only their routing
//! entry. Eviction only drops this set's reference: a delivery running on
//! an evicted module keeps it alive until it ends, and the next delivery
//! loads it again from the compiled-code cache.
//!
//! Pure bookkeeping, generic over the module type so it is unit-tested
//! without wasm.

use std::collections::{BTreeMap, HashMap};

/// How much compiled code may stay resident. The most recently used module
/// always stays, even alone over the byte budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResidentBudget {
    /// Modules kept at most (`[runtime] resident_handlers`).
    pub modules: usize,
    /// Bytes of compiled code kept at most (`[runtime] resident_mb`).
    pub bytes: u64,
}

impl Default for ResidentBudget {
    /// 1 000 modules, 1 GiB: a small Rust handler's code is ≈ 1 MiB
    /// (BENCHMARKS.md), so the byte budget binds first for typical code.
    fn default() -> Self {
        ResidentBudget {
            modules: 1_000,
            bytes: 1 << 30,
        }
    }
}

#[derive(Debug)]
struct Entry<M> {
    module: M,
    bytes: u64,
    /// Its key in `Resident::order`: the use counter at its last use.
    used: u64,
}

/// What [`Resident::insert`] did.
#[derive(Debug)]
pub(crate) struct Inserted<M> {
    /// The resident module for the hash: the one inserted, or the one that
    /// was already there.
    pub module: M,
    /// Modules evicted to make room, oldest first, then the module passed
    /// in if the hash was already resident: for the caller to drop.
    pub dropped: Vec<M>,
    /// How many of `dropped` were evicted.
    pub evicted: usize,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Resident<M> {
    budget: ResidentBudget,
    entries: HashMap<String, Entry<M>>,
    /// Last use → hash, oldest first.
    order: BTreeMap<u64, String>,
    uses: u64,
    bytes: u64,
}

impl<M: Clone> Resident<M> {
    pub fn new(budget: ResidentBudget) -> Self {
        Resident {
            budget,
            entries: HashMap::new(),
            order: BTreeMap::new(),
            uses: 0,
            bytes: 0,
        }
    }

    /// The module for `hash`, marked as just used.
    pub fn get(&mut self, hash: &str) -> Option<M> {
        let entry = self.entries.get_mut(hash)?;
        self.order.remove(&entry.used);
        self.uses += 1;
        entry.used = self.uses;
        self.order.insert(self.uses, hash.to_string());
        Some(entry.module.clone())
    }

    /// Keeps `module` (of `bytes` compiled code) under `hash` as the most
    /// recently used and evicts the least recently used others until the
    /// budget holds. When `hash` is already resident (another worker loaded
    /// it meanwhile) that module is kept and used instead, so clones share
    /// one warm pool. The caller drops what comes back outside its lock.
    pub fn insert(&mut self, hash: &str, module: M, bytes: u64) -> Inserted<M> {
        if let Some(existing) = self.get(hash) {
            return Inserted {
                module: existing,
                dropped: vec![module],
                evicted: 0,
            };
        }
        self.uses += 1;
        self.entries.insert(
            hash.to_string(),
            Entry {
                module: module.clone(),
                bytes,
                used: self.uses,
            },
        );
        self.order.insert(self.uses, hash.to_string());
        self.bytes += bytes;
        let mut dropped = Vec::new();
        while self.entries.len() > 1
            && (self.entries.len() > self.budget.modules || self.bytes > self.budget.bytes)
        {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&oldest) {
                self.bytes -= e.bytes;
                dropped.push(e.module);
            }
        }
        Inserted {
            module,
            evicted: dropped.len(),
            dropped,
        }
    }

    /// Whether `hash` is resident (without marking it used).
    pub fn contains(&self, hash: &str) -> bool {
        self.entries.contains_key(hash)
    }

    /// Modules resident.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of compiled code resident.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(modules: usize, bytes: u64) -> Resident<&'static str> {
        Resident::new(ResidentBudget { modules, bytes })
    }

    #[test]
    fn evicts_the_least_recently_used_past_the_module_budget() {
        let mut r = budget(2, u64::MAX);
        assert!(r.insert("a", "A", 10).dropped.is_empty());
        assert!(r.insert("b", "B", 10).dropped.is_empty());
        assert_eq!(r.get("a"), Some("A")); // b is now the oldest
        assert_eq!(r.insert("c", "C", 10).dropped, vec!["B"]);
        assert!(r.contains("a") && r.contains("c") && !r.contains("b"));
        assert_eq!((r.len(), r.bytes()), (2, 20));
        assert_eq!(r.get("b"), None);
    }

    #[test]
    fn evicts_past_the_byte_budget_but_keeps_the_newest() {
        let mut r = budget(100, 25);
        r.insert("a", "A", 10);
        r.insert("b", "B", 10);
        assert_eq!(r.insert("c", "C", 10).dropped, vec!["A"]);
        assert_eq!(r.bytes(), 20);
        // One module larger than the whole budget still stays resident:
        // a delivery needs it.
        let big = r.insert("big", "BIG", 100);
        assert_eq!((big.dropped, big.evicted), (vec!["B", "C"], 2));
        assert_eq!((r.len(), r.bytes()), (1, 100));
        assert_eq!(r.get("big"), Some("BIG"));
    }

    #[test]
    fn a_racing_second_load_keeps_the_first_module() {
        let mut r = budget(2, u64::MAX);
        r.insert("a", "A1", 10);
        let again = r.insert("a", "A2", 30);
        assert_eq!(
            (again.module, again.dropped, again.evicted),
            ("A1", vec!["A2"], 0)
        );
        assert_eq!((r.len(), r.bytes()), (1, 10));
        assert_eq!(r.get("a"), Some("A1"));
    }

    #[test]
    fn a_budget_of_one_cycles_through_every_module() {
        let mut r = budget(1, u64::MAX);
        for round in 0..3 {
            for h in ["a", "b", "c"] {
                let evicted = r.insert(h, h, 1).evicted;
                assert_eq!(evicted, usize::from(round > 0 || h != "a"));
                assert_eq!(r.get(h), Some(h));
                assert_eq!(r.len(), 1);
            }
        }
    }
}
