//! The durable queue: accepted events, their pending deliveries, retries and
//! idempotency keys.
//!
//! Keys: `events` = event id; `event_refs` = event id → u32 BE count of
//! pending deliveries holding the event (it is removed when that reaches 0);
//! `pending` = `lp(event id) handler`; `idempotency` = `lp(tenant) lp(key)`.
//!
//! Delivery transitions write the log line and stats first and the queue
//! change second: a crash in between runs the delivery again
//! (at-least-once) and logs it twice, which is acceptable; the reverse order
//! could lose the log line of a delivery that happened.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionalTree;

use super::stats::StatKind;
use super::{
    AbortExt, AttemptError, LogEntry, Pending, Result, SledExt, Store, StoreError, TxResult,
    corrupt, decode, encode, keys, tx_err,
};
use crate::event::{Event, now_ms};

pub(super) const META_ACCEPTED: &[u8] = b"events_accepted";
pub(super) const META_UNROUTED: &[u8] = b"events_unrouted";

#[derive(Serialize, Deserialize)]
pub(super) struct IdemRecord {
    pub(super) event_id: String,
    pub(super) time_ms: u64,
}

pub(super) fn pending_key(event_id: &str, handler: &str) -> Vec<u8> {
    let mut k = keys::parts(&[event_id.as_bytes()]);
    k.extend_from_slice(handler.as_bytes());
    k
}

pub(super) fn idem_key(tenant: &str, key: &str) -> Vec<u8> {
    keys::parts(&[tenant.as_bytes(), key.as_bytes()])
}

/// The pending deliveries' count of an event, from its `event_refs` value.
fn refs_value(event_id: &str, value: Option<&[u8]>) -> Result<u32> {
    match value {
        None => Ok(0),
        Some(b) => {
            keys::read_u32(b).ok_or_else(|| corrupt("event_refs", event_id.as_bytes(), "not a u32"))
        }
    }
}

/// Reads the pending deliveries' count of an event, inside a transaction.
pub(super) fn refs_tx(refs: &TransactionalTree, event_id: &str) -> TxResult<u32> {
    refs_value(event_id, refs.get(event_id)?.as_deref()).abort()
}

/// One pending delivery of an event is gone: drop the event with the last.
pub(super) fn release_tx(
    events: &TransactionalTree,
    refs: &TransactionalTree,
    event_id: &str,
) -> TxResult<()> {
    match refs_tx(refs, event_id)?.saturating_sub(1) {
        0 => {
            events.remove(event_id)?;
            refs.remove(event_id)?;
        }
        n => {
            refs.insert(event_id, &n.to_be_bytes())?;
        }
    }
    Ok(())
}

struct Prepared<'a> {
    /// Where the event is in the batch.
    index: usize,
    event_id: &'a str,
    event: Vec<u8>,
    /// Per handler: its name, the pending key and the encoded entry.
    pending: Vec<(&'a str, Vec<u8>, Vec<u8>)>,
}

impl Store {
    /// Makes a batch of events durable in one transaction: each event with a
    /// pending delivery (attempt 1, due now) per matched handler, plus its
    /// idempotency key. Returns once the batch is as durable as
    /// [`Durability`](super::Durability) asks. Events that matched no handler
    /// are counted (and their idempotency key kept) but not stored.
    /// Accepting an event twice does not duplicate its deliveries.
    pub fn accept(&self, batch: &[(Event, Vec<String>)]) -> Result<()> {
        let refs: Vec<(&Event, &[String])> = batch.iter().map(|(e, h)| (e, h.as_slice())).collect();
        self.accept_refs(&refs).map(drop)
    }

