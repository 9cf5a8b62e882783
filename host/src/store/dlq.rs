//! Dead letters: deliveries that exhausted their policy, kept with a copy of
//! the event and every attempt's error until replayed or purged.
//!
//! Keys: `dead` = dead-letter ULID (its timestamp is `time_ms`, so time
//! bounds are key bounds); `dead_by_handler` = `lp(handler) ULID` → empty.
//! The index may briefly name a dead letter a crashed purge already removed;
//! readers skip such entries.

use serde::Deserialize;
use sled::Transactional;
use ulid::Ulid;

use super::handlers::version_key;
use super::queue::{attempt_error, not_pending, pending_key, refs_tx, release_tx};
use super::records::page_size;
use super::stats::StatKind;
use super::{
    AbortExt, DeadLetter, DeadLetterQuery, LogEntry, Pending, Result, SledExt, Store, StoreError,
    decode, encode, keys, tx_err,
};
use crate::event::{Event, now_ms};

/// Dead letters removed per sled batch when purging.
const PURGE_BATCH: usize = 1000;

fn index_key(handler: &str, id: &str) -> Vec<u8> {
    let mut k = keys::parts(&[handler.as_bytes()]);
    k.extend_from_slice(id.as_bytes());
    k
}

/// The smallest ULID text of a millisecond: a key bound for "at or after".
fn time_bound(ms: u64) -> Vec<u8> {
    Ulid::from_parts(ms.min((1 << 48) - 1), 0)
        .to_string()
        .into_bytes()
}

fn parse_cursor(c: &str) -> Result<Vec<u8>> {
    Ulid::from_string(c)
        .map(|_| c.as_bytes().to_vec())
        .map_err(|_| StoreError::BadInput(format!("malformed cursor {c:?}")))
}

impl Store {
    /// A delivery exhausted its policy: logs and counts the last attempt,
    /// then moves the pending entry to the dead letters with every attempt's
    /// error, releasing the event from the inbox (the dead letter keeps a copy).
    pub fn dead_letter(&self, p: &Pending, entry: &LogEntry) -> Result<DeadLetter> {
        self.append_log(entry)?;
        self.record_stats(entry, StatKind::DeadLetter)?;
        let id = self.new_ulid();
        let id_text = id.to_string();
        let key = pending_key(&p.event_id, &p.handler);
        let t = self.t();
        let _queue = self.queue_lock();
        (
            &t.pending,
            &t.events,
            &t.event_refs,
            &t.dead,
            &t.dead_by_handler,
        )
            .transaction(|(pending, events, refs, dead, index)| {
                let Some(b) = pending.remove(key.as_slice())? else {
                    return Err(not_pending(p)).abort();
                };
                let stored: Pending = decode("pending", &key, &b).abort()?;
                let Some(eb) = events.get(&p.event_id)? else {
                    let why = "missing while a delivery is pending";
                    return Err(super::corrupt("events", p.event_id.as_bytes(), why)).abort();
                };
                let event: Event = decode("events", p.event_id.as_bytes(), &eb).abort()?;
                let mut errors = stored.errors;
                errors.push(attempt_error(stored.attempt, entry));
                let dl = DeadLetter {
                    id: id_text.clone(),
                    event,
                    handler: p.handler.clone(),
                    version: entry.version,
                    errors,
                    time_ms: id.timestamp_ms(),
                };
                release_tx(events, refs, &p.event_id)?;
                dead.insert(id_text.as_str(), encode(&dl).abort()?)?;
                index.insert(index_key(&p.handler, &id_text), &[][..])?;
                Ok(dl)
            })
            .map_err(tx_err)
    }

    /// Stores a dead letter made outside sled (the log inbox), with a
    /// `meta` entry in the same transaction (where the log inbox records how
    /// far its dead letters are known to be in sled).
    pub(super) fn put_dead_letter(
        &self,
        dl: &DeadLetter,
        meta_key: &[u8],
        meta: &[u8],
    ) -> Result<()> {
        let value = encode(dl)?;
        let t = self.t();
        (&t.dead, &t.dead_by_handler, &t.meta)
            .transaction(|(dead, index, m)| {
                dead.insert(dl.id.as_str(), value.as_slice())?;
                index.insert(index_key(&dl.handler, &dl.id), &[][..])?;
                m.insert(meta_key, meta)?;
                Ok(())
            })
            .map_err(tx_err)
    }

    /// Removes one dead letter and its index entry (the log inbox's revive).
    pub(super) fn remove_dead_letter(&self, dl: &DeadLetter) -> Result<()> {
        let t = self.t();
        t.dead.remove(dl.id.as_str()).sled()?;
        t.dead_by_handler
            .remove(index_key(&dl.handler, &dl.id))
            .sled()
            .map(drop)
    }

    /// Dead letters matching `q`, newest first. The next page's cursor is
    /// the id of the last one returned.
    pub fn dead_letters(&self, q: &DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        let limit = page_size(q.limit);
        let mut hi = q.until_ms.map(|u| time_bound(u.saturating_add(1)));
        if let Some(c) = &q.cursor {
            let c = parse_cursor(c)?;
            hi = Some(hi.map_or(c.clone(), |h| h.min(c)));
        }
        let lo = q.since_ms.map_or_else(Vec::new, time_bound);
        let mut out = Vec::with_capacity(limit.min(64));
        match &q.handler {
            None => {
                let range = match hi {
                    Some(hi) => self.t().dead.range(lo..hi),
                    None => self.t().dead.range(lo..),
                };
                for item in range.rev().take(limit) {
                    let (k, v) = item.sled()?;
                    out.push(decode("dead", &k, &v)?);
                }
            }
            Some(h) => {
                let prefix = keys::parts(&[h.as_bytes()]);
                let with = |b: &[u8]| [prefix.as_slice(), b].concat();
                let range = match hi {
                    Some(hi) => self.t().dead_by_handler.range(with(&lo)..with(&hi)),
                    None => self.t().dead_by_handler.scan_prefix(&prefix),
                };
                for item in range.rev() {
                    if out.len() == limit {
                        break;
                    }
                    let (k, _) = item.sled()?;
                    if k[prefix.len()..] < lo[..] {
                        break;
                    }
                    if let Some(dl) = self.dead_letter_get_raw(&k[prefix.len()..])? {
                        out.push(dl);
                    }
                }
            }
        }
        Ok(out)
    }

