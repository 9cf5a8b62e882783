//! Finished events kept for the delivery log's retention (issue 13, item
//! 6): the inbox drops an event once its last delivery is final, but an
//! operator looking up `GET /v1/events/{id}` afterwards wants its payload
//! beside its log lines.
//!
//! The log inbox keeps an event in the delivery log's index entry of the
//! line that ends its last delivery (`logs.rs`, [`Store::kept_event`]), so
//! keeping it costs no write of its own and retention drops it with that
//! line. Otherwise (the sled inbox, cluster mode) the dispatcher archives
//! an event in `finished_events` when one of its deliveries ends (ok,
//! dead-lettered or expired); retention drops it with its last log line,
//! or once it is older than `log_max_age` (event ids are ULIDs, so the tree
//! is in accept order and the age sweep stops at the first young event).

use super::{Result, SledExt, Store, decode, encode};
use crate::event::Event;

impl Store {
    /// Keeps each of `events`: one plain insert per distinct event, as for
    /// log lines. An event kept already (one with several handlers whose
    /// deliveries end in different recorder batches) is written again with
    /// the same bytes: looking each event up first cost more than the
    /// insert itself (a sled read of a key that is almost never there was
    /// the recorder's largest single cost).
    pub fn archive_events(&self, events: &[&Event]) -> Result<()> {
        let t = self.t();
        let mut seen = std::collections::HashSet::with_capacity(events.len());
        for e in events {
            if seen.insert(e.id.as_str()) {
                t.finished_events
                    .insert(e.id.as_bytes(), encode(*e)?)
                    .sled()?;
            }
        }
        Ok(())
    }

    /// A finished event still within the log's retention: kept in the
    /// delivery log's index (the log inbox) or in `finished_events` (the
    /// sled inbox, cluster mode, and stores written before the index kept
    /// events).
    pub fn archived_event(&self, id: &str) -> Result<Option<Event>> {
        if let Some(e) = self.kept_event(id)? {
            return Ok(Some(e));
        }
        self.t()
            .finished_events
            .get(id.as_bytes())
            .sled()?
            .map(|v| decode("finished_events", id.as_bytes(), &v))
            .transpose()
    }

    /// Drops the archived events among `ids` that have no log line left.
    pub(super) fn forget_unlogged(&self, ids: &[String]) -> Result<()> {
        let t = self.t();
        // With the log inbox, events are kept in the log's index and this
        // tree stays empty: no lookup per removed line's event.
        if t.finished_events.is_empty() {
            return Ok(());
        }
        for id in ids {
            if !self.has_log_lines(id)? {
                t.finished_events.remove(id.as_bytes()).sled()?;
            }
        }
        Ok(())
    }

    /// Drops archived events accepted before `cutoff_ms`; how many.
    pub(super) fn sweep_archive(&self, cutoff_ms: u64) -> Result<u64> {
        #[derive(serde::Deserialize)]
        struct Head {
            time: u64,
        }
        let t = self.t();
        let mut batch = sled::Batch::default();
        let mut n = 0;
        for item in t.finished_events.iter() {
            let (k, v) = item.sled()?;
            let head: Head = decode("finished_events", &k, &v)?;
            if head.time >= cutoff_ms {
                break;
            }
            batch.remove(k);
            n += 1;
        }
        if n > 0 {
            t.finished_events.apply_batch(batch).sled()?;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::store::testutil::{entry, event as sample, opts};
    use crate::store::{Store, StoreOptions};

    use super::*;

    fn event(id: &str, time: u64) -> Event {
        let mut e = sample("t", "");
        e.id = id.to_string();
        e.time = time;
        e
    }

    #[test]
    fn kept_until_retention_drops_its_last_log_line_or_its_age() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            dir.path(),
            StoreOptions {
                log_max_entries: 2,
                log_max_age: Duration::from_secs(3600),
                ..opts()
            },
        )
        .unwrap();
        let now = crate::event::now_ms();
        let (a, b, c) = (event("01A", now), event("01B", now), event("01C", now));
        s.archive_events(&[&a, &b, &a]).unwrap();
        assert_eq!(s.archived_event("01A").unwrap().unwrap().id, "01A");
        assert!(s.archived_event("nope").unwrap().is_none());
        // a has two lines, b one; the count cap (2) drops the oldest line
        // (a's first): a keeps a line, so it stays.
        let lines = [
            entry("h", &a, "ok", now - 3),
            entry("h", &a, "ok", now - 2),
            entry("h", &b, "ok", now - 1),
        ];
        s.append_logs(&lines.iter().collect::<Vec<_>>()).unwrap();
        s.enforce_retention().unwrap();
        assert!(s.archived_event("01A").unwrap().is_some());
        // Two lines of another event: a's and b's last lines go, and so do they.
        let lines = [entry("h", &c, "ok", now), entry("h", &c, "ok", now)];
        s.append_logs(&lines.iter().collect::<Vec<_>>()).unwrap();
        s.enforce_retention().unwrap();
        assert!(s.archived_event("01A").unwrap().is_none());
        assert!(s.archived_event("01B").unwrap().is_none());

        // The age sweep: accepted before the cutoff, gone; younger, kept.
        let old = event("00OLD", now - 7_200_000);
        let young = event("01YOUNG", now);
        s.archive_events(&[&old, &young]).unwrap();
        assert_eq!(s.sweep_archive(now - 3_600_000).unwrap(), 1);
        assert!(s.archived_event("00OLD").unwrap().is_none());
        assert!(s.archived_event("01YOUNG").unwrap().is_some());
    }
}
