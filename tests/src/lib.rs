//! Shared helpers of the Hookbox end-to-end tests: where `build.rs` put the
//! guest components, one runtime per test binary, each component compiled
//! once (compiling costs ~100 ms and more), and event and request builders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use hookbox::event::{Event, EventInput};
use hookbox::kv::{Kv, MemoryKv};
use hookbox::limits::Limits;
use hookbox::manifest::Capability;
use hookbox::runtime::{DeliveryReport, DeliveryRequest, HandlerModule, Runtime, RuntimeConfig};

pub mod daemon;
pub mod fake_zulip;
pub mod nats_server;
pub mod receiver;
pub mod redis_server;
mod service;
pub mod toolchains;

/// Paths of the components built by `build.rs`.
pub mod guests {
    include!(concat!(env!("OUT_DIR"), "/guests.rs"));
}

/// The Zulip fixture events (`tests/fixtures/zulip/zulip-events.json`).
pub const ZULIP_EVENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/zulip/zulip-events.json"
);

/// A runtime sized for tests: a small pool (it reserves address space per
/// slot) that still holds every concurrent test delivery.
pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        pool_instances: 64,
        pool_memory_bytes: 64 << 20,
        ..RuntimeConfig::default()
    }
}

/// The runtime shared by the tests of one binary.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| Runtime::new(test_config()).expect("the test runtime starts"))
}

/// Reads a guest component.
pub fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// The component at `path`, compiled with every capability, once per test
/// binary.
pub fn module(path: &'static str) -> HandlerModule {
    /// One cell per path: the map lock is held only to find the cell, so
    /// different components compile in parallel and each exactly once.
    type Cells = HashMap<&'static str, Arc<OnceLock<HandlerModule>>>;
    static MODULES: OnceLock<Mutex<Cells>> = OnceLock::new();
    let cell = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap()
        .entry(path)
        .or_default()
        .clone();
    cell.get_or_init(|| {
        runtime()
            .compile(&read(path), &Capability::all())
            .unwrap_or_else(|e| panic!("compiling {path}: {e}"))
            .module
    })
    .clone()
}

/// An accepted event of `event_type` for `tenant` with a JSON payload.
pub fn event(event_type: &str, tenant: &str, payload: &serde_json::Value) -> Event {
    let mut input = EventInput::new(event_type, payload);
    input.tenant = tenant.to_string();
    input
        .accept("test", 0, 1 << 20)
        .expect("a valid test event")
}

/// One delivery, described with defaults: handler `test`, attempt 1,
/// default limits, config `{}`, a fresh in-memory KV, no reuse.
#[derive(Debug)]
pub struct Delivery {
    /// The handler name (KV namespace, warm-instance key).
    pub handler: String,
    /// The event.
    pub event: Event,
    /// Attempt number; most test guests read it as their parameter.
    pub attempt: u32,
    /// Budgets.
    pub limits: Limits,
    /// Config JSON text.
    pub config: String,
    /// The KV store.
    pub kv: Arc<MemoryKv>,
    /// Reuse setting.
    pub reuse: u32,
    /// The grant (default: every capability).
    pub capabilities: std::collections::BTreeSet<Capability>,
}

impl Delivery {
    /// A delivery of a `test` event for tenant `acme` with `attempt` as the
    /// guest's parameter.
    pub fn new(attempt: u32) -> Self {
        Delivery {
            handler: "test".into(),
            event: event("test", "acme", &serde_json::json!({})),
            attempt,
            limits: Limits::default(),
            config: "{}".into(),
            kv: Arc::new(MemoryKv::new()),
            reuse: 0,
            capabilities: Capability::all(),
        }
    }

    /// Changes the limits.
    pub fn limits(mut self, f: impl FnOnce(&mut Limits)) -> Self {
        f(&mut self.limits);
        self
    }

    /// Runs it against `module` on the shared runtime.
    pub fn run(&self, module: &HandlerModule) -> DeliveryReport {
        self.run_on(runtime(), module)
    }

    /// Runs it against `module` on `runtime`.
    pub fn run_on(&self, runtime: &Runtime, module: &HandlerModule) -> DeliveryReport {
        let kv: &dyn Kv = self.kv.as_ref();
        runtime.deliver(
            module,
            DeliveryRequest {
                handler: &self.handler,
                event: &self.event,
                attempt: self.attempt,
                limits: &self.limits,
                config: &self.config,
                kv,
                kv_incarnation: "",
                capabilities: &self.capabilities,
                reuse: self.reuse,
            },
        )
    }
}
