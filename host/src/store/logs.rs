//! The delivery log: one line per attempt, queried newest first with
//! filters and cursor pagination, indexed by event, trimmed by retention.
//!
//! Lines are stored in blocks, one per write (a recorder batch), in a
//! binary encoding (`logs/block.rs`): a batch of 500 deliveries is one
//! sled insert for its lines plus one index insert per group of events
//! (below), where a JSON value and an index entry per line made two
//! inserts each (and sled copies the tree node an insert lands in, so the
//! inserts were the recorder's cost).
//!
//! Keys: `log` = `u64 time_ms u64 seq`, the block's oldest line's time and
//! a number from sled's id generator (unique across restarts), so blocks
//! come oldest first; a block holds lines at most [`BLOCK_SPAN_MS`] apart,
//! sorted by time, numbered from 0.
//!
//! `log_by_event` = `lp(group) u64 time_ms u64 seq`: one entry per block
//! and **group**, an event id's first ten characters (a ULID's
//! millisecond: events accepted together share it), listing for each
//! event of the group with lines in the block its id, the numbers (u16 BE
//! each) of its lines there, and, for the entry that keeps its finished
//! event (the log inbox gives the event with the line that ends its last
//! delivery, `archive.rs`), where the event is in the kept-events log
//! (segment and offset, u64 BE each); the value starts `ff fd`
//! ([`group_value`]). A lookup scans its id's group. Per event, an entry
//! was one sled insert per delivery at 1 handler, the largest part of the
//! recorder's sled work (BENCHMARKS.md, issue 14's ninth round).
//! An id that is not a ULID (the daemon makes none) has entries of its
//! own, `lp(event id) u64 time_ms u64 seq`, as every event did before
//! groups, and those are still read: the numbers (empty: the whole value
//! is one line written before blocks), or `ff fe`, a u16 BE count, the
//! numbers and where the kept event is; entries written before the kept
//! log have `ff ff` and the event as JSON. Retention that trims an
//! entry's lines keeps what it keeps; removing the entry drops it.
//!
//! **Kept events** are not in sled: each finished event is appended once,
//! as JSON, to a segment log of its own (`segment.rs`, in
//! `<store dir>/kept/`, unsynced; the log inbox syncs it before each
//! checkpoint). Kept in sled's index, a kilobyte event was rewritten
//! about five times over: a leaf of 16 of them rewritten whole every 10
//! updates, and segments cleaned by rewriting what is live in them. At
//! 8 000 events/s that was 45 of the daemon's 72 MiB/s of device writes
//! (BENCHMARKS.md, issue 14's sixth round). `meta/kept_segment/<id>` holds
//! the newest time of a line that kept an event in segment `<id>`, rounded
//! up to the second (so it is written about once a second, not once per
//! batch; the segment may outlive its last line by that second), written
//! before the index entries; retention deletes a segment once the log's
//! oldest block is newer than that (blocks go oldest first, and a block's
//! key is its first line's time), never the one being appended to. A read
//! checks the record's checksum and the event id: a record a crash lost
//! before it was synced, or whose place another took since, reads as
//! missing.
//! Lines list newest first by time, then by block key and number (blocks
//! whose times overlap are merged: a batch may carry a line stamped before
//! the previous batch's newest); a cursor is the last listed line's time,
//! block key and number.
//! `meta/log_count` counts log lines for the count cap (it can drift by the
//! few lines a crash catches between the two writes; retention resets it
//! when the log is empty).

mod block;

use std::collections::BinaryHeap;

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use block::Block;

use super::queue::IdemRecord;
use super::records::page_size;
use super::segment::Position as KeptAt;
use super::{LogEntry, LogPage, LogQuery, Result, SledExt, Store, StoreError, decode, keys};
use crate::event::{Event, now_ms};

const META_LOG_COUNT: &[u8] = b"log_count";
/// Non-matching log lines a single query may skip: a sparse filter returns
/// a short page with a cursor rather than scanning a million lines per call.
const SCAN_BUDGET: usize = if cfg!(test) { 40 } else { 100_000 };
/// Log lines removed per pass of [`Store::remove_oldest_logs`] by retention.
const RETENTION_BATCH: usize = 1000;
/// The most lines one block holds (line numbers are u16; a recorder batch
/// is at most 512).
const BLOCK_LINES: usize = 1024;
/// The widest span of line times in one block: a time-bounded query reads
/// the blocks starting up to this much before its lower bound.
const BLOCK_SPAN_MS: u64 = 100;

/// Where a line is in the listing order: its time, then its block's key
/// and its number in the block (positions order as the log lists lines,
/// newest first reversed). A cursor is the position of the last line a
/// page examined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    time: u64,
    block: [u8; 16],
    line: u16,
}

impl Position {
    fn cursor(self) -> String {
        let mut b = [0u8; 26];
        b[..8].copy_from_slice(&self.time.to_be_bytes());
        b[8..24].copy_from_slice(&self.block);
        b[24..].copy_from_slice(&self.line.to_be_bytes());
        hex::encode(b)
    }
}

