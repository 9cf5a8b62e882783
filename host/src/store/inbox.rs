//! The inbox: the one narrow interface between the dispatcher and whatever
//! keeps accepted events durable until each of their deliveries is final.
//!
//! The dispatcher (accept, workers, recorder, restart) talks to the inbox
//! only through [`Inbox`]; everything else it needs from storage (handlers,
//! modules, the delivery log's readers, KV, dead-letter queries) stays on
//! [`Store`]. An implementation owns:
//!
//! - **append**: a batch of routed events becomes durable as one unit
//!   (as durable as [`Durability`](super::Durability) asks) before the call
//!   returns; the deliveries it created (one per event × handler, attempt 1,
//!   due now) become *ready*; an inbox may also offer it in two halves
//!   (queue now, a future that completes once durable) for a caller on an
//!   async reactor, so no thread sleeps per request;
//! - **take ready**: hands the caller deliveries that became ready and that
//!   it was not handed yet (those appended, replayed at open, or revived
//!   from the dead letters), with their events;
//! - **finish / retry at / dead-letter one** delivery the caller ran, each
//!   with the log record of the attempt (written no later than the state
//!   change, so a delivery that moved on always has its log line); a retry
//!   stays with the caller, who runs it again at its due time;
//! - **replay** at open: every delivery not final as of the last durable
//!   checkpoint becomes ready again (at-least-once: one that finished after
//!   the checkpoint runs again).
//!
//! Idempotency keys are the inbox's too (they are written with the append,
//! and a distributed log deduplicates by message id natively), as are an
//! event that still has unfinished deliveries, reviving a dead letter, and
//! discarding the deliveries of a deleted handler.
//!
//! [`Store`] implements it on sled (`queue.rs`, `dlq.rs`), [`LogInbox`](super::LogInbox)
//! on the segment log (`loginbox.rs`); another implementation must slot in
//! without changes to the dispatcher.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{DeadLetter, LogEntry, Pending, Result, Store};
use crate::event::Event;

/// The second half of [`Inbox::append_queued`]: the ids
/// [`Inbox::append`] returns.
pub type Appended = std::pin::Pin<Box<dyn Future<Output = Result<Vec<String>>> + Send + 'static>>;

/// A delivery the caller may run: what is pending, and the event it carries.
#[derive(Clone, Debug)]
pub struct Ready {
    /// Which handler, which attempt, when, with the errors so far.
    pub pending: Pending,
    /// The event (shared by the deliveries of one event).
    pub event: Arc<Event>,
}

/// See the module docs. Every method but [`Inbox::append_queued`] blocks
/// (disk I/O, a wait for the group commit): call them off the async
/// reactor.
pub trait Inbox: Send + Sync + std::fmt::Debug {
    /// Makes `batch` durable as one unit: each event with one delivery per
    /// handler it was routed to (an event routed nowhere is counted, and its
    /// idempotency key kept, but nothing is delivered). The deliveries
    /// become ready. Returns the ids of the events stored for delivery, in
    /// batch order. Appending an event twice does not duplicate its
    /// deliveries.
    fn append(&self, batch: &[(Arc<Event>, Vec<String>)]) -> Result<Vec<String>>;

    /// [`Inbox::append`] in two halves, for a caller on an async reactor:
    /// this call only encodes and queues the batch (no disk I/O, no wait),
    /// and the future it returns completes the append once the batch is
    /// durable, with no thread blocked meanwhile. Drive the future to its
    /// end whatever becomes of the request (spawn it): the batch may be
    /// durable already, and a future dropped halfway leaves it uncounted
    /// until the next open. Only for an inbox that
    /// [`Inbox::queues_appends`]; any other refuses it: call
    /// [`Inbox::append`] on a blocking thread instead.
    fn append_queued(&self, batch: &[(Arc<Event>, Vec<String>)]) -> Result<Appended> {
        let _ = batch;
        Err(super::StoreError::Unavailable(
            "this inbox has no queued append".into(),
        ))
    }

