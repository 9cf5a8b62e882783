//! The per-store [`ResourceLimiter`]: caps linear memory (summed over all
//! of a component's memories), table elements and core instances, records
//! the peak memory, and remembers *which* limit it refused so that the trap
//! a guest raises on a failed `memory.grow` is reported as `memory_limit`.
//!
//! Refusals return `Ok(false)` (the guest's `memory.grow` / `table.grow`
//! returns -1, as the spec allows) rather than an error, so a guest that
//! handles allocation failure may still finish its work.

use wasmtime::ResourceLimiter;

use super::outcome::Denied;

/// Limits and accounting for one store. In reuse mode the store lives on, so
/// [`Limiter::begin_delivery`] resets the per-delivery parts.
#[derive(Debug)]
pub(crate) struct Limiter {
    memory_limit: u64,
    table_limit: u64,
    instance_limit: usize,
    /// Bytes of linear memory currently allocated, all memories together.
    memory_total: u64,
    /// Highest `memory_total` seen during this delivery.
    peak: u64,
    /// The first refusal of this delivery.
    denied: Option<Denied>,
    /// The last growth we approved, undone if the engine then fails it
    /// (e.g. the pool slot is smaller than our limit).
    pending: Option<(u64, u64)>,
}

impl Limiter {
    pub(crate) fn new(memory_bytes: u64, table_elements: u64, instances: u32) -> Self {
        Limiter {
            memory_limit: memory_bytes,
            table_limit: table_elements,
            instance_limit: instances as usize,
            memory_total: 0,
            peak: 0,
            denied: None,
            pending: None,
        }
    }

    /// Starts a new delivery on a (possibly reused) store with new limits.
    /// Memory already allocated stays allocated and counts from the start.
    pub(crate) fn begin_delivery(
        &mut self,
        memory_bytes: u64,
        table_elements: u64,
        instances: u32,
    ) {
        self.memory_limit = memory_bytes;
        self.table_limit = table_elements;
        self.instance_limit = instances as usize;
        self.peak = self.memory_total;
        self.denied = None;
        self.pending = None;
    }

    /// Peak linear memory of this delivery, in bytes.
    pub(crate) fn peak(&self) -> u64 {
        self.peak
    }

    /// The first limit refused during this delivery.
    pub(crate) fn denied(&self) -> Option<Denied> {
        self.denied
    }

    fn deny(&mut self, what: Denied) {
        self.denied.get_or_insert(what);
    }

    fn grow_memory(&mut self, current: u64, desired: u64) -> bool {
        let grown = desired.saturating_sub(current);
        let next = self.memory_total.saturating_add(grown);
        if next > self.memory_limit {
            self.deny(Denied::Memory);
            return false;
        }
        self.pending = Some((grown, self.peak));
        self.memory_total = next;
        self.peak = self.peak.max(next);
        true
    }

    fn memory_grow_undone(&mut self) {
        if let Some((grown, peak_before)) = self.pending.take() {
            self.memory_total -= grown;
            self.peak = peak_before;
        }
        self.deny(Denied::Memory);
    }

    fn grow_table(&mut self, desired: u64) -> bool {
        if desired > self.table_limit {
            self.deny(Denied::Table);
            return false;
        }
        true
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow_memory(current as u64, desired as u64))
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_grow_undone();
        Ok(())
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(self.grow_table(desired as u64))
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.deny(Denied::Table);
        Ok(())
    }

    fn instances(&self) -> usize {
        self.instance_limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: u64 = 65536;

    #[test]
    fn memory_is_summed_across_memories_and_peak_recorded() {
        let mut l = Limiter::new(4 * PAGE, 10, 5);
        assert!(l.grow_memory(0, PAGE)); // memory A instantiated
        assert!(l.grow_memory(0, 2 * PAGE)); // memory B instantiated
        assert_eq!(l.peak(), 3 * PAGE);
        assert!(l.grow_memory(PAGE, 2 * PAGE)); // A grows to the limit exactly
        assert_eq!(l.peak(), 4 * PAGE);
        assert_eq!(l.denied(), None);
        assert!(!l.grow_memory(2 * PAGE, 3 * PAGE)); // one page past
        assert_eq!(l.denied(), Some(Denied::Memory));
        assert_eq!(l.peak(), 4 * PAGE);
    }

    #[test]
    fn failed_growth_is_undone_and_flagged() {
        let mut l = Limiter::new(100 * PAGE, 10, 5);
        assert!(l.grow_memory(0, PAGE));
        assert!(l.grow_memory(PAGE, 50 * PAGE)); // approved, then the pool refuses it
        l.memory_grow_undone();
        assert_eq!(l.peak(), PAGE);
        assert_eq!(l.denied(), Some(Denied::Memory));
        assert!(l.grow_memory(PAGE, 2 * PAGE));
        assert_eq!(l.peak(), 2 * PAGE);
    }

    #[test]
    fn tables_are_capped_per_table() {
        let mut l = Limiter::new(PAGE, 10, 5);
        assert!(l.grow_table(10));
        assert!(l.grow_table(10)); // a second table of the same size is fine
        assert_eq!(l.denied(), None);
        assert!(!l.grow_table(11));
        assert_eq!(l.denied(), Some(Denied::Table));
    }

    #[test]
    fn first_refusal_is_kept() {
        let mut l = Limiter::new(PAGE, 1, 5);
        assert!(!l.grow_table(2));
        assert!(!l.grow_memory(0, 2 * PAGE));
        assert_eq!(l.denied(), Some(Denied::Table));
    }

    #[test]
    fn begin_delivery_resets_flags_and_peak_but_keeps_allocation() {
        let mut l = Limiter::new(2 * PAGE, 1, 5);
        assert!(l.grow_memory(0, 2 * PAGE));
        assert!(!l.grow_memory(2 * PAGE, 3 * PAGE));
        l.begin_delivery(3 * PAGE, 1, 7);
        assert_eq!(l.denied(), None);
        assert_eq!(l.peak(), 2 * PAGE);
        assert_eq!(l.instances(), 7);
        assert!(l.grow_memory(2 * PAGE, 3 * PAGE));
        assert_eq!(l.peak(), 3 * PAGE);
    }
}
