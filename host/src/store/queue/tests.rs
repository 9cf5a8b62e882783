//! Tests of the durable queue against a real sled store: persistence across
//! reopen, finish/retry transitions, duplicate accepts, idempotency windows.

use std::time::Duration;

use super::super::testutil::*;
use super::super::{Pending, StoreError};
use crate::event::now_ms;

#[test]
fn accepted_work_survives_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (e1, e2, e3) = (event("a", "t1"), event("b", "t2"), event("c", ""));
    {
        let s = open(dir.path());
        deploy(&s, "h1");
        deploy(&s, "h2");
        s.accept(&[
            (e1.clone(), vec!["h2".into(), "h1".into(), "h1".into()]),
            (e2.clone(), vec!["h1".into()]),
            (e3.clone(), vec![]),
        ])
        .unwrap();
        let totals = s.event_totals().unwrap();
        assert_eq!((totals.accepted, totals.unrouted), (3, 1));
    }
    let s = open(dir.path());
    assert_eq!(s.handler("h1").unwrap().unwrap().active_version, 1);
    let pending = s.pending().unwrap();
    let got: Vec<_> = pending
        .iter()
        .map(|p| (p.event_id.as_str(), p.handler.as_str(), p.attempt))
        .collect();
    // Same due time (one batch): ordered by event id, then handler.
    let mut want = vec![
        (e1.id.as_str(), "h1", 1),
        (e1.id.as_str(), "h2", 1),
        (e2.id.as_str(), "h1", 1),
    ];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(
        s.event(&e1.id).unwrap().unwrap().payload.get(),
        e1.payload.get()
    );
    assert!(
        s.event(&e3.id).unwrap().is_none(),
        "unrouted events are not stored"
    );
    assert_eq!(s.event_totals().unwrap().accepted, 3);
}

#[test]
fn the_event_goes_with_its_last_delivery() {
    let (_d, s) = temp();
    deploy(&s, "h1");
    deploy(&s, "h2");
    let e = event("a", "");
    s.accept(&[(e.clone(), vec!["h1".into(), "h2".into()])])
        .unwrap();
    // Accepting the same event again must not add deliveries or references.
    s.accept(&[(e.clone(), vec!["h1".into(), "h2".into()])])
        .unwrap();
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 2);
    s.finish(&pending[0], &entry("h1", &e, "ok", now_ms()))
        .unwrap();
    assert!(s.event(&e.id).unwrap().is_some());
    s.finish(&pending[1], &entry("h2", &e, "trap", now_ms()))
        .unwrap();
    assert!(s.event(&e.id).unwrap().is_none());
    assert!(s.pending().unwrap().is_empty());
    // A duplicate finish (at-least-once) is harmless.
    s.finish(&pending[1], &entry("h2", &e, "trap", now_ms()))
        .unwrap();
    assert_eq!(s.deliveries_of(&e.id).unwrap().len(), 3);
    let h1 = s.handler_stats("h1").unwrap();
    assert_eq!((h1.processed, h1.ok, h1.failed), (1, 1, 0));
}

#[test]
fn a_retry_and_its_due_time_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let e = event("a", "");
    let due = now_ms() + 600_000;
    {
        let s = open(dir.path());
        deploy(&s, "h");
        s.accept(&[(e.clone(), vec!["h".into()])]).unwrap();
        let p = s.pending().unwrap().remove(0);
        let next = s
            .retry_later(&p, &entry("h", &e, "timeout", 1000), due)
            .unwrap();
        assert_eq!((next.attempt, next.due_ms, next.errors.len()), (2, due, 1));
    }
    let s = open(dir.path());
    let p = s.pending().unwrap().remove(0);
    assert_eq!((p.attempt, p.due_ms), (2, due));
    assert_eq!(p.errors[0].outcome, "timeout");
    assert_eq!(p.errors[0].attempt, 1);
    let mut second = entry("h", &e, "out_of_fuel", 2000);
    second.attempt = 2;
    let p = s.retry_later(&p, &second, due + 1).unwrap();
    assert_eq!(p.attempt, 3);
    assert_eq!(
        p.errors
            .iter()
            .map(|x| x.outcome.as_str())
            .collect::<Vec<_>>(),
        ["timeout", "out_of_fuel"]
    );
    assert_eq!(s.handler_stats("h").unwrap().retries, 2);
}

