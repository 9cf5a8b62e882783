//! Tests of the delivery log: filters, cursor pagination (including pages
//! cut short by the scan budget), the event index, and retention caps.

use std::collections::HashSet;
use std::time::Duration;

use super::super::testutil::*;
use super::super::{LogEntry, LogPage, LogQuery, Store, StoreError, StoreOptions, keys};
use crate::event::{Event, now_ms};

/// 300 entries over two handlers, three tenants and three outcomes, with
/// several entries sharing each millisecond; returned in insertion order.
fn fill(s: &Store, base: u64) -> (Vec<Event>, Vec<LogEntry>) {
    let events: Vec<Event> = (0..3).map(|i| event("e", &format!("t{i}"))).collect();
    let mut all = Vec::new();
    for i in 0..300u64 {
        let ev = &events[(i % 3) as usize];
        let handler = if i % 2 == 0 { "h1" } else { "h2" };
        let outcome = ["ok", "trap", "timeout"][(i % 5 % 3) as usize];
        let mut e = entry(handler, ev, outcome, base + i / 4);
        e.id = format!("log-{i}");
        s.append_log(&e).unwrap();
        all.push(e);
    }
    (events, all)
}

fn page_all(s: &Store, q: &LogQuery) -> Vec<String> {
    let mut q = q.clone();
    let mut ids = Vec::new();
    for _ in 0..1000 {
        let page = s.logs(&q).unwrap();
        assert!(page.entries.len() <= q.limit);
        ids.extend(page.entries.into_iter().map(|e| e.id));
        match page.next_cursor {
            Some(c) => q.cursor = Some(c),
            None => return ids,
        }
    }
    panic!("pagination did not end");
}

