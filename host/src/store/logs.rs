//! The delivery log: one line per attempt, queried newest first with
//! filters and cursor pagination, indexed by event, trimmed by retention.
//!
//! Keys: `log` = `u64 time_ms u64 seq` (seq from sled's id generator, unique
//! across restarts), so time bounds are key bounds and the oldest entries
//! come first; `log_by_event` = `lp(event id) u64 time_ms u64 seq` → empty.
//! `meta/log_count` counts log lines for the count cap (it can drift by the
//! few lines a crash catches between the two writes; retention resets it
//! when the log is empty).

use serde::Deserialize;

use super::queue::IdemRecord;
use super::records::page_size;
use super::{
    LogEntry, LogPage, LogQuery, Result, SledExt, Store, StoreError, decode, encode, keys,
};
use crate::event::now_ms;

const META_LOG_COUNT: &[u8] = b"log_count";
/// Non-matching log lines a single query may skip: a sparse filter returns
/// a short page with a cursor rather than scanning a million lines per call.
const SCAN_BUDGET: usize = if cfg!(test) { 40 } else { 100_000 };
/// Log lines removed per sled batch by retention.
const RETENTION_BATCH: usize = 1000;

fn parse_cursor(c: &str) -> Result<[u8; 16]> {
    hex::decode(c)
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b).ok())
        .ok_or_else(|| StoreError::BadInput(format!("malformed cursor {c:?}")))
}

fn by_event_key(event_id: &str, log_key: &[u8]) -> Vec<u8> {
    let mut k = keys::parts(&[event_id.as_bytes()]);
    k.extend_from_slice(log_key);
    k
}

fn matches(q: &LogQuery, e: &LogEntry) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&q.handler, &e.handler)
        && eq(&q.event_type, &e.event_type)
        && eq(&q.tenant, &e.tenant)
        && eq(&q.outcome, &e.outcome)
        && (!q.failed_only || e.is_failure())
}

impl Store {
    /// Appends one log line (assigning its id when empty). The event index
    /// is written first: an index entry without its line is skipped by
    /// readers, a line without its index would be invisible to
    /// [`Store::deliveries_of`].
    pub(super) fn append_log(&self, entry: &LogEntry) -> Result<()> {
        self.append_logs(&[entry])
    }

