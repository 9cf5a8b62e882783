//! Tests of the log inbox: replay after a reopen, retries and dead letters
//! exact across a lost sled write, idempotency keys, segment deletion,
//! revive, discard and a torn tail.

use super::super::testutil::{cut_newest_segment, deploy, entry, event, open};
use super::*;

fn inbox(dir: &Path) -> (Store, LogInbox) {
    let store = open(&dir.join("sled"));
    let inbox = LogInbox::open_sized(store.clone(), &dir.join("log"), 4096).unwrap();
    (store, inbox)
}

fn routed(n: usize, handlers: &[&str]) -> Vec<(Arc<Event>, Vec<String>)> {
    (0..n)
        .map(|_| {
            let hs = handlers.iter().map(|h| h.to_string()).collect();
            (Arc::new(event("tick", "acme")), hs)
        })
        .collect()
}

fn attempt(p: &Pending, outcome: &str) -> LogEntry {
    let e = event("tick", "acme");
    LogEntry {
        event_id: p.event_id.clone(),
        attempt: p.attempt,
        ..entry(&p.handler, &e, outcome, now_ms())
    }
}

/// Finishes these deliveries, each `ok`.
fn finish_ok<'r>(i: &LogInbox, ready: impl IntoIterator<Item = &'r Ready>) {
    let done: Vec<(Pending, LogEntry)> = ready
        .into_iter()
        .map(|r| (r.pending.clone(), attempt(&r.pending, "ok")))
        .collect();
    let refs: Vec<(&Pending, &LogEntry)> = done.iter().map(|(p, e)| (p, e)).collect();
    i.finish(&refs).unwrap();
}

