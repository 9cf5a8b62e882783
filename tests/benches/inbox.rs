//! The accept append, three ways (issue 14: "measure before choosing"):
//!
//! - **sled accept today**: [`Store::accept`], the multi-tree transaction
//!   (events, reference counts, pending entries, idempotency keys) the
//!   daemon runs per batch;
//! - **sled as a log**: sled used strictly as a log — one tree, keys a u64
//!   sequence, one `apply_batch` of the batch's records, nothing read back;
//! - **segment log**: [`SegmentLog`], Hookbox's own checksummed segment
//!   files (one `write` and one `fdatasync` per group round).
//!
//! Each appends batches of 100 records, one per 1 KiB event with the
//! handler it was routed to, for a fixed time: from one producer and from
//! four at once, with durability `sync` (a flush per append; concurrent
//! appends may share one) and `group` (a flush at most every 2 ms). Then
//! every record is read back, as a restart replays the log. Figures:
//! events/s, process CPU per event (every thread: sled's flusher included),
//! per-append latency, disk bytes per event, and replay rate.
//!
//! A second table times a restart with a backlog (issue 14's target: 1M
//! finished and 100k unfinished deliveries, ready in < 5 s) on both
//! inboxes, filled and reopened through the `Inbox` trait as the
//! dispatcher uses it. `HOOKBOX_BENCH_RESTART=<finished>:<unfinished>`
//! sets the backlog.
//!
//! Run with `cargo bench -p hookbox-tests --bench inbox`.

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hookbox::event::Event;
use hookbox::store::{
    Durability, Inbox, LogEntry, LogInbox, Pending, Position, SegmentLog, SegmentOptions, Store,
    StoreOptions,
};
use support::{
    Report, Table, fmt_ns, fmt_rate, message_event, percentile, quick, thread_cpu_ns, zulip_message,
};

/// Events per append (the batch size).
const BATCH: usize = 100;
/// The group-commit interval of the `group` rows (the daemon's default).
const GROUP: Duration = Duration::from_millis(2);

/// Process CPU time (user + system, every thread), in nanoseconds.
#[allow(unsafe_code)]
fn process_cpu_ns() -> u64 {
    // SAFETY: `getrusage` fills one `rusage` through a valid pointer.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage");
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    (us(ru.ru_utime) + us(ru.ru_stime)) * 1000
}

/// One event's inbox record: the handlers it was routed to, then the event.
fn record(event: &Event, handlers: &[String]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1200);
    out.extend_from_slice(&(handlers.len() as u16).to_le_bytes());
    for h in handlers {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
        out.extend_from_slice(h.as_bytes());
    }
    serde_json::to_writer(&mut out, event).expect("an event encodes");
    out
}

/// A way to append a batch durably.
trait Append: Send + Sync {
    fn append(&self, batch: &[(Event, Vec<String>)]);
    fn disk_bytes(&self) -> u64;
    /// Reads every record back; how many.
    fn replay(&self) -> u64;
}

struct Accept(Store);

impl Append for Accept {
    fn append(&self, batch: &[(Event, Vec<String>)]) {
        self.0.accept(batch).expect("accept");
    }
    fn disk_bytes(&self) -> u64 {
        self.0.size_on_disk().expect("size")
    }
    fn replay(&self) -> u64 {
        self.0.pending().expect("pending").len() as u64
    }
}

/// sled strictly as a log, with the same group commit the store uses: a
/// flush per append (`sync`), or appenders waiting for the next flush of
/// a background flusher (`group`).
struct SledLog {
    db: sled::Db,
    tree: sled::Tree,
    seq: AtomicU64,
    group: Option<Arc<Flusher>>,
}

#[derive(Default)]
struct Flusher {
    /// (flushes requested, flushes done)
    state: Mutex<(u64, u64, bool)>,
    cv: Condvar,
}