#[test]
fn filters_and_pagination_have_no_dupes_or_gaps() {
    let (_d, s) = temp();
    let base = 1_000_000;
    let (events, all) = fill(&s, base);
    let expect = |f: &dyn Fn(&LogEntry) -> bool| -> Vec<String> {
        all.iter()
            .rev()
            .filter(|e| f(e))
            .map(|e| e.id.clone())
            .collect()
    };
    let q = |limit| LogQuery {
        limit,
        ..LogQuery::default()
    };
    assert_eq!(page_all(&s, &q(7)), expect(&|_| true));
    let h1 = LogQuery {
        handler: Some("h1".into()),
        ..q(9)
    };
    assert_eq!(page_all(&s, &h1), expect(&|e| e.handler == "h1"));
    let failed_t1 = LogQuery {
        tenant: Some("t1".into()),
        failed_only: true,
        ..q(5)
    };
    assert_eq!(
        page_all(&s, &failed_t1),
        expect(&|e| e.tenant == "t1" && e.outcome != "ok")
    );
    let timeouts = LogQuery {
        outcome: Some("timeout".into()),
        event_type: Some("e".into()),
        ..q(1000)
    };
    assert_eq!(page_all(&s, &timeouts), expect(&|e| e.outcome == "timeout"));
    let window = LogQuery {
        since_ms: Some(base + 10),
        until_ms: Some(base + 20),
        ..q(4)
    };
    let got = page_all(&s, &window);
    assert_eq!(
        got,
        expect(&|e| (base + 10..=base + 20).contains(&e.time_ms))
    );
    assert_eq!(got.len(), 44);
    // Sparse filter: pages cut short by the scan budget still cover everything.
    let rare = LogQuery {
        handler: Some("h2".into()),
        outcome: Some("ok".into()),
        tenant: Some("t0".into()),
        ..q(3)
    };
    let got = page_all(&s, &rare);
    assert_eq!(
        got,
        expect(&|e| e.handler == "h2" && e.outcome == "ok" && e.tenant == "t0")
    );
    assert_eq!(got.len(), 20);
    // A filter matching nothing: budget-cut empty pages, then the end.
    let none = LogQuery {
        handler: Some("nobody".into()),
        ..q(5)
    };
    let first = s.logs(&none).unwrap();
    assert!(first.entries.is_empty() && first.next_cursor.is_some());
    assert!(page_all(&s, &none).is_empty());
    assert_eq!(got.iter().collect::<HashSet<_>>().len(), got.len());
    // The event index.
    let of0 = s.deliveries_of(&events[0].id).unwrap();
    assert_eq!(of0.len(), 100);
    assert!(of0.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
    // Bad cursors are the caller's mistake.
    for bad in ["zz", "00", &"0".repeat(33)] {
        let q = LogQuery {
            cursor: Some(bad.to_string()),
            ..q(5)
        };
        assert!(matches!(s.logs(&q), Err(StoreError::BadInput(_))), "{bad}");
    }
    assert_eq!(s.logs(&q(0)).unwrap().entries.len(), 100);
}

#[test]
fn ids_are_assigned_when_empty() {
    let (_d, s) = temp();
    let ev = event("e", "");
    s.append_log(&entry("h", &ev, "ok", 5)).unwrap();
    let page = s.logs(&LogQuery::default()).unwrap();
    assert_eq!(page.entries[0].id.len(), 26);
    assert!(page.next_cursor.is_none());
}

#[test]
fn retention_applies_age_then_count() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_max_entries: 10,
        log_max_age: Duration::from_secs(3600),
        ..opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let now = now_ms();
    let old = event("e", "");
    let mut idem = event("e", "t");
    idem.idempotency_key = Some("k".into());
    idem.time = now - 7_200_000;
    s.accept(&[(idem, vec![])]).unwrap();
    for i in 0..5 {
        s.append_log(&entry("h", &old, "ok", now - 7_200_000 + i))
            .unwrap();
    }
    let new = event("e", "");
    for i in 0..20 {
        let mut e = entry("h", &new, "ok", now - 1000 + i);
        e.id = format!("new-{i:02}");
        s.append_log(&e).unwrap();
    }
    assert_eq!(s.enforce_retention().unwrap(), 15);
    assert_eq!(s.enforce_retention().unwrap(), 0);
    let page = s
        .logs(&LogQuery {
            limit: 100,
            ..LogQuery::default()
        })
        .unwrap();
    let ids: Vec<_> = page.entries.iter().map(|e| e.id.as_str()).collect();
    let want: Vec<String> = (10..20).rev().map(|i| format!("new-{i:02}")).collect();
    assert_eq!(ids, want);
    assert!(s.deliveries_of(&old.id).unwrap().is_empty());
    assert_eq!(s.deliveries_of(&new.id).unwrap().len(), 10);
    let week = Duration::from_secs(7 * 24 * 3600);
    assert_eq!(s.idempotent_id("t", "k", week).unwrap(), None);
    // The count cap keeps working as new lines arrive.
    for i in 0..3 {
        s.append_log(&entry("h", &new, "ok", now + i)).unwrap();
    }
    assert_eq!(s.enforce_retention().unwrap(), 3);
}

/// `n` lines in one write, over `events` round-robin, times from `t0`
/// (several per millisecond), ids `{tag}-{i}`.
fn batch(s: &Store, tag: &str, events: &[Event], n: u64, t0: u64) -> Vec<LogEntry> {
    let lines: Vec<LogEntry> = (0..n)
        .map(|i| {
            let mut e = entry(
                "h",
                &events[(i % events.len() as u64) as usize],
                "ok",
                t0 + i / 3,
            );
            e.id = format!("{tag}-{i:03}");
            e
        })
        .collect();
    s.append_logs(&lines.iter().collect::<Vec<_>>()).unwrap();
    lines
}

