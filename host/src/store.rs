//! The durable store: the one owner of the sled database. Handlers and their
//! versions, module blobs and the compiled-code cache (as files beside the
//! database, `modules.rs`), the event inbox and its
//! pending deliveries, dead letters, the delivery log, stats, handler KV,
//! the audit log and API tokens all live here, behind our own types — no
//! sled type appears in the public API.
//!
//! **Every method blocks** (disk I/O, fsync on [`Durability::Sync`], a wait
//! for the group flush on [`Durability::Group`]). Async callers must run them
//! off the reactor: `spawn_blocking` in batches, or dedicated worker threads.
//!
//! # Trees and key layouts
//! Numbers are big-endian so sled's byte order is numeric (time, sequence)
//! order; `lp(x)` is a u32 big-endian length followed by the bytes of `x`,
//! so no part of a key can run into the next whatever bytes it contains.
//! ULIDs (event, log, dead-letter, audit ids) sort by time as text already.
//! Values are JSON unless noted (readable with any sled dump); the delivery
//! log, written for every delivery, is binary, in blocks of the lines one
//! recorder batch carried.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `schema_version` · `log_count` · `events_accepted` · `events_unrouted` · `kept_segment/` u64 BE (the newest time of a line keeping an event in that kept-events segment) | u32/u64 BE |
//! | `modules`, `compiled` | empty: older versions kept blobs here; they are moved to files at open | |
//! | `handlers` | handler name | [`HandlerRecord`] |
//! | `versions` | `lp(name) u32 version` | [`VersionRecord`] |
//! | `events` | event id | [`Event`](crate::event::Event) |
//! | `event_refs` | event id | u32 BE: pending deliveries still holding the event |
//! | `pending` | `lp(event id) handler` | [`Pending`] |
//! | `idempotency` | `lp(tenant) lp(key)` | `{event_id, time_ms}` |
//! | `dead` | dead-letter id | [`DeadLetter`] |
//! | `dead_by_handler` | `lp(handler) dead-letter id` | empty |
//! | `log` | `u64 time_ms u64 seq` (a block's oldest line) | a block of [`LogEntry`] lines, binary (`logs/block.rs`; a JSON line in stores written before blocks) |
//! | `log_by_event` | `lp(group) u64 time_ms u64 seq`, the group being an event id's first 10 characters (a ULID's millisecond) | `ff fd`, then per event of the group with lines in that block: u8 id length, the id, u16 BE count, the line numbers (u16 BE), and 0, or 1 and its finished event's place in the kept-events log (`<dir>/kept/`, segment and offset u64 BE): the entry of the line that ended its last delivery (log inbox) keeps the event. Ids that are not ULIDs, and stores written before groups: `lp(event id) u64 time_ms u64 seq` → u16 BE numbers (empty: a JSON line), or `ff fe`, u16 BE count, the numbers and the place (`ff ff` and the event as JSON in older stores); all still read |
//! | `finished_events` | event id | [`Event`](crate::event::Event), kept while it has log lines (sled inbox, cluster mode) |
//! | `stats` | handler name | per-handler counters + latency histogram |
//! | `kv` | `lp(handler) lp(tenant) key` | `crate::kv::encode_entry` bytes |
//! | `audit` | audit id | [`AuditEntry`] |
//! | `tokens` | token id | [`TokenRecord`] + sha256 of the secret |
//! | `token_hash` | sha256 of the secret (32 bytes) | token id |
//! | `zulip` | realm name | [`ZulipCursor`] |
//! | `schemas` | event type | JSON Schema text |
//!
//! Accepted events wait in the inbox ([`Inbox`]): by default the segment
//! log in `<data_dir>/inbox/` ([`LogInbox`], `loginbox.rs` on
//! `segment.rs`: one checksummed record per accepted batch, finished
//! markers written behind every 200 ms after the log lines they cover,
//! finished segments deleted); the `events`, `event_refs` and `pending`
//! trees are the `inbox = "sled"` alternative, described next.
//!
//! State changes that span trees (accept, dead-letter, replay, deploy,
//! token create/revoke) are sled transactions. Finishing a delivery is not:
//! it is the hot path, and each sled transaction takes a process-wide lock
//! and writes out sled's log buffer twice. It removes the pending entry and
//! releases the event with plain writes under the store's queue lock (held
//! by every change to `pending`, `events` and `event_refs`), and a crash
//! that cuts those writes short leaves only counts that
//! [`Store::open`] repairs (see `queue.rs`). A retry rewrites one pending
//! entry under the same lock. The delivery log lines (one sled insert per
//! batch, plus one index insert per event) and stats of an attempt
//! are written just before its queue transition: a crash in between
//! repeats the delivery (at-least-once), so a duplicate log line or count
//! is possible and accepted; a half-done queue transition is not. Stats
//! and the `meta` counters are kept in memory and written behind, at most
//! every second (`stats.rs`): a crash may lose the last second of counts.
//! Handler KV writes are written behind too, every 50 ms in one batch
//! (`kvbehind.rs`), and read back from memory until then.
//!
//! Inside a transaction closure no non-transactional sled call may be made:
//! sled 0.34 serialises transactions with a process-wide lock that plain
//! writes also take, so such a call would deadlock.

