//! An append-only log of checksummed records in numbered segment files,
//! with group commit: the file layer a log-structured inbox stands on
//! (issue 14), kept apart from sled so an append is one `write` and one
//! `fdatasync` for however many callers arrived meanwhile.
//!
//! # Layout
//! A directory of files named `<20-digit segment id>.seg`. Each starts with
//! the 8-byte [`MAGIC`]; then records, each `u32 LE length · u32 LE CRC-32
//! (of the length bytes and the payload) · payload`. A segment grows until
//! it passes [`SegmentOptions::max_segment_bytes`]; the next append opens
//! the next id. A segment is only ever appended to while it is the newest.
//!
//! # Crashes
//! A `kill -9` or power cut can leave the newest segment with a partial
//! last record (a *torn tail*). [`SegmentLog::open`] checks every record;
//! in the newest segment the first bad one and everything after it is cut
//! off (and reported): none of it was acknowledged, because an append
//! returns only after its bytes are synced. A bad record in an older
//! segment cannot be a torn write (a segment is synced before the next one
//! is created) and is reported as corruption.
//!
//! # Group commit
//! Appenders queue their encoded records under a lock; the first one in
//! becomes the *leader*: it takes everything queued, writes it with one
//! `write` and syncs once, while later appenders queue behind it and are
//! acknowledged by the next round. With [`Durability::Group`] the leader
//! first waits out the rest of the interval since the last sync, so rounds
//! are at most one per interval.
//!
//! An appender on an async reactor must not sleep on that lock's condvar:
//! [`SegmentLog::append_queued`] only queues and hands back a receiver that
//! the round which makes the records durable answers. Rounds for queued
//! appends are led by a thread running [`SegmentLog::commit_queued`] (or by
//! a blocking appender that leads anyway); whoever ends a round answers
//! every queued append it covered, so one thread wake-up per round serves
//! all the requests in it.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Instant;

use super::{Durability, Result, StoreError};

/// The first bytes of every segment file (format version 1).
pub const MAGIC: &[u8; 8] = b"HBXSEG01";
/// Bytes before a record's payload: length and checksum.
const HEADER: u64 = 8;
/// The largest record payload: a batch of at most 10 000 events of at most
/// 1 MiB each would not fit, but one event's record does, and a length past
/// this in a file can only be garbage (a torn or corrupt header).
pub const MAX_RECORD: usize = 64 << 20;

/// Where a record starts: its segment and byte offset in it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The segment id.
    pub segment: u64,
    /// Byte offset of the record's header in the segment file.
    pub offset: u64,
}

/// Knobs for [`SegmentLog::open`].
#[derive(Clone, Debug)]
pub struct SegmentOptions {
    /// A segment is closed once it is larger than this.
    pub max_segment_bytes: u64,
    /// When an append is acknowledged: after its own sync (`Sync`), after
    /// the sync of the next group round (`Group`), or once written to the
    /// OS (`None`).
    pub durability: Durability,
}

impl Default for SegmentOptions {
    fn default() -> Self {
        SegmentOptions {
            max_segment_bytes: 64 << 20,
            durability: Durability::Sync,
        }
    }
}

/// What [`SegmentLog::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segment files found, oldest first.
    pub segments: Vec<u64>,
    /// Intact records.
    pub records: u64,
    /// Bytes cut off the newest segment's torn tail.
    pub torn_bytes: u64,
}

/// See the module docs. Safe to share across threads.
pub struct SegmentLog {
    dir: PathBuf,
    opts: SegmentOptions,
    state: Mutex<State>,
    /// Signalled when a round finishes (`synced` moves) or fails.
    done: Condvar,
    /// Signalled when queued appends wait for a round and none is going
    /// (for [`SegmentLog::commit_queued`]), or when it is to stop.
    wanted: Condvar,
    /// The open newest segment; only the round's leader touches it.
    active: Mutex<Active>,
}

impl std::fmt::Debug for SegmentLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentLog")
            .field("dir", &self.dir)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