#[test]
fn lines_written_together_page_and_retire_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_max_entries: 60,
        log_max_age: Duration::from_secs(3600),
        ..opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let events: Vec<Event> = (0..5).map(|i| event("e", &format!("t{i}"))).collect();
    let now = now_ms();
    let mut all = Vec::new();
    for (b, tag) in ["a", "b", "c"].iter().enumerate() {
        all.extend(batch(&s, tag, &events, 50, now - 1000 + 20 * b as u64));
    }
    let newest_first: Vec<String> = all.iter().rev().map(|e| e.id.clone()).collect();
    let q = LogQuery {
        limit: 7,
        ..LogQuery::default()
    };
    assert_eq!(
        page_all(&s, &q),
        newest_first,
        "a cursor may fall inside a block"
    );
    assert_eq!(s.deliveries_of(&events[0].id).unwrap().len(), 30);
    // The count cap removes the first block and 40 lines of the second;
    // the second's other 10 lines stay findable by page and by event.
    assert_eq!(s.enforce_retention().unwrap(), 90);
    assert_eq!(page_all(&s, &q), newest_first[..60]);
    let of0 = s.deliveries_of(&events[0].id).unwrap();
    let want: Vec<&str> = all[90..]
        .iter()
        .filter(|e| e.event_id == events[0].id)
        .map(|e| e.id.as_str())
        .collect();
    assert_eq!(of0.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), want);
    assert_eq!(s.enforce_retention().unwrap(), 0);
    // A time window reads a block that straddles its lower bound.
    let window = LogQuery {
        since_ms: Some(now - 1000 + 20 + 14),
        until_ms: Some(now - 1000 + 40 + 2),
        ..q
    };
    let want: Vec<String> = all[90..]
        .iter()
        .rev()
        .filter(|e| (now - 1000 + 34..=now - 1000 + 42).contains(&e.time_ms))
        .map(|e| e.id.clone())
        .collect();
    assert_eq!(page_all(&s, &window), want);
    assert_eq!(want.len(), 8 + 9);
}

#[test]
fn json_lines_from_before_blocks_are_still_read_and_retired() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_max_entries: 1,
        ..opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let ev = event("e", "");
    let now = now_ms();
    let mut old = entry("h", &ev, "trap", now - 2);
    old.id = "legacy".into();
    // As the previous layout wrote it: a JSON line and an empty index value.
    let key = super::super::keys::time_seq(now - 2, 1);
    s.t()
        .log
        .insert(key, serde_json::to_vec(&old).unwrap())
        .unwrap();
    s.t()
        .log_by_event
        .insert(super::by_event_key(&ev.id, &key), &[][..])
        .unwrap();
    s.bump(super::META_LOG_COUNT, 1).unwrap();
    let mut new = entry("h", &ev, "ok", now);
    new.id = "block".into();
    s.append_log(&new).unwrap();
    let ids = |page: LogPage| page.entries.into_iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        ids(s.logs(&LogQuery::default()).unwrap()),
        ["block", "legacy"]
    );
    let old_cursor = LogQuery {
        cursor: Some(hex::encode(super::super::keys::time_seq(now, 0))),
        ..LogQuery::default()
    };
    assert_eq!(
        ids(s.logs(&old_cursor).unwrap()),
        ["legacy"],
        "16-byte cursors still work"
    );
    assert_eq!(s.deliveries_of(&ev.id).unwrap(), [old, new.clone()]);
    assert_eq!(s.enforce_retention().unwrap(), 1);
    assert_eq!(s.deliveries_of(&ev.id).unwrap(), [new]);
}

#[test]
fn lines_of_overlapping_blocks_list_by_time() {
    let (_d, s) = temp();
    let ev = event("e", "");
    let now = now_ms();
    let line = |id: &str, dt: u64| LogEntry {
        id: id.into(),
        ..entry("h", &ev, "ok", now - 500 + dt)
    };
    // The second write carries lines stamped between the first's.
    let first = [line("a", 0), line("d", 90), line("e", 90)];
    let second = [line("b", 30), line("c", 60), line("f", 95)];
    s.append_logs(&first.iter().collect::<Vec<_>>()).unwrap();
    s.append_logs(&second.iter().collect::<Vec<_>>()).unwrap();
    let one_by_one = LogQuery {
        limit: 1,
        ..LogQuery::default()
    };
    assert_eq!(page_all(&s, &one_by_one), ["f", "e", "d", "c", "b", "a"]);
    let window = LogQuery {
        since_ms: Some(now - 500 + 30),
        until_ms: Some(now - 500 + 90),
        limit: 2,
        ..LogQuery::default()
    };
    assert_eq!(page_all(&s, &window), ["e", "d", "c", "b"]);
    let of: Vec<String> = s
        .deliveries_of(&ev.id)
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(of, ["a", "b", "c", "d", "e", "f"]);
}

