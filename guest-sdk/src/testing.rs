//! The native fake host: run a handler with `cargo test`, no wasm needed.
//!
//! A [`TestHost`] holds what the real host would: the handler's config, its
//! per-tenant KV store (TTLs honoured against a settable fake clock), the
//! log and the events emitted by successful deliveries.
//! [`TestHost::run`] delivers one event to a handler: while it runs, the
//! SDK's host functions ([`kv`](crate::kv), [`emit`](crate::emit),
//! [`config`](crate::config()), [`now_ms`](crate::now_ms), the log macros)
//! act on that host, in the event's tenant namespace. Each test thread has
//! its own current host, so tests run in parallel safely.
//!
//! ```
//! use std::time::Duration;
//! use hookbox_sdk::testing::TestHost;
//! use hookbox_sdk::{Event, Handler, HandlerError, kv};
//!
//! struct Remember;
//! impl Handler for Remember {
//!     fn handle(event: Event) -> Result<(), HandlerError> {
//!         kv::set("last", &event.id, Some(Duration::from_secs(60)));
//!         Ok(())
//!     }
//! }
//!
//! let mut host = TestHost::new();
//! let event = Event::builder("ping").tenant("acme").id("01E").build();
//! host.run::<Remember>(event).unwrap();
//! assert_eq!(host.kv_get_string("acme", "last").as_deref(), Some("01E"));
//! assert_eq!(host.kv_get("other-tenant", "last"), None);
//! host.advance(Duration::from_secs(60));
//! assert_eq!(host.kv_get("acme", "last"), None);
//! ```
//!
//! The per-delivery limits of the SDK's calls hold as on the real host,
//! with its defaults and accounting ([`Limits`], [`TestHost::set_limits`]):
//! a log call past `log_bytes`, an emit past `emits` or `emit_bytes`, a KV
//! key and value past `kv_value_bytes` or a write that takes the tenant's
//! namespace past `kv_quota_bytes` or `kv_quota_keys` end the delivery
//! there, and an error message past `result_bytes` is `result_limit`.
//! [`TestHost::deliver`] returns the [`Outcome`] under the host's name
//! (`kv_limit`, …); [`TestHost::run`] panics saying which limit the
//! delivery hit, so a test that expected success fails as the delivery
//! would on the host.
//!
//! ```
//! use hookbox_sdk::testing::{Limits, TestHost};
//! use hookbox_sdk::{Event, Handler, HandlerError, kv};
//!
//! struct Hoard;
//! impl Handler for Hoard {
//!     fn handle(event: Event) -> Result<(), HandlerError> {
//!         kv::set("blob", vec![0u8; 100], None);
//!         Ok(())
//!     }
//! }
//!
//! let mut host = TestHost::new();
//! host.set_limits(Limits { kv_value_bytes: 64, ..Limits::default() });
//! let outcome = host.deliver::<Hoard>(Event::builder("ping").build());
//! assert_eq!(outcome.name(), "kv_limit");
//! ```
//!
//! Differences from the real host: fuel, the deadline, memory, tables and
//! the stack depend on the compiled wasm and are not modelled; nor is what
//! the handler prints (natively, stdout is the test's), or the host's
//! periodic sweep of expired keys (here they stop counting at once, as
//! they do on the host when a write would otherwise be refused). KV writes of a failed delivery are kept (the
//! real host does not roll them back either; only emitted events are
//! discarded).

mod limits;
mod state;
pub(crate) mod sys;

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log::Level;
use crate::{Event, Handler, HandlerError, Priority};

use state::State;

pub use limits::{
    EMIT_ENTRY_OVERHEAD, EMIT_OVERHEAD, FIELD_OVERHEAD, Limits, Outcome, RECORD_OVERHEAD,
};

/// One record the handler logged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// The severity.
    pub level: Level,
    /// The formatted message.
    pub message: String,
    /// The `key = value` fields, in order.
    pub fields: Vec<(String, String)>,
}

