//! The log inbox: [`Inbox`] on the segment log (`segment.rs`), the design
//! issue 14 chose by measurement (BENCHMARKS.md, "The inbox").
//!
//! An append is one group-committed write of one record: per event the
//! handlers it was routed to and the event — no sled transaction, no
//! pending row per delivery. The record is checksummed as a whole, so a
//! batch is in the log entirely or not at all (a batch whose record would
//! pass [`MAX_RECORD`](super::segment::MAX_RECORD), 64 MiB, four times the
//! API's body limit, is split into several records). The HTTP API's small
//! batches use [`Inbox::append_queued`]: the record is queued on the
//! reactor thread, a commit thread of the inbox's own leads the round, and
//! the round answers every request in it, so no thread sleeps per request.
//! Which deliveries are still open is kept in memory and rebuilt at open
//! by reading the live segments in order:
//!
//! | record | bytes after the kind byte | effect at replay |
//! |---|---|---|
//! | `EVENTS` | `u32` events, each: `u16` handlers, each `str` name + `u8` pinned? + `u32` version; then `str` the event as JSON | one open delivery per handler |
//! | `FINISH` | `u32` count, each `str` event id + `str` handler | those deliveries are final |
//! | `RETRY` | the next [`Pending`] as JSON | the delivery's attempt, due time and errors |
//! | `DEAD` | the [`DeadLetter`] as JSON | final; put into sled's dead letters if it is not known to be there |
//!
//! (`str` is a `u32` little-endian length and UTF-8 bytes.)
//!
//! **Progress is written behind.** Successful deliveries' log lines and
//! stats go to sled as before (an event whose last delivery ends is kept
//! in the log line's index entry for `GET /v1/events/{id}`, no write of
//! its own), their `FINISH` markers into a buffer; every
//! [`CHECKPOINT`], on a thread of its own (so no recorder waits for the
//! fsyncs), and at [`Inbox::flush`], sled is flushed
//! first and then the markers are appended, so a finished delivery's log
//! line is always durable before the marker that says it is finished. A
//! crash loses at most the markers of the last checkpoint interval: those
//! deliveries run again (at-least-once).
//!
//! **Retries and dead letters are durable and exact.** A retry's record is
//! synced before [`Inbox::retry_at`] returns. A dead letter is first
//! synced to the log as a `DEAD` record, then written to sled in one
//! transaction with the position of that record (`meta` key
//! `inbox_dead_upto`); replay re-materialises only `DEAD` records past that
//! position, so a crash between the two loses no dead letter, and one
//! purged later is not brought back. Dead-lettering is serialised so the
//! positions and the transactions are in the same order.
//!
//! **Idempotency keys** are written to sled behind the append (its `EVENT`
//! record, routed or not, carries the key), put back at open from the
//! events still in the log, and made durable by the sled flush that
//! precedes the deletion of any segment (an append is under way, below,
//! until its keys are written).
//!
//! **Segments are deleted** once every delivery whose `EVENT` record is in
//! them is final and the checkpoint that says so is durable: a restart
//! reads only segments that still hold unfinished work, plus the markers
//! after them. An append counts its deliveries only after its record is
//! written, so a checkpoint also keeps every segment an append under way
//! may be writing to (`Core::appending`), and the segment the next record
//! goes to as it chooses: a record written after that may not be counted
//! yet when the deletion runs. Otherwise a checkpoint could delete the only
//! copy of an acknowledged event once the appends moved to a new segment.

use std::collections::BTreeMap;
use std::collections::hash_map::Entry;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use foldhash::{HashMap, HashMapExt};

use super::inbox::{Appended, Inbox, Ready, ReadySet, first_attempt};
use super::queue::{META_ACCEPTED, META_UNROUTED, attempt_error, not_pending};
use super::segment::{Position, SegmentLog, SegmentOptions};
use super::stats::StatKind;
use super::{DeadLetter, LogEntry, Pending, Result, Store, StoreError};
use crate::event::{Event, now_ms};

const EVENTS: u8 = 1;
const FINISH: u8 = 2;
const RETRY: u8 = 3;
const DEAD: u8 = 4;

/// How often finished deliveries' markers are made durable (and finished
/// segments deleted): the most work a crash can make run again.
pub const CHECKPOINT: Duration = Duration::from_millis(200);

/// A delivery: (event id, handler).
type Key = (String, String);

struct Open {
    pending: Pending,
    /// The segment of the `EVENT` record that made it.
    segment: u64,
}

/// Its maps are keyed by event ids and handler names, which the daemon and
/// the operator make, never a producer: they hash with foldhash, a tenth
/// of the recorder's CPU with SipHash.
#[derive(Default)]
struct State {
    /// Events with open deliveries, and how many.
    events: HashMap<String, (Arc<Event>, u32)>,
    open: HashMap<Key, Open>,
    /// Open deliveries per segment of their `EVENT` record (no zeros).
    per_segment: BTreeMap<u64, u32>,
    /// Finished deliveries whose markers are not written yet.
    finished: Vec<Key>,
    last_checkpoint: Option<Instant>,
}