/// A cursor: 26 bytes (a position), or the 16-byte key of a JSON line that
/// cursors were before blocks (which is that line's time and key).
fn parse_cursor(c: &str) -> Result<Position> {
    let bad = || StoreError::BadInput(format!("malformed cursor {c:?}"));
    let b = hex::decode(c).map_err(|_| bad())?;
    let (time, block, line) = match b.len() {
        16 => (&b[..8], &b[..16], [0, 0]),
        26 => (&b[..8], &b[8..24], [b[24], b[25]]),
        _ => return Err(bad()),
    };
    Ok(Position {
        time: keys::read_u64(time).ok_or_else(bad)?,
        block: <[u8; 16]>::try_from(block).map_err(|_| bad())?,
        line: u16::from_be_bytes(line),
    })
}

fn block_key(key: &[u8]) -> Result<[u8; 16]> {
    <[u8; 16]>::try_from(key).map_err(|_| super::codec::corrupt("log", key, "not a 16-byte key"))
}

fn by_event_key(event_id: &str, log_key: &[u8]) -> Vec<u8> {
    let mut k = keys::parts(&[event_id.as_bytes()]);
    k.extend_from_slice(log_key);
    k
}

/// The index value naming line numbers `lines`.
fn numbers(lines: impl IntoIterator<Item = u16>) -> Vec<u8> {
    lines.into_iter().flat_map(u16::to_be_bytes).collect()
}

/// The first two bytes of an index value that keeps its event's JSON (as
/// written before kept events moved to their own log; still read): no
/// line number is that large (a block holds at most [`BLOCK_LINES`]).
const KEPT_MARK: [u8; 2] = [0xff, 0xff];
/// The first two bytes of an index value that keeps where its event is in
/// the kept-events log.
const KEPT_AT_MARK: [u8; 2] = [0xff, 0xfe];

/// Where the store keeps finished events, under its directory.
pub(super) const KEPT_DIR: &str = "kept";
/// The kept-events log's segment size: retention deletes whole segments.
/// Small in unit tests, so a few events span several.
pub(super) const KEPT_SEGMENT_BYTES: u64 = if cfg!(test) { 4096 } else { 64 << 20 };
/// `meta` keys (with the segment id, u64 BE): the newest time of a line
/// that kept an event in that segment of the kept-events log, rounded up
/// to [`KEPT_MARK_GRAIN_MS`].
const KEPT_SEGMENT_PREFIX: &[u8] = b"kept_segment/";
/// A kept segment's time is written rounded up to a whole second: a time
/// later than its newest line only keeps the segment until the log's
/// oldest line passes it, at most this much longer, and the recorder
/// writes it about once a second instead of once per batch (a sled insert
/// and a read, a fifth of the recorder's sled work at saturation).
const KEPT_MARK_GRAIN_MS: u64 = 1000;

/// One index entry of one event: the block's key, the numbers of the
/// event's lines in it, and what it keeps of the event.
type IndexEntry = (Vec<u8>, Vec<u16>, Option<KeptOwned>);

/// What an index entry keeps of its event, read out of the entry.
#[derive(Clone, Debug)]
enum KeptOwned {
    /// The event's JSON (the old format).
    Json(Vec<u8>),
    /// Its record in the kept-events log.
    At(KeptAt),
}

/// What an index entry keeps of its event.
#[derive(Clone, Copy, Debug)]
enum Kept<'v> {
    /// The event's JSON (the old format).
    Json(&'v [u8]),
    /// Its record in the kept-events log.
    At(KeptAt),
}

/// The index value naming line numbers `lines` and keeping `kept`: the
/// mark, the count of numbers (u16 BE), the numbers, then the event's JSON
/// or its position (segment and offset, u64 BE each).
fn numbers_keeping(lines: &[u16], kept: Kept<'_>) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + 2 * lines.len() + 16);
    v.extend_from_slice(match kept {
        Kept::Json(_) => &KEPT_MARK,
        Kept::At(_) => &KEPT_AT_MARK,
    });
    // `blocks` keeps a block within BLOCK_LINES (< u16::MAX).
    v.extend_from_slice(&u16::try_from(lines.len()).unwrap_or(u16::MAX).to_be_bytes());
    v.extend(lines.iter().flat_map(|n| n.to_be_bytes()));
    match kept {
        Kept::Json(event) => v.extend_from_slice(event),
        Kept::At(at) => {
            v.extend_from_slice(&at.segment.to_be_bytes());
            v.extend_from_slice(&at.offset.to_be_bytes());
        }
    }
    v
}