    /// [`Self::accept`] for shared events (the [`Inbox`](super::Inbox)
    /// append): the events stored and, for each, the handlers whose
    /// pending delivery it created (an event or delivery stored before is
    /// not named again).
    pub(super) fn accept_shared<'a>(
        &self,
        batch: &'a [(Arc<Event>, Vec<String>)],
    ) -> Result<Vec<(&'a Arc<Event>, Vec<&'a str>)>> {
        let refs: Vec<(&Event, &[String])> =
            batch.iter().map(|(e, h)| (&**e, h.as_slice())).collect();
        let created = self.accept_refs(&refs)?;
        Ok(created
            .into_iter()
            .map(|(i, handlers)| (&batch[i].0, handlers))
            .collect())
    }

    /// The accept itself; per stored event (by index into `batch`), the
    /// handlers whose pending delivery it created.
    fn accept_refs<'a>(
        &self,
        batch: &[(&'a Event, &'a [String])],
    ) -> Result<Vec<(usize, Vec<&'a str>)>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let now = now_ms();
        let mut prepared = Vec::with_capacity(batch.len());
        let mut idem = Vec::new();
        for (index, &(event, handlers)) in batch.iter().enumerate() {
            if let Some(k) = &event.idempotency_key {
                let rec = IdemRecord {
                    event_id: event.id.clone(),
                    time_ms: event.time,
                };
                idem.push((idem_key(&event.tenant, k), encode(&rec)?));
            }
            let mut handlers: Vec<&'a str> = handlers.iter().map(String::as_str).collect();
            handlers.sort_unstable();
            handlers.dedup();
            if handlers.is_empty() {
                continue;
            }
            let mut pending = Vec::with_capacity(handlers.len());
            for h in handlers {
                let p = Pending {
                    event_id: event.id.clone(),
                    handler: h.into(),
                    attempt: 1,
                    due_ms: now,
                    version: None,
                    errors: Vec::new(),
                };
                pending.push((h, pending_key(&event.id, h), encode(&p)?));
            }
            prepared.push(Prepared {
                index,
                event_id: &event.id,
                event: encode(event)?,
                pending,
            });
        }
        let t = self.t();
        // One accept at a time: sled runs transactions one by one anyway,
        // and concurrent batches only add CPU spent waiting and retrying,
        // taken from the workers delivering what was already accepted.
        let one_at_a_time = self.queue_lock();
        let created = (&t.events, &t.event_refs, &t.pending, &t.idempotency)
            .transaction(|(events, refs, pending, idempotency)| {
                let mut created = Vec::with_capacity(prepared.len());
                for p in &prepared {
                    let mut count = refs_tx(refs, p.event_id)?;
                    let mut new = Vec::with_capacity(p.pending.len());
                    for (h, k, v) in &p.pending {
                        if pending.get(k)?.is_none() {
                            pending.insert(k.as_slice(), v.as_slice())?;
                            count += 1;
                            new.push(*h);
                        }
                    }
                    events.insert(p.event_id, p.event.as_slice())?;
                    refs.insert(p.event_id, &count.to_be_bytes())?;
                    created.push((p.index, new));
                }
                for (k, v) in &idem {
                    idempotency.insert(k.as_slice(), v.as_slice())?;
                }
                Ok(created)
            })
            .map_err(tx_err)?;
        drop(one_at_a_time);
        self.commit_wait()?;
        self.bump(META_ACCEPTED, batch.len() as i64)?;
        let unrouted = batch.iter().filter(|(_, h)| h.is_empty()).count();
        if unrouted > 0 {
            self.bump(META_UNROUTED, unrouted as i64)?;
        }
        Ok(created)
    }

    /// An accepted event that still has unfinished deliveries.
    pub fn event(&self, id: &str) -> Result<Option<Event>> {
        self.t()
            .events
            .get(id)
            .sled()?
            .map(|b| decode("events", id.as_bytes(), &b))
            .transpose()
    }

    /// Every unfinished delivery in (due time, event id, handler) order —
    /// what to run after a restart.
    pub fn pending(&self) -> Result<Vec<Pending>> {
        let mut all = self
            .t()
            .pending
            .iter()
            .map(|item| {
                let (k, v) = item.sled()?;
                decode::<Pending>("pending", &k, &v)
            })
            .collect::<Result<Vec<_>>>()?;
        all.sort_by(|a, b| {
            (a.due_ms, &a.event_id, &a.handler).cmp(&(b.due_ms, &b.event_id, &b.handler))
        });
        Ok(all)
    }

    /// A delivery is done (any final outcome that is not a dead letter):
    /// logs it, counts it, removes the pending entry, and the event with
    /// the last. Finishing twice is harmless.
    pub fn finish(&self, p: &Pending, entry: &LogEntry) -> Result<()> {
        self.finish_all(&[(p, entry)])
    }

    /// [`Self::finish`] for many deliveries: the log lines, one stats update
    /// per handler, then the pending entries, all with plain writes (no sled
    /// batch or transaction, see [`Self::remove_pending`]). Deliveries of
    /// one event may be among them.
    pub fn finish_all(&self, done: &[(&Pending, &LogEntry)]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let entries: Vec<&LogEntry> = done.iter().map(|&(_, e)| e).collect();
        self.append_logs(&entries)?;
        self.record_stats_of(&entries, StatKind::Attempt)?;
        for (p, _) in done {
            // Taken per delivery, so an accept waits for one removal at
            // most, not for a whole batch.
            let _queue = self.queue_lock();
            self.remove_pending(p)?;
        }
        Ok(())
    }

    /// The lock every change to `pending`, `events` and `event_refs` holds.
    pub(super) fn queue_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes one pending delivery and releases its event (removed with
    /// its last delivery), with plain writes: the caller holds
    /// [`Self::queue_lock`]. A crash between the writes leaves a count too
    /// high or an event without deliveries, which
    /// [`Self::reconcile_queue`] repairs at the next open. Whether the
    /// delivery was pending.
    fn remove_pending(&self, p: &Pending) -> Result<bool> {
        let t = self.t();
        let key = pending_key(&p.event_id, &p.handler);
        if t.pending.remove(key).sled()?.is_none() {
            return Ok(false);
        }
        let id = p.event_id.as_str();
        let count = self.refs(id)?;
        match count.saturating_sub(1) {
            0 => {
                t.event_refs.remove(id).sled()?;
                t.events.remove(id).sled()?;
            }
            n => {
                t.event_refs.insert(id, &n.to_be_bytes()[..]).sled()?;
            }
        }
        Ok(true)
    }

    /// How many pending deliveries hold event `id`, by its stored count.
    fn refs(&self, id: &str) -> Result<u32> {
        refs_value(id, self.t().event_refs.get(id).sled()?.as_deref())
    }

    /// Makes `event_refs` and `events` agree with `pending` again after a
    /// crash cut [`Self::remove_pending`]'s writes short: each count is the
    /// number of pending deliveries of its event, and an event with none is
    /// dropped. Runs at open, before anything else uses the store; reads the
    /// keys of the three trees once.
    pub(super) fn reconcile_queue(&self) -> Result<()> {
        let _queue = self.queue_lock();
        let t = self.t();
        let mut counts: std::collections::HashMap<Vec<u8>, u32> = Default::default();
        for key in t.pending.iter().keys() {
            let key = key.sled()?;
            let Some((id, _)) = keys::split_part(&key) else {
                return Err(corrupt("pending", &key, "no event id"));
            };
            *counts.entry(id.to_vec()).or_default() += 1;
        }
        let (mut fixed, mut dropped) = (0u64, 0u64);
        for item in t.event_refs.iter() {
            let (id, v) = item.sled()?;
            let want = counts.get(id.as_ref()).copied().unwrap_or(0);
            if keys::read_u32(&v) == Some(want) {
                continue;
            }
            fixed += 1;
            if want == 0 {
                t.event_refs.remove(&id).sled()?;
            } else {
                t.event_refs.insert(&id, &want.to_be_bytes()[..]).sled()?;
            }
        }
        for (id, n) in &counts {
            if !t.event_refs.contains_key(id).sled()? {
                fixed += 1;
                t.event_refs
                    .insert(id.as_slice(), &n.to_be_bytes()[..])
                    .sled()?;
            }
        }
        for id in t.events.iter().keys() {
            let id = id.sled()?;
            if !counts.contains_key(id.as_ref()) {
                dropped += 1;
                t.events.remove(&id).sled()?;
            }
        }
        if fixed + dropped > 0 {
            tracing::warn!(
                counts_fixed = fixed,
                events_dropped = dropped,
                "Repaired event reference counts left by an interrupted write"
            );
            self.flush()?;
        }
        Ok(())
    }

    /// Removes every pending delivery to `handler` (and each event with its
    /// last delivery); how many.
    /// Removes one unfinished delivery (its event too when it was the
    /// last); whether it was there.
    pub(super) fn drop_pending(&self, p: &Pending) -> Result<bool> {
        let _queue = self.queue_lock();
        self.remove_pending(p)
    }

    pub(super) fn discard_pending(&self, handler: &str) -> Result<u64> {
        let mut n = 0;
        for p in self.pending()? {
            if p.handler == handler {
                let _queue = self.queue_lock();
                n += u64::from(self.remove_pending(&p)?);
            }
        }
        Ok(n)
    }

    /// An attempt failed and will run again at `due_ms`: logs and counts it,
    /// then stores the next attempt with this attempt's error appended.
    /// [`StoreError::NotFound`] when the delivery is no longer pending (its
    /// handler was deleted meanwhile).
    pub fn retry_later(&self, p: &Pending, entry: &LogEntry, due_ms: u64) -> Result<Pending> {
        self.append_log(entry)?;
        self.record_stats(entry, StatKind::Retry)?;
        let key = pending_key(&p.event_id, &p.handler);
        let pending = &self.t().pending;
        let _queue = self.queue_lock();
        let Some(b) = pending.get(&key).sled()? else {
            return Err(not_pending(p));
        };
        let mut next: Pending = decode("pending", &key, &b)?;
        next.errors.push(attempt_error(next.attempt, entry));
        next.attempt = next.attempt.saturating_add(1);
        next.due_ms = due_ms;
        pending.insert(key, encode(&next)?).sled()?;
        Ok(next)
    }

    /// Records `event`'s idempotency key (if it has one) with a plain
    /// write: the log inbox's append, whose log record carries the key too.
    pub(super) fn remember_idempotency(&self, event: &Event) -> Result<()> {
        let Some(k) = &event.idempotency_key else {
            return Ok(());
        };
        let rec = IdemRecord {
            event_id: event.id.clone(),
            time_ms: event.time,
        };
        self.t()
            .idempotency
            .insert(idem_key(&event.tenant, k), encode(&rec)?)
            .sled()
            .map(drop)
    }

    /// The id of an event accepted with this idempotency key within `window`.
    pub fn idempotent_id(
        &self,
        tenant: &str,
        key: &str,
        window: Duration,
    ) -> Result<Option<String>> {
        let k = idem_key(tenant, key);
        let Some(b) = self.t().idempotency.get(&k).sled()? else {
            return Ok(None);
        };
        let rec: IdemRecord = decode("idempotency", &k, &b)?;
        let window_ms = u64::try_from(window.as_millis()).unwrap_or(u64::MAX);
        Ok((now_ms().saturating_sub(rec.time_ms) <= window_ms).then_some(rec.event_id))
    }
}

pub(super) fn attempt_error(attempt: u32, entry: &LogEntry) -> AttemptError {
    AttemptError {
        attempt,
        outcome: entry.outcome.clone(),
        error: entry.error.clone(),
        time_ms: entry.time_ms,
    }
}

pub(super) fn not_pending(p: &Pending) -> StoreError {
    StoreError::NotFound(format!(
        "pending delivery of event {} to handler {}",
        p.event_id, p.handler
    ))
}

#[cfg(test)]
mod tests;