#[test]
fn the_count_cap_can_be_enforced_a_little_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_max_entries: 10,
        ..opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let events: Vec<Event> = (0..3).map(|i| event("e", &format!("t{i}"))).collect();
    let all = batch(&s, "x", &events, 30, now_ms() - 100);
    assert_eq!(s.enforce_log_cap(7).unwrap(), 7);
    assert_eq!(s.enforce_log_cap(7).unwrap(), 7);
    assert_eq!(s.enforce_log_cap(7).unwrap(), 6, "only the excess");
    assert_eq!(s.enforce_log_cap(7).unwrap(), 0);
    let q = LogQuery {
        limit: 100,
        ..LogQuery::default()
    };
    let want: Vec<String> = all[20..].iter().rev().map(|e| e.id.clone()).collect();
    assert_eq!(page_all(&s, &q), want);
}

#[test]
fn a_kept_event_stays_while_its_lines_do_and_goes_with_the_last() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_max_entries: 100,
        ..opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let (a, b) = (event("e", "a"), event("e", "b"));
    let now = now_ms() - 10;
    // One block: a line of `b`, then three of `a` kept with `a`.
    let lines: Vec<LogEntry> = [(&b, 0), (&a, 1), (&a, 2), (&a, 3)]
        .into_iter()
        .map(|(ev, dt)| entry("h", ev, "ok", now + dt))
        .collect();
    let with: Vec<(&LogEntry, Option<&Event>)> = lines
        .iter()
        .map(|l| (l, (l.event_id == a.id).then_some(&a)))
        .collect();
    s.append_logs_keeping(&with).unwrap();
    assert_eq!(s.kept_event(&a.id).unwrap().unwrap().id, a.id);
    assert!(s.archived_event(&b.id).unwrap().is_none());
    assert_eq!(s.deliveries_of(&a.id).unwrap().len(), 3);
    // The cap drops the block's first two lines: `b`'s and one of `a`'s.
    // `a` keeps two lines in the block, and its event with them.
    assert_eq!(s.remove_oldest_logs(2, None).unwrap(), 2);
    let times = |v: Vec<LogEntry>| v.into_iter().map(|e| e.time_ms).collect::<Vec<_>>();
    assert_eq!(times(s.deliveries_of(&a.id).unwrap()), [now + 2, now + 3]);
    assert_eq!(s.archived_event(&a.id).unwrap().unwrap().id, a.id);
    // Its last line gone, it goes too.
    assert_eq!(s.remove_oldest_logs(2, None).unwrap(), 2);
    assert!(s.deliveries_of(&a.id).unwrap().is_empty());
    assert!(s.archived_event(&a.id).unwrap().is_none());
    assert!(s.t().log_by_event.is_empty());
}

