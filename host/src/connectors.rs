//! The connector layer: every system Hookbox talks to, as sources and
//! sinks of one shape (Vector's `sources/` and `sinks/`).
//!
//! - A **source** turns outside messages into accepted events and keeps its
//!   own cursor: it acknowledges a message to its system only after
//!   [`Dispatcher::accept`] returned, so what it acknowledged is durable. It
//!   is a task started by [`Connectors::start`] and stopped by
//!   [`Running::shutdown`]; [`intake`] is the accept loop they share
//!   (batches, a full queue waited out, refused events set aside) and
//!   [`backoff`] their reconnection schedule.
//! - A **sink** is a [`Builtin`] handler named `<kind>:<name>` that performs
//!   one kind of side effect for the events handlers emit (`zulip.*`,
//!   `redis.publish`, `webhook.send`), with the queue's retries, circuit
//!   breaker and dead letters. Handlers never touch the network; the config
//!   file names every endpoint, so it is the allow-list.
//!
//! - What they share besides: secrets read from a file or an environment
//!   variable ([`Secret`]), status made of a source's and a sink's health
//!   ([`status`]), names and bounds checked alike ([`check_name`],
//!   [`bounded`]), a sink's retry policy ([`sink_policy`]), its calls run
//!   on the daemon's runtime ([`block_on`]) and its backpressure ([`Pause`]).
//!
//! Systems: Zulip ([`zulip`], source and sink), a Redis event bus
//! ([`redis`], source and sink), outgoing webhooks ([`webhook`]: Standard
//! Webhooks, Discord, Slack; sink only). Adding one (Slack events, a
//! Discord gateway, Kafka) is a module here: its config section
//! implementing [`Section`] (read once, secrets included), its running
//! side implementing [`Connector`] (sinks as built-in handlers, sources as
//! tasks accepting through an `Intake`), its status made of the shared
//! health types — plus a field in [`ConnectorsConfig`] and [`Connectors`].

pub(crate) mod backoff;
mod intake;
pub mod redis;
mod secret;
mod status;
pub mod webhook;
pub mod zulip;

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::dispatch::{Builtin, DispatchConfig, Dispatcher};
use crate::manifest::DeliveryPolicy;
use zulip::{RealmConfig, Zulip, ZulipStatus};

pub use secret::Secret;
pub use status::LastError;

/// A connector setup problem (a config that passed parsing but cannot run).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConnectorError(pub String);

/// A connector's config section as written in the file (`[[zulip]]`,
/// `[[redis]]`, `[[webhook]]`): read once into its validated config,
/// secrets included, then checked as a list. Nothing reads the file or the
/// environment later.
pub trait Section {
    /// The validated config.
    type Config;
    /// Checks one section and reads its secrets through `env` (injected so
    /// tests need not touch the process environment). Errors name the
    /// section and the setting, never a secret's value.
    fn resolve(&self, env: &dyn Fn(&str) -> Option<String>) -> Result<Self::Config, String>;
    /// Checks the list as a whole (how many, unique names).
    fn check_all(all: &[Self::Config]) -> Result<(), String>;
}