impl State {
    /// Opens a delivery at its first attempt; its pending entry, or `None`
    /// if it was open already.
    fn add(
        &mut self,
        event: &Arc<Event>,
        handler: &str,
        version: Option<u32>,
        segment: u64,
    ) -> Option<&Pending> {
        let Entry::Vacant(slot) = self.open.entry((event.id.clone(), handler.to_string())) else {
            return None;
        };
        let pending = first_attempt(&event.id, handler, now_ms(), version);
        *self.per_segment.entry(segment).or_default() += 1;
        match self.events.get_mut(&event.id) {
            Some((_, open)) => *open += 1,
            None => {
                self.events.insert(event.id.clone(), (event.clone(), 1));
            }
        }
        Some(&slot.insert(Open { pending, segment }).pending)
    }

    /// The events whose every open delivery is among `done`: those the
    /// deliveries end.
    fn ending<'k>(&self, done: &'k [Key]) -> HashMap<&'k str, Arc<Event>> {
        let mut closing: HashMap<&str, u32> = HashMap::new();
        // A delivery not open ends nothing.
        for key in done.iter().filter(|k| self.open.contains_key(*k)) {
            *closing.entry(key.0.as_str()).or_default() += 1;
        }
        closing
            .into_iter()
            .filter_map(|(id, n)| match self.events.get(id) {
                Some((event, open)) if *open == n => Some((id, event.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether the delivery was open.
    fn close(&mut self, key: &Key) -> bool {
        let Some(o) = self.open.remove(key) else {
            return false;
        };
        if let Some(n) = self.per_segment.get_mut(&o.segment) {
            *n -= 1;
            if *n == 0 {
                self.per_segment.remove(&o.segment);
            }
        }
        if let Some(e) = self.events.get_mut(&key.0) {
            e.1 -= 1;
            if e.1 == 0 {
                self.events.remove(&key.0);
            }
        }
        true
    }
}

/// See the module docs.
pub struct LogInbox {
    core: Arc<Core>,
    /// Writes checkpoints every [`CHECKPOINT`], off the recorder's path.
    ticker: Option<Ticker>,
    /// Leads the group-commit rounds of [`Inbox::append_queued`].
    committer: Option<Committer>,
}

/// What the inbox and its checkpoint thread share.
struct Core {
    store: Store,
    log: SegmentLog,
    state: Mutex<State>,
    ready: ReadySet,
    /// Serialises dead-lettering (see the module docs).
    dead: Mutex<()>,
    /// Held by [`Inbox::finish`], [`Inbox::dead_letter`] and
    /// [`Inbox::discard`] from deciding which deliveries end their event
    /// to closing them, so two that end the last two deliveries of one
    /// event at once cannot both decide that the other is the last (and
    /// neither keep the event). A dead letter holds it across its synced
    /// write; the recorder waits that long at most, and dead letters are
    /// rare.
    closing: Mutex<()>,
    /// Appends of `EVENTS` records under way, by the oldest segment each
    /// can write to (the log's next segment as it began), from before the
    /// write until its deliveries are in `state` and its idempotency keys
    /// in sled. A checkpoint keeps those segments: a record written but not
    /// yet counted in `per_segment` holds its segment no other way, and its
    /// deletion would lose an event already acknowledged.
    appending: Mutex<BTreeMap<u64, u32>>,
    #[cfg(test)]
    /// Tests: the next append waits for a message here between its write
    /// and the count of its deliveries, so a checkpoint can fall between.
    pause_after_write: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    #[cfg(test)]
    /// Tests: the next checkpoint waits for a message here between
    /// choosing the segments to keep and deleting the others.
    pause_before_removal: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

/// The checkpoint thread and how to stop it.
struct Ticker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    /// Checkpoints `core` every [`CHECKPOINT`] until stopped (or the inbox
    /// is gone). A failed checkpoint is logged and tried again next time:
    /// the markers stay buffered.
    fn start(core: &Arc<Core>) -> Option<Ticker> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let weak = Arc::downgrade(core);
        let signal = stop.clone();
        let thread = std::thread::Builder::new()
            .name("hookbox-inbox-checkpoint".into())
            .spawn(move || {
                let (lock, wake) = &*signal;
                let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                loop {
                    stopped = wake
                        .wait_timeout(stopped, CHECKPOINT)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stopped {
                        return;
                    }
                    let Some(core) = weak.upgrade() else { return };
                    drop(stopped);
                    if let Err(e) = core.checkpoint(false) {
                        tracing::error!(error = %e, "Writing an inbox checkpoint failed; will try again");
                    }
                    drop(core);
                    stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                }
            });
        match thread {
            Ok(t) => Some(Ticker {
                stop,
                thread: Some(t),
            }),
            Err(e) => {
                // Progress is then made durable by `flush` alone (at a
                // clean stop): a crash runs more deliveries again.
                tracing::error!(error = %e, "Starting the inbox checkpoint thread failed");
                None
            }
        }
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        *self.stop.0.lock().unwrap_or_else(|p| p.into_inner()) = true;
        self.stop.1.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The thread that leads the segment log's rounds for queued appends
/// ([`SegmentLog::commit_queued`]), and how to stop it.
struct Committer {
    core: Arc<Core>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    fn start(core: &Arc<Core>) -> Result<Committer> {
        let leader = core.clone();
        let thread = std::thread::Builder::new()
            .name("hookbox-inbox-commit".into())
            .spawn(move || leader.log.commit_queued())
            .map_err(|e| StoreError::Sled(format!("starting the inbox commit thread: {e}")))?;
        Ok(Committer {
            core: core.clone(),
            thread: Some(thread),
        })
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.core.log.stop_committing();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl std::fmt::Debug for LogInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogInbox")
            .field("log", &self.core.log)
            .finish_non_exhaustive()
    }
}

const META_DEAD_UPTO: &[u8] = b"inbox_dead_upto";

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads a record's fields in order; `None` on a short or malformed record.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.bytes(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.bytes(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn str(&mut self) -> Option<&'a str> {
        let n = self.u32()? as usize;
        std::str::from_utf8(self.bytes(n)?).ok()
    }
}

/// Writes one event's part of an `EVENTS` record at the end of `out`: its
/// handlers, then its JSON, serialized in place behind its length.
fn event_part(out: &mut Vec<u8>, event: &Event, handlers: &[(&str, Option<u32>)]) -> Result<()> {
    out.extend_from_slice(&(handlers.len() as u16).to_le_bytes());
    for (h, v) in handlers {
        put_str(out, h);
        match v {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            None => out.push(0),
        }
    }
    let len_at = out.len();
    out.extend_from_slice(&[0; 4]);
    serde_json::to_writer(&mut *out, event).map_err(|e| StoreError::Encode(e.to_string()))?;
    let len = (out.len() - len_at - 4) as u32;
    out[len_at..len_at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}

/// `EVENTS` records built in place, one event's part after another: one
/// record, unless the parts pass the record size limit. A part that does
/// not fit starts the next record; a part past the limit alone is a
/// record of its own (which the segment log then refuses). Writing each
/// part straight into its record saves copying every event twice (at
/// saturation the copies were a sixth of the accept's append).
struct EventsRecords {
    limit: usize,
    done: Vec<(Vec<u8>, usize)>,
    current: Vec<u8>,
    count: usize,
}

impl EventsRecords {
    /// `size_hint`: about how many bytes the parts will take.
    fn new(size_hint: usize) -> EventsRecords {
        EventsRecords::with_limit(super::segment::MAX_RECORD - 8, size_hint)
    }

    fn with_limit(limit: usize, size_hint: usize) -> EventsRecords {
        EventsRecords {
            limit,
            done: Vec::new(),
            current: Vec::with_capacity(size_hint.min(limit).saturating_add(5)),
            count: 0,
        }
    }

    fn push(&mut self, event: &Event, handlers: &[(&str, Option<u32>)]) -> Result<()> {
        if self.count == 0 {
            self.begin();
        }
        let start = self.current.len();
        event_part(&mut self.current, event, handlers)?;
        if self.current.len() > self.limit && self.count > 0 {
            let part = self.current.split_off(start);
            self.seal();
            self.begin();
            self.current.extend_from_slice(&part);
        }
        self.count += 1;
        Ok(())
    }

    /// Starts the next record: its kind and a count filled in by `seal`.
    fn begin(&mut self) {
        self.current.clear();
        self.current.extend_from_slice(&[EVENTS, 0, 0, 0, 0]);
    }

    /// Moves the record being built, if it holds a part, to `done`.
    fn seal(&mut self) {
        if self.count > 0 {
            let mut r = std::mem::take(&mut self.current);
            r[1..5].copy_from_slice(&(self.count as u32).to_le_bytes());
            self.done.push((r, self.count));
            self.count = 0;
        }
    }

    /// The records, each with how many parts it holds.
    fn finish(mut self) -> Vec<(Vec<u8>, usize)> {
        self.seal();
        self.done
    }

    /// The records alone.
    fn records(self) -> Vec<Vec<u8>> {
        self.finish().into_iter().map(|(r, _)| r).collect()
    }
}

/// About the bytes an event's part takes: its JSON and its handlers.
fn part_size_hint(event: &Event) -> usize {
    event.json_size_hint() + 64
}

fn json_record<T: serde::Serialize>(kind: u8, value: &T) -> Result<Vec<u8>> {
    let mut out = vec![kind];
    serde_json::to_writer(&mut out, value).map_err(|e| StoreError::Encode(e.to_string()))?;
    Ok(out)
}

fn finish_record(keys: &[Key]) -> Vec<u8> {
    let mut out = vec![FINISH];
    out.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    for (e, h) in keys {
        put_str(&mut out, e);
        put_str(&mut out, h);
    }
    out
}

fn bad(at: Position, why: &str) -> StoreError {
    StoreError::Corrupt(format!(
        "inbox log record at segment {} offset {}: {why}",
        at.segment, at.offset
    ))
}

fn position_bytes(p: Position) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&p.segment.to_be_bytes());
    b[8..].copy_from_slice(&p.offset.to_be_bytes());
    b
}

impl LogInbox {
    /// Opens the log in `dir` (its segments' records checked, a torn tail
    /// cut off) and rebuilds the open deliveries; `store` keeps the
    /// delivery log, stats, dead letters and idempotency keys. The replay
    /// runs here; [`Inbox::replay`] hands its result out.
    pub fn open(store: Store, dir: &Path) -> Result<LogInbox> {
        Self::open_sized(store, dir, SegmentOptions::default().max_segment_bytes)
    }

    /// [`Self::open`] with segments of at most `max_segment_bytes`.
    fn open_sized(store: Store, dir: &Path, max_segment_bytes: u64) -> Result<LogInbox> {
        let opts = SegmentOptions {
            durability: store.inner.opts.durability,
            max_segment_bytes,
        };
        let (log, _) = SegmentLog::open(dir, opts)?;
        let core = Arc::new(Core {
            store,
            log,
            state: Mutex::new(State::default()),
            ready: ReadySet::default(),
            dead: Mutex::new(()),
            closing: Mutex::new(()),
            appending: Mutex::new(BTreeMap::new()),
            #[cfg(test)]
            pause_after_write: Mutex::new(None),
            #[cfg(test)]
            pause_before_removal: Mutex::new(None),
        });
        let mut inbox = LogInbox {
            core,
            ticker: None,
            committer: None,
        };
        inbox.rebuild()?;
        inbox.ticker = Ticker::start(&inbox.core);
        inbox.committer = Some(Committer::start(&inbox.core)?);
        Ok(inbox)
    }

    /// How many deliveries the log in `dir` holds that are not final (0
    /// when there is no log there), so a daemon started on another inbox
    /// can refuse to strand them.
    pub fn unfinished_in(store: &Store, dir: &Path) -> Result<usize> {
        if !dir.exists() {
            return Ok(0);
        }
        let inbox = LogInbox::open(store.clone(), dir)?;
        let n = inbox.core.state().open.len();
        Ok(n)
    }

    /// Moves the deliveries still waiting in the sled inbox (a data
    /// directory last run with `inbox = "sled"`) into this log, with their
    /// attempt, due time, errors and pinned version, then removes them from
    /// sled. A crash in between leaves them in both; the next start moves
    /// them again and the log keeps one of each. How many moved.
    pub fn adopt_sled(&self) -> Result<usize> {
        let pending = self.core.store.pending()?;
        let mut moved = 0;
        for chunk in pending.chunks(1000) {
            let mut parts = EventsRecords::new(0);
            let mut retries = Vec::new();
            let mut found = Vec::with_capacity(chunk.len());
            for p in chunk {
                let Some(event) = self.core.store.event(&p.event_id)? else {
                    tracing::error!(event = %p.event_id, handler = %p.handler, "Pending delivery without its event; dropped");
                    self.core.store.drop_pending(p)?;
                    continue;
                };
                parts.push(&event, &[(p.handler.as_str(), p.version)])?;
                if p.attempt > 1 || !p.errors.is_empty() || p.due_ms > now_ms() {
                    retries.push(json_record(RETRY, p)?);
                }
                found.push((p, Arc::new(event)));
            }
            let mut records = parts.records();
            records.extend(retries);
            if records.is_empty() {
                continue;
            }
            let appending = self.core.appending();
            let at = self.core.log.append(&records)?;
            let segment = at.first().map_or(0, |p| p.segment);
            {
                let mut st = self.core.state();
                for (p, event) in &found {
                    st.add(event, &p.handler, p.version, segment);
                    let key = (p.event_id.clone(), p.handler.clone());
                    if let Some(o) = st.open.get_mut(&key) {
                        o.pending = (*p).clone();
                    }
                }
            }
            drop(appending);
            for (p, _) in &found {
                self.core.store.drop_pending(p)?;
                moved += 1;
            }
        }
        if moved > 0 {
            self.core.store.flush()?;
        }
        Ok(moved)
    }

    /// Reads the live segments in order into the in-memory state.
    fn rebuild(&self) -> Result<()> {
        let upto = match self
            .core
            .store
            .t()
            .meta
            .get(META_DEAD_UPTO)
            .map_err(sled_err)?
        {
            Some(b) if b.len() == 16 => Some(Position {
                segment: u64::from_be_bytes(b[..8].try_into().unwrap_or_default()),
                offset: u64::from_be_bytes(b[8..].try_into().unwrap_or_default()),
            }),
            _ => None,
        };
        let mut st = State::default();
        let mut dead = Vec::new();
        let mut keyed: Vec<Arc<Event>> = Vec::new();
        let start = Position {
            segment: 0,
            offset: 0,
        };
        self.core.log.read_from(start, |at, r| {
            let mut rd = Reader(r);
            match rd.u8() {
                Some(EVENTS) => {
                    let events = rd.u32().ok_or_else(|| bad(at, "no event count"))?;
                    for _ in 0..events {
                        let n = rd.u16().ok_or_else(|| bad(at, "no handler count"))?;
                        let mut handlers = Vec::with_capacity(n.into());
                        for _ in 0..n {
                            let h = rd.str().ok_or_else(|| bad(at, "bad handler"))?;
                            let v = match rd.u8() {
                                Some(0) => None,
                                Some(1) => Some(rd.u32().ok_or_else(|| bad(at, "bad version"))?),
                                _ => return Err(bad(at, "bad version flag")),
                            };
                            handlers.push((h, v));
                        }
                        let len = rd.u32().ok_or_else(|| bad(at, "no event length"))?;
                        let json = rd
                            .bytes(len as usize)
                            .ok_or_else(|| bad(at, "short event"))?;
                        let event: Event = serde_json::from_slice(json)
                            .map_err(|e| bad(at, &format!("event: {e}")))?;
                        let event = Arc::new(event);
                        if event.idempotency_key.is_some() {
                            keyed.push(event.clone());
                        }
                        for (h, v) in handlers {
                            st.add(&event, h, v, at.segment);
                        }
                    }
                }
                Some(FINISH) => {
                    let n = rd.u32().ok_or_else(|| bad(at, "no count"))?;
                    for _ in 0..n {
                        let e = rd.str().ok_or_else(|| bad(at, "bad event id"))?;
                        let h = rd.str().ok_or_else(|| bad(at, "bad handler"))?;
                        st.close(&(e.to_string(), h.to_string()));
                    }
                }
                Some(RETRY) => {
                    let next: Pending = serde_json::from_slice(rd.0)
                        .map_err(|e| bad(at, &format!("retry: {e}")))?;
                    let key = (next.event_id.clone(), next.handler.clone());
                    if let Some(o) = st.open.get_mut(&key) {
                        o.pending = next;
                    }
                }
                Some(DEAD) => {
                    let dl: DeadLetter = serde_json::from_slice(rd.0)
                        .map_err(|e| bad(at, &format!("dead letter: {e}")))?;
                    st.close(&(dl.event.id.clone(), dl.handler.clone()));
                    if upto.is_none_or(|u| at > u) {
                        dead.push((at, dl));
                    }
                }
                _ => return Err(bad(at, "unknown kind")),
            }
            Ok(())
        })?;
        for (at, dl) in dead {
            if self.core.store.dead_letter_get(&dl.id)?.is_none() {
                self.core
                    .store
                    .put_dead_letter(&dl, META_DEAD_UPTO, &position_bytes(at))?;
            }
        }
        for e in keyed {
            self.core.store.remember_idempotency(&e)?;
        }
        *self.core.state() = st;
        Ok(())
    }
}

impl Core {
    fn state(&self) -> MutexGuard<'_, State> {
        // Maps changed one entry at a time: nothing half-done to repair.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn under_way(&self) -> MutexGuard<'_, BTreeMap<u64, u32>> {
        // Counts changed one entry at a time: nothing half-done to repair.
        self.appending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An append of an `EVENTS` record under way, from before its write
    /// until it is dropped (see `appending`).
    fn appending(self: &Arc<Self>) -> Appending {
        let mut under_way = self.under_way();
        let from = self.log.next_segment();
        *under_way.entry(from).or_default() += 1;
        Appending {
            core: self.clone(),
            from,
        }
    }

    /// The second half of an append, once its records (at `at`, one
    /// position per record) are durable: counts its deliveries, which
    /// become ready, and writes its idempotency keys; then it is no longer
    /// under way. The ids of the events stored for delivery.
    fn complete(
        &self,
        prepared: Prepared,
        at: &[Position],
        appending: Appending,
    ) -> Result<Vec<String>> {
        let Prepared {
            counts,
            routed,
            accepted,
            unrouted,
            ..
        } = prepared;
        // One position per event: its record's.
        let positions = at
            .iter()
            .zip(&counts)
            .flat_map(|(p, n)| std::iter::repeat_n(*p, *n));
        let mut ids = Vec::with_capacity(routed.len());
        let mut ready = Vec::new();
        {
            let mut st = self.state();
            for ((event, hs), at) in routed.iter().zip(positions) {
                if hs.is_empty() {
                    continue;
                }
                ids.push(event.id.clone());
                for h in hs {
                    if let Some(pending) = st.add(event, h, None, at.segment) {
                        ready.push(Ready {
                            pending: pending.clone(),
                            event: event.clone(),
                        });
                    }
                }
            }
        }
        self.ready.extend(ready);
        for (event, _) in &routed {
            if event.idempotency_key.is_some() {
                self.store.remember_idempotency(event)?;
            }
        }
        // Only now: a key of an event routed nowhere holds no segment, and
        // its record is its only durable copy until sled's next flush.
        drop(appending);
        self.store.bump(META_ACCEPTED, accepted as i64)?;
        if unrouted > 0 {
            self.store.bump(META_UNROUTED, unrouted as i64)?;
        }
        Ok(ids)
    }

    /// Between an `EVENTS` record's write and the count of its deliveries.
    fn written(&self) {
        #[cfg(test)]
        pause(&self.pause_after_write);
    }

    /// Makes finished deliveries' markers durable (sled first), then
    /// deletes segments no open delivery needs. With `force` regardless of
    /// when the last checkpoint was.
    fn checkpoint(&self, force: bool) -> Result<()> {
        let (markers, keep_from) = {
            // Read first: an append that starts after this writes to this
            // segment or a later one.
            let next = self.log.next_segment();
            let mut st = self.state();
            if !force && st.last_checkpoint.is_some_and(|t| t.elapsed() < CHECKPOINT) {
                return Ok(());
            }
            st.last_checkpoint = Some(Instant::now());
            let counted = st.per_segment.keys().next().copied().unwrap_or(u64::MAX);
            // Read with `state` held: an append counts its deliveries (under
            // `state`) before it leaves `appending`, so each is in one or
            // the other here.
            let writing = self.under_way().keys().next().copied().unwrap_or(u64::MAX);
            (
                std::mem::take(&mut st.finished),
                counted.min(writing).min(next),
            )
        };
        // The events kept for finished deliveries, then log lines, stats,
        // idempotency keys and dead letters: before any marker, and before
        // a segment holding those events goes.
        self.store.sync_kept()?;
        self.store.flush()?;
        if !markers.is_empty() {
            self.log.append(&[finish_record(&markers)])?;
        }
        #[cfg(test)]
        pause(&self.pause_before_removal);
        self.log.remove_before(keep_from)?;
        Ok(())
    }
}

/// An append under way ([`Core::appending`]); it ends when dropped.
struct Appending {
    core: Arc<Core>,
    from: u64,
}

impl Drop for Appending {
    fn drop(&mut self) {
        let mut under_way = self.core.under_way();
        if let std::collections::btree_map::Entry::Occupied(mut n) = under_way.entry(self.from) {
            *n.get_mut() -= 1;
            if *n.get() == 0 {
                n.remove();
            }
        }
    }
}

/// An append's `EVENTS` records, encoded before its write, and what its
/// completion needs.
struct Prepared {
    records: Vec<Vec<u8>>,
    /// Events in each record.
    counts: Vec<usize>,
    /// The events written, in order, each with its handlers (sorted, no
    /// duplicates; none for an event kept only for its idempotency key).
    routed: Vec<(Arc<Event>, Vec<String>)>,
    /// Events in the batch, and those routed nowhere.
    accepted: usize,
    unrouted: usize,
}

impl Prepared {
    fn of(batch: &[(Arc<Event>, Vec<String>)]) -> Result<Prepared> {
        let mut parts = EventsRecords::new(batch.iter().map(|(e, _)| part_size_hint(e)).sum());
        let mut routed = Vec::with_capacity(batch.len());
        for (event, handlers) in batch {
            let mut hs: Vec<String> = handlers.clone();
            hs.sort_unstable();
            hs.dedup();
            if hs.is_empty() && event.idempotency_key.is_none() {
                continue;
            }
            let pinned: Vec<(&str, Option<u32>)> = hs.iter().map(|h| (h.as_str(), None)).collect();
            parts.push(event, &pinned)?;
            routed.push((event.clone(), hs));
        }
        let (records, counts) = parts.finish().into_iter().unzip();
        Ok(Prepared {
            records,
            counts,
            routed,
            accepted: batch.len(),
            unrouted: batch.iter().filter(|(_, h)| h.is_empty()).count(),
        })
    }
}

/// Tests: waits for the message a test set up at `hook`, if it did.
#[cfg(test)]
fn pause(hook: &Mutex<Option<std::sync::mpsc::Receiver<()>>>) {
    let release = hook.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(release) = release {
        let _ = release.recv();
    }
}

fn sled_err(e: sled::Error) -> StoreError {
    StoreError::Sled(e.to_string())
}

impl Inbox for LogInbox {
    fn append(&self, batch: &[(Arc<Event>, Vec<String>)]) -> Result<Vec<String>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let prepared = Prepared::of(batch)?;
        let appending = self.core.appending();
        let at = if prepared.records.is_empty() {
            Vec::new()
        } else {
            let at = self.core.log.append(&prepared.records)?;
            self.core.written();
            at
        };
        self.core.complete(prepared, &at, appending)
    }

    /// Its idempotency keys are read from sled, in memory.
    fn queues_appends(&self) -> bool {
        true
    }

    /// Queues the batch's record on the segment log, whose committer
    /// thread leads the round: no thread waits for it but the round's.
    fn append_queued(&self, batch: &[(Arc<Event>, Vec<String>)]) -> Result<Appended> {
        if batch.is_empty() {
            // Every event a duplicate: nothing to write or count.
            return Ok(Box::pin(std::future::ready(Ok(Vec::new()))));
        }
        let prepared = Prepared::of(batch)?;
        let appending = self.core.appending();
        let core = self.core.clone();
        if prepared.records.is_empty() {
            return Ok(Box::pin(
                async move { core.complete(prepared, &[], appending) },
            ));
        }
        let (at, durable) = self.core.log.append_queued(&prepared.records)?;
        Ok(Box::pin(async move {
            match durable.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return Err(StoreError::Sled(e)),
                Err(_) => return Err(StoreError::Sled("the inbox log closed".into())),
            }
            core.written();
            core.complete(prepared, &at, appending)
        }))
    }

    fn take_ready(&self, max: usize) -> Result<Vec<Ready>> {
        Ok(self.core.ready.take(max))
    }

    fn keeps_finished_events(&self) -> bool {
        true
    }

    /// Logs and counts the attempts, keeping each event whose last open
    /// delivery is among them beside its line (see
    /// [`Inbox::keeps_finished_events`]), then closes the deliveries.
    fn finish(&self, done: &[(&Pending, &LogEntry)]) -> Result<()> {
        if done.is_empty() {
            return Ok(());
        }
        let _closing = self.core.closing.lock().unwrap_or_else(|p| p.into_inner());
        let keys: Vec<Key> = done
            .iter()
            .map(|(p, _)| (p.event_id.clone(), p.handler.clone()))
            .collect();
        let ending = self.core.state().ending(&keys);
        let lines: Vec<(&LogEntry, Option<&Event>)> = done
            .iter()
            .map(|&(p, e)| (e, ending.get(p.event_id.as_str()).map(|ev| &**ev)))
            .collect();
        self.core.store.append_logs_keeping(&lines)?;
        let entries: Vec<&LogEntry> = done.iter().map(|&(_, e)| e).collect();
        self.core
            .store
            .record_stats_of(&entries, StatKind::Attempt)?;
        {
            let mut st = self.core.state();
            for key in keys {
                if st.close(&key) {
                    st.finished.push(key);
                }
            }
        }
        // The markers are written by the checkpoint thread.
        Ok(())
    }

    fn retry_at(&self, p: &Pending, entry: &LogEntry, due_ms: u64) -> Result<Pending> {
        self.core.store.append_log(entry)?;
        self.core.store.record_stats(entry, StatKind::Retry)?;
        let key = (p.event_id.clone(), p.handler.clone());
        let mut next = match self.core.state().open.get(&key) {
            Some(o) => o.pending.clone(),
            None => return Err(not_pending(p)),
        };
        next.errors.push(attempt_error(next.attempt, entry));
        next.attempt = next.attempt.saturating_add(1);
        next.due_ms = due_ms;
        self.core.log.append(&[json_record(RETRY, &next)?])?;
        if let Some(o) = self.core.state().open.get_mut(&key) {
            o.pending = next.clone();
        }
        Ok(next)
    }

    fn dead_letter(&self, p: &Pending, entry: &LogEntry) -> Result<DeadLetter> {
        let _serial = self.core.dead.lock().unwrap_or_else(|p| p.into_inner());
        let _closing = self.core.closing.lock().unwrap_or_else(|p| p.into_inner());
        let key = (p.event_id.clone(), p.handler.clone());
        let open = {
            let st = self.core.state();
            st.open.get(&key).map(|o| o.pending.clone()).zip(
                st.events
                    .get(&p.event_id)
                    .map(|(event, open)| (event.clone(), *open == 1)),
            )
        };
        // The attempt is logged and counted even when the delivery is no
        // longer open (its handler was deleted meanwhile).
        let kept = open
            .as_ref()
            .and_then(|(_, (event, last))| last.then_some(&**event));
        self.core.store.append_logs_keeping(&[(entry, kept)])?;
        self.core.store.record_stats(entry, StatKind::DeadLetter)?;
        let Some((stored, (event, _))) = open else {
            return Err(not_pending(p));
        };
        let id = self.core.store.new_ulid();
        let mut errors = stored.errors;
        errors.push(attempt_error(stored.attempt, entry));
        let dl = DeadLetter {
            id: id.to_string(),
            event: (*event).clone(),
            handler: p.handler.clone(),
            version: entry.version,
            errors,
            time_ms: id.timestamp_ms(),
        };
        let at = self.core.log.append(&[json_record(DEAD, &dl)?])?;
        self.core.state().close(&key);
        let at = at.first().copied().unwrap_or(Position {
            segment: 0,
            offset: 0,
        });
        self.core
            .store
            .put_dead_letter(&dl, META_DEAD_UPTO, &position_bytes(at))?;
        Ok(dl)
    }

    fn revive(&self, dead_letter_id: &str, version: Option<u32>) -> Result<()> {
        let Some(dl) = self.core.store.dead_letter_get(dead_letter_id)? else {
            return Err(StoreError::NotFound(format!(
                "dead letter {dead_letter_id}"
            )));
        };
        let h = dl.handler.as_str();
        // A built-in sink (`zulip:acme`) is not a stored handler.
        if !h.contains(':') && self.core.store.handler(h)?.is_none() {
            return Err(StoreError::NotFound(format!("handler {h}")));
        }
        if let Some(v) = version
            && self.core.store.version(h, v)?.is_none()
        {
            return Err(StoreError::NotFound(format!("version {v} of handler {h}")));
        }
        let key = (dl.event.id.clone(), dl.handler.clone());
        if self.core.state().open.contains_key(&key) {
            let what = format!("event {} is already pending for {h}", dl.event.id);
            return Err(StoreError::Conflict(what));
        }
        let mut parts = EventsRecords::new(part_size_hint(&dl.event));
        parts.push(&dl.event, &[(h, version)])?;
        let records = parts.records();
        let _appending = self.core.appending();
        let at = self.core.log.append(&records)?;
        self.core.store.remove_dead_letter(&dl)?;
        let event = Arc::new(dl.event.clone());
        let mut st = self.core.state();
        let segment = at.first().map_or(0, |p| p.segment);
        st.add(&event, h, version, segment);
        if let Some(o) = st.open.get(&key) {
            self.core.ready.extend([Ready {
                pending: o.pending.clone(),
                event,
            }]);
        }
        Ok(())
    }

    fn purge_dead_letters(&self, handler: Option<&str>, before_ms: Option<u64>) -> Result<u64> {
        self.core.store.purge_dead_letters(handler, before_ms)
    }

    fn replay(&self) -> Result<usize> {
        let st = self.core.state();
        let mut ready: Vec<Ready> = st
            .open
            .values()
            .filter_map(|o| {
                let (event, _) = st.events.get(&o.pending.event_id)?;
                Some(Ready {
                    pending: o.pending.clone(),
                    event: event.clone(),
                })
            })
            .collect();
        drop(st);
        ready.sort_by(|a, b| {
            let k = |r: &Ready| {
                (
                    r.pending.due_ms,
                    r.pending.event_id.clone(),
                    r.pending.handler.clone(),
                )
            };
            k(a).cmp(&k(b))
        });
        let n = ready.len();
        self.core.ready.extend(ready);
        Ok(n)
    }

    fn event(&self, id: &str) -> Result<Option<Arc<Event>>> {
        Ok(self.core.state().events.get(id).map(|(e, _)| e.clone()))
    }

    fn discard(&self, handler: &str) -> Result<u64> {
        let _closing = self.core.closing.lock().unwrap_or_else(|p| p.into_inner());
        let mut st = self.core.state();
        let keys: Vec<Key> = st
            .open
            .keys()
            .filter(|(_, h)| h == handler)
            .cloned()
            .collect();
        // Events that end here, with no line to keep them beside: those
        // that other handlers' deliveries logged are archived instead.
        let mut ended = Vec::new();
        for k in &keys {
            let event = st.events.get(&k.0).map(|(e, _)| e.clone());
            st.close(k);
            if let Some(e) = event.filter(|e| !st.events.contains_key(&e.id)) {
                ended.push(e);
            }
        }
        let n = keys.len() as u64;
        st.finished.extend(keys);
        drop(st);
        let mut logged = Vec::new();
        for e in &ended {
            if self.core.store.has_log_lines(&e.id)? {
                logged.push(&**e);
            }
        }
        self.core.store.archive_events(&logged)?;
        self.core.checkpoint(true)?;
        Ok(n)
    }

    fn idempotent_id(&self, tenant: &str, key: &str, window: Duration) -> Result<Option<String>> {
        Store::idempotent_id(&self.core.store, tenant, key, window)
    }

    fn flush(&self) -> Result<()> {
        self.core.checkpoint(true)
    }
}

#[cfg(test)]
mod tests;
