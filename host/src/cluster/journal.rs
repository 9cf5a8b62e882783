//! What every node's API reads about the work of all nodes: the delivery
//! log, dead letters and stats (see `cluster.rs` for the whole layout).
//!
//! - **The delivery log** is a stream, `<prefix>_log`, on
//!   `<prefix>.log.lines`: each message a group of lines (a recorder
//!   batch's, up to 256 KiB), each line with the event when the attempt
//!   was its delivery's last. Append-only lines trimmed by age and count
//!   is what a stream's limits retention does (`max_age` from `[store]`'s
//!   `log_max_age`; `max_msgs` from `log_max_entries`, counting groups, so
//!   it only bounds the stream: each node's store trims its own copy by
//!   lines). The node that ran attempts publishes their lines and waits
//!   for JetStream's ack before it acks the deliveries (one stream write
//!   per group, not per line: a group commit), then writes them into its
//!   own store; every
//!   node copies the stream into its store's log with an ordered consumer
//!   from the last sequence it applied, so `/v1/logs` and
//!   `/v1/events/{id}` keep their filters, cursors and index unchanged.
//!   A line is keyed by its stream sequence, so applying it twice stores
//!   it once.
//! - **Dead letters** are a KV bucket, `<prefix>_dead`, one key per dead
//!   letter: unlike log lines they change (a replay or purge removes one),
//!   and a replay must take one exactly once across nodes, which a delete
//!   that expects the key's revision gives. Every node watches the bucket
//!   into its store's dead-letter trees, so listing and paging stay local.
//! - **Stats**: each node keeps counting the attempts it ran (in memory,
//!   written behind, as in single-node mode) and publishes its counters
//!   every second to a KV bucket, `<prefix>_stats`, under
//!   `<node>.<handler token>` and `<node>.totals`; every node watches the
//!   bucket and sums the other nodes' counters into its answers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, message::PublishMessage, stream};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::inbox::{Shared, handler_of, token, unavailable};
use super::{ClusterConfig, ClusterError};
use crate::event::Event;
use crate::store::StoreError;
use crate::store::{DeadLetter, DeadLetterQuery, EventTotals, LogEntry, MAX_PAGE, Result, Store};

/// How often a node publishes its counters.
const SHARE_STATS_EVERY: Duration = Duration::from_secs(1);
/// Pause before a mirror or watch that ended (NATS gone) starts again.
const RESTART_PAUSE: Duration = Duration::from_secs(1);
/// Log messages applied to the store in one go.
const MIRROR_BATCH: usize = 64;
/// How long the log mirror waits for a message before it asks the stream
/// whether it is behind. The client library notices a consumer lost with
/// its server only after two missed 15 s heartbeats and then retries every
/// 10 s; a mirror that is behind for two checks in a row starts again
/// from its position instead.
const MIRROR_QUIET: Duration = Duration::from_secs(3);
/// A log message holds lines up to about this many bytes...
const GROUP_BYTES: usize = 256 * 1024;
/// ... and at most this many lines.
const GROUP_LINES: usize = 1 << LINE_BITS;
/// Bits of a line's key for its place in its message.
const LINE_BITS: u32 = 12;

/// A line's key in the store's log: its message's stream sequence, then
/// its place in the message.
fn line_seq(message: u64, index: usize) -> u64 {
    (message << LINE_BITS) | index as u64
}
/// The store's name for how far the log stream was applied.
const LOG_POSITION: &str = "cluster_log";
/// Sequences of lines this process applied itself that the mirror may
/// skip; past this many (a mirror far behind), the set is dropped and the
/// mirror finds them in the store instead.
const APPLIED_HERE_MAX: usize = 100_000;
/// The store's mark that its single-node dead letters were shared.
const DEAD_SHARED: &str = "cluster_dead_letters_shared";

/// A log line as published.
#[derive(Serialize)]
struct LineOut<'a> {
    entry: &'a LogEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a Event>,
}

/// A log line as read back.
#[derive(Deserialize)]
struct LineIn {
    entry: LogEntry,
    #[serde(default)]
    event: Option<Event>,
}

/// The shared log and buckets (see the module docs).
pub(super) struct Journal {
    node: String,
    /// Stream sequences of lines this process wrote into its store after
    /// publishing them: the mirror skips them without decoding.
    applied_here: std::sync::Mutex<HashSet<u64>>,
    js: jetstream::Context,
    log_prefix: String,
    log: stream::Stream,
    dead: kv::Store,
    stats: kv::Store,
}

