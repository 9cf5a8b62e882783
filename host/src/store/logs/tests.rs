//! Tests of the delivery log: filters, cursor pagination (including pages
//! cut short by the scan budget), the event index, and retention caps.

use std::collections::HashSet;
use std::time::Duration;

use super::super::testutil::*;
use super::super::{LogEntry, LogQuery, Store, StoreError, StoreOptions};
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