fn open_keys(i: &LogInbox) -> Vec<(String, String, u32)> {
    let mut v: Vec<_> = i
        .core
        .state()
        .open
        .values()
        .map(|o| {
            (
                o.pending.event_id.clone(),
                o.pending.handler.clone(),
                o.pending.attempt,
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_reopen_replays_what_is_not_finished_with_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let batch = routed(3, &["a", "b"]);
    let before;
    {
        let (_s, i) = inbox(dir.path());
        let ids = i.append(&batch).unwrap();
        assert_eq!(ids.len(), 3);
        let ready = i.take_ready(usize::MAX).unwrap();
        assert_eq!(ready.len(), 6);
        let (first, second) = (&ready[0].pending, &ready[1].pending);
        i.finish(&[(first, &attempt(first, "ok"))]).unwrap();
        let next = i.retry_at(second, &attempt(second, "trap"), 7).unwrap();
        assert_eq!((next.attempt, next.due_ms, next.errors.len()), (2, 7, 1));
        before = open_keys(&i);
        assert_eq!(before.len(), 5);
        i.flush().unwrap();
    }
    let (s, i) = inbox(dir.path());
    assert_eq!(open_keys(&i), before);
    assert_eq!(i.replay().unwrap(), 5);
    let ready = i.take_ready(usize::MAX).unwrap();
    assert_eq!(ready[0].pending.due_ms, 7, "due-time order");
    assert_eq!(ready[0].pending.errors[0].outcome, "trap");
    assert!(ready.iter().all(|r| r.event.id == r.pending.event_id));
    // Finishing everything leaves nothing to replay.
    finish_ok(&i, &ready);
    i.flush().unwrap();
    drop((s, i));
    let (_s, i) = inbox(dir.path());
    assert!(open_keys(&i).is_empty());
    assert!(i.event(&batch[0].0.id).unwrap().is_none());
}

#[test]
fn a_queued_append_counts_its_deliveries_once_durable_and_replays_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let batch = routed(3, &["a", "b"]);
    let before;
    {
        let (_s, i) = inbox(dir.path());
        assert!(i.queues_appends());
        let rest = i.append_queued(&batch).unwrap();
        // Queued, not yet counted, and under way for the checkpoint.
        assert!(i.take_ready(usize::MAX).unwrap().is_empty());
        assert!(!i.core.under_way().is_empty());
        let ids = rt.block_on(rest).unwrap();
        assert_eq!(ids.len(), 3);
        assert!(i.core.under_way().is_empty());
        assert_eq!(i.take_ready(usize::MAX).unwrap().len(), 6);
        // Routed nowhere and without a key: nothing to write or deliver.
        let nowhere = routed(2, &[]);
        let rest = i.append_queued(&nowhere).unwrap();
        assert!(rt.block_on(rest).unwrap().is_empty());
        before = open_keys(&i);
        assert_eq!(before.len(), 6);
        // No flush: the records alone bring the deliveries back.
    }
    let (_s, i) = inbox(dir.path());
    assert_eq!(open_keys(&i), before);
}

#[test]
fn finished_segments_are_deleted_and_open_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = inbox(dir.path());
    let log = dir.path().join("log");
    for _ in 0..10 {
        i.append(&routed(10, &["a"])).unwrap();
    }
    let slow = routed(1, &["slow"]);
    i.append(&slow).unwrap();
    for _ in 0..10 {
        i.append(&routed(10, &["a"])).unwrap();
    }
    let slow_key = (slow[0].0.id.clone(), "slow".to_string());
    let slow_segment = i.core.state().open[&slow_key].segment;
    assert!(
        slow_segment > 1,
        "the slow event is not in the first segment"
    );
    let ready = i.take_ready(usize::MAX).unwrap();
    finish_ok(&i, ready.iter().filter(|r| r.pending.handler == "a"));
    i.flush().unwrap();
    // Everything before the unfinished event's segment is gone.
    let ids = super::super::segment::segment_ids(&log).unwrap();
    assert_eq!(ids.first(), Some(&slow_segment), "{ids:?}");
    // Once it finishes too, only the newest segment is left.
    let slow = ready.iter().find(|r| r.pending.handler == "slow").unwrap();
    i.finish(&[(&slow.pending, &attempt(&slow.pending, "ok"))])
        .unwrap();
    i.flush().unwrap();
    // The segment being appended to as a checkpoint starts waits for the
    // next one (a record written into it meanwhile may not be counted yet).
    i.flush().unwrap();
    let ids = super::super::segment::segment_ids(&log).unwrap();
    assert_eq!(ids.len(), 1, "{ids:?}");
    drop((s, i));
    let (_s, i) = inbox(dir.path());
    assert!(open_keys(&i).is_empty());
}

type Hook = Mutex<Option<std::sync::mpsc::Receiver<()>>>;

/// Sets up `hook` to hold the next pass through it; the sender lets it go.
fn hold(hook: &Hook) -> std::sync::mpsc::Sender<()> {
    let (release, paused) = std::sync::mpsc::channel();
    *hook.lock().unwrap() = Some(paused);
    release
}

/// Waits until something has reached `hook` (and waits there).
fn reached(hook: &Hook) {
    while hook.lock().unwrap().is_some() {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An inbox without its checkpoint ticker (the tests below hold their
/// own checkpoints).
fn inbox_without_ticker(dir: &Path) -> (Store, Arc<LogInbox>) {
    let (s, mut i) = inbox(dir);
    i.ticker = None;
    (s, Arc::new(i))
}

/// Starts appending one event for handler `late` on a thread of its own
/// and returns once its record is written, held before the count of its
/// delivery: the delivery's key, the append's release and its thread.
fn append_held(
    i: &Arc<LogInbox>,
) -> (
    Key,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let late = routed(1, &["late"]);
    let key = (late[0].0.id.clone(), "late".to_string());
    let release = hold(&i.core.pause_after_write);
    let appender = {
        let i = i.clone();
        std::thread::spawn(move || drop(i.append(&late).unwrap()))
    };
    reached(&i.core.pause_after_write);
    (key, release, appender)
}

/// Appends more events (for handler `a`) until the log has moved at least
/// two segments on.
fn move_on(i: &LogInbox) {
    let first = i.core.log.next_segment();
    for _ in 0..6 {
        i.append(&routed(10, &["a"])).unwrap();
    }
    assert!(
        i.core.log.next_segment() > first + 1,
        "the appends moved on"
    );
}

/// `key`'s delivery is open, its segment still on disk, and it is open
/// again after a reopen (a crash).
fn still_there(dir: &Path, s: Store, i: Arc<LogInbox>, key: &Key) {
    let segment = i.core.state().open[key].segment;
    let ids = super::super::segment::segment_ids(&dir.join("log")).unwrap();
    assert!(
        ids.contains(&segment),
        "segment {segment} of an open delivery is gone: {ids:?}"
    );
    drop((s, Arc::into_inner(i).unwrap()));
    let (_s, i) = inbox(dir);
    assert!(
        open_keys(&i)
            .iter()
            .any(|(e, h, _)| (e, h) == (&key.0, &key.1))
    );
}

#[test]
fn a_checkpoint_between_an_appends_write_and_its_count_keeps_the_segment() {
    // A checkpoint that decided which segments to keep after an append had
    // written its record but before it counted its deliveries saw nothing
    // open and kept only the newest segment; once later appends had moved
    // past the record's segment, that segment was deleted, and with it the
    // only durable copy of an event already acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = inbox_without_ticker(dir.path());
    let (key, release, appender) = append_held(&i);
    move_on(&i);
    let ready = i.take_ready(usize::MAX).unwrap();
    assert!(ready.iter().all(|r| r.pending.handler == "a"));
    finish_ok(&i, &ready);
    // The checkpoint, while the first append waits before its count.
    i.flush().unwrap();
    release.send(()).unwrap();
    appender.join().unwrap();
    still_there(dir.path(), s, i, &key);
}

#[test]
fn an_append_written_while_a_checkpoint_deletes_keeps_its_segment() {
    // The other order: a checkpoint chose what to keep (nothing was open,
    // so every segment before the newest could go), then an append wrote
    // its record and, before it counted its deliveries, later appends
    // moved to a newer segment; the checkpoint then deleted the record's.
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = inbox_without_ticker(dir.path());
    let checkpoint = hold(&i.core.pause_before_removal);
    let flusher = {
        let i = i.clone();
        std::thread::spawn(move || i.flush().unwrap())
    };
    reached(&i.core.pause_before_removal);
    let (key, release, appender) = append_held(&i);
    move_on(&i);
    checkpoint.send(()).unwrap();
    flusher.join().unwrap();
    release.send(()).unwrap();
    appender.join().unwrap();
    still_there(dir.path(), s, i, &key);
}

#[test]
fn a_dead_letter_lost_by_sled_comes_back_once_and_a_purged_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let dl;
    {
        let (s, i) = inbox(dir.path());
        i.append(&routed(1, &["h"])).unwrap();
        let p = i.take_ready(1).unwrap().remove(0).pending;
        let p = i.retry_at(&p, &attempt(&p, "timeout"), 0).unwrap();
        dl = i.dead_letter(&p, &attempt(&p, "trap")).unwrap();
        assert_eq!(dl.errors.len(), 2);
        assert!(i.event(&p.event_id).unwrap().is_none());
        // As if the crash came between the DEAD record and sled's write.
        s.remove_dead_letter(&dl).unwrap();
        s.t().meta.remove(META_DEAD_UPTO).unwrap();
        s.flush().unwrap();
    }
    {
        let (s, i) = inbox(dir.path());
        assert!(open_keys(&i).is_empty(), "dead-lettered, not pending");
        let back = s
            .dead_letter_get(&dl.id)
            .unwrap()
            .expect("put back at open");
        assert_eq!(back.errors, dl.errors);
        // Purged now: a later open must not bring it back.
        s.purge_dead_letters(Some("h"), None).unwrap();
        s.flush().unwrap();
        drop((s, i));
    }
    let (s, _i) = inbox(dir.path());
    assert!(s.dead_letter_get(&dl.id).unwrap().is_none());
}

#[test]
fn idempotency_keys_survive_a_lost_sled_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut e = event("tick", "acme");
    e.idempotency_key = Some("k-1".into());
    let mut unrouted = event("tick", "acme");
    unrouted.idempotency_key = Some("k-2".into());
    {
        let (s, i) = inbox(dir.path());
        let batch = vec![
            (Arc::new(e.clone()), vec!["h".to_string()]),
            (Arc::new(unrouted.clone()), vec![]),
        ];
        assert_eq!(i.append(&batch).unwrap(), [e.id.clone()]);
        s.t().idempotency.clear().unwrap();
        s.flush().unwrap();
    }
    let (_s, i) = inbox(dir.path());
    let window = Duration::from_secs(3600);
    assert_eq!(i.idempotent_id("acme", "k-1", window).unwrap(), Some(e.id));
    assert_eq!(
        i.idempotent_id("acme", "k-2", window).unwrap(),
        Some(unrouted.id)
    );
}

#[test]
fn revive_puts_a_dead_letter_back_once() {
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = inbox(dir.path());
    deploy(&s, "h");
    i.append(&routed(1, &["h"])).unwrap();
    let p = i.take_ready(1).unwrap().remove(0).pending;
    let dl = i.dead_letter(&p, &attempt(&p, "trap")).unwrap();
    i.revive(&dl.id, Some(1)).unwrap();
    let again = i.take_ready(usize::MAX).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0].pending.attempt, again[0].pending.version),
        (1, Some(1))
    );
    assert!(s.dead_letter_get(&dl.id).unwrap().is_none());
    assert!(matches!(
        i.revive(&dl.id, None),
        Err(StoreError::NotFound(_))
    ));
    drop((s, i));
    let (_s, i) = inbox(dir.path());
    assert_eq!(open_keys(&i), [(p.event_id, "h".to_string(), 1)]);
}