mod archive;
mod codec;
mod dlq;
mod external;
mod group;
mod handlers;
mod inbox;
mod keys;
mod kv;
mod kvbehind;
mod loginbox;
mod logs;
mod modules;
mod queue;
mod records;
mod stats;
/// How long `open` waits by default for the directory lock of a store that
/// was just closed in this process: sled's background threads hold the last
/// references and release the lock a moment after the `Db` is dropped (on a
/// loaded machine, after their final fsync: seconds).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(3);

/// Logs a store write of `what` (`items` of them) that took `took`, as a
/// warning when that is `limit` or more: whatever waited behind it felt
/// the delay.
pub fn warn_if_slow(what: &str, items: usize, took: Duration, limit: Duration) {
    if took >= limit {
        tracing::warn!(
            items,
            took_ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            "{what} was slow"
        );
    }
}

fn open_db(dir: &Path, cache_bytes: u64, lock_wait: Duration) -> Result<sled::Db> {
    let deadline = std::time::Instant::now() + lock_wait;
    loop {
        match sled::Config::new()
            .path(dir)
            .cache_capacity(cache_bytes)
            .open()
        {
            Ok(db) => return Ok(db),
            // sled reports a held lock as `ErrorKind::Other` with this
            // text (the `WouldBlock` is only in the message).
            Err(sled::Error::Io(e))
                if (e.kind() == std::io::ErrorKind::WouldBlock
                    || e.to_string().contains("could not acquire lock"))
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(e).sled(),
        }
    }
}

mod schemas;
mod segment;
#[cfg(test)]
mod testutil;
mod tokens;
mod zulip;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codec::{AbortExt, SledExt, TxResult, corrupt, decode, encode, tx_err};

pub use external::AttemptKind;
pub use inbox::{Appended, Inbox, InboxHooks, Ready};
pub use kv::kv_item;
pub use loginbox::LogInbox;
pub use records::page_size;
pub use records::{
    AttemptError, AuditEntry, DEFAULT_PAGE, DeadLetter, DeadLetterQuery, EmittedEvent, EventTotals,
    HandlerLog, HandlerRecord, HandlerStats, KvItem, KvPage, LogEntry, LogPage, LogQuery, MAX_PAGE,
    OUTCOME_EXPIRED, OUTCOME_OK, Pending, Scope, TokenRecord, VersionRecord,
};
pub use segment::{Position, Recovery, SegmentLog, SegmentOptions};
pub(crate) use stats::{bucket as latency_bucket, bucket_high as latency_bucket_high};
pub use tokens::TOKEN_PREFIX;
pub use zulip::ZulipCursor;

/// Bumped whenever a key layout or record encoding changes incompatibly.
pub const SCHEMA_VERSION: u32 = 1;

/// How hard `accept` works to make an event durable before returning.
///
/// Whatever the mode, every state change is one atomic sled write, and sled
/// recovers its log up to the last complete write: a crash loses a suffix
/// of unflushed writes, never an older write while keeping a newer one.
/// Only `accept` and administrative changes (deploy, enable, config,
/// tokens, dead-letter replay and purge) wait for a flush. Delivery
/// progress (finish, retry, dead-letter, the delivery log, stats, handler
/// KV writes, which reach sled within 50 ms) is flushed by the next such
/// flush or sled's background flush (every 500 ms): a crash may undo the
/// last ~500 ms of it, so those deliveries run again — at-least-once,
/// never lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// Flush to disk before `accept` returns: an acknowledged event is never lost.
    #[default]
    Sync,
    /// A background thread flushes every `interval`; `accept` waits for the
    /// next flush (group commit). Same guarantee as `Sync` for the caller,
    /// fewer fsyncs under load, up to `interval` more latency.
    Group {
        /// Time between flushes.
        interval: Duration,
    },
    /// No flush on accept; sled's own background flush (every 500 ms) or the
    /// OS decides. Tests and benchmarks only.
    None,
}

