//! Per-handler counters and a latency histogram, updated as deliveries are
//! logged, so stats never scan the log (which retention trims anyway).
//!
//! Keys: `stats` = handler name → JSON counters plus a sparse log-scale
//! histogram of attempt durations (bucket index → count). Buckets split
//! each power of two in four, so a reported percentile is at most ~19%
//! above the true value (and never above the largest duration seen);
//! durations below 8 µs are exact.
//!
//! **Counters live in memory and are written behind** ([`Tallies`]): the
//! recorder adds to a handler's record in memory, readers see it at once,
//! and the records that changed (plus the `meta` counters: events
//! accepted, unrouted, log lines) are written to sled at most every
//! [`SNAPSHOT`], at every [`Store::flush`] and when the store closes. A
//! crash loses at most the last interval's counts, never an event or a log
//! line; a write per recorder batch and handler was the cost it replaces.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::queue::{META_ACCEPTED, META_UNROUTED};
use super::{
    EventTotals, HandlerStats, Inner, LogEntry, Result, SledExt, Store, corrupt, decode, encode,
    keys,
};

/// How often changed counters are written to sled: the counts a crash may
/// lose.
pub const SNAPSHOT: Duration = Duration::from_secs(1);

/// Counters not yet written to sled (see the module docs).
#[derive(Debug, Default)]
pub(super) struct Tallies {
    state: Mutex<TallyState>,
    /// Held while a snapshot writes, so two cannot interleave.
    writing: Mutex<()>,
}

#[derive(Debug, Default)]
struct TallyState {
    /// Every handler record touched since open, current (keyed by handler
    /// name, which the operator chooses: foldhash, not SipHash).
    records: foldhash::HashMap<String, StatsRecord>,
    /// Records changed since the last snapshot.
    dirty: BTreeSet<String>,
    /// `meta` counter changes since the last snapshot.
    deltas: BTreeMap<Vec<u8>, i64>,
    last: Option<Instant>,
}

/// A node's counters as shared: (handler, encoded counters).
pub type SharedCounters = Vec<(String, Vec<u8>)>;

/// Cluster mode: the counters other nodes published (each node's own,
/// summed on read), and the handlers whose counters were dropped here
/// since the publisher last asked (`crate::cluster`).
#[derive(Debug, Default)]
pub(super) struct PeerStats(Mutex<PeerState>);

#[derive(Debug, Default)]
struct PeerState {
    /// Node → handler → that node's counters.
    records: HashMap<String, HashMap<String, StatsRecord>>,
    /// Node → its event totals.
    totals: HashMap<String, EventTotals>,
    /// Handlers deleted here whose shared counters must go too.
    forgotten: BTreeSet<String>,
}