#[test]
fn discard_drops_a_deleted_handlers_deliveries_for_good() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_s, i) = inbox(dir.path());
        i.append(&routed(2, &["gone", "kept"])).unwrap();
        assert_eq!(i.discard("gone").unwrap(), 2);
    }
    let (_s, i) = inbox(dir.path());
    let open = open_keys(&i);
    assert_eq!(open.len(), 2);
    assert!(open.iter().all(|(_, h, _)| h == "kept"));
}

#[test]
fn a_torn_last_batch_loses_only_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let batch = routed(2, &["h"]);
    {
        let (_s, i) = inbox(dir.path());
        i.append(&batch[..1]).unwrap();
        i.append(&batch[1..]).unwrap();
    }
    cut_newest_segment(&dir.path().join("log"), 10);
    let (_s, i) = inbox(dir.path());
    let open = open_keys(&i);
    assert_eq!(open, [(batch[0].0.id.clone(), "h".to_string(), 1)]);
}

#[test]
fn a_batch_is_logged_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    let first = routed(1, &["h"]);
    {
        let (_s, i) = inbox(dir.path());
        i.append(&first).unwrap();
        i.append(&routed(3, &["h"])).unwrap();
    }
    // Torn inside the second batch's last event: none of its three stays.
    cut_newest_segment(&dir.path().join("log"), 10);
    let (_s, i) = inbox(dir.path());
    assert_eq!(open_keys(&i), [(first[0].0.id.clone(), "h".to_string(), 1)]);
}