/// Which [`Inbox`] holds accepted events until their deliveries are final.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InboxKind {
    /// sled trees: events, pending entries, reference counts, one
    /// transaction per accept.
    Sled,
    /// The segment log ([`LogInbox`]) in the data directory's `inbox/`
    /// (the default).
    #[default]
    Log,
}

/// Knobs for [`Store::open`].
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Which inbox the daemon runs on.
    pub inbox: InboxKind,
    /// sled page-cache size. Set explicitly: sled's 1 GB default bloats RSS.
    pub cache_bytes: u64,
    /// Flush policy for accepted events.
    pub durability: Durability,
    /// Delivery-log entries kept by [`Store::enforce_retention`].
    pub log_max_entries: u64,
    /// Oldest delivery-log entry (and idempotency record) kept.
    pub log_max_age: Duration,
    /// How long [`Store::open`] retries a directory lock held by a store
    /// that is still shutting down before it reports the lock as held.
    pub lock_wait: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            inbox: InboxKind::default(),
            cache_bytes: 64 * 1024 * 1024,
            durability: Durability::Sync,
            log_max_entries: 1_000_000,
            log_max_age: Duration::from_secs(7 * 24 * 3600),
            lock_wait: DEFAULT_LOCK_WAIT,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database itself failed (I/O, a held lock, …).
    #[error("storage failed: {0}")]
    Sled(String),
    /// Stored bytes do not decode; names the tree and key.
    #[error("corrupt store: {0}")]
    Corrupt(String),
    /// The data directory was written by an incompatible schema.
    #[error("store schema version is {found}, this build expects {expected}")]
    Schema {
        /// The version in the `meta` tree.
        found: u32,
        /// [`SCHEMA_VERSION`].
        expected: u32,
    },
    /// The named thing does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The change contradicts the current state.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A caller-supplied argument is malformed (e.g. a pagination cursor).
    #[error("bad input: {0}")]
    BadInput(String),
    /// A record could not be encoded.
    #[error("cannot encode record: {0}")]
    Encode(String),
    /// A service the store depends on (cluster mode: NATS JetStream) did
    /// not answer; the operation did not happen and may be retried.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// Result alias for store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

/// The store; cheap to clone (an `Arc` inside), safe to share across threads.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("options", &self.inner.opts)
            .finish_non_exhaustive()
    }
}

struct Inner {
    db: sled::Db,
    t: Trees,
    /// Compiled-code files, mapped by the runtime (`modules.rs`).
    code_dir: std::path::PathBuf,
    /// Component files (`modules.rs`).
    module_dir: std::path::PathBuf,
    opts: StoreOptions,
    ids: Mutex<ulid::Generator>,
    /// Serialises handler administration (deploy, rollback, delete, …):
    /// those read-then-write across scans that a transaction cannot cover.
    admin: Mutex<()>,
    /// Held by every change to the `pending`, `events` and `event_refs`
    /// trees. Finishing deliveries changes them with plain writes rather
    /// than a sled transaction (each transaction takes sled's process-wide
    /// write lock and writes out the log buffer twice); this lock keeps
    /// those writes from interleaving with any other change to the same
    /// entries. It also lets one accept transaction run at a time.
    queue: Mutex<()>,
    /// Held by each pass that removes old log lines (`logs.rs`): the
    /// daemon's minute-long retention pass and its per-second count cap
    /// run on separate tasks, and two passes reading the same oldest
    /// blocks would both remove them (and count them twice).
    retention: Mutex<()>,
    /// The group-commit flusher; dropping it stops and joins its thread
    /// (which holds a `Db` clone), so the sled lock goes with the `Store`.
    group: Option<group::GroupCommit>,
    /// Per-namespace KV usage, computed on first use (`kv.rs`).
    kv_ledgers: crate::kv::Ledgers,
    /// Handler KV writes not in the `kv` tree yet (`kvbehind.rs`).
    kv_behind: Arc<kvbehind::KvBehind>,
    /// Moves them there every few milliseconds; dropping it joins it
    /// (held for that alone).
    _kv_writer: kvbehind::KvWriter,
    /// Deliveries the sled [`Inbox`] has made ready and not handed out.
    ready: inbox::ReadySet,
    /// Stats and `meta` counters not yet written (`stats.rs`).
    tallies: stats::Tallies,
    /// Cluster mode: the other nodes' counters (`stats.rs`).
    peers: stats::PeerStats,
    /// Finished events the log keeps for `GET /v1/events/{id}` (`logs.rs`,
    /// "Kept events"), in `<dir>/kept/`.
    kept: segment::SegmentLog,
    /// Held while events are appended to `kept` and their segments' times
    /// written, and while retention chooses the segments to delete (it
    /// deletes them after letting go): a segment just appended to must not
    /// be chosen before its time is written. Holds the last time written
    /// (segment, time), so the next appends to that segment need not read
    /// it back or write it again (`logs.rs`, `KEPT_MARK_GRAIN_MS`).
    kept_lock: Mutex<Option<(u64, u64)>>,
    /// Tokens that authenticated (`tokens.rs`).
    tokens: tokens::TokenCache,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle is going: write the KV entries and counters not
        // written yet (sled flushes on close).
        if let Err(e) = self.kv_behind.write_out(&self.t.kv) {
            tracing::warn!(error = %e, "Writing handler KV entries at close failed");
        }
        if let Err(e) = stats::snapshot(self, true) {
            tracing::warn!(error = %e, "Writing the stats at close failed");
        }
    }
}