impl PeerStats {
    fn lock(&self) -> MutexGuard<'_, PeerState> {
        // Plain maps, each change made in one call.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Tallies {
    fn lock(&self) -> MutexGuard<'_, TallyState> {
        // Each change is a few map operations in one call: nothing a panic
        // elsewhere could leave half-done.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a logged attempt led to, beyond being an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum StatKind {
    /// A final outcome (success, or a failure that is not retried).
    Attempt,
    /// A failure that will be retried.
    Retry,
    /// A failure that exhausted the policy.
    DeadLetter,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StatsRecord {
    processed: u64,
    ok: u64,
    failed: u64,
    #[serde(default)]
    expired: u64,
    by_outcome: BTreeMap<String, u64>,
    retries: u64,
    dead_lettered: u64,
    fuel_total: u64,
    last_outcome_ms: Option<u64>,
    max_us: u64,
    hist: BTreeMap<u16, u64>,
}

/// The histogram bucket of a duration: exact below 4, then four buckets per
/// power of two. Also the dashboard series' buckets (`dispatch/series.rs`).
pub(crate) fn bucket(v: u64) -> u16 {
    if v < 4 {
        return v as u16;
    }
    let e = 63 - v.leading_zeros();
    let sub = (v >> (e - 2)) & 3;
    ((e - 1) * 4 + sub as u32) as u16
}

/// The largest duration that falls in bucket `i`.
pub(crate) fn bucket_high(i: u16) -> u64 {
    if i < 4 {
        return u64::from(i);
    }
    let e = u32::from(i / 4) + 1;
    let low = (4 + u64::from(i % 4)) << (e - 2);
    low + ((1u64 << (e - 2)) - 1)
}

impl StatsRecord {
    fn add(&mut self, e: &LogEntry, kind: StatKind) {
        self.processed += 1;
        if e.is_ok() {
            self.ok += 1;
        } else if e.is_failure() {
            self.failed += 1;
        } else {
            self.expired += 1;
        }
        match self.by_outcome.get_mut(&e.outcome) {
            Some(n) => *n += 1,
            None => {
                self.by_outcome.insert(e.outcome.clone(), 1);
            }
        }
        match kind {
            StatKind::Attempt => {}
            StatKind::Retry => self.retries += 1,
            StatKind::DeadLetter => self.dead_lettered += 1,
        }
        self.last_outcome_ms = Some(self.last_outcome_ms.unwrap_or(0).max(e.time_ms));
        if !e.is_ok() && !e.is_failure() {
            // Expired: nothing ran, so no duration or fuel to count.
            return;
        }
        self.fuel_total = self.fuel_total.saturating_add(e.fuel);
        self.max_us = self.max_us.max(e.duration_us);
        *self.hist.entry(bucket(e.duration_us)).or_default() += 1;
    }

    /// Adds another node's counters for the same handler.
    fn merge(&mut self, o: &StatsRecord) {
        self.processed += o.processed;
        self.ok += o.ok;
        self.failed += o.failed;
        self.expired += o.expired;
        for (k, n) in &o.by_outcome {
            *self.by_outcome.entry(k.clone()).or_default() += n;
        }
        self.retries += o.retries;
        self.dead_lettered += o.dead_lettered;
        self.fuel_total = self.fuel_total.saturating_add(o.fuel_total);
        self.last_outcome_ms = self.last_outcome_ms.max(o.last_outcome_ms);
        self.max_us = self.max_us.max(o.max_us);
        for (b, n) in &o.hist {
            *self.hist.entry(*b).or_default() += n;
        }
    }

    fn percentile(&self, p: f64) -> u64 {
        let total: u64 = self.hist.values().sum();
        if total == 0 {
            return 0;
        }
        let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (&b, &n) in &self.hist {
            seen += n;
            if seen >= rank {
                return bucket_high(b).min(self.max_us);
            }
        }
        self.max_us
    }

    fn public(&self, handler: &str) -> HandlerStats {
        HandlerStats {
            handler: handler.into(),
            processed: self.processed,
            ok: self.ok,
            failed: self.failed,
            expired: self.expired,
            by_outcome: self.by_outcome.clone(),
            retries: self.retries,
            dead_lettered: self.dead_lettered,
            fuel_total: self.fuel_total,
            latency_p50_us: self.percentile(0.50),
            latency_p90_us: self.percentile(0.90),
            latency_p99_us: self.percentile(0.99),
            last_outcome_ms: self.last_outcome_ms,
        }
    }
}

impl Store {
    /// Counts one logged attempt. Skipped for handlers that no longer exist,
    /// so a delivery finishing after its handler's deletion leaves no stats.
    pub(super) fn record_stats(&self, e: &LogEntry, kind: StatKind) -> Result<()> {
        self.record_stats_of(&[e], kind)
    }

