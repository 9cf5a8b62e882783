//! The test node: a store, dispatcher and Zulip realm on a data directory,
//! with the `test:recorder` built-in handler, and helpers shared by the
//! Zulip tests.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use hookbox::connectors::zulip::{RealmConfig, RealmStatus, ZulipStatus};
use hookbox::connectors::{Connectors, ConnectorsConfig, Running, Secret};
use hookbox::dispatch::{Builtin, BuiltinError, BuiltinHandler, DispatchConfig, Dispatcher};
use hookbox::event::Event;
use hookbox::manifest::{DeliveryPolicy, Manifest, Subscription};
use hookbox::store::{Durability, Store, StoreOptions};
use hookbox_tests::fake_zulip::{FakeZulip, WAIT, fixture_events};
use serde_json::{Value, json};

pub(crate) const EMAIL: &str = "hookbox-bot@zulip.test";
pub(crate) const KEY: &str = "fake-api-key-0123456789";
pub(crate) const REALM: &str = "acme";

/// One delivery the recorder saw.
#[derive(Clone, Debug)]
pub(crate) struct Seen {
    pub(crate) event_type: String,
    pub(crate) tenant: String,
    pub(crate) source: String,
    pub(crate) payload: Value,
    pub(crate) metadata: BTreeMap<String, String>,
}

impl Seen {
    pub(crate) fn zulip_id(&self) -> i64 {
        self.metadata["zulip_event_id"]
            .parse()
            .expect("an event id")
    }
}

/// A built-in handler that records every delivery; while its gate is
/// closed, deliveries wait (at most [`WAIT`]).
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    seen: Mutex<Vec<Seen>>,
    closed: Mutex<bool>,
    gate: Condvar,
}

impl Recorder {
    pub(crate) fn set_closed(&self, closed: bool) {
        *self.closed.lock().unwrap() = closed;
        self.gate.notify_all();
    }
}

impl BuiltinHandler for Recorder {
    fn deliver(&self, e: &Event, _attempt: u32) -> Result<(), BuiltinError> {
        let closed = self.closed.lock().unwrap();
        drop(self.gate.wait_timeout_while(closed, WAIT, |c| *c).unwrap());
        self.seen.lock().unwrap().push(Seen {
            event_type: e.event_type.clone(),
            tenant: e.tenant.clone(),
            source: e.source.clone(),
            payload: serde_json::from_str(e.payload.get()).expect("JSON payload"),
            metadata: e.metadata.clone(),
        });
        Ok(())
    }
}

/// A store, dispatcher and Zulip realm on a data directory, wired through
/// the connector layer as the daemon wires it.
pub(crate) struct Node {
    pub(crate) dispatcher: Dispatcher,
    sources: Running,
    status: ZulipStatus,
    recorder: Arc<Recorder>,
}

/// The realm as tests configure it: short backoffs and timeouts.
pub(crate) fn realm(fake: &FakeZulip, event_types: Option<&[&str]>) -> RealmConfig {
    let mut r = RealmConfig::new(REALM, &fake.site(), EMAIL, Secret::new(KEY));
    r.event_types = event_types.map(|t| t.iter().map(|s| s.to_string()).collect());
    r.initial_backoff = Duration::from_millis(20);
    r.max_backoff = Duration::from_millis(200);
    r.poll_timeout = Duration::from_secs(5);
    r.request_timeout = Duration::from_secs(5);
    r
}