impl SledLog {
    fn open(dir: &std::path::Path, durability: Durability) -> SledLog {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 << 20)
            .open()
            .expect("sled opens");
        let tree = db.open_tree("inbox").expect("tree");
        let group = matches!(durability, Durability::Group { .. }).then(|| {
            let f = Arc::new(Flusher::default());
            let (f2, db2) = (f.clone(), db.clone());
            std::thread::spawn(move || {
                loop {
                    let target = {
                        let mut st = f2.state.lock().unwrap();
                        while st.0 == st.1 && !st.2 {
                            st = f2.cv.wait(st).unwrap();
                        }
                        if st.2 {
                            return;
                        }
                        st.0
                    };
                    db2.flush().expect("flush");
                    f2.state.lock().unwrap().1 = target;
                    f2.cv.notify_all();
                    std::thread::sleep(GROUP);
                }
            });
            f
        });
        SledLog {
            db,
            tree,
            seq: AtomicU64::new(0),
            group,
        }
    }
}

impl Drop for SledLog {
    fn drop(&mut self) {
        if let Some(f) = &self.group {
            f.state.lock().unwrap().2 = true;
            f.cv.notify_all();
        }
    }
}

impl Append for SledLog {
    fn append(&self, batch: &[(Event, Vec<String>)]) {
        let first = self.seq.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut b = sled::Batch::default();
        for (i, (e, h)) in batch.iter().enumerate() {
            b.insert(&(first + i as u64).to_be_bytes(), record(e, h));
        }
        self.tree.apply_batch(b).expect("apply_batch");
        match &self.group {
            None => {
                self.db.flush().expect("flush");
            }
            Some(f) => {
                let mut st = f.state.lock().unwrap();
                st.0 += 1;
                let ticket = st.0;
                f.cv.notify_all();
                while st.1 < ticket {
                    st = f.cv.wait(st).unwrap();
                }
            }
        }
    }
    fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().expect("size")
    }
    fn replay(&self) -> u64 {
        let mut n = 0;
        for item in self.tree.iter() {
            let (_, v) = item.expect("read");
            n += u64::from(!v.is_empty());
        }
        n
    }
}

struct Segments(SegmentLog);

impl Append for Segments {
    fn append(&self, batch: &[(Event, Vec<String>)]) {
        let records: Vec<Vec<u8>> = batch.iter().map(|(e, h)| record(e, h)).collect();
        self.0.append(&records).expect("append");
    }
    fn disk_bytes(&self) -> u64 {
        self.0.size_on_disk().expect("size")
    }
    fn replay(&self) -> u64 {
        let mut n = 0;
        let start = Position {
            segment: 0,
            offset: 0,
        };
        self.0
            .read_from(start, |_, r| {
                n += u64::from(!r.is_empty());
                Ok(())
            })
            .expect("read");
        n
    }
}

struct Cell {
    events_per_s: f64,
    cpu_per_event_ns: f64,
    p50_ms: f64,
    p99_ms: f64,
    bytes_per_event: f64,
    replay_per_s: f64,
}

/// Appends from `producers` threads for `run`, then replays.
fn measure(
    inbox: Arc<dyn Append>,
    producers: usize,
    run: Duration,
    payload: &serde_json::Value,
) -> Cell {
    let handlers = vec!["word-counter".to_string()];
    let (t0, c0) = (Instant::now(), process_cpu_ns());
    let threads: Vec<_> = (0..producers)
        .map(|_| {
            let inbox = inbox.clone();
            let payload = payload.clone();
            let handlers = handlers.clone();
            std::thread::spawn(move || {
                let (mut lat, mut making) = (Vec::new(), 0);
                let start = Instant::now();
                while start.elapsed() < run {
                    let c = thread_cpu_ns();
                    let batch: Vec<(Event, Vec<String>)> = (0..BATCH)
                        .map(|_| (message_event(&payload), handlers.clone()))
                        .collect();
                    making += thread_cpu_ns() - c;
                    let t = Instant::now();
                    inbox.append(&batch);
                    lat.push(t.elapsed().as_secs_f64() * 1e3);
                }
                (lat, making)
            })
        })
        .collect();
    let (mut lat, mut making) = (Vec::new(), 0);
    for t in threads {
        let (l, m) = t.join().expect("producer");
        lat.extend(l);
        making += m;
    }
    // The events' making (ids, payload copies) is the producer's, not the inbox's.
    let (wall, cpu) = (t0.elapsed(), process_cpu_ns() - c0 - making);
    lat.sort_by(f64::total_cmp);
    let events = (lat.len() * BATCH) as f64;
    let r0 = Instant::now();
    let replayed = inbox.replay();
    let replay = r0.elapsed();
    assert_eq!(replayed as f64, events, "every appended record reads back");
    Cell {
        events_per_s: events / wall.as_secs_f64(),
        cpu_per_event_ns: cpu as f64 / events,
        p50_ms: percentile(&lat, 50.0),
        p99_ms: percentile(&lat, 99.0),
        bytes_per_event: inbox.disk_bytes() as f64 / events,
        replay_per_s: events / replay.as_secs_f64(),
    }
}