/// An index value's line numbers (u16 BE each) and what it keeps of its
/// event, if anything.
fn parse_index<'v>(key: &[u8], v: &'v [u8]) -> Result<(&'v [u8], Option<Kept<'v>>)> {
    let (at, rest) = if let Some(rest) = v.strip_prefix(&KEPT_MARK[..]) {
        (false, rest)
    } else if let Some(rest) = v.strip_prefix(&KEPT_AT_MARK[..]) {
        (true, rest)
    } else {
        return Ok((v, None));
    };
    let bad = || super::codec::corrupt("log_by_event", key, "a kept event's entry is cut short");
    let (count, rest) = rest.split_first_chunk::<2>().ok_or_else(bad)?;
    let n = 2 * usize::from(u16::from_be_bytes(*count));
    if rest.len() < n {
        return Err(bad());
    }
    let (lines, tail) = rest.split_at(n);
    if !at {
        return Ok((lines, Some(Kept::Json(tail))));
    }
    let (segment, offset) = match (tail.get(..8), tail.get(8..)) {
        (Some(s), Some(o)) => (keys::read_u64(s), keys::read_u64(o)),
        _ => (None, None),
    };
    match (segment, offset) {
        (Some(segment), Some(offset)) => Ok((lines, Some(Kept::At(KeptAt { segment, offset })))),
        _ => Err(bad()),
    }
}

/// The first two bytes of a group's index value: the lines of every event
/// of one group in one block ([`id_group`]). An id's own entries skip a
/// value with it: under a key shaped like an id's own (an id of a ULID's
/// first ten characters), it holds none of that id's lines.
const GROUP_MARK: [u8; 2] = [0xff, 0xfd];

/// The group an event id's index entries go in: its first ten characters,
/// a ULID's millisecond, when it is a ULID (every id the daemon makes).
/// One entry per group and block instead of one per event and block: a
/// batch of events accepted together is one index insert when its lines
/// are logged, not one per event. Other ids have entries of their own.
fn id_group(event_id: &str) -> Option<&str> {
    ulid::Ulid::from_string(event_id)
        .ok()
        .and(event_id.get(..10))
}

/// One event's part of a group's index value.
#[derive(Clone, Debug, PartialEq)]
struct GroupLine<'v> {
    id: &'v str,
    numbers: Vec<u16>,
    kept: Option<KeptAt>,
}

/// A group's index value: the mark, then per event: its id (u8 length),
/// the count of its line numbers (u16 BE), the numbers, and 0, or 1 and
/// where its kept event is (segment and offset, u64 BE each).
fn group_value(lines: &[GroupLine<'_>]) -> Vec<u8> {
    let mut v = Vec::with_capacity(
        2 + lines
            .iter()
            .map(|l| 20 + l.id.len() + 2 * l.numbers.len())
            .sum::<usize>(),
    );
    v.extend_from_slice(&GROUP_MARK);
    for l in lines {
        // `id_group` takes only 26-byte ids; a block holds at most
        // BLOCK_LINES (< u16::MAX) lines.
        v.push(u8::try_from(l.id.len()).unwrap_or(u8::MAX));
        v.extend_from_slice(l.id.as_bytes());
        v.extend_from_slice(
            &u16::try_from(l.numbers.len())
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        v.extend(l.numbers.iter().flat_map(|n| n.to_be_bytes()));
        match l.kept {
            None => v.push(0),
            Some(at) => {
                v.push(1);
                v.extend_from_slice(&at.segment.to_be_bytes());
                v.extend_from_slice(&at.offset.to_be_bytes());
            }
        }
    }
    v
}

/// The events of a group's index value ([`group_value`]).
fn parse_group<'v>(key: &[u8], v: &'v [u8]) -> Result<Vec<GroupLine<'v>>> {
    let bad = |why: &str| super::codec::corrupt("log_by_event", key, why);
    let mut rest = v
        .strip_prefix(&GROUP_MARK[..])
        .ok_or_else(|| bad("not a group's entry"))?;
    let mut cut = |n: usize| -> Result<&'v [u8]> {
        let (head, tail) = rest
            .split_at_checked(n)
            .ok_or_else(|| bad("a group's entry is cut short"))?;
        rest = tail;
        Ok(head)
    };
    let mut out = Vec::new();
    // Until the end, between two events.
    while let Ok(len) = cut(1) {
        let len = usize::from(len[0]);
        let id = std::str::from_utf8(cut(len)?).map_err(|_| bad("an event id is not UTF-8"))?;
        let count = cut(2)?;
        let count = usize::from(u16::from_be_bytes([count[0], count[1]]));
        let numbers = cut(2 * count)?
            .chunks_exact(2)
            .map(|n| u16::from_be_bytes([n[0], n[1]]))
            .collect();
        let kept = match cut(1)?[0] {
            0 => None,
            1 => {
                let at = cut(16)?;
                Some(KeptAt {
                    segment: keys::read_u64(&at[..8]).unwrap_or(0),
                    offset: keys::read_u64(&at[8..]).unwrap_or(0),
                })
            }
            _ => return Err(bad("a group's entry has a bad kept flag")),
        };
        out.push(GroupLine { id, numbers, kept });
    }
    Ok(out)
}