struct Trees {
    meta: sled::Tree,
    modules: sled::Tree,
    compiled: sled::Tree,
    handlers: sled::Tree,
    versions: sled::Tree,
    events: sled::Tree,
    event_refs: sled::Tree,
    pending: sled::Tree,
    idempotency: sled::Tree,
    dead: sled::Tree,
    dead_by_handler: sled::Tree,
    log: sled::Tree,
    log_by_event: sled::Tree,
    finished_events: sled::Tree,
    stats: sled::Tree,
    kv: sled::Tree,
    audit: sled::Tree,
    tokens: sled::Tree,
    token_hash: sled::Tree,
    zulip: sled::Tree,
    schemas: sled::Tree,
}

const META_SCHEMA: &[u8] = b"schema_version";

impl Store {
    /// Opens (creating if needed) the store in `dir`. A directory written by
    /// another schema version is refused with [`StoreError::Schema`].
    pub fn open(dir: &Path, opts: StoreOptions) -> Result<Store> {
        let db = open_db(dir, opts.cache_bytes, opts.lock_wait)?;
        let tree = |name: &str| db.open_tree(name).sled();
        let t = Trees {
            meta: tree("meta")?,
            modules: tree("modules")?,
            compiled: tree("compiled")?,
            handlers: tree("handlers")?,
            versions: tree("versions")?,
            events: tree("events")?,
            event_refs: tree("event_refs")?,
            pending: tree("pending")?,
            idempotency: tree("idempotency")?,
            dead: tree("dead")?,
            dead_by_handler: tree("dead_by_handler")?,
            log: tree("log")?,
            log_by_event: tree("log_by_event")?,
            finished_events: tree("finished_events")?,
            stats: tree("stats")?,
            kv: tree("kv")?,
            audit: tree("audit")?,
            tokens: tree("tokens")?,
            token_hash: tree("token_hash")?,
            zulip: tree("zulip")?,
            schemas: tree("schemas")?,
        };
        match t.meta.get(META_SCHEMA).sled()? {
            None => {
                t.meta
                    .insert(META_SCHEMA, &SCHEMA_VERSION.to_be_bytes()[..])
                    .sled()?;
                db.flush().sled()?;
            }
            Some(v) => {
                let found = <[u8; 4]>::try_from(v.as_ref())
                    .map(u32::from_be_bytes)
                    .map_err(|_| corrupt("meta", META_SCHEMA, "not a u32"))?;
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        let group = match opts.durability {
            Durability::Group { interval } => Some(group::GroupCommit::start(db.clone(), interval)),
            _ => None,
        };
        let (kept, _) = segment::SegmentLog::open_newest_checked(
            &dir.join(logs::KEPT_DIR),
            segment::SegmentOptions {
                durability: Durability::None,
                max_segment_bytes: logs::KEPT_SEGMENT_BYTES,
            },
        )?;
        let kv_behind = Arc::new(kvbehind::KvBehind::default());
        let kv_writer = kvbehind::KvWriter::start(Arc::clone(&kv_behind), t.kv.clone());
        let store = Store {
            inner: Arc::new(Inner {
                db,
                t,
                code_dir: dir.join(modules::CODE_DIR),
                module_dir: dir.join(modules::MODULE_DIR),
                opts,
                ids: Mutex::new(ulid::Generator::new()),
                admin: Mutex::new(()),
                queue: Mutex::new(()),
                retention: Mutex::new(()),
                group,
                kv_ledgers: crate::kv::Ledgers::default(),
                kv_behind,
                _kv_writer: kv_writer,
                ready: inbox::ReadySet::default(),
                tallies: stats::Tallies::default(),
                peers: stats::PeerStats::default(),
                kept,
                kept_lock: Mutex::new(None),
                tokens: tokens::TokenCache::default(),
            }),
        };
        store.migrate_blobs()?;
        store.reconcile_queue()?;
        Ok(store)
    }

    /// Writes everything to disk (fsync) before returning.
    /// Counters kept in memory are written first.
    pub fn flush(&self) -> Result<()> {
        self.kv_written()?;
        self.snapshot_stats(true)?;
        self.inner.db.flush().sled().map(drop)
    }

    /// Whether the sled inbox holds any unfinished delivery.
    pub fn has_pending(&self) -> Result<bool> {
        self.t().pending.first().sled().map(|f| f.is_some())
    }

    /// Approximate bytes the database occupies on disk, with the
    /// kept-events log.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.inner.db.size_on_disk().sled()? + self.inner.kept.size_on_disk()?)
    }

    fn t(&self) -> &Trees {
        &self.inner.t
    }

    /// Makes committed writes durable as [`Durability`] asks for accepts.
    fn commit_wait(&self) -> Result<()> {
        match (&self.inner.opts.durability, &self.inner.group) {
            (Durability::None, _) => Ok(()),
            (Durability::Group { .. }, Some(g)) => g.wait(),
            _ => self.flush(),
        }
    }

    /// Rare administrative writes (deploy, tokens, …) are flushed unless
    /// durability is off entirely: an acknowledged admin change must stick.
    fn admin_flush(&self) -> Result<()> {
        match self.inner.opts.durability {
            Durability::None => Ok(()),
            _ => self.flush(),
        }
    }

    /// Makes administrative changes made outside this module's own admin
    /// calls (dead-letter replays, auto-disable follow-ups) durable: a flush
    /// unless durability is off entirely.
    pub fn sync_admin(&self) -> Result<()> {
        self.admin_flush()
    }

    fn admin_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // The guarded data is `()`: a panic elsewhere leaves nothing to repair.
        self.inner.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new ULID, monotonic within this process.
    fn new_ulid(&self) -> ulid::Ulid {
        // The generator holds only the last id; a panic cannot corrupt it.
        let mut g = self.inner.ids.lock().unwrap_or_else(|p| p.into_inner());
        g.generate().unwrap_or_else(|_| ulid::Ulid::new())
    }

    fn new_id(&self) -> String {
        self.new_ulid().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;

    #[test]
    fn open_waits_for_a_store_that_is_closing() {
        let dir = tempfile::tempdir().unwrap();
        let first = open(dir.path());
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            drop(first);
        });
        // Opened while the first still holds the lock: waits, then opens.
        let second = Store::open(dir.path(), opts());
        closer.join().unwrap();
        let _second = second.unwrap();
        // Without the wait, a held lock is an error naming it.
        let held = Store::open(
            dir.path(),
            StoreOptions {
                lock_wait: Duration::ZERO,
                ..opts()
            },
        );
        let err = held.expect_err("the lock is held");
        assert!(err.to_string().contains("could not acquire lock"), "{err}");
    }

    #[test]
    fn schema_mismatch_names_both_versions() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.t()
                .meta
                .insert(META_SCHEMA, &7u32.to_be_bytes()[..])
                .unwrap();
            s.flush().unwrap();
        }
        match Store::open(dir.path(), StoreOptions::default()) {
            Err(StoreError::Schema { found, expected }) => {
                assert_eq!((found, expected), (7, SCHEMA_VERSION));
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    }

    #[test]
    fn corrupt_schema_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = open(dir.path());
            s.t().meta.insert(META_SCHEMA, &b"x"[..]).unwrap();
        }
        let err = Store::open(dir.path(), StoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt(m) if m.contains("meta")));
    }
}
