//! The last hour of delivery outcomes and latency, kept in memory per
//! second for the dashboard's charts (`GET /v1/series`).
//!
//! A ring of [`SECONDS`] slots, one per wall-clock second: outcome counts
//! and a latency histogram (the store's log-scale buckets, four per power of
//! two, so a percentile is at most ~19% high). A slot is reset when its
//! second comes round again, so nothing grows and nothing needs sweeping.
//! Recording is one short lock per delivery, next to the metrics' own; the
//! clock is passed in, so the ring is tested without waiting.

use std::sync::Mutex;

use serde::Serialize;
use utoipa::ToSchema;

use crate::runtime::Outcome;
use crate::store::{latency_bucket, latency_bucket_high};

/// How far back the ring reaches: one hour of seconds.
pub const SECONDS: u64 = 3600;
/// Histogram buckets kept per second: bucket 127 starts at 2^32 µs (about
/// 72 minutes), far past any delivery deadline, so nothing real is clamped.
const HIST: usize = 128;
/// Outcome slots: every [`Outcome`] in declaration order.
const OUTCOMES: usize = Outcome::ALL.len();

/// One second of deliveries.
#[derive(Clone, Debug)]
struct Slot {
    /// The second (since the epoch) this slot holds; 0: never used.
    second: u64,
    counts: [u32; OUTCOMES],
    hist: [u32; HIST],
}

impl Slot {
    const EMPTY: Slot = Slot {
        second: 0,
        counts: [0; OUTCOMES],
        hist: [0; HIST],
    };
}

/// The ring (see the module docs). `Default` allocates nothing; the slots
/// are allocated by the first delivery.
#[derive(Debug, Default)]
pub struct Series {
    slots: Mutex<Vec<Slot>>,
}

/// One point of a [`SeriesWindow`]: `step` seconds of deliveries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeriesPoint {
    /// Start of the step, ms since the epoch.
    pub time_ms: u64,
    /// Deliveries (attempts) that finished in the step, by outcome name;
    /// outcomes with none are left out.
    pub deliveries: std::collections::BTreeMap<String, u64>,
    /// Median attempt duration in the step, µs (0 without deliveries).
    pub p50_us: u64,
    /// 99th percentile attempt duration in the step, µs (0 without deliveries).
    pub p99_us: u64,
}

/// A stretch of the ring, aggregated into steps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct SeriesWindow {
    /// Seconds per point.
    pub step_s: u64,
    /// Oldest first; the last point holds the current (unfinished) second.
    pub points: Vec<SeriesPoint>,
}

impl Series {
    /// Counts one finished attempt at `now_s` (seconds since the epoch).
    pub(crate) fn record(&self, now_s: u64, outcome: &str, duration_us: u64) {
        let Some(o) = Outcome::ALL.iter().position(|x| x.as_str() == outcome) else {
            return; // Every outcome name comes from `Outcome`; nothing else to count.
        };
        let b = usize::from(latency_bucket(duration_us)).min(HIST - 1);
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if slots.is_empty() {
            slots.resize(SECONDS as usize, Slot::EMPTY);
        }
        let slot = &mut slots[(now_s % SECONDS) as usize];
        if slot.second != now_s {
            *slot = Slot {
                second: now_s,
                ..Slot::EMPTY
            };
        }
        slot.counts[o] = slot.counts[o].saturating_add(1);
        slot.hist[b] = slot.hist[b].saturating_add(1);
    }