    /// [`Self::record_stats`] for many attempts: in memory, written behind.
    pub(super) fn record_stats_of(&self, entries: &[&LogEntry], kind: StatKind) -> Result<()> {
        let mut by_handler: BTreeMap<&str, Vec<&LogEntry>> = BTreeMap::new();
        for e in entries {
            by_handler.entry(e.handler.as_str()).or_default().push(e);
        }
        let t = self.t();
        for (handler, attempts) in by_handler {
            let mut st = self.inner.tallies.lock();
            // A handler counted since open exists until `forget_stats`
            // drops its record (it does so under this lock); any other is
            // looked up, so a deleted one's counters do not come back.
            if !st.records.contains_key(handler) && !t.handlers.contains_key(handler).sled()? {
                continue;
            }
            let rec = match st.records.entry(handler.to_string()) {
                std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(self.stored_stats(handler)?)
                }
            };
            for e in &attempts {
                rec.add(e, kind);
            }
            st.dirty.insert(handler.to_string());
        }
        self.snapshot_stats(false)
    }

    fn stored_stats(&self, name: &str) -> Result<StatsRecord> {
        match self.t().stats.get(name).sled()? {
            Some(b) => decode("stats", name.as_bytes(), &b),
            None => Ok(StatsRecord::default()),
        }
    }

    /// Adds `delta` to a `meta` counter (in memory, written behind).
    pub(super) fn bump(&self, key: &[u8], delta: i64) -> Result<()> {
        *self
            .inner
            .tallies
            .lock()
            .deltas
            .entry(key.to_vec())
            .or_default() += delta;
        self.snapshot_stats(false)
    }

    /// A `meta` counter, including what is not written yet.
    pub(super) fn counter(&self, key: &[u8]) -> Result<u64> {
        let stored = match self.t().meta.get(key).sled()? {
            None => 0,
            Some(v) => keys::read_u64(&v).ok_or_else(|| corrupt("meta", key, "not a u64"))?,
        };
        let delta = self
            .inner
            .tallies
            .lock()
            .deltas
            .get(key)
            .copied()
            .unwrap_or(0);
        Ok(stored.saturating_add_signed(delta))
    }

    /// Sets a `meta` counter back to 0, written or not.
    pub(super) fn reset_counter(&self, key: &[u8]) -> Result<()> {
        let _writing = self
            .inner
            .tallies
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        self.inner.tallies.lock().deltas.remove(key);
        self.t().meta.remove(key).sled().map(drop)
    }

    /// Drops a deleted handler's counters, written or not.
    pub(super) fn forget_stats(&self, name: &str) -> Result<()> {
        let _writing = self
            .inner
            .tallies
            .writing
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        {
            let mut st = self.inner.tallies.lock();
            st.records.remove(name);
            st.dirty.remove(name);
        }
        {
            let mut peers = self.inner.peers.lock();
            for recs in peers.records.values_mut() {
                recs.remove(name);
            }
            peers.forgotten.insert(name.to_string());
        }
        self.t().stats.remove(name).sled().map(drop)
    }

    /// Cluster mode: this node's counters of every handler that counted
    /// anything since the store opened, encoded for other nodes, and its
    /// event totals.
    pub fn stats_to_share(&self) -> Result<(SharedCounters, EventTotals)> {
        let records: Vec<(String, StatsRecord)> = {
            let st = self.inner.tallies.lock();
            st.records
                .iter()
                .map(|(h, r)| (h.clone(), r.clone()))
                .collect()
        };
        let encoded = records
            .iter()
            .map(|(h, r)| Ok((h.clone(), encode(r)?)))
            .collect::<Result<_>>()?;
        Ok((encoded, self.local_event_totals()?))
    }

    /// Cluster mode: what node `node` published for `handler` (`None`:
    /// it withdrew it), summed into [`Store::handler_stats`].
    pub fn set_peer_stats(&self, node: &str, handler: &str, record: Option<&[u8]>) -> Result<()> {
        let mut peers = self.inner.peers.lock();
        match record {
            Some(b) => {
                let rec: StatsRecord = decode("peer stats", handler.as_bytes(), b)?;
                peers
                    .records
                    .entry(node.to_string())
                    .or_default()
                    .insert(handler.to_string(), rec);
            }
            None => {
                if let Some(recs) = peers.records.get_mut(node) {
                    recs.remove(handler);
                }
            }
        }
        Ok(())
    }