pub(super) async fn bucket(
    js: &jetstream::Context,
    cfg: &ClusterConfig,
    name: &str,
) -> std::result::Result<kv::Store, ClusterError> {
    open_kv(
        js,
        kv::Config {
            bucket: format!("{}_{name}", cfg.prefix),
            history: 1,
            storage: stream::StorageType::File,
            num_replicas: cfg.replicas,
            ..Default::default()
        },
    )
    .await
    .map_err(|e| ClusterError::JetStream(format!("creating the {name} bucket: {e}")))
}

/// How long opening a stream or bucket keeps trying while the NATS
/// cluster is still forming: servers started together elect a meta leader
/// and see each other's peers some seconds apart, and until then creating
/// a replicated stream fails with "no suitable peers" or "temporarily
/// unavailable". A node started with its NATS cluster waits that out.
pub(super) const FORMING_WAIT: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails with an error that is not
/// [`forming`], or [`FORMING_WAIT`] has passed (its last error then); each
/// retry, 250 ms to 2 s apart, is logged as a warning naming `what`.
pub(super) async fn while_forming<T, E, F, Fut>(
    what: &str,
    mut attempt: F,
) -> std::result::Result<T, E>
where
    E: std::error::Error + 'static,
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, E>>,
{
    let deadline = tokio::time::Instant::now() + FORMING_WAIT;
    let mut pause = Duration::from_millis(250);
    loop {
        match attempt().await {
            Ok(t) => return Ok(t),
            Err(e) if forming(&e) && tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(
                    "{what}: the NATS cluster is not ready ({e}); trying again in {pause:?}, for up to {FORMING_WAIT:?} in all"
                );
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Whether `e` (or an error it wraps) says the JetStream cluster is not
/// ready yet (a meta leader or peers missing, a request that timed out)
/// rather than that the request is wrong.
pub(super) fn forming(e: &(dyn std::error::Error + 'static)) -> bool {
    use jetstream::ErrorCode;
    use jetstream::context::{
        CreateKeyValueError, CreateKeyValueErrorKind, CreateStreamError, CreateStreamErrorKind,
    };
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(e) = e.downcast_ref::<CreateStreamError>() {
            return match e.kind() {
                CreateStreamErrorKind::TimedOut | CreateStreamErrorKind::JetStreamUnavailable => {
                    true
                }
                CreateStreamErrorKind::JetStream(e) => [
                    ErrorCode::CLUSTER_NO_PEERS,
                    ErrorCode::CLUSTER_NOT_AVAILABLE,
                    ErrorCode::CLUSTER_INCOMPLETE,
                    ErrorCode::CLUSTER_NOT_ASSIGNED,
                    ErrorCode::CLUSTER_NOT_LEADER,
                    ErrorCode::CLUSTER_SERVER_MEMBER_CHANGE_INFLIGHT,
                ]
                .contains(&e.error_code()),
                _ => false,
            };
        }
        if let Some(e) = e.downcast_ref::<CreateKeyValueError>()
            && matches!(
                e.kind(),
                // `JetStream`: the account query before the creation failed.
                CreateKeyValueErrorKind::TimedOut | CreateKeyValueErrorKind::JetStream
            )
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// Opens the stream `config` names, creating it when missing; one another
/// node created meanwhile (nodes starting together) is opened. Waits out a
/// NATS cluster that is still forming ([`while_forming`]).
pub(super) async fn open_stream(
    js: &jetstream::Context,
    config: stream::Config,
) -> std::result::Result<stream::Stream, String> {
    let name = config.name.clone();
    while_forming(&format!("opening the stream {name}"), || async {
        match js.get_or_create_stream(config.clone()).await {
            Ok(s) => Ok(s),
            Err(e) => js.get_stream(&name).await.map_err(|_| e),
        }
    })
    .await
    .map_err(|e| e.to_string())
}

/// Opens the bucket `config` names, creating it when missing; one another
/// node created meanwhile (nodes starting together) is opened. Waits out a
/// NATS cluster that is still forming ([`while_forming`]).
pub(super) async fn open_kv(
    js: &jetstream::Context,
    config: kv::Config,
) -> std::result::Result<kv::Store, String> {
    let bucket = config.bucket.clone();
    while_forming(&format!("opening the bucket {bucket}"), || async {
        if let Ok(kv) = js.get_key_value(&bucket).await {
            return Ok(kv);
        }
        match js.create_key_value(config.clone()).await {
            Ok(kv) => Ok(kv),
            Err(e) => js.get_key_value(&bucket).await.map_err(|_| e),
        }
    })
    .await
    .map_err(|e| e.to_string())
}

impl Journal {
    /// Opens (creating when missing) the log stream, with the store's log
    /// retention, and the dead-letter and stats buckets.
    pub(super) async fn open(
        js: jetstream::Context,
        cfg: &ClusterConfig,
        node: String,
        retention: (u64, Duration),
    ) -> std::result::Result<Journal, ClusterError> {
        let log = open_stream(
            &js,
            stream::Config {
                name: format!("{}_log", cfg.prefix),
                subjects: vec![format!("{}.log.>", cfg.prefix)],
                retention: stream::RetentionPolicy::Limits,
                storage: stream::StorageType::File,
                num_replicas: cfg.replicas,
                max_messages: i64::try_from(retention.0).unwrap_or(i64::MAX),
                max_age: retention.1,
                duplicate_window: Duration::from_secs(120).min(retention.1),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| ClusterError::JetStream(format!("opening the delivery log stream: {e}")))?;
        let dead = bucket(&js, cfg, "dead").await?;
        let stats = bucket(&js, cfg, "stats").await?;
        Ok(Journal {
            node,
            applied_here: Default::default(),
            js,
            log_prefix: format!("{}.log", cfg.prefix),
            log,
            dead,
            stats,
        })
    }

    /// This node's name.
    pub(super) fn node(&self) -> &str {
        &self.node
    }

    /// Publishes log lines (with the event of a delivery's last attempt)
    /// and waits for JetStream's acks: a group commit, many lines to a
    /// message (up to [`GROUP_BYTES`]), so a recorder batch costs the
    /// stream a write or a few, not one per line. Each line's key in the
    /// store's log, in order: its message's sequence and its place in the
    /// message ([`line_seq`]). A message's id is its first line's, so one
    /// published again (a retry after a lost ack) is stored once.
    pub(super) async fn publish_lines(
        &self,
        lines: &[(&LogEntry, Option<&Event>)],
    ) -> Result<Vec<u64>> {
        let mut groups: Vec<(String, Vec<u8>, usize)> = Vec::new();
        for &(entry, event) in lines {
            let line = serde_json::to_vec(&LineOut { entry, event })
                .map_err(|e| StoreError::Encode(e.to_string()))?;
            match groups.last_mut() {
                Some((_, body, n)) if body.len() + line.len() < GROUP_BYTES && *n < GROUP_LINES => {
                    body.push(b',');
                    body.extend_from_slice(&line);
                    *n += 1;
                }
                _ => {
                    let mut body = Vec::with_capacity(line.len() + 2);
                    body.push(b'[');
                    body.extend_from_slice(&line);
                    groups.push((entry.id.clone(), body, 1));
                }
            }
        }
        let subject = format!("{}.lines", self.log_prefix);
        let mut acks = Vec::with_capacity(groups.len());
        for (id, mut body, n) in groups {
            body.push(b']');
            let msg = PublishMessage::build().payload(body.into()).message_id(id);
            let ack = self
                .js
                .send_publish(subject.clone(), msg)
                .await
                .map_err(|e| unavailable("publishing log lines", e))?;
            acks.push((ack, n));
        }
        let mut seqs = Vec::with_capacity(lines.len());
        for (ack, n) in acks {
            let ack = ack
                .await
                .map_err(|e| unavailable("waiting for the log lines' ack", e))?;
            seqs.extend((0..n).map(|i| line_seq(ack.sequence, i)));
        }
        Ok(seqs)
    }

    /// Notes lines this process wrote into its store itself (their keys,
    /// as [`Journal::publish_lines`] returned them).
    pub(super) fn applied_here(&self, line_seqs: &[u64]) {
        let mut set = self.applied_here.lock().unwrap_or_else(|p| p.into_inner());
        if set.len() > APPLIED_HERE_MAX {
            set.clear();
        }
        set.extend(line_seqs.iter().map(|s| s >> LINE_BITS));
    }

    /// Whether the mirror may skip line `seq` (and forgets it).
    fn skip(&self, seq: u64) -> bool {
        let mut set = self.applied_here.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&seq)
    }

    /// Stores a new dead letter for every node.
    pub(super) async fn put_dead_letter(&self, dl: &DeadLetter) -> Result<()> {
        let bytes = serde_json::to_vec(dl).map_err(|e| StoreError::Encode(e.to_string()))?;
        self.dead
            .put(&dl.id, bytes.into())
            .await
            .map(drop)
            .map_err(|e| unavailable("storing a dead letter", e))
    }

    /// Takes dead letter `id` out of the bucket for a replay, exactly once
    /// across nodes: `NotFound` when it is gone or another node took it.
    pub(super) async fn take_dead_letter(&self, id: &str) -> Result<()> {
        let gone = || StoreError::NotFound(format!("dead letter {id}"));
        let entry = self
            .dead
            .entry(id)
            .await
            .map_err(|e| unavailable("reading a dead letter", e))?;
        let revision = match entry {
            Some(e) if e.operation == kv::Operation::Put => e.revision,
            _ => return Err(gone()),
        };
        match self.dead.delete_expect_revision(id, Some(revision)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => Err(gone()),
            Err(e) => Err(unavailable("taking a dead letter", e)),
        }
    }

    /// Removes dead letter `id` for every node (a purge).
    pub(super) async fn delete_dead_letter(&self, id: &str) -> Result<()> {
        self.dead
            .delete(id)
            .await
            .map_err(|e| unavailable("deleting a dead letter", e))
    }
}

/// Starts the mirrors and the stats publisher.
pub(super) fn start(shared: &Arc<Shared>) {
    let h = &shared.handle;
    h.spawn(restarting(
        Arc::downgrade(shared),
        "delivery log mirror",
        |s| Box::pin(mirror_log(s)),
    ));
    h.spawn(restarting(
        Arc::downgrade(shared),
        "dead-letter watch",
        |s| Box::pin(mirror_dead_letters(s)),
    ));
    h.spawn(restarting(Arc::downgrade(shared), "stats watch", |s| {
        Box::pin(watch_stats(s))
    }));
    h.spawn(share_stats(Arc::downgrade(shared)));
}

type Task = std::pin::Pin<Box<dyn std::future::Future<Output = Result<()>> + Send>>;

/// Runs `task` again after a pause whenever it ends (NATS gone and back),
/// until the inbox is gone.
async fn restarting(shared: Weak<Shared>, what: &'static str, task: fn(Weak<Shared>) -> Task) {
    loop {
        if shared.upgrade().is_none() {
            return;
        }
        match task(shared.clone()).await {
            Ok(()) => tracing::debug!(what, "Ended; starting again"),
            Err(e) => tracing::warn!(what, error = %e, "Failed; starting again"),
        }
        tokio::time::sleep(RESTART_PAUSE).await;
    }
}

/// Runs `f` on the store off the client's runtime.
async fn blocking<T: Send + 'static>(
    store: &Store,
    f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| StoreError::Sled(format!("a store task failed: {e}")))?
}

/// The sequence of the log stream's last message.
async fn last_sequence(log: &mut stream::Stream) -> Result<u64> {
    Ok(log
        .info()
        .await
        .map_err(|e| unavailable("reading the log stream", e))?
        .state
        .last_sequence)
}

/// Copies the log stream into this node's store from where it left off.
async fn mirror_log(shared: Weak<Shared>) -> Result<()> {
    let (store, mut log, journal) = match shared.upgrade() {
        Some(s) => (s.store.clone(), s.journal.log.clone(), s.journal.clone()),
        None => return Ok(()),
    };
    let mut position = blocking(&store, |s| s.external_position(LOG_POSITION)).await?;
    let last = last_sequence(&mut log).await?;
    if position > last {
        // The stream is not the one applied before (made again): all of it.
        position = 0;
    }
    let deliver_policy = match position {
        0 => consumer::DeliverPolicy::All,
        p => consumer::DeliverPolicy::ByStartSequence {
            start_sequence: p + 1,
        },
    };
    let consumer = log
        .create_consumer(consumer::pull::OrderedConfig {
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("following the log stream", e))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable("following the log stream", e))?;
    let mut chunks = messages.ready_chunks(MIRROR_BATCH);
    // The stream's last sequence seen at the previous quiet check while
    // this node was behind it.
    let mut behind: Option<u64> = None;
    loop {
        let chunk = match tokio::time::timeout(MIRROR_QUIET, chunks.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                if shared.strong_count() == 0 {
                    return Ok(());
                }
                let last = last_sequence(&mut log).await?;
                match behind {
                    // Still short of what the stream held a check ago:
                    // the consumer is gone, not slow.
                    Some(seen) if position < seen => {
                        return Err(unavailable(
                            "following the log stream",
                            format!(
                                "no message for {MIRROR_QUIET:?} twice while {} behind; following it again",
                                seen - position
                            ),
                        ));
                    }
                    _ => behind = (last > position).then_some(last),
                }
                continue;
            }
        };
        if shared.strong_count() == 0 {
            return Ok(());
        }
        let mut lines = Vec::with_capacity(chunk.len());
        let mut last_seq = None;
        let mut failed = None;
        for m in chunk {
            let m = match m {
                Ok(m) => m,
                Err(e) => {
                    failed = Some(unavailable("following the log stream", e));
                    break;
                }
            };
            let seq = match m.info() {
                Ok(i) => i.stream_sequence,
                Err(e) => {
                    failed = Some(unavailable("reading a log message's sequence", e));
                    break;
                }
            };
            last_seq = Some(seq);
            if journal.skip(seq) {
                continue;
            }
            match serde_json::from_slice::<Vec<LineIn>>(&m.payload) {
                Ok(group) => {
                    lines.extend(
                        group
                            .into_iter()
                            .enumerate()
                            .map(|(i, l)| (line_seq(seq, i), l)),
                    );
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "Delivery log lines in the stream do not decode; skipped");
                }
            }
        }
        if let Some(seq) = last_seq {
            blocking(&store, move |s| {
                let entries: Vec<(u64, &LogEntry)> =
                    lines.iter().map(|(q, l)| (*q, &l.entry)).collect();
                s.apply_shared_logs(&entries)?;
                let events: Vec<&Event> =
                    lines.iter().filter_map(|(_, l)| l.event.as_ref()).collect();
                s.archive_events(&events)?;
                s.set_external_position(LOG_POSITION, seq)
            })
            .await?;
            position = seq;
        }
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(())
}

/// Keeps this node's dead letters what the bucket holds: shares the ones
/// made in single-node mode once, drops those the bucket lost while this
/// node was away, then applies every change.
async fn mirror_dead_letters(shared: Weak<Shared>) -> Result<()> {
    let Some(s) = shared.upgrade() else {
        return Ok(());
    };
    let (store, dead) = (s.store.clone(), s.journal.dead.clone());
    drop(s);
    if blocking(&store, |s| s.external_position(DEAD_SHARED)).await? == 0 {
        for dl in local_dead_letters(&store).await? {
            let bytes = serde_json::to_vec(&dl).map_err(|e| StoreError::Encode(e.to_string()))?;
            match dead.create(&dl.id, bytes.into()).await {
                Ok(_) => {}
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(unavailable("sharing a dead letter", e)),
            }
        }
        blocking(&store, |s| s.set_external_position(DEAD_SHARED, 1)).await?;
    }
    let mut keys = dead
        .keys()
        .await
        .map_err(|e| unavailable("listing the dead letters", e))?;
    let mut shared_ids = HashSet::new();
    while let Some(k) = keys.next().await {
        shared_ids.insert(k.map_err(|e| unavailable("listing the dead letters", e))?);
    }
    let stale: Vec<String> = local_dead_letters(&store)
        .await?
        .into_iter()
        .map(|d| d.id)
        .filter(|id| !shared_ids.contains(id))
        .collect();
    blocking(&store, move |s| {
        for id in &stale {
            s.remove_shared_dead_letter(id)?;
        }
        Ok(())
    })
    .await?;
    let mut changes = dead
        .watch_with_history(">")
        .await
        .map_err(|e| unavailable("watching the dead letters", e))?;
    while let Some(entry) = changes.next().await {
        if shared.strong_count() == 0 {
            return Ok(());
        }
        let entry = entry.map_err(|e| unavailable("watching the dead letters", e))?;
        if entry.operation == kv::Operation::Put {
            match serde_json::from_slice::<DeadLetter>(&entry.value) {
                Ok(dl) => blocking(&store, move |s| s.put_shared_dead_letter(&dl)).await?,
                Err(e) => {
                    tracing::error!(key = %entry.key, error = %e, "A dead letter in the bucket does not decode; skipped");
                }
            }
        } else {
            let id = entry.key.clone();
            blocking(&store, move |s| s.remove_shared_dead_letter(&id).map(drop)).await?;
        }
    }
    Ok(())
}

/// Every dead letter in this node's store.
async fn local_dead_letters(store: &Store) -> Result<Vec<DeadLetter>> {
    blocking(store, |s| {
        let mut all = Vec::new();
        let mut q = DeadLetterQuery {
            limit: MAX_PAGE,
            ..Default::default()
        };
        loop {
            let page = s.dead_letters(&q)?;
            let full = page.len() == MAX_PAGE;
            q.cursor = page.last().map(|d| d.id.clone());
            all.extend(page);
            if !full {
                return Ok(all);
            }
        }
    })
    .await
}

/// Publishes this node's counters when they changed, every
/// [`SHARE_STATS_EVERY`], and withdraws every node's counters of a handler
/// deleted here.
async fn share_stats(shared: Weak<Shared>) {
    let mut published: HashMap<String, Vec<u8>> = HashMap::new();
    let mut tick = tokio::time::interval(SHARE_STATS_EVERY);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let (store, journal) = (s.store.clone(), s.journal.clone());
        drop(s);
        if let Err(e) = share_stats_once(&store, &journal, &mut published).await {
            tracing::debug!(error = %e, "Publishing this node's stats failed; trying again");
        }
    }
}

async fn share_stats_once(
    store: &Store,
    journal: &Journal,
    published: &mut HashMap<String, Vec<u8>>,
) -> Result<()> {
    let (records, totals) = blocking(store, |s| s.stats_to_share()).await?;
    let node = &journal.node;
    for (handler, bytes) in records {
        if published.get(&handler) == Some(&bytes) {
            continue;
        }
        let key = format!("{node}.{}", token(&handler));
        journal
            .stats
            .put(&key, bytes.clone().into())
            .await
            .map_err(|e| unavailable("publishing stats", e))?;
        published.insert(handler, bytes);
    }
    let totals = serde_json::to_vec(&totals).map_err(|e| StoreError::Encode(e.to_string()))?;
    let totals_key = "\u{0}totals".to_string();
    if published.get(&totals_key) != Some(&totals) {
        journal
            .stats
            .put(format!("{node}.totals"), totals.clone().into())
            .await
            .map_err(|e| unavailable("publishing stats", e))?;
        published.insert(totals_key, totals);
    }
    let (forgotten, mut nodes) = store.take_forgotten_stats();
    nodes.push(node.clone());
    for handler in forgotten {
        published.remove(&handler);
        for n in &nodes {
            let key = format!("{n}.{}", token(&handler));
            if let Err(e) = journal.stats.delete(&key).await {
                tracing::debug!(%key, error = %e, "Withdrawing a deleted handler's stats failed");
            }
        }
    }
    Ok(())
}

/// Applies every other node's published counters to this node's store.
async fn watch_stats(shared: Weak<Shared>) -> Result<()> {
    let Some(s) = shared.upgrade() else {
        return Ok(());
    };
    let (store, stats, me) = (
        s.store.clone(),
        s.journal.stats.clone(),
        s.journal.node.clone(),
    );
    drop(s);
    let mut changes = stats
        .watch_with_history(">")
        .await
        .map_err(|e| unavailable("watching the stats", e))?;
    while let Some(entry) = changes.next().await {
        if shared.strong_count() == 0 {
            return Ok(());
        }
        let entry = entry.map_err(|e| unavailable("watching the stats", e))?;
        let Some((node, what)) = entry.key.split_once('.') else {
            continue;
        };
        if node == me {
            continue;
        }
        let put = entry.operation == kv::Operation::Put;
        if what == "totals" {
            let totals = match put {
                true => serde_json::from_slice::<EventTotals>(&entry.value).ok(),
                false => None,
            };
            store.set_peer_totals(node, totals);
        } else if let Some(handler) = handler_of(what) {
            let value = put.then_some(entry.value.as_ref());
            if let Err(e) = store.set_peer_stats(node, &handler, value) {
                tracing::error!(key = %entry.key, error = %e, "Another node's stats do not decode; skipped");
            }
        }
    }
    Ok(())
}