    /// Whether [`Inbox::append_queued`] is offered, and
    /// [`Inbox::idempotent_id`] is cheap enough to call on a reactor
    /// thread (a local read, no network round trip): the caller may then
    /// prepare a batch there. False unless the inbox says so.
    fn queues_appends(&self) -> bool {
        false
    }

    /// Up to `max` ready deliveries the caller was not handed before, in
    /// the order they became ready.
    fn take_ready(&self, max: usize) -> Result<Vec<Ready>>;

    /// Deliveries are final (any outcome but a dead letter): their log
    /// records are written and they are never handed out again, not even
    /// by a later [`Inbox::replay`]. Finishing twice is harmless.
    fn finish(&self, done: &[(&Pending, &LogEntry)]) -> Result<()>;

    /// An attempt failed and the delivery runs again at `due_ms`: logs the
    /// attempt and durably schedules the next one (this attempt's error
    /// appended), which is returned and stays with the caller.
    /// [`StoreError::NotFound`](super::StoreError::NotFound) when the
    /// delivery is no longer pending (its handler was deleted meanwhile).
    fn retry_at(&self, p: &Pending, entry: &LogEntry, due_ms: u64) -> Result<Pending>;

    /// A delivery exhausted its policy: logs the attempt and moves it to
    /// the dead letters with every attempt's error and a copy of the event.
    fn dead_letter(&self, p: &Pending, entry: &LogEntry) -> Result<DeadLetter>;

    /// Puts a dead letter back as a ready delivery (attempt 1, due now,
    /// pinned to `version` when given); the dead letter is removed.
    /// [`StoreError::Conflict`](super::StoreError::Conflict) when the same
    /// delivery is pending already, `NotFound` for an unknown dead letter,
    /// handler or version.
    fn revive(&self, dead_letter_id: &str, version: Option<u32>) -> Result<()>;

    /// Removes dead letters of `handler` (all handlers when `None`) that
    /// are older than `before_ms` (all when `None`); how many.
    fn purge_dead_letters(&self, handler: Option<&str>, before_ms: Option<u64>) -> Result<u64>;

    /// Rebuilds the ready set from the last durable checkpoint: every
    /// delivery not final there becomes ready, in due-time order. Called
    /// once, when the dispatcher starts; how many deliveries.
    fn replay(&self) -> Result<usize>;

    /// Event `id` while it still has deliveries that are not final.
    fn event(&self, id: &str) -> Result<Option<Arc<Event>>>;

    /// Drops every unfinished delivery to `handler` (it was deleted): none
    /// is handed out again, logged or dead-lettered. How many.
    fn discard(&self, handler: &str) -> Result<u64>;

    /// The id of an event appended with this idempotency key within `window`.
    fn idempotent_id(&self, tenant: &str, key: &str, window: Duration) -> Result<Option<String>>;

    /// Makes all progress so far durable (a clean shutdown).
    fn flush(&self) -> Result<()>;

    /// Whether the inbox itself runs a retried delivery again at its due
    /// time (a distributed log redelivers it, possibly on another node):
    /// then the caller forgets the delivery [`Inbox::retry_at`] returns
    /// instead of keeping it. False for the embedded inboxes.
    fn redelivers_retries(&self) -> bool {
        false
    }

    /// Whether [`Inbox::finish`] and [`Inbox::dead_letter`] keep an event
    /// whose last delivery they end for [`Store::archived_event`]
    /// themselves; when false, the caller archives it
    /// ([`Store::archive_events`]).
    fn keeps_finished_events(&self) -> bool {
        false
    }

    /// Connects an inbox whose deliveries also become ready on their own
    /// (taken from a shared log by a background task, not only by
    /// [`Inbox::append`] or [`Inbox::replay`]) to its caller. The embedded
    /// inboxes ignore it.
    fn attach(&self, hooks: InboxHooks) {
        let _ = hooks;
    }
}

/// What an inbox with background intake needs from its caller.
#[derive(Clone)]
pub struct InboxHooks {
    /// Called after deliveries became ready: the caller takes them.
    pub wake: Arc<dyn Fn() + Send + Sync>,
    /// Whether the caller runs deliveries to this handler (it is deployed
    /// or built in here); the inbox takes no deliveries for others.
    pub serves: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl std::fmt::Debug for InboxHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InboxHooks").finish_non_exhaustive()
    }
}