/// An example handler's manifest (config replaced when given) and component.
pub(crate) fn example(name: &str, config: Option<Value>) -> (Manifest, Vec<u8>) {
    let (_, path) = hookbox_tests::guests::EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no example {name}"));
    let manifest_path = format!(
        "{}/../example-handlers/{name}/manifest.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut manifest =
        Manifest::from_json(&std::fs::read_to_string(&manifest_path).expect("manifest"))
            .expect("valid manifest");
    if let Some(c) = config {
        manifest.config = c;
    }
    (manifest, hookbox_tests::read(path))
}

pub(crate) async fn deploy(dispatcher: &Dispatcher, handlers: Vec<(Manifest, Vec<u8>)>) {
    let d = dispatcher.clone();
    tokio::task::spawn_blocking(move || {
        for (manifest, wasm) in handlers {
            d.deploy(manifest, &wasm, "test").expect("deploy");
        }
    })
    .await
    .unwrap();
}

impl Node {
    pub(crate) async fn start(
        dir: &Path,
        realm: RealmConfig,
        handlers: Vec<(Manifest, Vec<u8>)>,
    ) -> Node {
        let cfg = DispatchConfig {
            workers: 2,
            ..DispatchConfig::default()
        };
        Self::start_with(dir, realm, handlers, cfg, Arc::default()).await
    }

    pub(crate) async fn start_with(
        dir: &Path,
        realm: RealmConfig,
        handlers: Vec<(Manifest, Vec<u8>)>,
        cfg: DispatchConfig,
        recorder: Arc<Recorder>,
    ) -> Node {
        let store_dir = dir.join("store");
        let store = tokio::task::spawn_blocking(move || {
            let opts = StoreOptions {
                cache_bytes: 8 << 20,
                durability: Durability::None,
                lock_wait: std::time::Duration::from_secs(60),
                ..StoreOptions::default()
            };
            Store::open(&store_dir, opts).expect("store")
        })
        .await
        .unwrap();
        let connectors = Connectors::new(ConnectorsConfig {
            zulip: vec![realm],
            ..ConnectorsConfig::default()
        })
        .expect("realm config");
        let mut builtins = connectors.builtins(tokio::runtime::Handle::current());
        // The source accepts at most 100 events at once.
        let limits = DispatchConfig {
            max_batch: 100,
            ..cfg.clone()
        };
        builtins.push(Builtin {
            name: "test:recorder".into(),
            subscription: Subscription {
                events: vec!["*".into()],
                tenants: vec![],
                filters: vec![],
            },
            // One at a time: recorded in dispatch order.
            delivery: DeliveryPolicy {
                concurrency: 1,
                ..DeliveryPolicy::default()
            },
            handler: recorder.clone(),
        });
        let runtime = hookbox_tests::runtime().clone();
        let dispatcher = tokio::task::spawn_blocking(move || {
            Dispatcher::start_with(store, runtime, cfg, builtins).expect("dispatcher")
        })
        .await
        .unwrap();
        deploy(&dispatcher, handlers).await;
        let sources = connectors.start(&dispatcher, &limits);
        Node {
            dispatcher,
            sources,
            status: connectors.zulip_status(),
            recorder,
        }
    }

    /// Stops the source, then the dispatcher, and lets go of the store.
    pub(crate) async fn stop(self) {
        self.sources.shutdown(Duration::from_secs(5)).await;
        let d = self.dispatcher;
        tokio::task::spawn_blocking(move || d.shutdown(Duration::from_secs(5)))
            .await
            .unwrap();
    }

    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.recorder.seen.lock().unwrap().clone()
    }

    /// The events from Zulip (and the source's own `zulip.queue_lost`).
    pub(crate) fn zulip_events(&self) -> Vec<Seen> {
        let source = format!("zulip:{REALM}");
        self.seen()
            .into_iter()
            .filter(|s| s.source == source)
            .collect()
    }

    pub(crate) fn realm_status(&self) -> RealmStatus {
        let [s] = self.status.snapshot().try_into().expect("one realm");
        s
    }

    /// Waits until `done` holds, or panics naming `what` after [`WAIT`].
    pub(crate) async fn wait_for(&self, what: &str, done: impl Fn(&Node) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; status: {:#?}; seen: {:#?}",
                self.realm_status(),
                self.seen()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The fixture `message` event in channel Denmark (id 1), topic `test`,
/// with `content` as its HTML.
pub(crate) fn channel_message(message_id: u64, content: &str) -> Value {
    let mut m = fixture_events()
        .into_iter()
        .find(|e| e["type"] == "message")
        .expect("a message fixture");
    m["message"]["id"] = json!(message_id);
    m["message"]["content"] = json!(content);
    m
}

pub(crate) fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