#[test]
fn a_batch_past_the_record_limit_is_split() {
    let batch = routed(4, &["h"]);
    let handlers = [("h", None)];
    let built = |limit: usize| {
        let mut r = EventsRecords::with_limit(limit, 0);
        for (e, _) in &batch {
            r.push(e, &handlers).unwrap();
        }
        r.finish()
    };
    // Without a limit, one record; each part is the same size here.
    let whole = built(usize::MAX);
    assert_eq!(whole.len(), 1);
    let part = (whole[0].0.len() - 5) / batch.len();
    // Room for two and a half parts: two per record. Room for less than
    // one: each part a record of its own.
    for (limit, counts) in [(5 + part * 5 / 2, vec![2, 2]), (part / 2, vec![1, 1, 1, 1])] {
        let records = built(limit);
        assert_eq!(records.iter().map(|(_, n)| *n).collect::<Vec<_>>(), counts);
        let mut parts = Vec::new();
        for (r, n) in &records {
            assert_eq!(r[0], EVENTS);
            assert_eq!(u32::from_le_bytes(r[1..5].try_into().unwrap()) as usize, *n);
            assert!(r.len() <= limit.max(5 + part), "{} > {limit}", r.len());
            parts.extend_from_slice(&r[5..]);
        }
        // The same parts, in order, byte for byte.
        assert_eq!(parts, whole[0].0[5..]);
    }
}