struct State {
    /// Encoded records not yet written, with the segment each goes to.
    queued: Vec<(u64, Vec<u8>)>,
    /// Where the next record goes.
    next: Position,
    /// Rounds are numbered; every append waits for the round after its ticket.
    queued_ticket: u64,
    synced_ticket: u64,
    /// A leader is writing.
    busy: bool,
    /// Why a round failed. Sticky: a
    /// round that failed may have written part of its bytes, and records
    /// appended after them would be cut off with that torn tail at the
    /// next open, so nothing more is accepted.
    failed: Option<String>,
    last_sync: Instant,
    /// Queued appends (their ticket, ascending) and where to say they are
    /// durable; none a finished round covered.
    waiters: Vec<(u64, Answer)>,
    /// [`SegmentLog::stop_committing`] was called.
    stop_committing: bool,
}

/// What a queued append is told when its round ends: `Err` with why the
/// log failed.
pub type Answer = tokio::sync::oneshot::Sender<std::result::Result<(), String>>;
/// Where a queued append hears its [`Answer`].
pub type Answered = tokio::sync::oneshot::Receiver<std::result::Result<(), String>>;

struct Active {
    id: u64,
    file: File,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Sled(format!("{what} {}: {e}", path.display()))
}

pub(super) fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// Encodes one record (header and payload).
fn frame(payload: &[u8], out: &mut Vec<u8>) {
    let len = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len);
    out.extend_from_slice(&checksum(&len, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// A record's CRC: of its length bytes and its payload.
fn checksum(len: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(len);
    h.update(payload);
    h.finalize()
}

/// A record header's payload length and CRC.
fn parse_header(head: &[u8; HEADER as usize]) -> (usize, u32) {
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    (len, crc)
}

/// The intact records of one segment's bytes and where they end; the end
/// is short of `bytes.len()` when a bad record stopped the scan.
fn scan(bytes: &[u8], mut f: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<(u64, u64)> {
    let mut at = MAGIC.len();
    let mut n = 0u64;
    while at < bytes.len() {
        let Some(head) = bytes
            .get(at..at + HEADER as usize)
            .and_then(|h| <&[u8; HEADER as usize]>::try_from(h).ok())
        else {
            break;
        };
        let (len, crc) = parse_header(head);
        let start = at + HEADER as usize;
        let Some(payload) = bytes.get(start..start.saturating_add(len)) else {
            break;
        };
        if len > MAX_RECORD {
            break;
        }
        if checksum(&head[..4], payload) != crc {
            break;
        }
        f(at as u64, payload)?;
        n += 1;
        at = start + len;
    }
    Ok((n, at as u64))
}

impl SegmentLog {
    /// Opens (creating) the log in `dir`: checks every segment, cuts a torn
    /// tail off the newest, and appends after it.
    pub fn open(dir: &Path, opts: SegmentOptions) -> Result<(SegmentLog, Recovery)> {
        Self::open_checking(dir, opts, true)
    }

    /// [`Self::open`] checking only the newest segment (cutting its torn
    /// tail), for a log read a record at a time ([`Self::read_at`], which
    /// checks each record it reads): opening does not read the older
    /// segments, however large. [`Recovery::records`] counts the newest
    /// segment's only.
    pub fn open_newest_checked(dir: &Path, opts: SegmentOptions) -> Result<(SegmentLog, Recovery)> {
        Self::open_checking(dir, opts, false)
    }

    fn open_checking(
        dir: &Path,
        opts: SegmentOptions,
        all: bool,
    ) -> Result<(SegmentLog, Recovery)> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating", dir, e))?;
        let mut rec = Recovery {
            segments: segment_ids(dir)?,
            ..Recovery::default()
        };
        let newest = rec.segments.last().copied();
        for &id in &rec.segments {
            if !all && Some(id) != newest {
                continue;
            }
            let path = segment_path(dir, id);
            let bytes = read_segment(&path)?;
            let (n, end) = scan(&bytes, |_, _| Ok(()))?;
            rec.records += n;
            if end < bytes.len() as u64 {
                if Some(id) != newest {
                    return Err(StoreError::Corrupt(format!(
                        "segment {} has a bad record at offset {end} and is not the newest",
                        path.display()
                    )));
                }
                rec.torn_bytes = bytes.len() as u64 - end;
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(|e| io_err("opening", &path, e))?;
                f.set_len(end).map_err(|e| io_err("truncating", &path, e))?;
                f.sync_all().map_err(|e| io_err("syncing", &path, e))?;
                tracing::warn!(segment = %path.display(), bytes = rec.torn_bytes, "Cut a torn record off the inbox log");
            }
        }
        let id = newest.unwrap_or(1);
        let (file, len) = open_for_append(dir, id)?;
        let log = SegmentLog {
            dir: dir.to_path_buf(),
            opts,
            state: Mutex::new(State {
                queued: Vec::new(),
                next: Position {
                    segment: id,
                    offset: len,
                },
                queued_ticket: 0,
                synced_ticket: 0,
                busy: false,
                failed: None,
                last_sync: Instant::now(),
                waiters: Vec::new(),
                stop_committing: false,
            }),
            done: Condvar::new(),
            wanted: Condvar::new(),
            active: Mutex::new(Active { id, file }),
        };
        Ok((log, rec))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Plain counters and a queue changed in single steps.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `records` for the next round: their positions and the
    /// round's ticket.
    fn queue<R: AsRef<[u8]>>(&self, st: &mut State, records: &[R]) -> Result<(Vec<Position>, u64)> {
        if let Some(r) = records.iter().find(|r| r.as_ref().len() > MAX_RECORD) {
            return Err(StoreError::BadInput(format!(
                "a log record of {} bytes; the limit is {MAX_RECORD}",
                r.as_ref().len()
            )));
        }
        let mut out = Vec::with_capacity(records.len());
        if let Some(e) = &st.failed {
            return Err(StoreError::Sled(format!(
                "the inbox log failed earlier: {e}"
            )));
        }
        for r in records {
            let r = r.as_ref();
            let size = HEADER + r.len() as u64;
            if st.next.offset > MAGIC.len() as u64
                && st.next.offset + size > self.opts.max_segment_bytes
            {
                st.next = Position {
                    segment: st.next.segment + 1,
                    offset: MAGIC.len() as u64,
                };
            }
            out.push(st.next);
            let seg = st.next.segment;
            match st.queued.last_mut() {
                Some((s, buf)) if *s == seg => frame(r, buf),
                _ => {
                    let mut buf = Vec::new();
                    frame(r, &mut buf);
                    st.queued.push((seg, buf));
                }
            }
            st.next.offset += size;
        }
        st.queued_ticket += 1;
        Ok((out, st.queued_ticket))
    }

    /// Queues `records` like [`SegmentLog::append`] without waiting: their
    /// positions, and a receiver answered once they are as durable as the
    /// log's [`Durability`] asks (`Err` with why when the round failed).
    /// A thread must run [`SegmentLog::commit_queued`] for the round to
    /// come when no blocking appender leads one.
    pub fn append_queued<R: AsRef<[u8]>>(
        &self,
        records: &[R],
    ) -> Result<(Vec<Position>, Answered)> {
        let mut st = self.state();
        let (out, ticket) = self.queue(&mut st, records)?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        st.waiters.push((ticket, tx));
        if !st.busy {
            self.wanted.notify_one();
        }
        Ok((out, rx))
    }

    /// Leads the rounds queued appends wait for, until
    /// [`SegmentLog::stop_committing`] and no queued append is left
    /// unanswered: the loop of the thread that makes
    /// [`SegmentLog::append_queued`] durable.
    pub fn commit_queued(&self) {
        let mut st = self.state();
        loop {
            // A round answers every waiter it covers: those left wait for
            // a later one.
            let waiting = !st.waiters.is_empty();
            if waiting && !st.busy {
                st = self.lead(st);
                continue;
            }
            if st.stop_committing && !waiting {
                return;
            }
            st = self.wanted.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Makes [`SegmentLog::commit_queued`] return once every append queued
    /// so far is answered.
    pub fn stop_committing(&self) {
        self.state().stop_committing = true;
        self.wanted.notify_all();
    }

    /// Appends `records` in order and returns their positions once they are
    /// as durable as the log's [`Durability`] asks. Records of one call
    /// are never split across a failure: all are acknowledged or none.
    pub fn append<R: AsRef<[u8]>>(&self, records: &[R]) -> Result<Vec<Position>> {
        let mut st = self.state();
        let (out, ticket) = self.queue(&mut st, records)?;
        loop {
            if st.synced_ticket >= ticket {
                return match &st.failed {
                    Some(e) => Err(StoreError::Sled(e.clone())),
                    None => Ok(out),
                };
            }
            if !st.busy {
                st = self.lead(st);
                continue;
            }
            st = self.done.wait(st).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// One group round, run by the appender that found no round going.
    fn lead<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        st.busy = true;
        if let Durability::Group { interval } = self.opts.durability {
            let wait = interval.saturating_sub(st.last_sync.elapsed());
            if !wait.is_zero() {
                drop(st);
                std::thread::sleep(wait);
                st = self.state();
            }
        }
        let queued = std::mem::take(&mut st.queued);
        let ticket = st.queued_ticket;
        drop(st);
        let res = self.write_round(queued);
        let mut st = self.state();
        if let Err(e) = res
            && st.failed.is_none()
        {
            tracing::error!(error = %e, "Writing the inbox log failed; it accepts nothing more");
            st.failed = Some(e.to_string());
        }
        st.synced_ticket = ticket;
        st.last_sync = Instant::now();
        st.busy = false;
        self.done.notify_all();
        if !st.waiters.is_empty() {
            let answer = match &st.failed {
                Some(e) => Err(e.clone()),
                None => Ok(()),
            };
            // Queued in ticket order: the ones this round covers lead.
            let covered = st.waiters.partition_point(|(t, _)| *t <= ticket);
            for (_, tx) in st.waiters.drain(..covered) {
                // A receiver that is gone stopped caring.
                let _ = tx.send(answer.clone());
            }
        }
        if !st.waiters.is_empty() || st.stop_committing {
            self.wanted.notify_one();
        }
        st
    }

    /// Writes queued records, moving to the next segment where they do
    /// (the old one synced first), then syncs the newest.
    fn write_round(&self, queued: Vec<(u64, Vec<u8>)>) -> Result<()> {
        let mut active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        let sync = self.opts.durability != Durability::None;
        // Paths are built only for an error's message: a round is often a
        // few hundred bytes, and formatting a path each time showed in
        // profiles of the kept-events log.
        let failed = |what: &str, id: u64, e| io_err(what, &segment_path(&self.dir, id), e);
        for (seg, bytes) in queued {
            if seg != active.id {
                active
                    .file
                    .sync_data()
                    .map_err(|e| failed("syncing", active.id, e))?;
                let (file, _) = open_for_append(&self.dir, seg)?;
                *active = Active { id: seg, file };
            }
            active
                .file
                .write_all(&bytes)
                .map_err(|e| failed("writing", seg, e))?;
        }
        if sync {
            active
                .file
                .sync_data()
                .map_err(|e| failed("syncing", active.id, e))?;
        }
        Ok(())
    }

    /// The record at `at`, if it is there and intact (its length in bounds
    /// and its checksum right); `None` if its segment is gone or the bytes
    /// there are not a whole record.
    pub fn read_at(&self, at: Position) -> Result<Option<Vec<u8>>> {
        use std::os::unix::fs::FileExt;
        let path = segment_path(&self.dir, at.segment);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        let read = |buf: &mut [u8], offset: u64| match file.read_exact_at(buf, offset) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
            Err(e) => Err(io_err("reading", &path, e)),
        };
        let mut head = [0u8; HEADER as usize];
        if at.offset < MAGIC.len() as u64 || !read(&mut head, at.offset)? {
            return Ok(None);
        }
        let (len, crc) = parse_header(&head);
        let size = file
            .metadata()
            .map_err(|e| io_err("reading", &path, e))?
            .len();
        // A garbage length is no record; nor a reason to allocate 64 MiB.
        if len > MAX_RECORD || at.offset + HEADER + len as u64 > size {
            return Ok(None);
        }
        let mut payload = vec![0u8; len];
        if !read(&mut payload, at.offset + HEADER)? {
            return Ok(None);
        }
        Ok((checksum(&head[..4], &payload) == crc).then_some(payload))
    }

    /// The segment the next record goes to (or the one before it, if that
    /// record starts a new one): no record appended from now on goes to an
    /// older segment.
    pub fn next_segment(&self) -> u64 {
        self.state().next.segment
    }

    /// The id of the newest segment, the one appended to.
    pub fn newest(&self) -> u64 {
        self.active.lock().unwrap_or_else(|p| p.into_inner()).id
    }

    /// Syncs what was appended to the newest segment (older ones were
    /// synced when the next one was started): for a log appended with
    /// [`Durability::None`] whose records must be on disk by some point.
    pub fn sync(&self) -> Result<()> {
        let active = self.active.lock().unwrap_or_else(|p| p.into_inner());
        active
            .file
            .sync_data()
            .map_err(|e| io_err("syncing", &segment_path(&self.dir, active.id), e))
    }

    /// Calls `f` with every intact record at or after `from`, in order.
    /// Reads the files; records still being appended may be missed.
    pub fn read_from(
        &self,
        from: Position,
        mut f: impl FnMut(Position, &[u8]) -> Result<()>,
    ) -> Result<()> {
        for id in segment_ids(&self.dir)? {
            if id < from.segment {
                continue;
            }
            let bytes = read_segment(&segment_path(&self.dir, id))?;
            scan(&bytes, |offset, payload| {
                let at = Position {
                    segment: id,
                    offset,
                };
                if at >= from { f(at, payload) } else { Ok(()) }
            })?;
        }
        Ok(())
    }

    /// Deletes every segment older than `segment` that is no longer
    /// appended to (never the newest); how many files went.
    pub fn remove_before(&self, segment: u64) -> Result<usize> {
        let newest = self.newest();
        let mut removed = 0;
        for id in segment_ids(&self.dir)? {
            if id >= segment || id >= newest {
                break;
            }
            let path = segment_path(&self.dir, id);
            std::fs::remove_file(&path).map_err(|e| io_err("removing", &path, e))?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Total bytes of the segment files.
    pub fn size_on_disk(&self) -> Result<u64> {
        let mut total = 0;
        for id in segment_ids(&self.dir)? {
            let path = segment_path(&self.dir, id);
            total += std::fs::metadata(&path)
                .map_err(|e| io_err("reading", &path, e))?
                .len();
        }
        Ok(total)
    }
}

/// Segment ids in `dir`, ascending; other files are ignored.
pub(super) fn segment_ids(dir: &Path) -> Result<Vec<u64>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("listing", dir, e))? {
        let entry = entry.map_err(|e| io_err("listing", dir, e))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(id) = stem.parse::<u64>()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

/// A segment's bytes, its magic checked.
fn read_segment(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .map_err(|e| io_err("reading", path, e))?;
    if bytes.len() >= MAGIC.len() && &bytes[..MAGIC.len()] != MAGIC {
        return Err(StoreError::Corrupt(format!(
            "{} is not an inbox log segment",
            path.display()
        )));
    }
    if bytes.len() < MAGIC.len() {
        // Created, then cut short by a crash before its magic was synced:
        // an empty segment.
        bytes = MAGIC.to_vec();
    }
    Ok(bytes)
}

/// Opens segment `id` for appending (creating it with its magic, synced
/// with its directory entry), and its length.
fn open_for_append(dir: &Path, id: u64) -> Result<(File, u64)> {
    let path = segment_path(dir, id);
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(&path)
        .map_err(|e| io_err("opening", &path, e))?;
    let mut len = file
        .metadata()
        .map_err(|e| io_err("reading", &path, e))?
        .len();
    if len < MAGIC.len() as u64 {
        file.set_len(0)
            .map_err(|e| io_err("truncating", &path, e))?;
        file.write_all(MAGIC)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("writing", &path, e))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("syncing", dir, e))?;
        len = MAGIC.len() as u64;
    }
    Ok((file, len))
}

#[cfg(test)]
mod tests;