fn matches(q: &LogQuery, e: &LogEntry) -> bool {
    let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    eq(&q.handler, &e.handler)
        && eq(&q.event_type, &e.event_type)
        && eq(&q.tenant, &e.tenant)
        && eq(&q.outcome, &e.outcome)
        && (!q.failed_only || e.is_failure())
}

/// Splits lines sorted by time into blocks: at most [`BLOCK_LINES`] lines,
/// at most [`BLOCK_SPAN_MS`] apart.
fn blocks<'a, 'e>(sorted: &'a [&'e LogEntry]) -> impl Iterator<Item = &'a [&'e LogEntry]> {
    let mut rest = sorted;
    std::iter::from_fn(move || {
        let first = rest.first()?.time_ms;
        let n = rest
            .iter()
            .take(BLOCK_LINES)
            .take_while(|e| e.time_ms - first <= BLOCK_SPAN_MS)
            .count();
        let (block, tail) = rest.split_at(n);
        rest = tail;
        Some(block)
    })
}

/// A line waiting in the merge, ordered by its position alone.
struct Merging(Position, LogEntry);

impl PartialEq for Merging {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for Merging {}

impl PartialOrd for Merging {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Merging {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

/// Fills a page from lines handed over newest first.
struct Lister<'a> {
    q: &'a LogQuery,
    limit: usize,
    page: &'a mut LogPage,
    skipped: usize,
    last: Option<Position>,
}

impl Lister<'_> {
    /// Takes the next line; whether the page is finished.
    fn done(&mut self, at: Position, e: LogEntry) -> bool {
        if self.skipped == SCAN_BUDGET {
            // Cursors are exclusive: the last line examined resumes at this one.
            self.page.next_cursor = self.last.map(Position::cursor);
            return true;
        }
        self.last = Some(at);
        if !matches(self.q, &e) {
            self.skipped += 1;
            return false;
        }
        self.page.entries.push(e);
        if self.page.entries.len() == self.limit {
            self.page.next_cursor = Some(at.cursor());
            return true;
        }
        false
    }
}

impl Store {
    /// Appends one log line (assigning its id when empty).
    pub(super) fn append_log(&self, entry: &LogEntry) -> Result<()> {
        self.append_logs(&[entry])
    }

    /// [`Self::append_log`] for many lines: one block per
    /// [`BLOCK_SPAN_MS`] of their times, each one insert plus one index
    /// insert per event in it, and one count update. The index is written
    /// first: an index entry without its block is skipped by readers, a
    /// line without its index would be invisible to
    /// [`Store::deliveries_of`]. Plain inserts, not a sled batch: a batch
    /// takes sled's process-wide write lock and writes out its log buffer,
    /// which costs more than the inserts themselves.
    pub(super) fn append_logs(&self, entries: &[&LogEntry]) -> Result<()> {
        let lines: Vec<(&LogEntry, Option<&Event>)> = entries.iter().map(|&e| (e, None)).collect();
        self.append_logs_keeping(&lines)
    }

    /// [`Self::append_logs`], keeping the events given beside their lines
    /// for [`Store::archived_event`]: an event goes into its index entry
    /// of each block its given lines land in (the log inbox gives it with
    /// the line that ends its last delivery), so it costs no write of its
    /// own and retention drops it with its last such line.
    pub(super) fn append_logs_keeping(
        &self,
        entries: &[(&LogEntry, Option<&Event>)],
    ) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut sorted: Vec<&LogEntry> = entries.iter().map(|&(e, _)| e).collect();
        sorted.sort_by_key(|e| e.time_ms);
        let kept = self.keep_events(entries)?;
        let t = self.t();
        for lines in blocks(&sorted) {
            let seq = self.inner.db.generate_id().sled()?;
            let key = keys::time_seq(lines[0].time_ms, seq);
            let mut by_event: HashMap<&str, Vec<u16>> = HashMap::with_capacity(lines.len());
            for (i, e) in lines.iter().enumerate() {
                // `blocks` keeps a block within BLOCK_LINES (< u16::MAX).
                let n = u16::try_from(i).unwrap_or(u16::MAX);
                by_event.entry(&e.event_id).or_default().push(n);
            }
            self.write_index(&key, by_event, &kept)?;
            let value = block::encode(lines, || self.new_id())?;
            t.log.insert(key, value).sled()?;
        }
        self.bump(META_LOG_COUNT, entries.len() as i64)
    }