#[test]
fn the_sled_inboxs_deliveries_move_into_the_log_once() {
    let dir = tempfile::tempdir().unwrap();
    let batch = routed(2, &["a", "b"]);
    {
        // A data directory last run with the sled inbox: one delivery
        // retried, three never tried.
        let s = open(&dir.path().join("sled"));
        Inbox::append(&s, &batch).unwrap();
        let ready = s.take_ready(usize::MAX).unwrap();
        let p = &ready[0].pending;
        s.retry_at(p, &attempt(p, "trap"), 9).unwrap();
        s.flush().unwrap();
    }
    let (s, i) = inbox(dir.path());
    assert_eq!(i.adopt_sled().unwrap(), 4);
    assert!(!s.has_pending().unwrap(), "sled keeps none of them");
    assert_eq!(i.adopt_sled().unwrap(), 0);
    let moved = open_keys(&i);
    assert_eq!(moved.len(), 4);
    assert_eq!(moved.iter().filter(|k| k.2 == 2).count(), 1, "{moved:?}");
    i.flush().unwrap();
    drop((s, i));
    // And they are the log's now: a reopen replays them, retry included.
    let (_s, i) = inbox(dir.path());
    assert_eq!(open_keys(&i), moved);
    assert_eq!(i.replay().unwrap(), 4);
    let ready = i.take_ready(usize::MAX).unwrap();
    let retried = ready.iter().find(|r| r.pending.attempt == 2).unwrap();
    assert_eq!(retried.pending.due_ms, 9);
    assert_eq!(retried.pending.errors[0].outcome, "trap");
    assert!(ready.iter().all(|r| r.event.id == r.pending.event_id));
}

#[test]
fn an_event_is_kept_with_the_line_that_ends_its_last_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = inbox(dir.path());
    assert!(i.keeps_finished_events());
    let batch = routed(2, &["a", "b"]);
    i.append(&batch).unwrap();
    let ready = i.take_ready(usize::MAX).unwrap();
    let of = |id: &str, h: &str| {
        ready
            .iter()
            .find(|r| r.pending.event_id == id && r.pending.handler == h)
            .map(|r| r.pending.clone())
            .unwrap()
    };
    let (one, two) = (batch[0].0.id.as_str(), batch[1].0.id.as_str());
    // The first of two deliveries ends: the event is still in the inbox,
    // and not kept in the log yet.
    let p = of(one, "a");
    i.finish(&[(&p, &attempt(&p, "ok"))]).unwrap();
    assert!(i.event(one).unwrap().is_some());
    assert!(s.kept_event(one).unwrap().is_none());
    // Its last one, finished in the same batch as the first delivery of
    // the other event: the first is kept, the other is not.
    let (p, q) = (of(one, "b"), of(two, "a"));
    i.finish(&[(&p, &attempt(&p, "ok")), (&q, &attempt(&q, "ok"))])
        .unwrap();
    assert!(i.event(one).unwrap().is_none());
    let kept = s.archived_event(one).unwrap().expect("kept with its line");
    assert_eq!(kept.payload.get(), batch[0].0.payload.get());
    assert!(s.archived_event(two).unwrap().is_none());
    assert_eq!(s.deliveries_of(one).unwrap().len(), 2);
    // A dead letter that ends the last delivery keeps the event too.
    let r = of(two, "b");
    let dl = i.dead_letter(&r, &attempt(&r, "trap")).unwrap();
    assert_eq!(dl.event.id, two);
    assert!(i.event(two).unwrap().is_none());
    assert!(s.archived_event(two).unwrap().is_some());
    assert_eq!(s.deliveries_of(two).unwrap().len(), 2);
    // Finishing a delivery that is closed already keeps nothing (and
    // breaks nothing).
    i.finish(&[(&q, &attempt(&q, "ok"))]).unwrap();
    assert_eq!(s.deliveries_of(two).unwrap().len(), 3);
    // Nothing went to the archive tree: retention has no lookups to make.
    assert!(s.t().finished_events.is_empty());
}

#[test]
fn an_event_that_a_discard_ends_is_kept_if_it_has_log_lines() {
    let dir = tempfile::tempdir().unwrap();
    let (s, i) = inbox(dir.path());
    let logged = routed(1, &["kept", "gone"]);
    let unlogged = routed(1, &["gone"]);
    i.append(&logged).unwrap();
    i.append(&unlogged).unwrap();
    let ready = i.take_ready(usize::MAX).unwrap();
    let p = ready
        .iter()
        .find(|r| r.pending.handler == "kept")
        .map(|r| r.pending.clone())
        .unwrap();
    i.finish(&[(&p, &attempt(&p, "ok"))]).unwrap();
    assert_eq!(i.discard("gone").unwrap(), 2);
    let id = &logged[0].0.id;
    assert!(i.event(id).unwrap().is_none());
    assert_eq!(s.archived_event(id).unwrap().unwrap().id, *id);
    // No line, nothing to look it up beside.
    assert!(s.archived_event(&unlogged[0].0.id).unwrap().is_none());
}