    /// One dead letter.
    pub fn dead_letter_get(&self, id: &str) -> Result<Option<DeadLetter>> {
        self.dead_letter_get_raw(id.as_bytes())
    }

    fn dead_letter_get_raw(&self, id: &[u8]) -> Result<Option<DeadLetter>> {
        self.t()
            .dead
            .get(id)
            .sled()?
            .map(|b| decode("dead", id, &b))
            .transpose()
    }

    /// Puts a dead letter back in the queue: attempt 1, due now, pinned to
    /// `version` when given (which must exist). The dead letter is removed;
    /// failing again makes a new one. [`StoreError::Conflict`] when the same
    /// delivery is already pending. The handler must be in the handler
    /// table, unless its name has a `:`: built-in handlers (`zulip:acme`)
    /// are not in it, and no deployed handler's name may have one.
    pub fn replay_dead_letter(&self, id: &str, version: Option<u32>) -> Result<Pending> {
        self.replay_dead_letter_with_event(id, version)
            .map(|(p, _)| p)
    }

    /// [`Self::replay_dead_letter`], also returning the event.
    pub(super) fn replay_dead_letter_with_event(
        &self,
        id: &str,
        version: Option<u32>,
    ) -> Result<(Pending, Event)> {
        let now = now_ms();
        let t = self.t();
        let _queue = self.queue_lock();
        let trees = (
            &t.dead,
            &t.dead_by_handler,
            &t.events,
            &t.event_refs,
            &t.pending,
            &t.handlers,
            &t.versions,
        );
        trees
            .transaction(|(dead, index, events, refs, pending, handlers, versions)| {
                let Some(b) = dead.get(id)? else {
                    return Err(StoreError::NotFound(format!("dead letter {id}"))).abort();
                };
                let dl: DeadLetter = decode("dead", id.as_bytes(), &b).abort()?;
                let h = &dl.handler;
                if !h.contains(':') && handlers.get(h.as_str())?.is_none() {
                    return Err(StoreError::NotFound(format!("handler {h}"))).abort();
                }
                if let Some(v) = version
                    && versions.get(version_key(h, v))?.is_none()
                {
                    let what = format!("version {v} of handler {h}");
                    return Err(StoreError::NotFound(what)).abort();
                }
                let key = pending_key(&dl.event.id, h);
                if pending.get(&key)?.is_some() {
                    let what = format!("event {} is already pending for {h}", dl.event.id);
                    return Err(StoreError::Conflict(what)).abort();
                }
                let p = Pending {
                    event_id: dl.event.id.clone(),
                    handler: h.clone(),
                    attempt: 1,
                    due_ms: now,
                    version,
                    errors: Vec::new(),
                };
                let eid = dl.event.id.as_str();
                if events.get(eid)?.is_none() {
                    events.insert(eid, encode(&dl.event).abort()?)?;
                }
                let count = refs_tx(refs, eid)?.saturating_add(1);
                refs.insert(eid, &count.to_be_bytes()[..])?;
                pending.insert(key, encode(&p).abort()?)?;
                dead.remove(id)?;
                index.remove(index_key(h, id))?;
                Ok((p, dl.event))
            })
            .map_err(tx_err)
    }

    /// Removes dead letters of `handler` (all handlers when `None`) that are
    /// older than `before_ms` (all when `None`); how many.
    pub fn purge_dead_letters(&self, handler: Option<&str>, before_ms: Option<u64>) -> Result<u64> {
        #[derive(Deserialize)]
        struct Head {
            handler: String,
        }
        let hi = before_ms.map_or_else(|| vec![0xff], time_bound);
        let mut removed = 0u64;
        loop {
            // (dead-letter id, handler) pairs of one batch.
            let victims: Vec<(Vec<u8>, String)> = match handler {
                Some(h) => {
                    let prefix = keys::parts(&[h.as_bytes()]);
                    let hi = [prefix.as_slice(), &hi].concat();
                    self.t()
                        .dead_by_handler
                        .range(prefix.clone()..hi)
                        .keys()
                        .take(PURGE_BATCH)
                        .map(|k| Ok((k.sled()?[prefix.len()..].to_vec(), h.to_string())))
                        .collect::<Result<_>>()?
                }
                None => self
                    .t()
                    .dead
                    .range(..hi.clone())
                    .take(PURGE_BATCH)
                    .map(|item| {
                        let (k, v) = item.sled()?;
                        let head: Head = decode("dead", &k, &v)?;
                        Ok((k.to_vec(), head.handler))
                    })
                    .collect::<Result<_>>()?,
            };
            if victims.is_empty() {
                return Ok(removed);
            }
            let mut dead = sled::Batch::default();
            let mut index = sled::Batch::default();
            for (id, h) in &victims {
                dead.remove(id.as_slice());
                let mut k = keys::parts(&[h.as_bytes()]);
                k.extend_from_slice(id);
                index.remove(k);
            }
            // Dead letters first: a crash in between leaves index entries
            // without a record, which readers skip and the next purge removes.
            self.t().dead.apply_batch(dead).sled()?;
            self.t().dead_by_handler.apply_batch(index).sled()?;
            removed += victims.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests;