fn open(kind: &str, dir: &std::path::Path, durability: Durability) -> Arc<dyn Append> {
    match kind {
        "sled accept (today)" => Arc::new(Accept(
            Store::open(
                dir,
                StoreOptions {
                    durability,
                    ..StoreOptions::default()
                },
            )
            .expect("store opens"),
        )),
        "sled as a log" => Arc::new(SledLog::open(dir, durability)),
        _ => Arc::new(Segments(
            SegmentLog::open(
                dir,
                SegmentOptions {
                    durability,
                    ..SegmentOptions::default()
                },
            )
            .expect("log opens")
            .0,
        )),
    }
}

fn main() {
    let mut report = Report::new("inbox");
    let run = if quick() {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(3)
    };
    let payload = zulip_message(1 << 10);
    let mut table = Table::new(&[
        "inbox",
        "durability",
        "producers",
        "events/s",
        "CPU per event",
        "append p50",
        "append p99",
        "disk per event",
        "replay",
    ]);
    let kinds = ["sled accept (today)", "sled as a log", "segment log"];
    let modes = [
        ("sync", Durability::Sync, 1),
        ("sync", Durability::Sync, 4),
        ("group", Durability::Group { interval: GROUP }, 4),
    ];
    for (label, durability, producers) in modes {
        // The three side by side for each mode, so a drift of the machine
        // between modes does not tilt the comparison.
        for kind in kinds {
            let dir = tempfile::tempdir().expect("tempdir");
            let inbox = open(kind, dir.path(), durability);
            let c = measure(inbox, producers, run, &payload);
            table.row(vec![
                kind.to_string(),
                label.to_string(),
                producers.to_string(),
                fmt_rate(c.events_per_s),
                fmt_ns(c.cpu_per_event_ns),
                format!("{:.2} ms", c.p50_ms),
                format!("{:.2} ms", c.p99_ms),
                format!("{:.0} B", c.bytes_per_event),
                fmt_rate(c.replay_per_s),
            ]);
        }
    }
    report.table(
        "The accept append: sled transaction vs sled as a log vs segment files (1 KiB events, batches of 100)",
        &table,
        &format!(
            "Each cell appends for {:.1} s on a fresh data directory. CPU per event is the whole process's user + system time (sled's background threads included), less what the producers spent making the events, ÷ events; disk per event is the store's size on disk ÷ events; replay reads every record back (`sled accept`: `Store::pending`, decoding each entry). The machine is shared, so rates move between runs; compare the rows of one run.",
            run.as_secs_f64()
        ),
    );
    restart(&mut report, &payload);
    report.publish();
}

/// The backlog of the restart table: (finished, unfinished) deliveries.
fn backlog() -> (usize, usize) {
    if let Ok(v) = std::env::var("HOOKBOX_BENCH_RESTART") {
        let parsed = v
            .split_once(':')
            .and_then(|(f, u)| Some((f.parse().ok()?, u.parse().ok()?)));
        return parsed.expect("HOOKBOX_BENCH_RESTART=<finished>:<unfinished>");
    }
    if quick() {
        (10_000, 1_000)
    } else {
        (1_000_000, 100_000)
    }
}

/// Bytes of the files under `dir`.
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// An inbox of either kind on `dir` (sled in `store/`, the log in `inbox/`).
fn open_inbox(dir: &std::path::Path, log: bool, opts: StoreOptions) -> Arc<dyn Inbox> {
    let store = Store::open(&dir.join("store"), opts).expect("the store opens");
    if log {
        Arc::new(LogInbox::open(store, &dir.join("inbox")).expect("the log inbox opens"))
    } else {
        Arc::new(store)
    }
}