#[test]
fn a_cut_short_kept_index_entry_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let ev = event("e", "");
    let key = super::super::keys::time_seq(now_ms(), 1);
    // The mark and a count of 5 numbers, but one number.
    s.t()
        .log_by_event
        .insert(
            super::by_event_key(&ev.id, &key),
            &[0xff, 0xff, 0, 5, 0, 1][..],
        )
        .unwrap();
    assert!(matches!(s.kept_event(&ev.id), Err(StoreError::Corrupt(_))));
    assert!(matches!(
        s.deliveries_of(&ev.id),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn passes_racing_to_the_cap_remove_each_line_once() {
    let dir = tempfile::tempdir().unwrap();
    let opts = StoreOptions {
        log_max_entries: 300,
        ..opts()
    };
    let s = Store::open(dir.path(), opts).unwrap();
    let events: Vec<Event> = (0..7).map(|i| event("e", &format!("t{i}"))).collect();
    let t0 = now_ms() - 10_000;
    for b in 0..20u64 {
        batch(&s, &format!("b{b:02}"), &events, 100, t0 + b * 200);
    }
    // The minute's pass and the per-second cap, at once, several times.
    std::thread::scope(|scope| {
        for budget in [usize::MAX, 50, 120, 1000] {
            let s = &s;
            scope.spawn(move || s.enforce_log_cap(budget).unwrap());
        }
    });
    let q = LogQuery {
        limit: 1000,
        ..LogQuery::default()
    };
    assert_eq!(page_all(&s, &q).len(), 300);
    assert_eq!(s.counter(super::META_LOG_COUNT).unwrap(), 300);
}

/// Lines of `n` events of about 1 KiB, each line keeping its event, one
/// millisecond apart from `base`.
fn keep_many(s: &Store, n: usize, base: u64) -> Vec<Event> {
    let events: Vec<Event> = (0..n)
        .map(|i| {
            let payload = serde_json::json!({"text": format!("{i:0>1000}")});
            crate::event::EventInput::new("e", &payload)
                .accept("test", 0, 1 << 20)
                .unwrap()
        })
        .collect();
    let lines: Vec<LogEntry> = events
        .iter()
        .enumerate()
        .map(|(i, ev)| entry("h", ev, "ok", base + i as u64))
        .collect();
    let with: Vec<(&LogEntry, Option<&Event>)> = lines
        .iter()
        .zip(&events)
        .map(|(l, e)| (l, Some(e)))
        .collect();
    s.append_logs_keeping(&with).unwrap();
    events
}

fn kept_segments(dir: &std::path::Path) -> Vec<u64> {
    super::super::segment::segment_ids(&dir.join(super::KEPT_DIR)).unwrap()
}

#[test]
fn kept_events_live_in_their_own_log_and_the_index_holds_where() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let events = keep_many(&s, 20, now_ms() - 1000);
    // 20 events of ~1 KiB in 4 KiB segments.
    assert!(kept_segments(dir.path()).len() >= 5);
    for ev in &events {
        let got = s.archived_event(&ev.id).unwrap().unwrap();
        assert_eq!(
            (got.id.as_str(), got.payload.get()),
            (ev.id.as_str(), ev.payload.get())
        );
    }
    // The index holds each event's position (16 bytes), not the event,
    // in one entry per group of ids made in the same millisecond.
    let mut listed = 0;
    for item in s.t().log_by_event.iter() {
        let (k, v) = item.unwrap();
        let lines = super::parse_group(&k, &v).unwrap();
        for l in &lines {
            assert!(l.kept.is_some(), "{l:?}");
            assert_eq!(l.numbers.len(), 1, "{l:?}");
        }
        assert_eq!(v.len(), 2 + lines.len() * (1 + 26 + 2 + 2 + 1 + 16));
        listed += lines.len();
    }
    assert_eq!(listed, 20);
    assert!(
        s.t().log_by_event.len() < 20,
        "one entry per group, not per event"
    );
    // Still there after a reopen, once synced.
    s.sync_kept().unwrap();
    drop(s);
    let s = Store::open(dir.path(), opts()).unwrap();
    assert_eq!(
        s.archived_event(&events[7].id).unwrap().unwrap().id,
        events[7].id
    );
}

#[test]
fn kept_segments_go_once_no_line_keeping_an_event_in_them_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    // Four batches, as the recorder writes them: four blocks, far enough
    // apart that their segments' times, rounded up to the second, are
    // each older than the next batch.
    let base = now_ms() - 20_000;
    let events: Vec<Event> = (0..4)
        .flat_map(|b| keep_many(&s, 10, base + b * 2 * super::KEPT_MARK_GRAIN_MS))
        .collect();
    let before = kept_segments(dir.path());
    assert!(before.len() >= 8, "{before:?}");
    // Half the lines go, two whole blocks: the segments of their events
    // go (but the one shared with the third block's first events), those
    // of the events left stay.
    assert_eq!(s.remove_oldest_logs(20, None).unwrap(), 20);
    let after = kept_segments(dir.path());
    assert!(after.len() < before.len(), "{before:?} → {after:?}");
    for ev in &events[..20] {
        assert!(s.archived_event(&ev.id).unwrap().is_none());
    }
    for ev in &events[20..] {
        assert_eq!(s.archived_event(&ev.id).unwrap().unwrap().id, ev.id);
    }
    // All gone: only the newest segment, the one appended to, is left,
    // and with it the record of its newest line's time.
    assert_eq!(s.remove_oldest_logs(100, None).unwrap(), 20);
    assert_eq!(kept_segments(dir.path()), [*before.last().unwrap()]);
    let times = s.t().meta.scan_prefix(super::KEPT_SEGMENT_PREFIX).count();
    assert_eq!(times, 1);
}