    /// Writes the index entries of the block at `key`: each event's line
    /// numbers there (`by_event`) and where its kept event is, if it was
    /// kept; one entry per group of ids ([`id_group`]), one of its own for
    /// an id that is not a ULID.
    fn write_index(
        &self,
        key: &[u8],
        by_event: HashMap<&str, Vec<u16>>,
        kept: &HashMap<String, KeptAt>,
    ) -> Result<()> {
        let t = self.t();
        let mut groups: std::collections::BTreeMap<&str, Vec<GroupLine<'_>>> =
            std::collections::BTreeMap::new();
        for (event_id, numbers) in by_event {
            let at = kept.get(event_id).copied();
            match id_group(event_id) {
                Some(group) => groups.entry(group).or_default().push(GroupLine {
                    id: event_id,
                    numbers,
                    kept: at,
                }),
                None => {
                    let value = match at {
                        Some(at) => numbers_keeping(&numbers, Kept::At(at)),
                        None => self::numbers(numbers),
                    };
                    t.log_by_event
                        .insert(by_event_key(event_id, key), value)
                        .sled()?;
                }
            }
        }
        for (group, mut lines) in groups {
            lines.sort_by(|a, b| a.id.cmp(b.id));
            t.log_by_event
                .insert(by_event_key(group, key), group_value(&lines))
                .sled()?;
        }
        Ok(())
    }

