//! What each bus's source and sink are doing, for `GET /v1/redis` and
//! `/metrics`: connection state, the last error, counters. Updated by the
//! source task and the sink, read by the API; short-held locks only.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

use super::config::RedisConfig;
use crate::connectors::status::{
    LastError, SinkHealth, SourceHealth, lock, render_counters, render_gauges,
};
use crate::dispatch::metric_names as names;

/// The status of every configured bus. Cheap to clone; `Default` is none.
#[derive(Clone, Debug, Default)]
pub struct RedisStatus {
    buses: Arc<BTreeMap<String, Arc<BusState>>>,
}

/// One bus's live state.
#[derive(Debug)]
pub(crate) struct BusState {
    fixed: Fixed,
    /// Shared with the source's intake.
    pub(crate) source: Arc<SourceHealth>,
    sink: SinkHealth,
    fields: Mutex<Fields>,
    c: Counters,
}

#[derive(Debug, Clone)]
struct Fixed {
    url: String,
    mode: &'static str,
    subscribed: String,
    source: bool,
    sink: bool,
}

#[derive(Debug, Default)]
struct Fields {
    last_entry: Option<String>,
    last_skipped: Option<LastError>,
}

#[derive(Debug, Default)]
struct Counters {
    received: AtomicU64,
    accepted: AtomicU64,
    duplicates: AtomicU64,
    malformed: AtomicU64,
    refused: AtomicU64,
    own: AtomicU64,
    connects: AtomicU64,
}

/// One bus in `GET /v1/redis`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BusStatus {
    /// The bus's name (events come from `redis:<name>`).
    pub name: String,
    /// The server (without credentials).
    pub url: String,
    /// `pubsub` or `stream`.
    pub mode: String,
    /// The channel pattern (pub/sub) or `stream/group/consumer` read.
    pub subscribed: String,
    /// Whether the source reads this bus.
    pub source: bool,
    /// Whether the source's connection is up.
    pub connected: bool,
    /// When the last event was accepted, ms since the Unix epoch.
    pub last_event_ms: Option<u64>,
    /// The last stream entry acknowledged (stream mode).
    pub last_entry: Option<String>,
    /// The source's most recent connection or command error.
    pub last_error: Option<LastError>,
    /// The most recent skipped message and why (names its channel or entry).
    pub last_skipped: Option<LastError>,
    /// Source counters.
    pub counters: BusCounters,
    /// The `redis.publish` sink.
    pub sink: BusSinkStatus,
}

/// Counters of a bus's source since the daemon started.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BusCounters {
    /// Messages read.
    pub received: u64,
    /// Accepted as new events.
    pub accepted: u64,
    /// Accepted before (same `id`): not delivered again.
    pub duplicates: u64,
    /// Skipped: not JSON, not an envelope, no `eventType` or `tenantId`, too large.
    pub malformed: u64,
    /// Skipped: refused at accept (a payload schema, a bound).
    pub refused: u64,
    /// Skipped: published by this bus's own sink.
    pub own: u64,
    /// Connections made.
    pub connects: u64,
    /// Failed connections and commands.
    pub errors: u64,
    /// Accepts that waited for room in the delivery queue.
    pub busy: u64,
}

/// A bus's sink.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct BusSinkStatus {
    /// Whether `redis.publish` events are published on this bus.
    pub enabled: bool,
    /// The built-in handler that publishes (`redis:<name>`).
    pub handler: String,
    /// Envelopes published.
    pub published: u64,
    /// Failed publish attempts.
    pub failures: u64,
    /// The most recent failure.
    pub last_error: Option<LastError>,
}

impl RedisStatus {
    pub(crate) fn new(buses: impl IntoIterator<Item = (String, Arc<BusState>)>) -> Self {
        RedisStatus {
            buses: Arc::new(buses.into_iter().collect()),
        }
    }

    /// Every bus, by name.
    pub fn snapshot(&self) -> Vec<BusStatus> {
        self.buses.iter().map(|(n, s)| s.snapshot(n)).collect()
    }