    /// [`Self::append_log`] for many lines, with one count update. Plain
    /// inserts, not a sled batch: the lines need not appear together, and a
    /// batch takes sled's process-wide write lock and writes out its log
    /// buffer, which costs more than the inserts themselves.
    pub(super) fn append_logs(&self, entries: &[&LogEntry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let t = self.t();
        for entry in entries {
            let seq = self.inner.db.generate_id().sled()?;
            let key = keys::time_seq(entry.time_ms, seq);
            t.log_by_event
                .insert(by_event_key(&entry.event_id, &key), &[][..])
                .sled()?;
            let line = if entry.id.is_empty() {
                let mut e = LogEntry::clone(entry);
                e.id = self.new_id();
                encode(&e)?
            } else {
                encode(*entry)?
            };
            t.log.insert(key, line).sled()?;
        }
        self.bump(META_LOG_COUNT, entries.len() as i64)
    }

    /// Cluster mode: log lines from the cluster's shared log, each with its
    /// sequence there, which keys it (with its time) so that a line
    /// written twice (by the node that ran the attempt, then by the
    /// mirror; or again after a restart) is stored once. The lines need
    /// their ids already. How many were new.
    pub fn apply_shared_logs(&self, lines: &[(u64, &LogEntry)]) -> Result<u64> {
        let t = self.t();
        let mut added = 0u64;
        for (seq, entry) in lines {
            // The high bit keeps these keys apart from the ids sled
            // generates for lines written in single-node mode.
            let key = keys::time_seq(entry.time_ms, seq | 1 << 63);
            if t.log.contains_key(key).sled()? {
                continue;
            }
            t.log_by_event
                .insert(by_event_key(&entry.event_id, &key), &[][..])
                .sled()?;
            t.log.insert(key, encode(*entry)?).sled()?;
            added += 1;
        }
        if added > 0 {
            self.bump(META_LOG_COUNT, added as i64)?;
        }
        Ok(added)
    }

    /// Log lines matching `q`, newest first. A full page (or a scan that hit
    /// its budget) carries a `next_cursor`; the following page may be empty.
    pub fn logs(&self, q: &LogQuery) -> Result<LogPage> {
        let limit = page_size(q.limit);
        let lo = keys::time_seq(q.since_ms.unwrap_or(0), 0);
        let mut hi = q
            .until_ms
            .and_then(|u| u.checked_add(1))
            .map(|u| keys::time_seq(u, 0));
        if let Some(c) = &q.cursor {
            let c = parse_cursor(c)?;
            hi = Some(hi.map_or(c, |h| h.min(c)));
        }
        let range = match hi {
            Some(hi) => self.t().log.range(lo..hi),
            None => self.t().log.range(lo..),
        };
        let mut page = LogPage::default();
        let mut skipped = 0;
        let mut last: Option<sled::IVec> = None;
        for item in range.rev() {
            let (k, v) = item.sled()?;
            if skipped == SCAN_BUDGET {
                // Cursors are exclusive: the last key examined resumes at this one.
                page.next_cursor = last.map(hex::encode);
                break;
            }
            let e: LogEntry = decode("log", &k, &v)?;
            if matches(q, &e) {
                page.entries.push(e);
                if page.entries.len() == limit {
                    page.next_cursor = Some(hex::encode(&k));
                    break;
                }
            } else {
                skipped += 1;
            }
            last = Some(k);
        }
        Ok(page)
    }

    /// Every logged attempt for one event, oldest first.
    pub fn deliveries_of(&self, event_id: &str) -> Result<Vec<LogEntry>> {
        let prefix = keys::parts(&[event_id.as_bytes()]);
        let mut out = Vec::new();
        for k in self.t().log_by_event.scan_prefix(&prefix).keys() {
            let k = k.sled()?;
            let log_key = &k[prefix.len()..];
            if let Some(v) = self.t().log.get(log_key).sled()? {
                out.push(decode("log", log_key, &v)?);
            }
        }
        Ok(out)
    }

    /// Drops log lines older than `log_max_age`, then the oldest lines over
    /// `log_max_entries`; also forgets idempotency keys older than
    /// `log_max_age`. Returns how many log lines were removed.
    pub fn enforce_retention(&self) -> Result<u64> {
        let max_age = u64::try_from(self.inner.opts.log_max_age.as_millis()).unwrap_or(u64::MAX);
        let cutoff = now_ms().saturating_sub(max_age);
        let mut removed = 0;
        loop {
            let n = self.remove_oldest_logs(RETENTION_BATCH, Some(cutoff))?;
            removed += n;
            if n < RETENTION_BATCH as u64 {
                break;
            }
        }
        loop {
            let excess = self
                .counter(META_LOG_COUNT)?
                .saturating_sub(self.inner.opts.log_max_entries);
            if excess == 0 {
                break;
            }
            let want = usize::try_from(excess)
                .unwrap_or(usize::MAX)
                .min(RETENTION_BATCH);
            let n = self.remove_oldest_logs(want, None)?;
            removed += n;
            if n == 0 {
                break;
            }
        }
        if self.t().log.is_empty() {
            self.reset_counter(META_LOG_COUNT)?;
        }
        self.sweep_idempotency(cutoff)?;
        self.sweep_archive(cutoff)?;
        Ok(removed)
    }

    /// Removes up to `n` of the oldest log lines, only those before
    /// `before_ms` when given; how many.
    fn remove_oldest_logs(&self, n: usize, before_ms: Option<u64>) -> Result<u64> {
        #[derive(Deserialize)]
        struct Head {
            event_id: String,
        }
        let hi = keys::time_seq(before_ms.unwrap_or(u64::MAX), 0);
        let mut log = sled::Batch::default();
        let mut index = sled::Batch::default();
        let mut count = 0u64;
        let mut events = Vec::new();
        for item in self.t().log.range(..hi).take(n) {
            let (k, v) = item.sled()?;
            let head: Head = decode("log", &k, &v)?;
            index.remove(by_event_key(&head.event_id, &k));
            log.remove(k);
            count += 1;
            events.push(head.event_id);
        }
        if count > 0 {
            self.t().log.apply_batch(log).sled()?;
            self.t().log_by_event.apply_batch(index).sled()?;
            self.bump(META_LOG_COUNT, -(count as i64))?;
            events.sort_unstable();
            events.dedup();
            // A finished event goes with its last log line.
            self.forget_unlogged(&events)?;
        }
        Ok(count)
    }

    fn sweep_idempotency(&self, cutoff: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for item in self.t().idempotency.iter() {
            let (k, v) = item.sled()?;
            let rec: IdemRecord = decode("idempotency", &k, &v)?;
            if rec.time_ms < cutoff {
                batch.remove(k);
            }
        }
        self.t().idempotency.apply_batch(batch).sled()
    }
}

#[cfg(test)]
mod tests;