impl LogRecord {
    /// The value of the first field named `key`.
    pub fn field(&self, key: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// An event a successful delivery emitted, as the host would accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedEvent {
    /// The event type.
    pub event_type: String,
    /// The tenant (the handled event's tenant unless the handler set one).
    pub tenant: String,
    /// The payload JSON text (checked to be JSON).
    pub payload: String,
    /// The metadata.
    pub metadata: Vec<(String, String)>,
    /// The ordering key.
    pub key: Option<String>,
    /// The priority (normal unless the handler set one).
    pub priority: Priority,
}

impl EmittedEvent {
    /// Deserializes the payload.
    ///
    /// # Panics
    /// If the payload does not fit `T`: the test's expectation is wrong.
    pub fn payload<T: DeserializeOwned>(&self) -> T {
        serde_json::from_str(&self.payload).unwrap_or_else(|e| {
            panic!(
                "emitted `{}` payload does not fit: {e}\n{}",
                self.event_type, self.payload
            )
        })
    }

    /// The payload as an untyped JSON value.
    pub fn payload_value(&self) -> serde_json::Value {
        self.payload()
    }

    /// The first metadata value stored under `key`.
    pub fn metadata(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A fake Hookbox host for native tests; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct TestHost {
    state: State,
    limits: Limits,
}

impl TestHost {
    /// A host with config `{}`, an empty KV store, and the clock at
    /// [`EventBuilder::DEFAULT_TIME_MS`](crate::EventBuilder::DEFAULT_TIME_MS).
    pub fn new() -> Self {
        TestHost::default()
    }

    /// Sets the config JSON text the handler reads. It is not validated, so
    /// tests can check how a handler treats a malformed config.
    pub fn set_config_json(&mut self, json: impl Into<String>) {
        self.state.config = json.into();
    }

    /// Sets the config to `value` serialized as JSON.
    ///
    /// # Panics
    /// If `value` does not serialize.
    pub fn set_config<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.state.config = serde_json::to_string(value).expect("test config must serialize");
    }

    /// The limits deliveries run under (default: the host's defaults).
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The limits deliveries run under.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The fake clock, in milliseconds since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.state.now_ms
    }

    /// Sets the fake clock.
    pub fn set_now_ms(&mut self, now_ms: u64) {
        self.state.now_ms = now_ms;
    }

    /// Moves the fake clock forward.
    pub fn advance(&mut self, by: Duration) {
        self.state.now_ms = self.state.now_ms.saturating_add(crate::kv::duration_ms(by));
    }

    /// Stores a value in `tenant`'s namespace, as [`kv::set`](crate::kv::set)
    /// would while handling one of its events.
    pub fn kv_set(
        &mut self,
        tenant: &str,
        key: &str,
        value: impl AsRef<[u8]>,
        ttl: Option<Duration>,
    ) {
        let ttl_ms = ttl.map(crate::kv::duration_ms);
        self.state.kv_set(tenant, key, value.as_ref(), ttl_ms);
    }

    /// A live value in `tenant`'s namespace.
    pub fn kv_get(&self, tenant: &str, key: &str) -> Option<Vec<u8>> {
        self.state.kv_get(tenant, key)
    }

    /// A live value in `tenant`'s namespace as text (lossy UTF-8).
    pub fn kv_get_string(&self, tenant: &str, key: &str) -> Option<String> {
        self.kv_get(tenant, key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
    }

    /// A live JSON value in `tenant`'s namespace.
    ///
    /// # Panics
    /// If the value is not JSON that fits `T`.
    pub fn kv_get_json<T: DeserializeOwned>(&self, tenant: &str, key: &str) -> Option<T> {
        self.kv_get(tenant, key).map(|v| {
            serde_json::from_slice(&v)
                .unwrap_or_else(|e| panic!("KV `{tenant}`/`{key}` is not the expected JSON: {e}"))
        })
    }

    /// The live keys in `tenant`'s namespace, sorted.
    pub fn kv_keys(&self, tenant: &str) -> Vec<String> {
        self.state.kv_keys(tenant)
    }

    /// Everything logged so far, in order.
    pub fn logs(&self) -> &[LogRecord] {
        &self.state.logs
    }

    /// Whether some record at `level` contains `text` in its message.
    pub fn logged(&self, level: Level, text: &str) -> bool {
        self.state
            .logs
            .iter()
            .any(|r| r.level == level && r.message.contains(text))
    }

    /// Removes and returns the log so far.
    pub fn take_logs(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.state.logs)
    }