    /// Cluster mode: node `node`'s event totals, summed into
    /// [`Store::event_totals`].
    pub fn set_peer_totals(&self, node: &str, totals: Option<EventTotals>) {
        let mut peers = self.inner.peers.lock();
        match totals {
            Some(t) => peers.totals.insert(node.to_string(), t),
            None => peers.totals.remove(node),
        };
    }

    /// Cluster mode: the handlers deleted here since the last call, and
    /// every other node known to have counted anything.
    pub fn take_forgotten_stats(&self) -> (Vec<String>, Vec<String>) {
        let mut peers = self.inner.peers.lock();
        let handlers = std::mem::take(&mut peers.forgotten).into_iter().collect();
        let nodes = peers.records.keys().cloned().collect();
        (handlers, nodes)
    }

    /// Writes the counters changed since the last snapshot ([`snapshot`]).
    pub(super) fn snapshot_stats(&self, force: bool) -> Result<()> {
        snapshot(&self.inner, force)
    }

    /// Stats of every handler, by name.
    pub fn stats(&self) -> Result<Vec<HandlerStats>> {
        self.handlers()?
            .iter()
            .map(|h| self.handler_stats(&h.name))
            .collect()
    }

    /// Stats of one handler; all zero when nothing was logged for it.
    /// In cluster mode, summed over every node's counters.
    pub fn handler_stats(&self, name: &str) -> Result<HandlerStats> {
        let local = self.inner.tallies.lock().records.get(name).cloned();
        let mut rec = match local {
            Some(r) => r,
            None => self.stored_stats(name)?,
        };
        for recs in self.inner.peers.lock().records.values() {
            if let Some(r) = recs.get(name) {
                rec.merge(r);
            }
        }
        Ok(rec.public(name))
    }

    /// Events passed to `accept`, and how many of them matched no handler;
    /// in cluster mode, summed over every node.
    pub fn event_totals(&self) -> Result<EventTotals> {
        let mut t = self.local_event_totals()?;
        for p in self.inner.peers.lock().totals.values() {
            t.accepted = t.accepted.saturating_add(p.accepted);
            t.unrouted = t.unrouted.saturating_add(p.unrouted);
        }
        Ok(t)
    }

    fn local_event_totals(&self) -> Result<EventTotals> {
        Ok(EventTotals {
            accepted: self.counter(META_ACCEPTED)?,
            unrouted: self.counter(META_UNROUTED)?,
        })
    }
}