/// Fills an inbox as the dispatcher would: `finished + unfinished` events
/// appended in batches, the first `finished` delivered (logged, counted,
/// finished through [`Inbox::finish`] in the recorder's batches).
fn fill(inbox: &dyn Inbox, payload: &serde_json::Value, finished: usize, unfinished: usize) {
    let handlers = vec!["word-counter".to_string()];
    let mut left = finished + unfinished;
    let mut done = 0usize;
    while left > 0 {
        let n = left.min(1000);
        left -= n;
        let batch: Vec<(Arc<Event>, Vec<String>)> = (0..n)
            .map(|_| (Arc::new(message_event(payload)), handlers.clone()))
            .collect();
        inbox.append(&batch).expect("append");
        let ready = inbox.take_ready(usize::MAX).expect("take");
        let take = (finished - done).min(ready.len());
        done += take;
        let entries: Vec<LogEntry> = ready[..take]
            .iter()
            .map(|r| LogEntry {
                handler: r.pending.handler.clone(),
                version: 1,
                event_id: r.event.id.clone(),
                event_type: r.event.event_type.clone(),
                tenant: r.event.tenant.clone(),
                outcome: "ok".into(),
                attempt: 1,
                time_ms: r.event.time,
                ..LogEntry::default()
            })
            .collect();
        let pairs: Vec<(&Pending, &LogEntry)> =
            ready.iter().map(|r| &r.pending).zip(&entries).collect();
        for chunk in pairs.chunks(512) {
            inbox.finish(chunk).expect("finish");
        }
    }
    inbox.flush().expect("flush");
}

/// Times reopening each inbox holding a backlog: open → every unfinished
/// delivery ready, as the dispatcher starts.
fn restart(report: &mut Report, payload: &serde_json::Value) {
    let (finished, unfinished) = backlog();
    let fill_opts = StoreOptions {
        durability: Durability::None,
        ..StoreOptions::default()
    };
    let mut table = Table::new(&[
        "inbox",
        "filled in",
        "open → ready",
        "replayed",
        "data on disk (store / inbox log)",
    ]);
    for (name, log) in [("sled", false), ("log", true)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Instant::now();
        fill(
            open_inbox(dir.path(), log, fill_opts.clone()).as_ref(),
            payload,
            finished,
            unfinished,
        );
        let filled = t.elapsed();
        let t = Instant::now();
        let opts = StoreOptions {
            lock_wait: Duration::from_secs(60),
            ..StoreOptions::default()
        };
        let inbox = open_inbox(dir.path(), log, opts);
        let replayed = inbox.replay().expect("replay");
        let ready = inbox.take_ready(usize::MAX).expect("take");
        let took = t.elapsed();
        assert_eq!((replayed, ready.len()), (unfinished, unfinished));
        drop((inbox, ready));
        table.row(vec![
            format!("{name} inbox"),
            format!("{:.0} s", filled.as_secs_f64()),
            format!("{:.2} s", took.as_secs_f64()),
            unfinished.to_string(),
            format!(
                "{} / {}",
                support::fmt_bytes(dir_bytes(&dir.path().join("store")) as f64),
                support::fmt_bytes(dir_bytes(&dir.path().join("inbox")) as f64)
            ),
        ]);
    }
    report.table(
        &format!("Restart with {finished} finished and {unfinished} unfinished deliveries (1 KiB events, 1 handler)"),
        &table,
        "Each inbox filled through the `Inbox` trait as the dispatcher uses it (append in batches of 1000, durability `none`; the first deliveries finished with their log lines and stats in batches of 512, as the recorder does; then a flush), closed, and reopened with the default durability: open → ready is `Store::open` (+ `LogInbox::open` for the log inbox, which reads its live segments) + `Inbox::replay` + `take_ready`, i.e. what `Dispatcher::start` does for the queue (loading handlers not included). The log inbox deletes a segment once every delivery in it is final, so the inbox log holds only the unfinished; it keeps each finished event (for `GET /v1/events/{id}`, while the delivery log has its lines) in the store's kept-events log, counted in the store's size; the sled inbox deletes their rows.",
    );
}
