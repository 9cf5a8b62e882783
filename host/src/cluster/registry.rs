//! The shared handler registry of cluster mode: the source of truth is a
//! JetStream KV bucket, `<prefix>_registry`, one key per handler holding
//! its record and every version ([`HandlerDoc`]); component bytes are in
//! the object store `<prefix>_modules` under their sha256. Each node's
//! store is a materialized view: a watch on the bucket applies every
//! change (fetching components it lacks) and reloads the handler, so a
//! deploy on one node runs on the others within moments.
//!
//! A deploy picks the next version with compare-and-set on the key's
//! revision, so concurrent deploys of one name on different nodes get
//! distinct consecutive versions and the last one committed is active
//! everywhere. Other changes (rollback, enable/disable, config, delete)
//! are made in the local store first, then published the same way
//! (versions merged, so a version deployed elsewhere meanwhile is kept).
//! Each node applies a key's revisions in order and never an older one.
//!
//! API tokens (`<prefix>_tokens`, token id → record and secret hash) and
//! payload schemas (`<prefix>_schemas`) are two more buckets, written
//! before the local store (a refusal changes nothing) and watched into
//! every node's store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::runtime::Handle;

use super::{ClusterError, JetStreamInbox};
use crate::dispatch::{ClusterStatus, Dispatcher, NodeStatus, SharedRegistry};
use crate::event::now_ms;
use crate::manifest::Manifest;
use crate::store::{HandlerRecord, Store, StoreError, VersionRecord};

/// How often a node writes its heartbeat; an entry lives three times as
/// long, so a node that stopped drops out of `GET /v1/cluster` after that.
const HEARTBEAT: Duration = Duration::from_secs(2);
/// Pause before a watch that ended (NATS gone) is opened again.
const REWATCH_PAUSE: Duration = Duration::from_secs(1);
/// Deploy attempts that lose a compare-and-set race before giving up.
const CAS_ATTEMPTS: usize = 100;

/// What the bucket holds for one handler.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct HandlerDoc {
    handler: HandlerRecord,
    /// Every version, oldest first.
    versions: Vec<VersionRecord>,
}

/// See the module docs.
pub struct ClusterRegistry {
    handle: Handle,
    kv: kv::Store,
    modules: object_store::ObjectStore,
    store: Store,
    /// The newest revision applied to the store, per handler.
    applied: Mutex<HashMap<String, u64>>,
    /// Heartbeats, one key per node, expiring.
    nodes: kv::Store,
    /// This node's heartbeat (its load filled in when it is written).
    me: Mutex<NodeStatus>,
    inbox: Arc<JetStreamInbox>,
    /// API tokens made through any node: token id → the record and the
    /// secret's hash (never the secret).
    tokens: kv::Store,
    /// Payload schemas: `_` + base64url of the event type → the schema.
    schemas: kv::Store,
}

impl std::fmt::Debug for ClusterRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterRegistry")
            .field("bucket", &self.kv.name)
            .finish_non_exhaustive()
    }
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("NATS JetStream, {what}: {e}"))
}

fn decode(bytes: &[u8]) -> Result<HandlerDoc, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(format!("registry entry: {e}")))
}