/// Resolves every section of one kind, then checks the list.
pub fn resolve_all<S: Section>(
    sections: &[S],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<S::Config>, String> {
    let all = sections
        .iter()
        .map(|s| s.resolve(env))
        .collect::<Result<Vec<_>, _>>()?;
    S::check_all(&all)?;
    Ok(all)
}

/// A system's running side: its sinks as built-in handlers, its sources
/// as tasks on the current tokio runtime.
pub(crate) trait Connector {
    /// The sinks, for [`Dispatcher::start_with`]. Their network calls run
    /// on `runtime` (the daemon's).
    fn builtins(&self, runtime: tokio::runtime::Handle) -> Vec<Builtin>;

    /// Starts the sources, each accepting through an `Intake` within the
    /// dispatcher's `limits` and stopping when `stop` turns true.
    fn start(
        &self,
        _dispatcher: &Dispatcher,
        _limits: &DispatchConfig,
        _stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        Vec::new()
    }
}

/// Every configured connector, ready to start.
#[derive(Debug)]
pub struct Connectors {
    zulip: Zulip,
    redis: redis::Redis,
    webhooks: webhook::Webhooks,
}

/// The connectors' configuration (already validated by `crate::config`).
#[derive(Clone, Debug, Default)]
pub struct ConnectorsConfig {
    /// `[[zulip]]` realms.
    pub zulip: Vec<RealmConfig>,
    /// `[[redis]]` buses.
    pub redis: Vec<redis::RedisConfig>,
    /// `[[webhook]]` endpoints.
    pub webhooks: Vec<webhook::WebhookConfig>,
}

impl Connectors {
    /// Builds every connector's clients. No I/O.
    pub fn new(cfg: ConnectorsConfig) -> Result<Connectors, ConnectorError> {
        Ok(Connectors {
            zulip: Zulip::new(cfg.zulip)?,
            redis: redis::Redis::new(cfg.redis)?,
            webhooks: webhook::Webhooks::new(cfg.webhooks)?,
        })
    }

    fn all(&self) -> [&dyn Connector; 3] {
        [&self.zulip, &self.redis, &self.webhooks]
    }

    /// Every sink, as built-in handlers for [`Dispatcher::start_with`].
    /// Their network calls run on `runtime` (the daemon's).
    pub fn builtins(&self, runtime: tokio::runtime::Handle) -> Vec<Builtin> {
        self.all()
            .iter()
            .flat_map(|c| c.builtins(runtime.clone()))
            .collect()
    }

    /// Starts every source on the current tokio runtime, within the
    /// dispatcher's batch and payload limits.
    pub fn start(&self, dispatcher: &Dispatcher, limits: &DispatchConfig) -> Running {
        let (stop, rx) = watch::channel(false);
        let tasks = self
            .all()
            .iter()
            .flat_map(|c| c.start(dispatcher, limits, &rx))
            .collect();
        Running { stop, tasks }
    }

    /// The Zulip realms' live status.
    pub fn zulip_status(&self) -> ZulipStatus {
        self.zulip.status()
    }

    /// The Redis buses' live status.
    pub fn redis_status(&self) -> redis::RedisStatus {
        self.redis.status()
    }

    /// The webhook endpoints' counters.
    pub fn webhook_status(&self) -> webhook::WebhookStatus {
        self.webhooks.status()
    }
}

/// The running sources.
#[derive(Debug)]
pub struct Running {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stops every source: a read in flight is abandoned (its system keeps
    /// the messages that were not acknowledged: a Zulip queue, a Redis
    /// stream's pending entries), an accept in flight finishes and its
    /// position is saved. Waits up to `grace`, then aborts what is left.
    pub async fn shutdown(self, grace: Duration) {
        self.stop.send_replace(true);
        let deadline = tokio::time::Instant::now() + grace;
        for task in self.tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout_at(deadline, task).await.is_err() {
                tracing::warn!("A source did not stop in time; aborted");
                abort.abort();
            }
        }
    }
}

/// A sink's delivery policy: `max_attempts` with pauses from
/// `initial_backoff_ms` doubling up to `max_backoff_ms` (20% jitter);
/// `ordered` keeps deliveries that share a key in order; `concurrency`
/// caps how many dispatcher workers the sink holds at once.
pub(crate) fn sink_policy(
    max_attempts: u32,
    initial_backoff_ms: u64,
    max_backoff_ms: u64,
    ordered: bool,
    concurrency: u32,
) -> DeliveryPolicy {
    DeliveryPolicy {
        max_attempts,
        initial_backoff_ms,
        backoff_factor: 2.0,
        max_backoff_ms,
        jitter: 0.2,
        ordered,
        concurrency,
        ..DeliveryPolicy::default()
    }
}

/// A sink's network call did not come back.
#[derive(Debug)]
pub(crate) struct NoAnswer;

/// Runs `fut` on `runtime` and waits for it on this (dispatcher worker)
/// thread, for at most `timeout` (the call's own timeout plus slack). The
/// worker threads are not runtime threads, so they may block.
pub(crate) fn block_on<T: Send + 'static>(
    runtime: &tokio::runtime::Handle,
    timeout: Duration,
    fut: impl Future<Output = T> + Send + 'static,
) -> Result<T, NoAnswer> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv_timeout(timeout).map_err(|_| NoAnswer)
}

