//! A Redis event bus as a source and a sink — the only code that speaks
//! Redis (through the `redis` crate).
//!
//! Applications publish JSON envelopes on `<prefix>:<eventType>` (pub/sub)
//! or add them to a stream; [`source`] accepts each as a Hookbox event from
//! `redis:<name>` (type `eventType`, tenant `payload.tenantId`,
//! idempotency key `id`; see [`envelope`]). Handlers emit
//! [`PUBLISH_EVENT`] to put envelopes on the bus; the built-in handler
//! `redis:<name>` publishes them ([`sink`]). Status and counters per bus
//! are in [`RedisStatus`] (`GET /v1/redis`, `/metrics`).

mod config;
mod envelope;
mod sink;
mod source;
mod status;

use std::sync::Arc;

use redis::IntoConnectionInfo;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connectors::intake::Intake;
use crate::connectors::{Connector, ConnectorError, sink_policy};
use crate::dispatch::{Builtin, DispatchConfig, Dispatcher};
use crate::manifest::Subscription;

pub use config::{RedisConfig, RedisMode, RedisSection, validate_buses};
pub use status::{BusCounters, BusSinkStatus, BusStatus, RedisStatus};

/// Emitted by handlers to publish an event on the bus: `{"event_type":
/// …, "payload": {…}, "tenant"?: …}`.
pub const PUBLISH_EVENT: &str = "redis.publish";

/// The sink's retries: a Redis restart takes seconds to minutes.
const SINK_MAX_ATTEMPTS: u32 = 10;
const SINK_INITIAL_BACKOFF_MS: u64 = 500;
const SINK_MAX_BACKOFF_MS: u64 = 5 * 60 * 1_000;

/// The `publisher` field of envelopes the sink of bus `name` publishes.
fn publisher(name: &str) -> String {
    format!("hookbox:{name}")
}

/// The configured buses, ready to start.
#[derive(Debug, Default)]
pub struct Redis {
    buses: Vec<Bus>,
    status: RedisStatus,
}

#[derive(Debug)]
struct Bus {
    cfg: RedisConfig,
    client: redis::Client,
    state: Arc<status::BusState>,
}

impl Redis {
    /// Checks the buses and builds their clients. No I/O.
    pub fn new(buses: Vec<RedisConfig>) -> Result<Redis, ConnectorError> {
        validate_buses(&buses).map_err(ConnectorError)?;
        let buses = buses
            .into_iter()
            .map(|cfg| {
                let client = client(&cfg)
                    .map_err(|e| ConnectorError(format!("[[redis]] {:?}: {e}", cfg.name)))?;
                let state = Arc::new(status::BusState::new(&cfg));
                Ok(Bus { cfg, client, state })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        let status = RedisStatus::new(buses.iter().map(|b| (b.cfg.name.clone(), b.state.clone())));
        Ok(Redis { buses, status })
    }

    /// Live status of every bus.
    pub fn status(&self) -> RedisStatus {
        self.status.clone()
    }
}

impl Connector for Redis {
    /// The sink of the bus that has one.
    fn builtins(&self, runtime: tokio::runtime::Handle) -> Vec<Builtin> {
        self.buses
            .iter()
            .filter(|b| b.cfg.sink)
            .map(|b| Builtin {
                name: b.cfg.sink_name(),
                subscription: Subscription {
                    events: vec![PUBLISH_EVENT.into()],
                    tenants: Vec::new(),
                    filters: Vec::new(),
                },
                delivery: sink_policy(
                    SINK_MAX_ATTEMPTS,
                    SINK_INITIAL_BACKOFF_MS,
                    SINK_MAX_BACKOFF_MS,
                    false,
                    b.cfg.sink_concurrency,
                ),
                handler: Arc::new(sink::Sink::new(
                    b.cfg.clone(),
                    b.client.clone(),
                    runtime.clone(),
                    b.state.clone(),
                )),
            })
            .collect()
    }

    /// Starts a source task per bus that has one, on the current runtime.
    fn start(
        &self,
        dispatcher: &Dispatcher,
        limits: &DispatchConfig,
        stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        self.buses
            .iter()
            .filter(|b| b.cfg.source)
            .map(|b| {
                let intake = Intake::new(
                    dispatcher.clone(),
                    format!("redis:{}", b.cfg.name),
                    limits.max_batch,
                    stop.clone(),
                    b.state.source.clone(),
                );
                let source = source::Source::new(
                    b.cfg.clone(),
                    b.client.clone(),
                    intake,
                    b.state.clone(),
                    limits.max_payload_bytes,
                );
                tokio::spawn(source.run())
            })
            .collect()
    }
}

/// The client of a bus: its URL with the configured user and password.
fn client(cfg: &RedisConfig) -> Result<redis::Client, String> {
    let info = cfg
        .url
        .as_str()
        .into_connection_info()
        .map_err(|e| e.to_string())?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = &cfg.username {
        settings = settings.set_username(user);
    }
    if let Some(password) = &cfg.password {
        settings = settings.set_password(password.expose());
    }
    let info = info.set_redis_settings(settings);
    match &cfg.tls {
        None => redis::Client::open(info),
        Some(tls) => redis::Client::build_with_tls(
            info,
            redis::TlsCertificates {
                client_tls: tls
                    .client
                    .as_ref()
                    .map(|(cert, key)| redis::ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.expose().as_bytes().to_vec(),
                    }),
                root_cert: tls.ca_pem.clone(),
            },
        ),
    }
    .map_err(|e| e.to_string())
}
