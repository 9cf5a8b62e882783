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
//! Durability is unchanged: a pending entry leaves the store only with its
//! log line, and a crash before the write runs the delivery again
//! (at-least-once), as a crash between a delivery and its write always did.
//! Failed and retried attempts are rarer and are still written by the
//! worker, before it moves on.

use std::sync::Arc;
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

/// A queue to the recorder thread and its receiving end.
pub(super) fn channel() -> (Recorder, Receiver<Finished>) {
    std::sync::mpsc::sync_channel(BACKLOG)
}

impl Inner {
    /// The recorder thread: writes what the workers hand over until every
    /// worker is gone and nothing is left.
    pub(super) fn record_loop(self: &Arc<Self>, rx: Receiver<Finished>) {
        while let Ok(first) = rx.recv() {
            let mut batch = Vec::with_capacity(BATCH.min(64));
            batch.push(first);
            while batch.len() < BATCH {
                match rx.try_recv() {
                    Ok(f) => batch.push(f),
                    Err(_) => break,
                }
            }
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
        if wake {
            self.wake.notify_all();
        }
        for n in notices {
            let _ = self.notices.send(Arc::new(n));
        }
    }
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
