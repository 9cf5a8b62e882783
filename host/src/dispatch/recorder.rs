//! Records successful deliveries off the workers, many at a time.
//!
//! A worker that ran a delivery successfully frees its concurrency slot
//! and hands the outcome to the recorder thread, then takes the next job.
//! The recorder drains what the workers handed it (up to [`BATCH`]) and
//! writes it with [`Inbox::finish`](crate::store::Inbox::finish):
//! one log batch, one stats update per handler and one queue transaction,
//! where a write per delivery cost 3–4 sled writes and a transaction. Only
//! then does it announce the outcomes (so whoever sees a notice finds the
//! log line) and release the ordering keys the deliveries held, so an
//! ordered handler's next delivery of a key still starts only after the
//! previous one is recorded.
//!
//! Under load the recorder lingers: after a batch of at least
//! [`LINGER_AFTER`] outcomes it sleeps [`LINGER`] once it has the next
//! outcome, then drains what came meanwhile. Without that, on 2 cores it
//! woke for every 5 outcomes or so, and each of its batches paid the log
//! block, the index entry, the stats and a wake-up of its own (see
//! BENCHMARKS.md, issue 14's fourteenth round). At a low rate a batch is
//! small and nothing waits; an outcome whose job holds an ordering key is
//! not held back either, since the key's next delivery waits for it.
//!
//! Durability is unchanged: a pending entry leaves the store only with its
//! log line, and a crash before the write runs the delivery again
//! (at-least-once), as a crash between a delivery and its write always did.
//! Failed and retried attempts are rarer and are still written by the
//! worker, before it moves on.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration, Instant};

use super::queue::Job;
use super::{DeliveryNotice, Inner, JobData, STORE_ERROR_PAUSE_MS};
use crate::event::now_ms;
use crate::store::LogEntry;

/// The most outcomes written in one go.
pub(super) const BATCH: usize = 512;
/// Outcomes the workers may hand over before they wait for the recorder.
pub(super) const BACKLOG: usize = 4 * BATCH;
/// A batch of at least this many outcomes means the recorder is busy, and
/// it lingers before the next one.
pub(super) const LINGER_AFTER: usize = 4;
/// How long the recorder lets outcomes gather once it is busy.
pub(super) const LINGER: Duration = Duration::from_micros(500);
/// An inbox append or a batch of outcomes that takes this long is logged
/// as a warning ([`crate::store::warn_if_slow`]).
pub(super) const SLOW_WRITE: Duration = Duration::from_millis(100);

/// A successful delivery waiting to be recorded.
pub(super) struct Finished {
    pub job: Job<JobData>,
    pub entry: LogEntry,
}

/// The workers' end of the recorder's queue.
pub(super) type Recorder = SyncSender<Finished>;

/// Outcomes handed to the recorder and outcomes it wrote, so a handler's
/// delete can wait until what its last deliveries handed over is written
/// (else their stats would be counted again under the deleted name, after
/// the delete forgot them).
#[derive(Debug, Default)]
pub(super) struct Progress {
    handed: AtomicU64,
    written: AtomicU64,
}

impl Progress {
    /// One outcome is about to be handed over: counted before the worker
    /// frees the delivery's slot, so a wait that saw the slot free sees it.
    pub(super) fn hand_over(&self) {
        self.handed.fetch_add(1, Ordering::SeqCst);
    }

    /// `n` handed outcomes were written (or put back to run again).
    pub(super) fn written(&self, n: usize) {
        self.written.fetch_add(n as u64, Ordering::SeqCst);
    }

    /// Waits until every outcome handed over so far is written, up to
    /// `deadline`; whether it was.
    pub(super) fn wait_written(&self, deadline: Instant) -> bool {
        let target = self.handed.load(Ordering::SeqCst);
        while self.written.load(Ordering::SeqCst) < target {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }
}

/// A queue to the recorder thread and its receiving end.
pub(super) fn channel() -> (Recorder, Receiver<Finished>) {
    std::sync::mpsc::sync_channel(BACKLOG)
}

impl Inner {
    /// The recorder thread: writes what the workers hand over until every
    /// worker is gone and nothing is left.
    pub(super) fn record_loop(self: &Arc<Self>, rx: Receiver<Finished>) {
        let mut busy = false;
        while let Ok(first) = rx.recv() {
            if lingers(busy, first.job.holds_key) {
                std::thread::sleep(LINGER);
            }
            let mut batch = Vec::with_capacity(BATCH.min(64));
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
            busy = is_busy(batch.len(), batch.iter().any(|f| f.job.holds_key));
            self.metrics.recorded(batch.len());
            self.record(batch);
        }
    }