/// The kept segments' times in `meta`: (segment, time).
fn kept_marks(s: &Store) -> Vec<(u64, u64)> {
    s.t()
        .meta
        .scan_prefix(super::KEPT_SEGMENT_PREFIX)
        .map(|item| {
            let (k, v) = item.unwrap();
            let segment = keys::read_u64(&k[super::KEPT_SEGMENT_PREFIX.len()..]).unwrap();
            (segment, keys::read_u64(&v).unwrap())
        })
        .collect()
}

#[test]
fn a_kept_segments_time_is_its_newest_line_rounded_up_and_never_goes_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let grain = super::KEPT_MARK_GRAIN_MS;
    // Lines 1 ms apart from just past a whole second.
    let second = (now_ms() / grain - 30) * grain;
    keep_many(&s, 1, second + 1);
    let marks = kept_marks(&s);
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert_eq!(marks[0].1, second + grain, "rounded up to the second");
    // Later in the same second: the same time (the test's segments hold
    // three events, so this one may start the next).
    keep_many(&s, 1, second + 500);
    let now = kept_marks(&s);
    assert!(now.iter().all(|m| m.1 == second + grain), "{now:?}");
    // Into the next second: the segment appended to says so.
    keep_many(&s, 1, second + grain + 1);
    let now = kept_marks(&s);
    let segment = now.iter().map(|m| m.0).max().unwrap();
    assert!(
        now.contains(&(segment, second + 2 * grain)),
        "{now:?} after a line in the next second"
    );
    // After a restart (nothing remembered), an older line in the same
    // segment leaves the newer time alone.
    drop(s);
    let s = Store::open(dir.path(), opts()).unwrap();
    keep_many(&s, 1, second + 2);
    let after = kept_marks(&s);
    let newest = after.iter().map(|m| m.0).max().unwrap();
    let mark = after.iter().find(|m| m.0 == newest).unwrap().1;
    assert!(mark >= second + 2, "{after:?}");
    if newest == segment {
        assert_eq!(mark, second + 2 * grain, "{after:?}");
    }
}

#[test]
fn a_kept_event_whose_record_a_crash_lost_is_missing_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let events = keep_many(&s, 2, now_ms() - 1000);
    drop(s);
    // The kept log was never synced: say the machine lost its tail, and
    // then other records were written where it was.
    cut_newest_segment(&dir.path().join(super::KEPT_DIR), 10);
    let s = Store::open(dir.path(), opts()).unwrap();
    let lost = &events[1];
    assert!(s.archived_event(&lost.id).unwrap().is_none());
    let other = keep_many(&s, 1, now_ms() - 500);
    assert!(
        s.archived_event(&lost.id).unwrap().is_none(),
        "another event's record"
    );
    assert_eq!(
        s.archived_event(&other[0].id).unwrap().unwrap().id,
        other[0].id
    );
    assert_eq!(
        s.archived_event(&events[0].id).unwrap().unwrap().id,
        events[0].id
    );
}

/// `n` log lines of `events` in turn, 1 ms apart from `t0`, with ids.
fn lines_of(events: &[&Event], n: usize, t0: u64) -> Vec<LogEntry> {
    (0..n)
        .map(|i| {
            let mut e = entry(
                &format!("h{i}"),
                events[i % events.len()],
                "ok",
                t0 + i as u64,
            );
            e.id = format!("line-{t0}-{i}");
            e
        })
        .collect()
}