#[test]
fn retrying_a_vanished_delivery_is_not_found() {
    let (_d, s) = temp();
    deploy(&s, "h");
    let e = event("a", "");
    let ghost = Pending {
        event_id: e.id.clone(),
        handler: "h".into(),
        attempt: 1,
        due_ms: 0,
        version: None,
        errors: vec![],
    };
    let err = s
        .retry_later(&ghost, &entry("h", &e, "trap", 1), 5)
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[test]
fn idempotency_keys_respect_tenant_and_window() {
    let (_d, s) = temp();
    let mut e = event("a", "acme");
    e.idempotency_key = Some("order-1".into());
    e.time = now_ms() - 10_000;
    // Recorded even when no handler matched.
    s.accept(&[(e.clone(), vec![])]).unwrap();
    let hour = Duration::from_secs(3600);
    assert_eq!(
        s.idempotent_id("acme", "order-1", hour).unwrap(),
        Some(e.id.clone())
    );
    assert_eq!(s.idempotent_id("other", "order-1", hour).unwrap(), None);
    assert_eq!(s.idempotent_id("acme", "order-2", hour).unwrap(), None);
    let short = Duration::from_secs(5);
    assert_eq!(s.idempotent_id("acme", "order-1", short).unwrap(), None);
}

#[test]
fn corrupt_records_are_errors_naming_tree_and_key() {
    let (_d, s) = temp();
    s.t()
        .pending
        .insert(&b"\0\0\0\x01xh"[..], &b"{not json"[..])
        .unwrap();
    s.t().events.insert(&b"EV"[..], &b"[]"[..]).unwrap();
    match s.pending() {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("pending") && m.contains("0x"), "{m}"),
        other => panic!("expected corruption, got {other:?}"),
    }
    match s.event("EV") {
        Err(StoreError::Corrupt(m)) => assert!(m.contains("events") && m.contains("EV"), "{m}"),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn many_deliveries_finish_in_one_call() {
    let (_d, s) = temp();
    deploy(&s, "h1");
    deploy(&s, "h2");
    let (a, b) = (event("a", ""), event("b", ""));
    s.accept(&[
        (a.clone(), vec!["h1".into(), "h2".into()]),
        (b.clone(), vec!["h1".into()]),
    ])
    .unwrap();
    let pending = s.pending().unwrap();
    let entries: Vec<_> = pending
        .iter()
        .map(|p| {
            let e = if p.event_id == a.id { &a } else { &b };
            entry(&p.handler, e, "ok", now_ms())
        })
        .collect();
    // Both deliveries of `a` in one call, and one of them twice.
    let mut done: Vec<_> = pending.iter().zip(&entries).collect();
    let a_h1 = done
        .iter()
        .position(|(p, _)| p.event_id == a.id && p.handler == "h1")
        .unwrap();
    done.push(done[a_h1]);
    s.finish_all(&done).unwrap();
    assert!(s.pending().unwrap().is_empty());
    assert!(s.event(&a.id).unwrap().is_none());
    assert!(s.event(&b.id).unwrap().is_none());
    assert_eq!(s.deliveries_of(&a.id).unwrap().len(), 2 + 1);
    assert_eq!(s.handler_stats("h1").unwrap().processed, 2 + 1);
    assert_eq!(s.handler_stats("h2").unwrap().ok, 1);
}

#[test]
fn an_interrupted_finish_is_repaired_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, orphan) = (event("a", ""), event("b", ""));
    {
        let s = open(dir.path());
        s.accept(&[
            (kept.clone(), vec!["h1".into(), "h2".into()]),
            (orphan.clone(), vec!["h1".into()]),
        ])
        .unwrap();
        // What a crash can leave of `finish`: pending entries removed and
        // counts not yet lowered, an event whose count went but which
        // itself stayed, and a count without its event.
        let t = s.t();
        t.pending
            .remove(super::pending_key(&kept.id, "h2"))
            .unwrap();
        t.pending
            .remove(super::pending_key(&orphan.id, "h1"))
            .unwrap();
        t.event_refs.remove(orphan.id.as_str()).unwrap();
        t.event_refs
            .insert("gone", &7u32.to_be_bytes()[..])
            .unwrap();
    }
    let s = open(dir.path());
    let t = s.t();
    assert_eq!(
        t.event_refs.get(kept.id.as_str()).unwrap().as_deref(),
        Some(&1u32.to_be_bytes()[..])
    );
    assert!(s.event(&orphan.id).unwrap().is_none());
    assert!(!t.event_refs.contains_key("gone").unwrap());
    // The one delivery left still runs, and takes its event with it.
    let pending = s.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert!(s.event(&kept.id).unwrap().is_some());
    s.finish(&pending[0], &entry("h1", &kept, "ok", now_ms()))
        .unwrap();
    assert!(s.event(&kept.id).unwrap().is_none());
}