/// The ready deliveries a [`Store`] inbox has not handed out yet.
#[derive(Debug, Default)]
pub(super) struct ReadySet(Mutex<VecDeque<Ready>>);

impl ReadySet {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Ready>> {
        // A queue of plain values, each pushed or popped in one call: a
        // panic elsewhere cannot leave it half-changed.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn extend(&self, ready: impl IntoIterator<Item = Ready>) {
        self.lock().extend(ready);
    }

    pub(super) fn take(&self, max: usize) -> Vec<Ready> {
        let mut q = self.lock();
        let n = max.min(q.len());
        q.drain(..n).collect()
    }
}

/// A new delivery: attempt 1, due `now`.
pub(super) fn first_attempt(
    event_id: &str,
    handler: &str,
    now: u64,
    version: Option<u32>,
) -> Pending {
    Pending {
        event_id: event_id.to_string(),
        handler: handler.to_string(),
        attempt: 1,
        due_ms: now,
        version,
        errors: Vec::new(),
    }
}

/// The sled inbox: events, pending entries and idempotency keys in their
/// own trees, an append being one transaction (see `queue.rs`).
impl Inbox for Store {
    fn append(&self, batch: &[(Arc<Event>, Vec<String>)]) -> Result<Vec<String>> {
        let stored = self.accept_shared(batch)?;
        let now = crate::event::now_ms();
        let mut ids = Vec::with_capacity(stored.len());
        let mut ready = Vec::new();
        for (event, handlers) in stored {
            ids.push(event.id.clone());
            for h in handlers {
                ready.push(Ready {
                    pending: first_attempt(&event.id, h, now, None),
                    event: event.clone(),
                });
            }
        }
        self.inner.ready.extend(ready);
        Ok(ids)
    }

    fn take_ready(&self, max: usize) -> Result<Vec<Ready>> {
        Ok(self.inner.ready.take(max))
    }

    fn finish(&self, done: &[(&Pending, &LogEntry)]) -> Result<()> {
        self.finish_all(done)
    }

    fn retry_at(&self, p: &Pending, entry: &LogEntry, due_ms: u64) -> Result<Pending> {
        self.retry_later(p, entry, due_ms)
    }

    fn dead_letter(&self, p: &Pending, entry: &LogEntry) -> Result<DeadLetter> {
        Store::dead_letter(self, p, entry)
    }

    fn revive(&self, dead_letter_id: &str, version: Option<u32>) -> Result<()> {
        let (pending, event) = self.replay_dead_letter_with_event(dead_letter_id, version)?;
        self.inner.ready.extend([Ready {
            pending,
            event: Arc::new(event),
        }]);
        Ok(())
    }

    fn purge_dead_letters(&self, handler: Option<&str>, before_ms: Option<u64>) -> Result<u64> {
        Store::purge_dead_letters(self, handler, before_ms)
    }

    fn replay(&self) -> Result<usize> {
        let mut events: std::collections::HashMap<String, Option<Arc<Event>>> = Default::default();
        let mut ready = Vec::new();
        for p in self.pending()? {
            let event = match events.get(&p.event_id) {
                Some(e) => e.clone(),
                None => {
                    let e = self.event(&p.event_id)?.map(Arc::new);
                    events.insert(p.event_id.clone(), e.clone());
                    e
                }
            };
            let Some(event) = event else {
                tracing::error!(event = %p.event_id, handler = %p.handler, "Pending delivery without its event; skipped");
                continue;
            };
            ready.push(Ready { pending: p, event });
        }
        let n = ready.len();
        self.inner.ready.extend(ready);
        Ok(n)
    }

    fn event(&self, id: &str) -> Result<Option<Arc<Event>>> {
        Ok(Store::event(self, id)?.map(Arc::new))
    }

    fn discard(&self, handler: &str) -> Result<u64> {
        self.discard_pending(handler)
    }

    fn idempotent_id(&self, tenant: &str, key: &str, window: Duration) -> Result<Option<String>> {
        Store::idempotent_id(self, tenant, key, window)
    }