    /// The events emitted by successful deliveries (and by code run with
    /// [`within`](Self::within)), in order.
    pub fn emitted(&self) -> &[EmittedEvent] {
        &self.state.emitted
    }

    /// Removes and returns the emitted events.
    pub fn take_emitted(&mut self) -> Vec<EmittedEvent> {
        std::mem::take(&mut self.state.emitted)
    }

    /// Delivers `event` to handler `H` and returns its result.
    ///
    /// KV calls act on `event.tenant`'s namespace. Events the handler emits
    /// are kept only if it returns `Ok`, as on the real host.
    ///
    /// # Panics
    /// If the handler panics (the panic goes on), or the delivery ends at a
    /// limit (the message names the host's outcome): on the host neither
    /// is a result the handler returns. [`deliver`](Self::deliver) returns
    /// those as an [`Outcome`].
    pub fn run<H: Handler>(&mut self, event: Event) -> Result<(), HandlerError> {
        match self.deliver_inner::<H>(event) {
            Ok(Outcome::Ok) => Ok(()),
            Ok(Outcome::HandlerError(e)) => Err(e),
            Ok(other) => panic!(
                "on the host this delivery ends with `{}`: {}",
                other.name(),
                other.error().unwrap_or_default()
            ),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Delivers `event` to handler `H` and returns how the delivery ended,
    /// as the real host names it: `ok`, `handler_error`, a limit's outcome,
    /// or `trap` for a panic. Emitted events are kept only on `ok`.
    pub fn deliver<H: Handler>(&mut self, event: Event) -> Outcome {
        self.deliver_inner::<H>(event)
            .unwrap_or_else(|panic| Outcome::Trap(panic_message(panic.as_ref())))
    }

    /// The outcome, or the handler's own panic.
    fn deliver_inner<H: Handler>(
        &mut self,
        event: Event,
    ) -> Result<Outcome, Box<dyn std::any::Any + Send>> {
        let tenant = event.tenant.clone();
        let (result, pending) = self.enter(tenant, || H::handle(event));
        let outcome = match result {
            Ok(returned) => limits::returned(&self.limits, returned),
            Err(panic) => match panic.downcast::<limits::Abort>() {
                Ok(abort) => abort.0,
                Err(panic) => return Err(panic),
            },
        };
        if outcome == Outcome::Ok {
            self.state.emitted.extend(pending);
        }
        Ok(outcome)
    }

    /// Runs `f` with this host installed, as if handling an event of
    /// `tenant`: for testing helper functions that call the SDK. Events
    /// emitted by `f` are kept.
    ///
    /// # Panics
    /// If `f` panics, or a call of it passes a limit.
    pub fn within<R>(&mut self, tenant: &str, f: impl FnOnce() -> R) -> R {
        let (result, pending) = self.enter(tenant.to_owned(), f);
        match result {
            Ok(r) => {
                self.state.emitted.extend(pending);
                r
            }
            Err(panic) => match panic.downcast::<limits::Abort>() {
                Ok(abort) => panic!(
                    "on the host this call ends the delivery with `{}`: {}",
                    abort.0.name(),
                    abort.0.error().unwrap_or_default()
                ),
                Err(panic) => std::panic::resume_unwind(panic),
            },
        }
    }

    /// Installs the state for this thread, runs `f` (catching a panic, so
    /// the state always comes back), and uninstalls it.
    fn enter<R>(
        &mut self,
        tenant: String,
        f: impl FnOnce() -> R,
    ) -> (std::thread::Result<R>, Vec<EmittedEvent>) {
        assert!(
            !sys::is_installed(),
            "TestHost::run/within cannot be nested in one thread"
        );
        sys::install(sys::Active {
            state: std::mem::take(&mut self.state),
            tenant,
            pending: Vec::new(),
            limits: self.limits,
            usage: limits::Usage::default(),
        });
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        let active = sys::uninstall().expect("the installed fake host disappeared");
        self.state = active.state;
        (result, active.pending)
    }
}

/// The text of a panic payload.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "the handler panicked".to_owned())
}