    /// The last `seconds` seconds up to `now_s` (at most [`SECONDS`]), in
    /// points of `step_s` seconds; the first point may be partly before the
    /// window when `step_s` does not divide it.
    pub fn window(&self, now_s: u64, seconds: u64, step_s: u64) -> SeriesWindow {
        let seconds = seconds.clamp(1, SECONDS);
        let step_s = step_s.clamp(1, seconds);
        let n = seconds.div_ceil(step_s);
        // The last point ends with `now_s`.
        let first = (now_s + 1).saturating_sub(n * step_s);
        let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let points = (0..n)
            .map(|i| {
                let start = first + i * step_s;
                let mut counts = [0u64; OUTCOMES];
                let mut hist = [0u64; HIST];
                for s in start..start + step_s {
                    // Seconds older than the ring were overwritten; later
                    // ones (a window reaching back before the epoch) are not yet.
                    if s > now_s || now_s - s >= SECONDS {
                        continue;
                    }
                    let Some(slot) = slots.get((s % SECONDS) as usize) else {
                        continue;
                    };
                    if slot.second != s {
                        continue;
                    }
                    for (c, v) in counts.iter_mut().zip(slot.counts) {
                        *c += u64::from(v);
                    }
                    for (h, v) in hist.iter_mut().zip(slot.hist) {
                        *h += u64::from(v);
                    }
                }
                SeriesPoint {
                    time_ms: start * 1000,
                    deliveries: Outcome::ALL
                        .iter()
                        .zip(counts)
                        .filter(|(_, c)| *c > 0)
                        .map(|(o, c)| (o.as_str().to_string(), c))
                        .collect(),
                    p50_us: percentile(&hist, 0.5),
                    p99_us: percentile(&hist, 0.99),
                }
            })
            .collect();
        SeriesWindow { step_s, points }
    }
}

/// The upper bound of the bucket holding the `p` quantile (0 when empty).
fn percentile(hist: &[u64; HIST], p: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let rank = ((p * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in hist.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return latency_bucket_high(i as u16);
        }
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_outcomes_per_step_and_forgets_the_past() {
        let s = Series::default();
        let t = 1_000_000;
        s.record(t - 5, "ok", 100);
        s.record(t - 5, "ok", 100);
        s.record(t - 4, "trap", 5000);
        s.record(t, "ok", 100);
        s.record(t, "no_such_outcome", 100);
        let w = s.window(t, 10, 5);
        assert_eq!(w.step_s, 5);
        assert_eq!(w.points.len(), 2);
        assert_eq!(w.points[0].time_ms, (t - 9) * 1000);
        // Steps [t-9, t-5] and [t-4, t].
        assert_eq!(w.points[0].deliveries.len(), 1);
        assert_eq!(w.points[0].deliveries["ok"], 2);
        assert_eq!(w.points[1].deliveries["trap"], 1);
        assert_eq!(w.points[1].deliveries["ok"], 1);
        assert_eq!(w.points[1].time_ms, (t - 4) * 1000);

        // An hour later the slot of `t - 5` is reused, the old counts gone.
        let later = t - 5 + SECONDS;
        s.record(later, "timeout", 10);
        let w = s.window(later, 1, 1);
        assert_eq!(w.points[0].deliveries.len(), 1);
        assert_eq!(w.points[0].deliveries["timeout"], 1);
        // And the second an hour ago is out of the window, not counted twice.
        let w = s.window(later, SECONDS, SECONDS);
        let total: u64 = w.points[0].deliveries.values().sum();
        assert_eq!(total, 1 + 1 + 1, "{w:?}"); // `t - 4`, `t` and `later`
    }

    #[test]
    fn percentiles_are_bucket_bounds() {
        let s = Series::default();
        let t = 50_000;
        for _ in 0..98 {
            s.record(t, "ok", 100);
        }
        s.record(t, "ok", 10_000);
        s.record(t, "ok", 10_000);
        let p = &s.window(t, 1, 1).points[0];
        assert!((100..=119).contains(&p.p50_us), "{p:?}");
        assert!((10_000..=11_900).contains(&p.p99_us), "{p:?}");
        let empty = &s.window(t + 10, 1, 1).points[0];
        assert_eq!((empty.p50_us, empty.p99_us), (0, 0));
        assert!(empty.deliveries.is_empty());
    }

    #[test]
    fn odd_windows_are_clamped() {
        let s = Series::default();
        let w = s.window(10, 0, 0);
        assert_eq!((w.step_s, w.points.len()), (1, 1));
        let w = s.window(5, 100_000, 7);
        assert_eq!(w.points.len(), SECONDS.div_ceil(7) as usize);
        // Seconds before the epoch do not exist: no underflow.
        assert!(w.points.iter().all(|p| p.deliveries.is_empty()));
        assert_eq!(w.points[0].time_ms, 0);
    }
}