/// A sink's backpressure: until when its far side asked it to wait.
/// A delivery that reaches the sink inside the window is put back the
/// same way, without a call.
#[derive(Debug, Default)]
pub(crate) struct Pause(std::sync::Mutex<Option<std::time::Instant>>);

impl Pause {
    /// What is left of the window, if any.
    pub(crate) fn remaining(&self) -> Option<Duration> {
        let until = (*self.0.lock().unwrap_or_else(|p| p.into_inner()))?;
        until.checked_duration_since(std::time::Instant::now())
    }

    /// Opens a window of `wait` from now.
    pub(crate) fn until(&self, wait: Duration) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now() + wait);
    }
}

/// The error of a sink asked to slow down for `wait`: backpressure (the
/// dispatcher holds the sink's deliveries; no attempt or breaker failure).
pub(crate) fn rate_limited(message: String, wait: Duration) -> crate::dispatch::BuiltinError {
    crate::dispatch::BuiltinError::rate_limited(message, wait)
}

/// Connector names (`[[redis]] name`, `[[webhook]] name`): 1–64 of
/// `a-z 0-9 . _ -`, starting with a letter or digit. They are metric
/// labels and part of sink handler names.
pub(crate) fn check_name(section: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "[[{section}]] name {name:?}: use 1 to 64 of a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit"
        ))
    }
}

/// Checks that names are unique within a section list.
pub(crate) fn check_unique<'a>(
    section: &str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(format!("[[{section}]] name {n:?} is used twice"));
        }
    }
    Ok(())
}

/// A duration setting within `[min, max]`, else an error naming it.
pub(crate) fn bounded(
    what: &str,
    v: Option<Duration>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, String> {
    match v {
        Some(d) if d < min || d > max => Err(format!(
            "`{what}` must be between {} and {}",
            humantime::format_duration(min),
            humantime::format_duration(max)
        )),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

/// Text for logs and dead letters from untrusted bytes (a response body):
/// at most `max` bytes, lossy UTF-8, control characters replaced.
pub(crate) fn cut(bytes: &[u8], max: usize) -> String {
    let mut s: String = String::from_utf8_lossy(&bytes[..bytes.len().min(max)])
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if bytes.len() > max {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_durations_and_cut_text() {
        for bad in ["", "Acme", "-a", "a b", "a:b", &"a".repeat(65)] {
            assert!(check_name("redis", bad).is_err(), "{bad:?}");
        }
        assert!(check_name("redis", "bus-1.a_b").is_ok());
        let err = check_unique("webhook", ["a", "b", "a"]).unwrap_err();
        assert!(err.contains("\"a\" is used twice"), "{err}");
        let s = Duration::from_secs;
        assert_eq!(bounded("t", None, s(5), s(1), s(9)).unwrap(), s(5));
        let err = bounded("t", Some(s(10)), s(5), s(1), s(9)).unwrap_err();
        assert!(err.contains("`t` must be between 1s and 9s"), "{err}");
        assert_eq!(cut(b"ok\n\x00done", 100), "ok  done");
        assert_eq!(cut("héllo".as_bytes(), 3), "hé…");
    }

    #[test]
    fn block_on_waits_for_the_runtime_or_gives_up() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let got = block_on(rt.handle(), Duration::from_secs(5), async { 7 });
        assert_eq!(got.unwrap(), 7);
        let never = block_on(
            rt.handle(),
            Duration::from_millis(20),
            std::future::pending::<()>(),
        );
        assert!(never.is_err());
    }
}
