//! Tests of dead letters: the move out of the queue, listing with filters
//! and cursors, replay (plain and pinned) and purge.

use super::super::testutil::*;
use super::super::{DeadLetter, DeadLetterQuery, Store, StoreError};
use crate::event::{Event, now_ms};

/// Accepts `e` for `handler`, fails it once (retry), then dead-letters it.
fn kill(s: &Store, e: &Event, handler: &str) -> DeadLetter {
    s.accept(&[(e.clone(), vec![handler.into()])]).unwrap();
    let p = s
        .pending()
        .unwrap()
        .into_iter()
        .find(|p| p.event_id == e.id && p.handler == handler)
        .unwrap();
    let p = s
        .retry_later(&p, &entry(handler, e, "timeout", now_ms()), now_ms())
        .unwrap();
    let mut last = entry(handler, e, "trap", now_ms());
    last.attempt = 2;
    s.dead_letter(&p, &last).unwrap()
}

#[test]
fn dead_letter_then_replay() {
    let (_d, s) = temp();
    deploy(&s, "h");
    deploy(&s, "h");
    let e = event("a", "t");
    let dl = kill(&s, &e, "h");
    assert_eq!(
        dl.errors
            .iter()
            .map(|x| (x.attempt, x.outcome.as_str()))
            .collect::<Vec<_>>(),
        [(1, "timeout"), (2, "trap")]
    );
    assert!(s.pending().unwrap().is_empty());
    assert!(
        s.event(&e.id).unwrap().is_none(),
        "the dead letter keeps the copy"
    );
    assert_eq!(s.dead_letter_get(&dl.id).unwrap().unwrap().event.id, e.id);
    let st = s.handler_stats("h").unwrap();
    assert_eq!((st.retries, st.dead_lettered, st.failed), (1, 1, 2));

    // A bad version aborts the whole replay: the dead letter stays.
    assert!(matches!(
        s.replay_dead_letter(&dl.id, Some(9)),
        Err(StoreError::NotFound(_))
    ));
    assert!(s.dead_letter_get(&dl.id).unwrap().is_some());

    let p = s.replay_dead_letter(&dl.id, Some(1)).unwrap();
    assert_eq!((p.attempt, p.version, p.errors.len()), (1, Some(1), 0));
    assert_eq!(s.pending().unwrap(), vec![p.clone()]);
    assert_eq!(s.event(&e.id).unwrap().unwrap().id, e.id);
    assert!(s.dead_letter_get(&dl.id).unwrap().is_none());
    assert!(matches!(
        s.replay_dead_letter(&dl.id, None),
        Err(StoreError::NotFound(_))
    ));
    s.finish(&p, &entry("h", &e, "ok", now_ms())).unwrap();
    assert!(s.event(&e.id).unwrap().is_none());
}

#[test]
fn replay_conflicts_with_a_pending_delivery() {
    let (_d, s) = temp();
    deploy(&s, "h");
    let e = event("a", "");
    let dl = kill(&s, &e, "h");
    s.accept(&[(e.clone(), vec!["h".into()])]).unwrap();
    assert!(matches!(
        s.replay_dead_letter(&dl.id, None),
        Err(StoreError::Conflict(_))
    ));
}

#[test]
fn listing_filters_and_pages() {
    let (_d, s) = temp();
    deploy(&s, "h1");
    deploy(&s, "h2");
    let mut ids = Vec::new();
    for i in 0..9 {
        let h = if i % 3 == 0 { "h2" } else { "h1" };
        ids.push((h, kill(&s, &event("a", ""), h).id));
    }
    let q = |handler: Option<&str>, cursor: Option<String>| DeadLetterQuery {
        handler: handler.map(str::to_string),
        cursor,
        limit: 2,
        ..DeadLetterQuery::default()
    };
    for handler in [None, Some("h1"), Some("h2")] {
        let want: Vec<_> = ids
            .iter()
            .rev()
            .filter(|(h, _)| handler.is_none_or(|w| w == *h))
            .map(|(_, id)| id.clone())
            .collect();
        let mut got = Vec::new();
        let mut cursor = None;
        loop {
            let page = s.dead_letters(&q(handler, cursor)).unwrap();
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|d| d.id.clone());
            got.extend(page.into_iter().map(|d| d.id));
        }
        assert_eq!(got, want, "{handler:?}");
    }
    let all = s.dead_letters(&DeadLetterQuery::default()).unwrap();
    let newest = all[0].time_ms;
    let recent = DeadLetterQuery {
        since_ms: Some(newest),
        until_ms: Some(newest),
        ..DeadLetterQuery::default()
    };
    let got = s.dead_letters(&recent).unwrap();
    assert!(!got.is_empty() && got.iter().all(|d| d.time_ms == newest));
    let bad = DeadLetterQuery {
        cursor: Some("not-a-ulid".into()),
        ..DeadLetterQuery::default()
    };
    assert!(matches!(s.dead_letters(&bad), Err(StoreError::BadInput(_))));
}

#[test]
fn purge_by_handler_and_age() {
    let (_d, s) = temp();
    deploy(&s, "h1");
    deploy(&s, "h2");
    for _ in 0..3 {
        kill(&s, &event("a", ""), "h1");
        kill(&s, &event("a", ""), "h2");
    }
    assert_eq!(s.purge_dead_letters(Some("h1"), Some(0)).unwrap(), 0);
    assert_eq!(s.purge_dead_letters(Some("h1"), None).unwrap(), 3);
    let left = s.dead_letters(&DeadLetterQuery::default()).unwrap();
    assert!(left.len() == 3 && left.iter().all(|d| d.handler == "h2"));
    let h1 = DeadLetterQuery {
        handler: Some("h1".into()),
        ..DeadLetterQuery::default()
    };
    assert!(s.dead_letters(&h1).unwrap().is_empty());
    assert_eq!(s.purge_dead_letters(None, Some(now_ms() + 1)).unwrap(), 3);
    assert!(
        s.dead_letters(&DeadLetterQuery::default())
            .unwrap()
            .is_empty()
    );
}