    fn flush(&self) -> Result<()> {
        Store::flush(self)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn entry_for(p: &Pending, outcome: &str) -> LogEntry {
        let e = event("tick", "acme");
        LogEntry {
            event_id: p.event_id.clone(),
            attempt: p.attempt,
            ..entry(&p.handler, &e, outcome, crate::event::now_ms())
        }
    }

    fn routed(n: usize, handlers: &[&str]) -> Vec<(Arc<Event>, Vec<String>)> {
        (0..n)
            .map(|_| {
                let handlers = handlers.iter().map(|h| h.to_string()).collect();
                (Arc::new(event("tick", "acme")), handlers)
            })
            .collect()
    }

    #[test]
    fn appended_deliveries_are_handed_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        let batch = routed(3, &["a", "b"]);
        let mut unrouted = routed(1, &[]);
        unrouted.extend(batch.iter().cloned());
        let ids = Inbox::append(&s, &unrouted).unwrap();
        let want: Vec<String> = batch.iter().map(|(e, _)| e.id.clone()).collect();
        assert_eq!(ids, want, "only events stored for delivery are named");
        let ready = s.take_ready(4).unwrap();
        assert_eq!(ready.len(), 4);
        assert_eq!(s.take_ready(usize::MAX).unwrap().len(), 2);
        assert!(s.take_ready(usize::MAX).unwrap().is_empty());
        assert_eq!(Inbox::event(&s, &want[0]).unwrap().unwrap().id, want[0]);
    }

    #[test]
    fn replay_hands_out_what_is_not_final_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let batch = routed(2, &["a", "b"]);
        {
            let s = open(dir.path());
            Inbox::append(&s, &batch).unwrap();
            let ready = s.take_ready(usize::MAX).unwrap();
            let first = &ready[0].pending;
            let entry = entry_for(first, "ok");
            Inbox::finish(&s, &[(first, &entry)]).unwrap();
            let second = &ready[1].pending;
            let entry = entry_for(second, "trap");
            let next = s.retry_at(second, &entry, 42).unwrap();
            assert_eq!((next.attempt, next.due_ms), (2, 42));
            s.flush().unwrap();
        }
        let s = open(dir.path());
        assert!(s.take_ready(usize::MAX).unwrap().is_empty());
        assert_eq!(s.replay().unwrap(), 3);
        let ready = s.take_ready(usize::MAX).unwrap();
        assert_eq!(ready[0].pending.due_ms, 42, "in due-time order");
        assert_eq!(ready[0].pending.attempt, 2);
        assert!(ready.iter().all(|r| r.event.id == r.pending.event_id));
    }

    #[test]
    fn discarding_a_handler_drops_only_its_deliveries() {
        let dir = tempfile::tempdir().unwrap();
        let batch = routed(2, &["gone", "kept"]);
        {
            let s = open(dir.path());
            Inbox::append(&s, &batch).unwrap();
            assert_eq!(s.discard("gone").unwrap(), 2);
            assert_eq!(s.discard("gone").unwrap(), 0);
            s.flush().unwrap();
        }
        let s = open(dir.path());
        assert_eq!(s.replay().unwrap(), 2);
        let ready = s.take_ready(usize::MAX).unwrap();
        assert!(ready.iter().all(|r| r.pending.handler == "kept"));
    }

    #[test]
    fn a_revived_dead_letter_is_ready_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path());
        deploy(&s, "a");
        let batch = routed(1, &["a"]);
        Inbox::append(&s, &batch).unwrap();
        let p = s.take_ready(1).unwrap().remove(0).pending;
        let dl = Inbox::dead_letter(&s, &p, &entry_for(&p, "trap")).unwrap();
        assert!(Inbox::event(&s, &p.event_id).unwrap().is_none());
        s.revive(&dl.id, None).unwrap();
        let again = s.take_ready(usize::MAX).unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(
            (again[0].pending.attempt, &again[0].event.id),
            (1, &p.event_id)
        );
        let err = s.revive(&dl.id, None).unwrap_err();
        assert!(
            matches!(err, super::super::StoreError::NotFound(_)),
            "{err}"
        );
    }
}