#[test]
fn index_entries_of_their_own_from_before_groups_are_still_read_and_retired() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let (a, b) = (event("e", ""), event("e", ""));
    let t0 = now_ms() - 1000;
    let lines = lines_of(&[&a, &b], 4, t0);
    // A block as stores wrote them before groups: an index entry per
    // event, b's keeping where its event is.
    let key = keys::time_seq(t0, 1);
    let refs: Vec<&LogEntry> = lines.iter().collect();
    let block = super::block::encode(&refs, || s.new_id()).unwrap();
    s.t().log.insert(key, block).unwrap();
    let at = s
        .inner
        .kept
        .append(&[serde_json::to_vec(&b).unwrap()])
        .unwrap()[0];
    s.t()
        .log_by_event
        .insert(super::by_event_key(&a.id, &key), super::numbers([0, 2]))
        .unwrap();
    s.t()
        .log_by_event
        .insert(
            super::by_event_key(&b.id, &key),
            super::numbers_keeping(&[1, 3], super::Kept::At(at)),
        )
        .unwrap();
    s.bump(super::META_LOG_COUNT, 4).unwrap();
    // And a line written now, in its group's entry.
    let mut later = entry("h9", &a, "ok", t0 + 10);
    later.id = "later".into();
    s.append_log(&later).unwrap();

    let of = |id: &str| s.deliveries_of(id).unwrap();
    assert_eq!(
        of(&a.id),
        [lines[0].clone(), lines[2].clone(), later.clone()]
    );
    assert_eq!(of(&b.id), [lines[1].clone(), lines[3].clone()]);
    assert_eq!(s.kept_event(&b.id).unwrap().unwrap().id, b.id);
    // Retention takes the old block's first line, then the rest of it.
    assert_eq!(s.remove_oldest_logs(1, None).unwrap(), 1);
    assert_eq!(of(&a.id), [lines[2].clone(), later.clone()]);
    assert_eq!(
        s.kept_event(&b.id).unwrap().unwrap().id,
        b.id,
        "the entry left still keeps the event"
    );
    assert_eq!(s.remove_oldest_logs(3, None).unwrap(), 3);
    assert_eq!(of(&a.id), [later]);
    assert!(of(&b.id).is_empty());
    assert!(s.kept_event(&b.id).unwrap().is_none());
    assert!(!s.has_log_lines(&b.id).unwrap());
    // Only the new line's group entry is left.
    assert_eq!(s.t().log_by_event.len(), 1);
}

#[test]
fn a_block_of_several_groups_and_an_id_not_a_ulid_is_indexed_and_retired_line_by_line() {
    let dir = tempfile::tempdir().unwrap();
    let s = Store::open(dir.path(), opts()).unwrap();
    let t0 = now_ms() - 1000;
    // Two events of one millisecond, one of another, one not a ULID.
    let with_id = |id: String| {
        let mut e = event("e", "");
        e.id = id;
        e
    };
    let ulid = |ms: u64, n: u128| ulid::Ulid::from_parts(ms, n).to_string();
    let events = [
        with_id(ulid(t0 - 5, 1)),
        with_id(ulid(t0 - 5, 2)),
        with_id(ulid(t0 - 3, 1)),
        with_id("custom-event-1".into()),
    ];
    let refs: Vec<&Event> = events.iter().collect();
    let lines = lines_of(&refs, 8, t0);
    // All in one block, the first and the last event kept.
    let keeping: Vec<(&LogEntry, Option<&Event>)> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| (l, (i >= 4 && (i == 4 || i == 7)).then(|| refs[i % 4])))
        .collect();
    s.append_logs_keeping(&keeping).unwrap();
    assert_eq!(s.t().log.len(), 1, "one block");
    // Two groups' entries and one of its own.
    assert_eq!(s.t().log_by_event.len(), 3);
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(
            s.deliveries_of(&ev.id).unwrap(),
            [lines[i].clone(), lines[i + 4].clone()]
        );
    }
    assert_eq!(
        s.kept_event(&events[0].id).unwrap().unwrap().id,
        events[0].id
    );
    assert_eq!(
        s.kept_event(&events[3].id).unwrap().unwrap().id,
        events[3].id
    );
    assert!(s.kept_event(&events[1].id).unwrap().is_none());
    // One line at a time, oldest first: each event loses its first line,
    // then its second, and its entry goes with it.
    for (n, gone) in lines.iter().enumerate() {
        assert_eq!(s.remove_oldest_logs(1, None).unwrap(), 1);
        for (i, ev) in events.iter().enumerate() {
            let left: Vec<LogEntry> = [&lines[i], &lines[i + 4]]
                .into_iter()
                .filter(|l| l.time_ms > gone.time_ms)
                .cloned()
                .collect();
            assert_eq!(
                s.deliveries_of(&ev.id).unwrap(),
                left,
                "after {n}, event {i}"
            );
            assert_eq!(s.has_log_lines(&ev.id).unwrap(), !left.is_empty());
        }
        if n < 4 {
            assert_eq!(
                s.kept_event(&events[0].id).unwrap().unwrap().id,
                events[0].id
            );
        }
    }
    assert!(s.t().log_by_event.is_empty());
    assert!(s.kept_event(&events[0].id).unwrap().is_none());
}