    /// Every index entry of event `event_id`, oldest block first: (the
    /// block's key, the numbers of the event's lines in it, what it keeps
    /// of the event). From its group's entries and from entries of its
    /// own (ids that are not ULIDs, and stores written before groups).
    fn index_of(&self, event_id: &str) -> Result<Vec<IndexEntry>> {
        let t = self.t();
        let mut out = Vec::new();
        let own = keys::parts(&[event_id.as_bytes()]);
        for item in t.log_by_event.scan_prefix(&own) {
            let (k, v) = item.sled()?;
            if v.starts_with(&GROUP_MARK) {
                continue;
            }
            let (lines, kept) = parse_index(&k, &v)?;
            let numbers = lines
                .chunks_exact(2)
                .map(|n| u16::from_be_bytes([n[0], n[1]]))
                .collect();
            let kept = kept.map(|k| match k {
                Kept::Json(json) => KeptOwned::Json(json.to_vec()),
                Kept::At(at) => KeptOwned::At(at),
            });
            out.push((k[own.len()..].to_vec(), numbers, kept));
        }
        if let Some(group) = id_group(event_id) {
            let prefix = keys::parts(&[group.as_bytes()]);
            for item in t.log_by_event.scan_prefix(&prefix) {
                let (k, v) = item.sled()?;
                if !v.starts_with(&GROUP_MARK) {
                    continue;
                }
                if let Some(line) = parse_group(&k, &v)?.into_iter().find(|l| l.id == event_id) {
                    out.push((
                        k[prefix.len()..].to_vec(),
                        line.numbers,
                        line.kept.map(KeptOwned::At),
                    ));
                }
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Appends the events given (once each) to the kept-events log, in one
    /// write, unsynced (see [`Self::sync_kept`]); where each went. First
    /// records, for each segment written to, the newest time of a line
    /// keeping an event in it: retention deletes a segment once the log has
    /// no line that old left ([`Self::trim_kept`]). That `meta` write goes
    /// before the index entries, so sled, which recovers a prefix of its
    /// writes, never has an entry without it; and under the lock retention
    /// takes to delete segments, so none goes between the two.
    fn keep_events(
        &self,
        entries: &[(&LogEntry, Option<&Event>)],
    ) -> Result<HashMap<String, KeptAt>> {
        let mut ids = Vec::new();
        let mut records = Vec::new();
        let mut times = Vec::new();
        let mut seen = HashSet::new();
        for (e, event) in entries {
            if let Some(event) = event
                && seen.insert(e.event_id.as_str())
            {
                ids.push(e.event_id.clone());
                records.push(super::codec::encode_sized(*event, event.json_size_hint())?);
                times.push(e.time_ms);
            }
        }
        if records.is_empty() {
            return Ok(HashMap::new());
        }
        let mut written = self.kept_lock();
        let at = self.inner.kept.append(&records)?;
        let mut newest: std::collections::BTreeMap<u64, u64> = std::collections::BTreeMap::new();
        for (p, time) in at.iter().zip(&times) {
            let t = newest.entry(p.segment).or_default();
            *t = (*t).max(*time);
        }
        let meta = &self.t().meta;
        for (segment, time) in newest {
            if written.is_some_and(|(s, t)| s == segment && t >= time) {
                continue;
            }
            let key = kept_segment_key(segment);
            let old = meta.get(&key).sled()?.and_then(|v| keys::read_u64(&v));
            let mark = match old {
                Some(o) if o >= time => o,
                _ => {
                    let mark = time
                        .div_ceil(KEPT_MARK_GRAIN_MS)
                        .saturating_mul(KEPT_MARK_GRAIN_MS);
                    meta.insert(key, &mark.to_be_bytes()[..]).sled()?;
                    mark
                }
            };
            *written = Some((segment, mark));
        }
        Ok(ids.into_iter().zip(at).collect())
    }

    fn kept_lock(&self) -> std::sync::MutexGuard<'_, Option<(u64, u64)>> {
        self.inner
            .kept_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Syncs the kept-events log: the log inbox calls it before a
    /// checkpoint lets go of the inbox segments holding the events.
    pub(super) fn sync_kept(&self) -> Result<()> {
        self.inner.kept.sync()
    }

    /// Deletes the kept-events log's segments whose every keeping line is
    /// gone: those whose newest keeping line is older than the log's
    /// oldest line (lines go oldest block first, and a block's key time is
    /// its first line's). Never the segment being appended to.
    ///
    /// Only choosing the segments holds the lock the recorder's appends
    /// take: deleting a 64 MiB file can wait on the device (the filesystem
    /// frees its blocks, and on a `discard` mount trims them), and the
    /// recorder should not wait with it. Deleting them after is safe: an
    /// append goes only to the newest segment, never to one before the
    /// cut. A deletion that takes 100 ms or more is logged as a warning.
    fn trim_kept(&self) -> Result<()> {
        let (cut, gone) = self.kept_to_trim()?;
        let started = std::time::Instant::now();
        let removed = self.inner.kept.remove_before(cut)?;
        super::warn_if_slow(
            "Deleting finished events' kept segments",
            removed,
            started.elapsed(),
            std::time::Duration::from_millis(100),
        );
        let t = self.t();
        for k in gone {
            t.meta.remove(k).sled()?;
        }
        Ok(())
    }

    /// The first kept segment to keep, and the `meta` keys of those before
    /// it, chosen under the lock appends take ([`Self::keep_events`]).
    fn kept_to_trim(&self) -> Result<(u64, Vec<sled::IVec>)> {
        let mut written = self.kept_lock();
        let t = self.t();
        let oldest = match t.log.first().sled()? {
            Some((k, _)) => k.get(..8).and_then(keys::read_u64).unwrap_or(0),
            None => u64::MAX,
        };
        let newest = self.inner.kept.newest();
        let mut cut = None;
        let mut gone = Vec::new();
        for item in t.meta.scan_prefix(KEPT_SEGMENT_PREFIX) {
            let (k, v) = item.sled()?;
            let segment = k
                .get(KEPT_SEGMENT_PREFIX.len()..)
                .and_then(keys::read_u64)
                .ok_or_else(|| {
                    super::codec::corrupt("meta", &k, "a kept segment key without its id")
                })?;
            let time = keys::read_u64(&v).ok_or_else(|| {
                super::codec::corrupt("meta", &k, "a kept segment's time is not a u64")
            })?;
            if time >= oldest || segment >= newest {
                cut = Some(segment);
                break;
            }
            // Never the segment appended to; but should it go, its time
            // must be written again with the next event kept in it.
            if written.is_some_and(|(s, _)| s == segment) {
                *written = None;
            }
            gone.push(k);
        }
        Ok((cut.unwrap_or(newest), gone))
    }

    /// Whether the log still has a line of event `id` (by its index).
    pub(super) fn has_log_lines(&self, event_id: &str) -> Result<bool> {
        Ok(!self.index_of(event_id)?.is_empty())
    }

    /// An event kept in the index beside its lines
    /// ([`Self::append_logs_keeping`]) while the log still has them.
    pub(super) fn kept_event(&self, event_id: &str) -> Result<Option<Event>> {
        for (k, _, kept) in self.index_of(event_id)?.into_iter().rev() {
            match kept {
                Some(KeptOwned::Json(event)) => {
                    return decode("log_by_event", &k, &event).map(Some);
                }
                Some(KeptOwned::At(at)) => {
                    // Gone or not this event: a crash lost the record
                    // before it was synced, and the place was written over.
                    let Some(bytes) = self.inner.kept.read_at(at)? else {
                        continue;
                    };
                    match serde_json::from_slice::<Event>(&bytes) {
                        Ok(event) if event.id == event_id => return Ok(Some(event)),
                        _ => continue,
                    }
                }
                None => {}
            }
        }
        Ok(None)
    }

    /// Cluster mode: log lines from the cluster's shared log, each with its
    /// sequence there, which keys it (with its time) so that a line
    /// written twice (by the node that ran the attempt, then by the
    /// mirror; or again after a restart) is stored once. The lines need
    /// their ids already. Each is a block of one line. How many were new.
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
            let by_event = HashMap::from_iter([(entry.event_id.as_str(), vec![0])]);
            self.write_index(&key, by_event, &HashMap::new())?;
            let value = block::encode(&[*entry], || self.new_id())?;
            t.log.insert(key, value).sled()?;
            added += 1;
        }
        if added > 0 {
            self.bump(META_LOG_COUNT, added as i64)?;
        }
        Ok(added)
    }

    /// Log lines matching `q`, newest first (by time, then by position).
    /// A full page (or a scan that hit its budget) carries a
    /// `next_cursor`; the following page may be empty.
    ///
    /// Blocks are read newest key first and their lines merged by time: a
    /// block's lines are at most [`BLOCK_SPAN_MS`] newer than its key, so
    /// once the scan reaches key time `k`, every line newer than
    /// `k + BLOCK_SPAN_MS` it holds is in its place.
    pub fn logs(&self, q: &LogQuery) -> Result<LogPage> {
        let limit = page_size(q.limit);
        let since = q.since_ms.unwrap_or(0);
        // Lines at or after `hi` are not listed.
        let mut hi = q.until_ms.and_then(|u| u.checked_add(1)).map(|u| Position {
            time: u,
            block: [0; 16],
            line: 0,
        });
        if let Some(c) = &q.cursor {
            let c = parse_cursor(c)?;
            hi = Some(hi.map_or(c, |h| h.min(c)));
        }
        let mut page = LogPage::default();
        let lo = keys::time_seq(since.saturating_sub(BLOCK_SPAN_MS), 0);
        let range = match hi {
            Some(hi) if hi.time < since => return Ok(page),
            Some(hi) => self.t().log.range(lo..=keys::time_seq(hi.time, u64::MAX)),
            None => self.t().log.range(lo..),
        };
        let mut lister = Lister {
            q,
            limit,
            page: &mut page,
            skipped: 0,
            last: None,
        };
        let mut merge: BinaryHeap<Merging> = BinaryHeap::new();
        for item in range.rev() {
            let (k, v) = item.sled()?;
            let key = block_key(&k)?;
            let key_time = keys::read_u64(&key[..8]).unwrap_or(0);
            while merge
                .peek()
                .is_some_and(|m| m.0.time > key_time.saturating_add(BLOCK_SPAN_MS))
            {
                if let Some(Merging(at, e)) = merge.pop()
                    && lister.done(at, e)
                {
                    return Ok(page);
                }
            }
            let block = Block::parse(&k, &v)?;
            let numbers: Vec<u16> = (0..block.lines.len()).map(|i| block.number(i)).collect();
            for (e, line) in block.lines.into_iter().zip(numbers) {
                let at = Position {
                    time: e.time_ms,
                    block: key,
                    line,
                };
                if e.time_ms >= since && hi.is_none_or(|hi| at < hi) {
                    merge.push(Merging(at, e));
                }
            }
        }
        while let Some(Merging(at, e)) = merge.pop() {
            if lister.done(at, e) {
                return Ok(page);
            }
        }
        Ok(page)
    }

    /// Every logged attempt for one event, oldest first.
    pub fn deliveries_of(&self, event_id: &str) -> Result<Vec<LogEntry>> {
        let mut out = Vec::new();
        for (log_key, numbers, _) in self.index_of(event_id)? {
            let Some(v) = self.t().log.get(&log_key).sled()? else {
                continue;
            };
            let mut block = Block::parse(&log_key, &v)?;
            if block.legacy {
                out.append(&mut block.lines);
                continue;
            }
            for n in numbers {
                if let Some(e) = block.get(n) {
                    out.push(e.clone());
                }
            }
        }
        out.sort_by_key(|e| e.time_ms);
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
        removed += self.enforce_log_cap(usize::MAX)?;
        if self.t().log.is_empty() {
            self.reset_counter(META_LOG_COUNT)?;
        }
        self.sweep_idempotency(cutoff)?;
        self.sweep_archive(cutoff)?;
        Ok(removed)
    }

    /// The count cap alone: removes the oldest lines over
    /// `log_max_entries`, at most `budget` of them; how many. The daemon
    /// runs it every second with a small budget, so a log at its cap sheds
    /// about what it gained since, instead of a minute's worth at once (a
    /// pass that long held sled and the CPU for seconds: the soak's worst
    /// latency).
    pub fn enforce_log_cap(&self, budget: usize) -> Result<u64> {
        let mut removed = 0u64;
        loop {
            let left = budget.saturating_sub(usize::try_from(removed).unwrap_or(usize::MAX));
            if left == 0 {
                break;
            }
            // The excess is read under the same lock as the removal: two
            // passes at once must not both remove it.
            let one_pass = self.retention_pass();
            let excess = self
                .counter(META_LOG_COUNT)?
                .saturating_sub(self.inner.opts.log_max_entries);
            if excess == 0 {
                break;
            }
            let want = usize::try_from(excess)
                .unwrap_or(usize::MAX)
                .min(RETENTION_BATCH)
                .min(left);
            let n = self.remove_oldest(&one_pass, want, None)?;
            removed += n;
            if n == 0 {
                break;
            }
        }
        Ok(removed)
    }

    /// The lock of one retention pass ([`Inner::retention`](super::Inner)).
    fn retention_pass(&self) -> std::sync::MutexGuard<'_, ()> {
        self.inner
            .retention
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// [`Self::remove_oldest`] under the retention lock.
    fn remove_oldest_logs(&self, n: usize, before_ms: Option<u64>) -> Result<u64> {
        let one_pass = self.retention_pass();
        self.remove_oldest(&one_pass, n, before_ms)
    }

    /// Removes up to `n` of the oldest log lines, only those before
    /// `before_ms` when given; how many. Whole blocks go, and the block
    /// where a limit falls keeps its newer lines under their numbers.
    /// The caller holds the retention lock (`_one_pass`).
    fn remove_oldest(
        &self,
        _one_pass: &std::sync::MutexGuard<'_, ()>,
        n: usize,
        before_ms: Option<u64>,
    ) -> Result<u64> {
        let hi = keys::time_seq(before_ms.unwrap_or(u64::MAX), 0);
        // Plain writes, applied after the scan, not sled batches: a batch
        // holds sled's process-wide write lock while it applies, and an
        // index entry may keep a finished event (a kilobyte or more), so a
        // batch of a thousand removals held every other sled call (the
        // workers' KV, the recorder) for as long.
        let mut log: Vec<(sled::IVec, Option<Vec<u8>>)> = Vec::new();
        let mut index: Vec<(Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        let mut count = 0usize;
        let mut events = Vec::new();
        for item in self.t().log.range(..hi) {
            if count == n {
                break;
            }
            let (k, v) = item.sled()?;
            let block = Block::parse(&k, &v)?;
            let drop = block
                .lines
                .iter()
                .take(n - count)
                .take_while(|e| before_ms.is_none_or(|b| e.time_ms < b))
                .count();
            if drop == 0 {
                break;
            }
            // Each event of the block keeps the index entry naming the
            // lines it has left here, if any.
            let mut kept: HashMap<&str, (bool, Vec<u16>)> = HashMap::new();
            for (i, e) in block.lines.iter().enumerate() {
                let (dropped, lines) = kept.entry(&e.event_id).or_default();
                if i < drop {
                    *dropped = true;
                } else {
                    lines.push(block.number(i));
                }
            }
            // A group's entry is rewritten with what is left of its events
            // here, or removed; a group without one here was written
            // before groups, and its events have entries of their own.
            let mut groups: std::collections::BTreeMap<&str, Vec<&str>> =
                std::collections::BTreeMap::new();
            let mut own: Vec<&str> = Vec::new();
            for (event_id, (dropped, _)) in &kept {
                if !dropped {
                    continue;
                }
                match id_group(event_id) {
                    Some(group) => groups.entry(group).or_default().push(event_id),
                    None => own.push(event_id),
                }
            }
            for (group, ids) in groups {
                let key = by_event_key(group, &k);
                match self.t().log_by_event.get(&key).sled()? {
                    Some(v) if v.starts_with(&GROUP_MARK) => {
                        let mut left = Vec::new();
                        for mut line in parse_group(&key, &v)? {
                            match kept.get(line.id) {
                                Some((true, rest)) if rest.is_empty() => {
                                    events.push(line.id.to_string());
                                }
                                Some((true, rest)) => {
                                    line.numbers.clone_from(rest);
                                    left.push(line);
                                }
                                _ => left.push(line),
                            }
                        }
                        let value = (!left.is_empty()).then(|| group_value(&left));
                        index.push((key, value));
                    }
                    _ => own.extend(ids),
                }
            }
            for event_id in own {
                let Some((_, lines)) = kept.get(event_id) else {
                    continue;
                };
                let key = by_event_key(event_id, &k);
                let old = self.t().log_by_event.get(&key).sled()?;
                if old.as_deref().is_some_and(|v| v.starts_with(&GROUP_MARK)) {
                    // A group's entry, not this id's (see `GROUP_MARK`).
                    continue;
                }
                if lines.is_empty() {
                    index.push((key, None));
                    events.push(event_id.to_string());
                } else {
                    // The lines left keep the event the entry kept.
                    let value = match old.as_deref().map(|v| parse_index(&key, v)).transpose()? {
                        Some((_, Some(kept))) => numbers_keeping(lines, kept),
                        _ => numbers(lines.iter().copied()),
                    };
                    index.push((key, Some(value)));
                }
            }
            count += drop;
            if drop == block.lines.len() {
                log.push((k, None));
            } else {
                let trimmed = block.trimmed(&v, drop);
                log.push((k, Some(trimmed)));
                break;
            }
        }
        if count > 0 {
            // The index first, as on append: a block line whose index entry
            // is gone is invisible only to the event lookup, which is the
            // point of removing it.
            let t = self.t();
            for (k, v) in index {
                match v {
                    Some(v) => t.log_by_event.insert(k, v).map(drop),
                    None => t.log_by_event.remove(k).map(drop),
                }
                .sled()?;
            }
            for (k, v) in log {
                match v {
                    Some(v) => t.log.insert(k, v).map(drop),
                    None => t.log.remove(k).map(drop),
                }
                .sled()?;
            }
            self.bump(META_LOG_COUNT, -(count as i64))?;
            events.sort_unstable();
            events.dedup();
            // A finished event goes with its last log line.
            self.forget_unlogged(&events)?;
            self.trim_kept()?;
        }
        Ok(count as u64)
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

fn kept_segment_key(segment: u64) -> Vec<u8> {
    let mut k = KEPT_SEGMENT_PREFIX.to_vec();
    k.extend_from_slice(&segment.to_be_bytes());
    k
}