/// Writes the counters changed since the last snapshot to sled: all of
/// them with `force`, else only when [`SNAPSHOT`] has passed since the
/// last. Not flushed: the next flush (or sled's own) makes it durable.
pub(super) fn snapshot(inner: &Inner, force: bool) -> Result<()> {
    let tallies = &inner.tallies;
    {
        let mut st = tallies.lock();
        let now = Instant::now();
        let last = *st.last.get_or_insert(now);
        if !force && now.duration_since(last) < SNAPSHOT {
            return Ok(());
        }
        st.last = Some(now);
        if st.dirty.is_empty() && st.deltas.is_empty() {
            return Ok(());
        }
    }
    // What is taken is written before the next snapshot takes more, so
    // a counter's writes land in order.
    let _writing = tallies.writing.lock().unwrap_or_else(|p| p.into_inner());
    let (records, deltas) = {
        let mut st = tallies.lock();
        let dirty = std::mem::take(&mut st.dirty);
        let records: Vec<(String, StatsRecord)> = dirty
            .into_iter()
            .filter_map(|h| st.records.get(&h).map(|r| (h, r.clone())))
            .collect();
        (records, std::mem::take(&mut st.deltas))
    };
    let t = &inner.t;
    for (handler, rec) in &records {
        // A handler deleted meanwhile keeps no stats.
        if t.handlers.contains_key(handler).sled()? {
            t.stats.insert(handler.as_bytes(), encode(rec)?).sled()?;
        }
    }
    for (key, delta) in &deltas {
        t.meta
            .update_and_fetch(key, |cur| {
                let n = cur.and_then(keys::read_u64).unwrap_or(0);
                Some(n.saturating_add_signed(*delta).to_be_bytes().to_vec())
            })
            .sled()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::event::now_ms;

    #[test]
    fn store_keeps_stats_per_handler() {
        let (_d, s) = temp();
        deploy(&s, "busy");
        deploy(&s, "idle");
        let e = event("a", "");
        s.accept(&[(e.clone(), vec!["busy".into()])]).unwrap();
        let p = s.pending().unwrap().remove(0);
        let mut slow = entry("busy", &e, "timeout", now_ms());
        slow.duration_us = 5000;
        let p = s.retry_later(&p, &slow, 0).unwrap();
        s.finish(&p, &entry("busy", &e, "ok", now_ms())).unwrap();
        // Logged for a handler that does not exist: not counted.
        s.finish(&p, &entry("ghost", &e, "ok", now_ms())).unwrap();
        let all = s.stats().unwrap();
        assert_eq!(all.len(), 2);
        let busy = &all[0];
        assert_eq!(busy.handler, "busy");
        assert_eq!(
            (busy.processed, busy.ok, busy.failed, busy.retries),
            (2, 1, 1, 1)
        );
        assert_eq!(busy.fuel_total, 20);
        // p50 is the bucket's upper bound (100 µs lands in 96..=111); p99 is capped
        // by the largest duration seen.
        assert_eq!((busy.latency_p50_us, busy.latency_p99_us), (111, 5000));
        assert_eq!(
            all[1],
            HandlerStats {
                handler: "idle".into(),
                ..HandlerStats::default()
            }
        );
        assert_eq!(s.handler_stats("ghost").unwrap().processed, 0);
    }

    #[test]
    fn counts_written_behind_outlive_the_store_and_not_the_handler() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            deploy(&s, "kept");
            deploy(&s, "gone");
            let e = event("a", "");
            s.accept(&[(e.clone(), vec!["kept".into(), "gone".into()])])
                .unwrap();
            for h in ["kept", "gone"] {
                s.record_stats(&entry(h, &e, "ok", now_ms()), StatKind::Attempt)
                    .unwrap();
            }
            // Seen at once, before any snapshot.
            assert_eq!(s.handler_stats("gone").unwrap().processed, 1);
            assert_eq!(s.event_totals().unwrap().accepted, 1);
            s.delete_handler("gone", "test").unwrap();
            assert_eq!(s.handler_stats("gone").unwrap().processed, 0);
            // An outcome recorded late, after the delete: counts nothing.
            s.record_stats(&entry("gone", &e, "ok", now_ms()), StatKind::Attempt)
                .unwrap();
            assert_eq!(s.handler_stats("gone").unwrap().processed, 0);
            // Closed without a flush: the last handle writes them.
        }
        let s = open(dir.path());
        assert_eq!(s.handler_stats("kept").unwrap().processed, 1);
        assert_eq!(s.event_totals().unwrap().accepted, 1);
        deploy(&s, "gone");
        assert_eq!(s.handler_stats("gone").unwrap().processed, 0);
    }

    #[test]
    fn other_nodes_counters_are_summed_and_dropped_with_the_handler() {
        let (_d, s) = temp();
        deploy(&s, "h");
        let e = event("a", "");
        s.record_stats(&entry("h", &e, "ok", 5), StatKind::Attempt)
            .unwrap();
        let mut theirs = StatsRecord::default();
        theirs.add(&entry("h", &e, "trap", 9), StatKind::Retry);
        let bytes = encode(&theirs).unwrap();
        s.set_peer_stats("b", "h", Some(&bytes)).unwrap();
        s.set_peer_totals(
            "b",
            Some(EventTotals {
                accepted: 4,
                unrouted: 1,
            }),
        );
        let st = s.handler_stats("h").unwrap();
        assert_eq!((st.processed, st.ok, st.failed, st.retries), (2, 1, 1, 1));
        assert_eq!(st.last_outcome_ms, Some(9));
        assert_eq!(s.event_totals().unwrap().accepted, 4);
        let (shared, _) = s.stats_to_share().unwrap();
        assert_eq!(shared.len(), 1, "only this node's own counters are shared");
        assert!(s.set_peer_stats("b", "h", Some(b"nope")).is_err());
        s.delete_handler("h", "test").unwrap();
        assert_eq!(
            s.take_forgotten_stats(),
            (vec!["h".into()], vec!["b".into()])
        );
        deploy(&s, "h");
        assert_eq!(s.handler_stats("h").unwrap().processed, 0);
    }

    #[test]
    fn buckets_are_ordered_and_tight() {
        let mut prev = 0;
        for v in [0u64, 1, 3, 4, 7, 8, 9, 15, 16, 100, 1000, 1 << 40, u64::MAX] {
            let b = bucket(v);
            assert!(b >= prev, "bucket of {v}");
            prev = b;
            let high = bucket_high(b);
            assert!(high >= v, "{v} above its bucket's high {high}");
            assert!(high as f64 <= v as f64 * 1.25 + 1.0, "{v}: bucket too wide");
        }
        assert_eq!(bucket_high(bucket(u64::MAX)), u64::MAX);
    }

    #[test]
    fn percentiles_from_the_histogram() {
        let mut r = StatsRecord::default();
        for us in 1..=1000 {
            let e = LogEntry {
                outcome: if us % 10 == 0 { "trap" } else { "ok" }.into(),
                duration_us: us,
                fuel: 2,
                time_ms: us,
                ..LogEntry::default()
            };
            r.add(&e, StatKind::Attempt);
        }
        let s = r.public("h");
        assert_eq!((s.processed, s.ok, s.failed), (1000, 900, 100));
        assert_eq!(s.by_outcome["trap"], 100);
        assert_eq!((s.fuel_total, s.last_outcome_ms), (2000, Some(1000)));
        for (got, want) in [
            (s.latency_p50_us, 500.0),
            (s.latency_p90_us, 900.0),
            (s.latency_p99_us, 990.0),
        ] {
            let got = got as f64;
            assert!(got >= want && got <= want * 1.19, "{got} vs {want}");
        }
        assert_eq!(StatsRecord::default().public("x").latency_p99_us, 0);
    }

    #[test]
    fn expired_deliveries_are_counted_apart_and_not_timed() {
        let mut r = StatsRecord::default();
        let ran = |outcome: &str| LogEntry {
            outcome: outcome.into(),
            duration_us: 1000,
            fuel: 5,
            time_ms: 1,
            ..LogEntry::default()
        };
        r.add(&ran("ok"), StatKind::Attempt);
        r.add(&ran("trap"), StatKind::Attempt);
        let expired = LogEntry {
            outcome: "expired".into(),
            time_ms: 2,
            ..LogEntry::default()
        };
        r.add(&expired, StatKind::Attempt);
        let s = r.public("h");
        assert_eq!(
            (s.processed, s.ok, s.failed, s.expired),
            (3, 1, 1, 1),
            "{s:?}"
        );
        assert_eq!(s.by_outcome["expired"], 1);
        assert_eq!((s.fuel_total, s.last_outcome_ms), (10, Some(2)));
        // Not run, so not a 0 µs sample pulling the percentiles down.
        assert_eq!(s.latency_p50_us, 1000);
    }
}