    /// Writes `batch`, then announces each outcome and releases its key. A
    /// batch that fails is written one delivery at a time, so one bad entry
    /// does not hold back the rest; a delivery that still fails to record is
    /// run again after a pause (its pending entry is still stored).
    pub(super) fn record(&self, batch: Vec<Finished>) {
        let pairs: Vec<_> = batch
            .iter()
            .map(|f| (&f.job.data.pending, &f.entry))
            .collect();
        let started = Instant::now();
        let finished = self.inbox.finish(&pairs);
        crate::store::warn_if_slow(
            "Recording a batch of outcomes",
            pairs.len(),
            started.elapsed(),
            SLOW_WRITE,
        );
        let recorded: Vec<bool> = match finished {
            Ok(()) => vec![true; pairs.len()],
            Err(e) => {
                tracing::warn!(deliveries = pairs.len(), error = %e, "Recording a batch of outcomes failed; recording them one by one");
                pairs
                    .iter()
                    .map(|&(p, entry)| match self.inbox.finish(&[(p, entry)]) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(handler = %p.handler, event = %p.event_id, error = %e, "Recording a delivery outcome failed; will retry it");
                            false
                        }
                    })
                    .collect()
            }
        };
        drop(pairs);
        let finished: Vec<&crate::event::Event> = batch
            .iter()
            .zip(&recorded)
            .filter(|(_, ok)| **ok)
            .map(|(f, _)| &*f.job.data.event)
            .collect();
        self.archive(&finished);
        let mut notices = Vec::with_capacity(batch.len());
        let mut wake = false;
        let written = batch.len();
        {
            let mut s = self.sched();
            let retry_at = now_ms() + STORE_ERROR_PAUSE_MS;
            for (f, ok) in batch.into_iter().zip(recorded) {
                if !ok {
                    s.push_delayed(retry_at, f.job);
                    wake = true;
                    continue;
                }
                if f.job.holds_key {
                    s.release_key(&f.job.handler, f.job.key.as_deref());
                    wake = true;
                }
                notices.push(notice(f.entry, true));
            }
        }
        self.recorder_progress.written(written);
        if wake {
            self.wake.notify_all();
        }
        for n in notices {
            let _ = self.notices.send(Arc::new(n));
        }
    }
}

/// Whether the recorder waits [`LINGER`] before it drains the batch that
/// starts with an outcome (`holds_key`: whether its job holds an ordering
/// key): only when the last batch said it is `busy`, and not for a key,
/// since the key's next delivery waits for this record.
fn lingers(busy: bool, holds_key: bool) -> bool {
    busy && !holds_key
}

/// Whether a batch of `len` outcomes says the recorder is busy: at least
/// [`LINGER_AFTER`] of them, none holding an ordering key (`holds_key`).
fn is_busy(len: usize, holds_key: bool) -> bool {
    len >= LINGER_AFTER && !holds_key
}

/// What subscribers hear about a recorded attempt.
pub(super) fn notice(entry: LogEntry, final_attempt: bool) -> DeliveryNotice {
    DeliveryNotice {
        handler: entry.handler,
        version: entry.version,
        event_id: entry.event_id,
        event_type: entry.event_type,
        tenant: entry.tenant,
        outcome: entry.outcome,
        error: entry.error,
        attempt: entry.attempt,
        final_attempt,
        duration_us: entry.duration_us,
        fuel: entry.fuel,
        memory_bytes: entry.memory_bytes,
        time_ms: entry.time_ms,
        logs: entry.logs,
        json: Default::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recorder_lingers_only_when_busy_and_never_for_a_key() {
        // A small batch: the rate is low, the next outcome is written at once.
        assert!(!is_busy(1, false));
        assert!(!is_busy(LINGER_AFTER - 1, false));
        // A batch of LINGER_AFTER or more: outcomes come faster than the
        // recorder writes them one by one.
        assert!(is_busy(LINGER_AFTER, false));
        assert!(is_busy(BATCH, false));
        // An outcome holding an ordering key: its key's next delivery waits
        // for the record, so neither its batch nor it makes anyone wait.
        assert!(!is_busy(BATCH, true));
        assert!(lingers(true, false));
        assert!(!lingers(true, true));
        assert!(!lingers(false, false));
    }
}
