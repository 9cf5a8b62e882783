//! Fixtures for the API's tests: a real store in a temp directory, a real
//! runtime and dispatcher, the router called without a socket, and tokens
//! of each scope.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use serde_json::Value;
use tokio::sync::watch;
use tower::ServiceExt;

use super::{ApiLimits, AppState};
use crate::dispatch::{DispatchConfig, Dispatcher};
use crate::manifest::Manifest;
use crate::runtime::{Runtime, RuntimeConfig};
use crate::store::{Durability, LogEntry, Pending, Scope, Store, StoreOptions};

/// A running API over a fresh store; shuts the dispatcher down on drop.
pub(crate) struct TestApi {
    pub(crate) dispatcher: Dispatcher,
    pub(crate) router: Router,
    pub(crate) shutdown: Arc<watch::Sender<bool>>,
    /// Secrets of an admin, a publish and a read token.
    pub(crate) admin: String,
    pub(crate) publish: String,
    pub(crate) read: String,
    limits: ApiLimits,
    _dir: tempfile::TempDir,
}

/// A response, its body parsed as JSON when it is JSON (else `Value::Null`).
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) bytes: Bytes,
    pub(crate) json: Value,
}

impl Reply {
    /// Asserts the status and the error shape, and returns the message.
    #[track_caller]
    pub(crate) fn error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.headers[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("application/json"),
            "{self:?}"
        );
        assert_eq!(self.json["error"]["code"], code, "{self:?}");
        let message = self.json["error"]["message"].as_str().expect("a message");
        assert!(!message.is_empty());
        message.to_string()
    }
}

impl TestApi {
    pub(crate) fn new() -> TestApi {
        Self::with_limits(ApiLimits::default())
    }

    pub(crate) fn with_limits(limits: ApiLimits) -> TestApi {
        let dir = tempfile::tempdir().expect("tempdir");
        let opts = StoreOptions {
            cache_bytes: 8 * 1024 * 1024,
            durability: Durability::None,
            ..StoreOptions::default()
        };
        let store = Store::open(dir.path(), opts).expect("store");
        let runtime = Runtime::new(RuntimeConfig {
            pooling: false,
            ..RuntimeConfig::default()
        })
        .expect("runtime");
        let cfg = DispatchConfig {
            workers: 1,
            max_batch: 100,
            ..DispatchConfig::default()
        };
        let dispatcher = Dispatcher::start(store.clone(), runtime, cfg).expect("dispatcher");
        let token = |name: &str, scope: Scope| {
            store
                .create_token(name, &[scope], Vec::new(), Vec::new(), None)
                .expect("token")
                .1
        };
        let shutdown = Arc::new(watch::channel(false).0);
        let state = AppState {
            dispatcher: dispatcher.clone(),
            limits: limits.clone(),
            zulip: Default::default(),
            redis: Default::default(),
            webhooks: Default::default(),
        };
        TestApi {
            router: super::build(state, shutdown.clone()),
            shutdown,
            admin: token("admin", Scope::Admin),
            publish: token("publisher", Scope::Publish),
            read: token("reader", Scope::Read),
            dispatcher,
            limits,
            _dir: dir,
        }
    }

    /// The API with the given Zulip status behind `/v1/zulip` and `/metrics`.
    pub(crate) fn with_zulip(zulip: crate::connectors::zulip::ZulipStatus) -> TestApi {
        let mut api = Self::new();
        let state = AppState {
            dispatcher: api.dispatcher.clone(),
            limits: api.limits.clone(),
            zulip,
            redis: Default::default(),
            webhooks: Default::default(),
        };
        api.router = super::build(state, api.shutdown.clone());
        api
    }

    /// The API with the given Redis and webhook status behind `/v1/redis`,
    /// `/v1/webhooks` and `/metrics`.
    pub(crate) fn with_connectors(
        redis: crate::connectors::redis::RedisStatus,
        webhooks: crate::connectors::webhook::WebhookStatus,
    ) -> TestApi {
        let mut api = Self::new();
        let state = AppState {
            dispatcher: api.dispatcher.clone(),
            limits: api.limits.clone(),
            zulip: Default::default(),
            redis,
            webhooks,
        };
        api.router = super::build(state, api.shutdown.clone());
        api
    }

    pub(crate) fn limits(&self) -> ApiLimits {
        self.limits.clone()
    }

    pub(crate) fn store(&self) -> &Store {
        self.dispatcher.store()
    }

    /// A token restricted to `tenants` and `event_types`.
    pub(crate) fn scoped_token(&self, scope: Scope, tenants: &[&str], types: &[&str]) -> String {
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.store()
            .create_token("scoped", &[scope], own(tenants), own(types), None)
            .expect("token")
            .1
    }

    /// Records a handler in the store only (no compiled code: the
    /// dispatcher cannot load it, which read-only routes do not need).
    pub(crate) fn record_handler(&self, name: &str) {
        let m = Manifest::from_json(
            &serde_json::json!({
                "name": name,
                "description": "test handler",
                "subscription": {"events": ["message", "reaction.*"], "tenants": ["acme"]},
                "config": {"greeting": "hi"},
            })
            .to_string(),
        )
        .expect("manifest");
        let hash = self.store().put_module(b"not really wasm").expect("module");
        self.store().deploy(&m, &hash, 15, "test").expect("deploy");
    }

    /// Sends a request; `body` is `(content type, bytes)`.
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<(&str, Vec<u8>)>,
    ) -> Reply {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = match body {
            Some((ct, bytes)) => req.header(header::CONTENT_TYPE, ct).body(Body::from(bytes)),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let res = self.router.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            bytes,
            json,
        }
    }

    pub(crate) async fn get(&self, uri: &str, token: &str) -> Reply {
        self.send(Method::GET, uri, Some(token), None).await
    }

    /// Sends a JSON body.
    pub(crate) async fn json(&self, method: Method, uri: &str, token: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("json");
        self.send(method, uri, Some(token), Some(("application/json", bytes)))
            .await
    }
}

/// Accepts a fresh `message` event of `tenant` for handler `h` and returns
/// its pending delivery with a failed (`trap`) first attempt at `time_ms`,
/// for tests to finish or dead-letter.
pub(crate) fn failed_attempt(api: &TestApi, tenant: &str, time_ms: u64) -> (Pending, LogEntry) {
    let ev = crate::event::EventInput {
        tenant: tenant.into(),
        ..crate::event::EventInput::new("message", &serde_json::json!({}))
    }
    .accept("test", 0, 1024)
    .unwrap();
    api.store()
        .accept(&[(ev.clone(), vec!["h".into()])])
        .unwrap();
    let p = api
        .store()
        .pending()
        .unwrap()
        .into_iter()
        .find(|p| p.event_id == ev.id)
        .unwrap();
    let entry = LogEntry {
        handler: "h".into(),
        version: 1,
        event_id: ev.id,
        event_type: "message".into(),
        tenant: tenant.into(),
        outcome: "trap".into(),
        attempt: 1,
        time_ms,
        ..LogEntry::default()
    };
    (p, entry)
}

impl Drop for TestApi {
    fn drop(&mut self) {
        self.dispatcher.shutdown(Duration::ZERO);
    }
}