    /// The Prometheus text of the Redis metrics (empty without buses).
    pub fn render_prometheus(&self) -> String {
        let snaps = self.snapshot();
        let rows = |get: &dyn Fn(&BusStatus) -> u64| {
            snaps
                .iter()
                .map(|s| (s.name.as_str(), get(s) as i64))
                .collect::<Vec<_>>()
        };
        let mut out = render_gauges(
            "bus",
            &[(
                names::REDIS_CONNECTED,
                "Whether the bus's source is connected.",
                rows(&|s| u64::from(s.connected)),
            )],
        );
        out.push_str(&render_counters(
            "bus",
            &[
                (
                    names::REDIS_RECEIVED,
                    "Redis messages read.",
                    rows(&|s| s.counters.received),
                ),
                (
                    names::REDIS_ACCEPTED,
                    "Redis messages accepted as events (duplicates included).",
                    rows(&|s| s.counters.accepted + s.counters.duplicates),
                ),
                (
                    names::REDIS_SKIPPED,
                    "Redis messages skipped as malformed or refused.",
                    rows(&|s| s.counters.malformed + s.counters.refused),
                ),
                (
                    names::REDIS_ERRORS,
                    "Failed Redis connections and commands of the source.",
                    rows(&|s| s.counters.errors),
                ),
                (
                    names::REDIS_SINK_PUBLISHED,
                    "Envelopes published by the Redis sink.",
                    rows(&|s| s.sink.published),
                ),
                (
                    names::REDIS_SINK_FAILURES,
                    "Failed publishes of the Redis sink.",
                    rows(&|s| s.sink.failures),
                ),
            ],
        ));
        out
    }
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

impl BusState {
    pub(crate) fn new(cfg: &RedisConfig) -> Self {
        let subscribed = match cfg.mode {
            super::RedisMode::Pubsub => cfg.pattern(),
            super::RedisMode::Stream => format!("{}/{}/{}", cfg.stream, cfg.group, cfg.consumer),
        };
        BusState {
            fixed: Fixed {
                url: cfg.url.clone(),
                mode: cfg.mode.as_str(),
                subscribed,
                source: cfg.source,
                sink: cfg.sink,
            },
            source: Arc::default(),
            sink: SinkHealth::default(),
            fields: Mutex::default(),
            c: Counters::default(),
        }
    }

    fn snapshot(&self, name: &str) -> BusStatus {
        let f = lock(&self.fields);
        let c = &self.c;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let source = self.source.snapshot();
        let sink = self.sink.snapshot();
        BusStatus {
            name: name.to_string(),
            url: self.fixed.url.clone(),
            mode: self.fixed.mode.to_string(),
            subscribed: self.fixed.subscribed.clone(),
            source: self.fixed.source,
            connected: source.connected,
            last_event_ms: source.last_event_ms,
            last_entry: f.last_entry.clone(),
            last_error: source.last_error,
            last_skipped: f.last_skipped.clone(),
            counters: BusCounters {
                received: get(&c.received),
                accepted: get(&c.accepted),
                duplicates: get(&c.duplicates),
                malformed: get(&c.malformed),
                refused: get(&c.refused),
                own: get(&c.own),
                connects: get(&c.connects),
                errors: source.errors,
                busy: source.busy,
            },
            sink: BusSinkStatus {
                enabled: self.fixed.sink,
                handler: format!("redis:{name}"),
                published: sink.done,
                failures: sink.failures,
                last_error: sink.last_error,
            },
        }
    }

    pub(crate) fn connected(&self) {
        add(&self.c.connects, 1);
        self.source.connected();
    }

    pub(crate) fn failed(&self, message: &str) {
        self.source.failed("redis", message);
    }

    pub(crate) fn received(&self, n: u64) {
        add(&self.c.received, n);
    }

    pub(crate) fn own(&self) {
        add(&self.c.own, 1);
    }

    /// A message was skipped; `kind` is `malformed` or `refused`.
    pub(crate) fn skipped(&self, kind: &str, message: &str) {
        add(
            if kind == "refused" {
                &self.c.refused
            } else {
                &self.c.malformed
            },
            1,
        );
        lock(&self.fields).last_skipped = Some(LastError::now(kind, message));
    }

    pub(crate) fn taken(&self, accepted: u64, duplicates: u64, last_entry: Option<&str>) {
        add(&self.c.accepted, accepted);
        add(&self.c.duplicates, duplicates);
        self.source.accepted(accepted);
        if let Some(e) = last_entry {
            lock(&self.fields).last_entry = Some(e.to_string());
        }
    }

    pub(crate) fn published(&self) {
        self.sink.done();
    }

    pub(crate) fn publish_failed(&self, message: &str) {
        self.sink.failed("publish", message);
    }
}