impl ClusterRegistry {
    /// Opens (creating when missing) the registry bucket and the module
    /// store on the inbox's connection, makes `dispatcher` deploy through
    /// them, and starts the watch that applies every change to `store`.
    /// Blocking.
    pub fn join(
        inbox: &Arc<JetStreamInbox>,
        store: Store,
        dispatcher: &Dispatcher,
        node: String,
    ) -> Result<Arc<ClusterRegistry>, ClusterError> {
        let (handle, client, cfg) = inbox.connection();
        let js = jetstream::new(client);
        let (kv, modules, nodes, tokens, schemas) = handle.block_on(async {
            let err = |what: &str, e: &dyn std::fmt::Display| {
                ClusterError::JetStream(format!("{what}: {e}"))
            };
            let kv = super::journal::bucket(&js, &cfg, "registry").await?;
            let bucket = format!("{}_modules", cfg.prefix);
            let modules = super::journal::while_forming("opening the module store", || async {
                if let Ok(o) = js.get_object_store(&bucket).await {
                    return Ok(o);
                }
                let config = object_store::Config {
                    bucket: bucket.clone(),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: cfg.replicas,
                    ..Default::default()
                };
                match js.create_object_store(config).await {
                    Ok(o) => Ok(o),
                    // Made by another node meanwhile.
                    Err(e) => js.get_object_store(&bucket).await.map_err(|_| e),
                }
            })
            .await
            .map_err(|e| err("creating the module store", &e))?;
            let bucket = format!("{}_nodes", cfg.prefix);
            let nodes = super::journal::open_kv(
                &js,
                kv::Config {
                    bucket,
                    history: 1,
                    max_age: HEARTBEAT * 3,
                    storage: jetstream::stream::StorageType::Memory,
                    num_replicas: cfg.replicas,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| err("creating the nodes bucket", &e))?;
            let tokens = super::journal::bucket(&js, &cfg, "tokens").await?;
            let schemas = super::journal::bucket(&js, &cfg, "schemas").await?;
            Ok::<_, ClusterError>((kv, modules, nodes, tokens, schemas))
        })?;
        let registry = Arc::new(ClusterRegistry {
            handle: handle.clone(),
            kv,
            modules,
            store,
            applied: Mutex::default(),
            nodes,
            me: Mutex::new(NodeStatus {
                node,
                api: None,
                started_ms: now_ms(),
                seen_ms: 0,
                queued: 0,
                held: 0,
                runs: Vec::new(),
            }),
            inbox: inbox.clone(),
            tokens,
            schemas,
        });
        dispatcher.share_registry(registry.clone());
        handle.spawn(watch(registry.clone(), Arc::new(dispatcher.clone())));
        handle.spawn(heartbeat(Arc::downgrade(&registry), dispatcher.clone()));
        handle.spawn(watch_tokens(registry.clone()));
        handle.spawn(watch_schemas(registry.clone(), dispatcher.clone()));
        Ok(registry)
    }

    /// Where this node's admin API listens, for its heartbeat.
    pub fn set_api(&self, url: String) {
        self.me.lock().unwrap_or_else(|p| p.into_inner()).api = Some(url);
    }

    fn applied(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.applied.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores the component in the module store unless it is there.
    async fn upload(&self, hash: &str, wasm: &[u8]) -> Result<(), StoreError> {
        match self.modules.info(hash).await {
            Ok(info) if !info.deleted => return Ok(()),
            _ => {}
        }
        let mut reader = wasm;
        self.modules
            .put(hash, &mut reader)
            .await
            .map(drop)
            .map_err(|e| unavailable("storing a component", e))
    }

    /// Fetches the components of `doc` this node's store lacks.
    async fn download(&self, doc: &HandlerDoc) -> Result<(), StoreError> {
        for v in &doc.versions {
            let hash = &v.module_hash;
            let store = self.store.clone();
            let h = hash.clone();
            if tokio::task::spawn_blocking(move || store.has_module(&h))
                .await
                .map_err(|e| StoreError::Sled(e.to_string()))??
            {
                continue;
            }
            let mut object = self
                .modules
                .get(hash)
                .await
                .map_err(|e| unavailable(&format!("fetching component {hash}"), e))?;
            let mut wasm = Vec::new();
            object
                .read_to_end(&mut wasm)
                .await
                .map_err(|e| unavailable(&format!("reading component {hash}"), e))?;
            let store = self.store.clone();
            let stored = tokio::task::spawn_blocking(move || store.put_module(&wasm))
                .await
                .map_err(|e| StoreError::Sled(e.to_string()))??;
            if &stored != hash {
                return Err(StoreError::Corrupt(format!(
                    "component {hash} in the module store hashes to {stored}"
                )));
            }
        }
        Ok(())
    }

    /// The current entry of `name`: its document (None when deleted or
    /// missing) and revision (None when the key never existed).
    async fn current(&self, name: &str) -> Result<(Option<HandlerDoc>, Option<u64>), StoreError> {
        let entry = self
            .kv
            .entry(name)
            .await
            .map_err(|e| unavailable("reading the registry", e))?;
        match entry {
            Some(e) if e.operation == kv::Operation::Put => {
                Ok((Some(decode(&e.value)?), Some(e.revision)))
            }
            Some(e) => Ok((None, Some(e.revision))),
            None => Ok((None, None)),
        }
    }

    /// Writes `doc` if the key is still at `revision`; `Ok(None)` when
    /// another node got there first.
    async fn commit(
        &self,
        name: &str,
        doc: &HandlerDoc,
        revision: Option<u64>,
        deleted: bool,
    ) -> Result<Option<u64>, StoreError> {
        let bytes: bytes::Bytes = serde_json::to_vec(doc)
            .map_err(|e| StoreError::Encode(e.to_string()))?
            .into();
        match (revision, deleted) {
            (Some(r), false) => match self.kv.update(name, bytes, r).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Ok(None),
                Err(e) => Err(unavailable("updating the registry", e)),
            },
            _ => match self.kv.create(name, bytes).await {
                Ok(rev) => Ok(Some(rev)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => Ok(None),
                Err(e) => Err(unavailable("adding to the registry", e)),
            },
        }
    }

    /// Applies `doc` at `revision` to the store unless a newer revision of
    /// the handler was applied already; whether it applied.
    fn apply(
        &self,
        doc: &HandlerDoc,
        revision: u64,
        audit: Option<(&str, &str, serde_json::Value)>,
    ) -> Result<bool, StoreError> {
        let mut applied = self.applied();
        if applied
            .get(&doc.handler.name)
            .is_some_and(|r| *r >= revision)
        {
            return Ok(false);
        }
        self.store
            .apply_handler(&doc.handler, &doc.versions, audit)?;
        applied.insert(doc.handler.name.clone(), revision);
        Ok(true)
    }

    /// A change from the watch: applied to the store, then the handler is
    /// reloaded (or, deleted, removed here too).
    async fn on_entry(
        self: &Arc<Self>,
        dispatcher: &Arc<Dispatcher>,
        entry: kv::Entry,
    ) -> Result<(), StoreError> {
        let name = entry.key.clone();
        if entry.operation != kv::Operation::Put {
            let (me, d) = (self.clone(), dispatcher.clone());
            let (n, revision) = (name.clone(), entry.revision);
            return tokio::task::spawn_blocking(move || {
                let store = &me.store;
                let mut applied = me.applied();
                if applied.get(&n).is_some_and(|r| *r >= revision) {
                    return Ok(());
                }
                if let Some(record) = store.handler(&n)? {
                    store.set_enabled(&n, false, Some("deleting"), "cluster")?;
                    let _ = d.reload_handler(&n);
                    // The local data goes now, in the watch's order, so a
                    // redeploy that follows is applied after it. Not
                    // waiting for this node's running deliveries first,
                    // as a delete made here does (`api/handlers.rs`):
                    // that would hold up every later registry change.
                    store.delete_handler(&n, "cluster")?;
                    d.reload_handler(&n)
                        .map_err(|e| StoreError::Sled(e.to_string()))?;
                    // The shared KV goes once this node's deliveries of
                    // the handler ended, so none of them writes after it;
                    // its keys are this incarnation's only, so a redeploy
                    // meanwhile keeps its own.
                    let idle = d.clone();
                    tokio::task::spawn_blocking(move || {
                        if !idle.wait_until_idle(&record.name) {
                            tracing::warn!(handler = %record.name, "A delivery of a handler the cluster deleted outlived its wall-clock limit; dropping its shared KV anyway");
                        }
                        idle.drop_shared_kv(&record);
                    });
                    tracing::info!(handler = %n, revision, "Deleted a handler the cluster deleted");
                }
                applied.insert(n, revision);
                Ok::<_, StoreError>(())
            })
            .await
            .map_err(|e| StoreError::Sled(e.to_string()))?;
        }
        let doc = decode(&entry.value)?;
        if doc.handler.name != name {
            return Err(StoreError::Corrupt(format!(
                "registry key {name} holds handler {}",
                doc.handler.name
            )));
        }
        self.download(&doc).await?;
        let (me, d) = (self.clone(), dispatcher.clone());
        let revision = entry.revision;
        tokio::task::spawn_blocking(move || {
            if me.apply(&doc, revision, None)? {
                d.reload_handler(&doc.handler.name)
                    .map_err(|e| StoreError::Sled(e.to_string()))?;
                tracing::info!(handler = %doc.handler.name, version = doc.handler.active_version, revision, "Applied a registry change from the cluster");
            }
            Ok::<_, StoreError>(())
        })
        .await
        .map_err(|e| StoreError::Sled(e.to_string()))?
    }
}

/// Writes this node's heartbeat every [`HEARTBEAT`] while the registry lives.
async fn heartbeat(registry: std::sync::Weak<ClusterRegistry>, dispatcher: Dispatcher) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    loop {
        tick.tick().await;
        let Some(r) = registry.upgrade() else { return };
        let (held, runs) = r.inbox.load();
        let status = {
            let mut me = r.me.lock().unwrap_or_else(|p| p.into_inner());
            me.seen_ms = now_ms();
            me.queued = dispatcher.queue_depths().iter().sum::<usize>() as u64;
            me.held = held;
            me.runs = runs;
            me.clone()
        };
        let Ok(bytes) = serde_json::to_vec(&status) else {
            continue;
        };
        if let Err(e) = r.nodes.put(&status.node, bytes.into()).await {
            tracing::debug!(error = %e, "Writing the node heartbeat failed");
        }
    }
}

/// Applies every change of the bucket, from the current value of each
/// key on; opened again when it ends (NATS gone and back).
async fn watch(registry: Arc<ClusterRegistry>, dispatcher: Arc<Dispatcher>) {
    loop {
        match registry.kv.watch_with_history(">").await {
            Ok(mut changes) => {
                while let Some(entry) = changes.next().await {
                    match entry {
                        Ok(entry) => {
                            let key = entry.key.clone();
                            if let Err(e) = registry.on_entry(&dispatcher, entry).await {
                                tracing::error!(handler = %key, error = %e, "Applying a registry change from the cluster failed");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "The registry watch failed; watching again");
                            break;
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Watching the registry failed; retrying"),
        }
        tokio::time::sleep(REWATCH_PAUSE).await;
    }
}

/// Applies every token created or revoked through any node to this
/// node's store (revocations made while it was away included: a revoked
/// token's key keeps its delete marker).
async fn watch_tokens(registry: Arc<ClusterRegistry>) {
    loop {
        match registry.tokens.watch_with_history(">").await {
            Ok(mut changes) => {
                while let Some(entry) = changes.next().await {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, "The token watch failed; watching again");
                            break;
                        }
                    };
                    let store = registry.store.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        if entry.operation == kv::Operation::Put {
                            store.insert_shared_token(&entry.value)
                        } else {
                            store.revoke_token(&entry.key).map(drop)
                        }
                    })
                    .await;
                    match applied {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "Applying a token change from the cluster failed")
                        }
                        Err(e) => tracing::error!(error = %e, "Applying a token change panicked"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Watching the tokens failed; retrying"),
        }
        tokio::time::sleep(REWATCH_PAUSE).await;
    }
}

/// Applies every schema registered or removed through any node.
async fn watch_schemas(registry: Arc<ClusterRegistry>, dispatcher: Dispatcher) {
    loop {
        match registry.schemas.watch_with_history(">").await {
            Ok(mut changes) => {
                while let Some(entry) = changes.next().await {
                    let entry = match entry {
                        Ok(e) => e,
                        Err(e) => {
                            tracing::warn!(error = %e, "The schema watch failed; watching again");
                            break;
                        }
                    };
                    let Some(event_type) =
                        super::kv::unpart(&entry.key).and_then(|b| String::from_utf8(b).ok())
                    else {
                        continue;
                    };
                    let schema = match entry.operation {
                        kv::Operation::Put => match serde_json::from_slice(&entry.value) {
                            Ok(s) => Some(s),
                            Err(e) => {
                                tracing::error!(%event_type, error = %e, "A schema in the cluster does not decode; skipped");
                                continue;
                            }
                        },
                        _ => None,
                    };
                    let d = dispatcher.clone();
                    let applied = tokio::task::spawn_blocking(move || {
                        d.apply_shared_schema(&event_type, schema.as_ref())
                    })
                    .await;
                    match applied {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => {
                            tracing::error!(error = %e, "Applying a schema change from the cluster failed")
                        }
                        Err(e) => tracing::error!(error = %e, "Applying a schema change panicked"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Watching the schemas failed; retrying"),
        }
        tokio::time::sleep(REWATCH_PAUSE).await;
    }
}

impl SharedRegistry for ClusterRegistry {
    fn put_token(&self, id: &str, stored: &[u8]) -> Result<(), StoreError> {
        self.handle.block_on(async {
            self.tokens
                .put(id, stored.to_vec().into())
                .await
                .map(drop)
                .map_err(|e| unavailable("storing a token", e))
        })
    }

    fn delete_token(&self, id: &str) -> Result<(), StoreError> {
        self.handle.block_on(async {
            self.tokens
                .delete(id)
                .await
                .map_err(|e| unavailable("revoking a token", e))
        })
    }

    fn put_schema(
        &self,
        event_type: &str,
        schema: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let key = super::kv::part(event_type.as_bytes());
        self.handle.block_on(async {
            match schema {
                Some(s) => {
                    let bytes =
                        serde_json::to_vec(s).map_err(|e| StoreError::Encode(e.to_string()))?;
                    self.schemas
                        .put(&key, bytes.into())
                        .await
                        .map(drop)
                        .map_err(|e| unavailable("storing a schema", e))
                }
                None => self
                    .schemas
                    .delete(&key)
                    .await
                    .map_err(|e| unavailable("removing a schema", e)),
            }
        })
    }

    fn node(&self) -> String {
        self.me
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .node
            .clone()
    }

    fn nodes(&self) -> Result<ClusterStatus, StoreError> {
        let me = self
            .me
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .node
            .clone();
        let nodes = self.handle.block_on(async {
            let mut keys = self
                .nodes
                .keys()
                .await
                .map_err(|e| unavailable("listing the nodes", e))?;
            let mut names = Vec::new();
            while let Some(k) = keys.next().await {
                names.push(k.map_err(|e| unavailable("listing the nodes", e))?);
            }
            let mut nodes = Vec::with_capacity(names.len());
            for n in names {
                let got = self
                    .nodes
                    .get(&n)
                    .await
                    .map_err(|e| unavailable("reading a node heartbeat", e))?;
                if let Some(b) = got {
                    match serde_json::from_slice::<NodeStatus>(&b) {
                        Ok(s) => nodes.push(s),
                        Err(e) => tracing::warn!(node = %n, error = %e, "A node heartbeat does not decode"),
                    }
                }
            }
            Ok::<_, StoreError>(nodes)
        })?;
        let mut nodes = nodes;
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(ClusterStatus {
            mode: "cluster".into(),
            node: Some(me),
            nodes,
        })
    }

    fn deploy(
        &self,
        manifest: &Manifest,
        wasm: &[u8],
        hash: &str,
        actor: &str,
    ) -> Result<(HandlerRecord, VersionRecord), StoreError> {
        let name = manifest.name.as_str();
        // Here first: the local apply below needs the bytes.
        let stored = self.store.put_module(wasm)?;
        debug_assert_eq!(stored, hash, "the store addresses modules by sha256");
        let (doc, revision) = self.handle.block_on(async {
            self.upload(hash, wasm).await?;
            for _ in 0..CAS_ATTEMPTS {
                let (current, revision) = self.current(name).await?;
                let deleted = current.is_none();
                let now = now_ms();
                let mut versions = current
                    .as_ref()
                    .map(|d| d.versions.clone())
                    .unwrap_or_default();
                let version = versions.last().map_or(1, |v| v.version.saturating_add(1));
                versions.push(VersionRecord {
                    name: name.into(),
                    version,
                    manifest: manifest.clone(),
                    module_hash: hash.into(),
                    module_bytes: wasm.len() as u64,
                    created_ms: now,
                    deployed_by: actor.into(),
                });
                let handler = match current {
                    Some(d) => HandlerRecord {
                        active_version: version,
                        config: manifest.config.clone(),
                        updated_ms: now,
                        ..d.handler
                    },
                    None => HandlerRecord {
                        name: name.into(),
                        active_version: version,
                        enabled: true,
                        disabled_reason: None,
                        config: manifest.config.clone(),
                        created_ms: now,
                        updated_ms: now,
                        incarnation: ulid::Ulid::new().to_string(),
                    },
                };
                let doc = HandlerDoc { handler, versions };
                if let Some(rev) = self.commit(name, &doc, revision, deleted).await? {
                    return Ok((doc, rev));
                }
            }
            Err(StoreError::Conflict(format!(
                "handler {name}: {CAS_ATTEMPTS} concurrent changes in a row; try again"
            )))
        })?;
        let version = doc.versions.last().cloned().ok_or_else(|| {
            StoreError::Corrupt(format!("handler {name}: a deploy without a version"))
        })?;
        let detail = serde_json::json!({"version": version.version, "module": hash, "cluster_revision": revision});
        self.apply(&doc, revision, Some((actor, "deploy", detail)))?;
        Ok((doc.handler, version))
    }

    fn publish(&self, name: &str) -> Result<(), StoreError> {
        // Held until the new revision is recorded, so the watch cannot
        // apply this node's own older change over a newer local one.
        let mut applied = self.applied();
        let local = self.store.handler(name)?;
        let local_versions = self.store.versions(name)?;
        self.handle.block_on(async {
            for _ in 0..CAS_ATTEMPTS {
                let (current, revision) = self.current(name).await?;
                let Some(handler) = local.clone() else {
                    // Deleted here: delete it everywhere.
                    if current.is_some() {
                        match self.kv.delete_expect_revision(name, revision).await {
                            Ok(()) => {
                                // The delete marker's revision, so the watch
                                // skips it here.
                                if let (_, Some(r)) = self.current(name).await? {
                                    applied.insert(name.to_string(), r);
                                }
                                return Ok(());
                            }
                            Err(e) if e.kind() == kv::DeleteErrorKind::WrongLastRevision => {
                                continue;
                            }
                            Err(e) => return Err(unavailable("deleting from the registry", e)),
                        }
                    }
                    return Ok(());
                };
                let mut by_version: std::collections::BTreeMap<u32, VersionRecord> = current
                    .as_ref()
                    .map(|d| d.versions.iter().map(|v| (v.version, v.clone())).collect())
                    .unwrap_or_default();
                for v in &local_versions {
                    by_version.entry(v.version).or_insert_with(|| v.clone());
                }
                let doc = HandlerDoc {
                    handler,
                    versions: by_version.into_values().collect(),
                };
                let deleted = current.is_none();
                if let Some(rev) = self.commit(name, &doc, revision, deleted).await? {
                    applied.insert(name.to_string(), rev);
                    return Ok(());
                }
            }
            Err(StoreError::Conflict(format!(
                "handler {name}: {CAS_ATTEMPTS} concurrent changes in a row; try again"
            )))
        })
    }
}
