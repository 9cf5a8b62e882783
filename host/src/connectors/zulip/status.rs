//! What each realm's source and sink are doing, for `GET /v1/zulip` and
//! `/metrics`: connection state, queue position, the last error, counters.
//! Updated by the source task and the sink; read by the API. Short-held
//! locks only: a realm changes state a few times per poll.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use utoipa::ToSchema;

use crate::connectors::status::{
    LastError, SinkHealth, SourceHealth, lock, render_counters, render_gauges,
};
use crate::dispatch::metric_names as names;

/// The status of every configured realm. Cheap to clone; `Default` is no
/// realms (Zulip not configured).
#[derive(Clone, Debug, Default)]
pub struct ZulipStatus {
    realms: Arc<BTreeMap<String, Arc<RealmState>>>,
}

/// One realm's live state.
#[derive(Debug)]
pub(crate) struct RealmState {
    site: String,
    sink_enabled: bool,
    /// Shared with the source's intake.
    pub(crate) source: Arc<SourceHealth>,
    sink: SinkHealth,
    fields: Mutex<Fields>,
    counters: Counters,
}

#[derive(Debug, Default)]
struct Fields {
    queue_id: Option<String>,
    last_event_id: Option<i64>,
    event_types: Option<Vec<String>>,
    bot_user_id: Option<u64>,
}

#[derive(Debug, Default)]
struct Counters {
    events: AtomicU64,
    heartbeats: AtomicU64,
    skipped: AtomicU64,
    own_skipped: AtomicU64,
    registrations: AtomicU64,
    queue_losses: AtomicU64,
    rate_limited: AtomicU64,
}

/// One realm in `GET /v1/zulip`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RealmStatus {
    /// The realm's name (the tenant of its events).
    pub name: String,
    /// The Zulip server.
    pub site: String,
    /// Whether the last register or poll succeeded.
    pub connected: bool,
    /// The event queue being polled.
    pub queue_id: Option<String>,
    /// The last event id accepted (or heartbeat acknowledged).
    pub last_event_id: Option<i64>,
    /// The event types the queue was registered for; absent means all.
    pub event_types: Option<Vec<String>>,
    /// When the last event was accepted, ms since the Unix epoch.
    pub last_event_ms: Option<u64>,
    /// The source's most recent error.
    pub last_error: Option<LastError>,
    /// Source counters.
    pub counters: SourceCounters,
    /// The bot's user id (from `GET /users/me`), once known.
    pub bot_user_id: Option<u64>,
    /// The reply sink.
    pub sink: SinkStatus,
}

/// Counters of a realm's event source since the daemon started.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SourceCounters {
    /// Zulip events accepted as Hookbox events.
    pub events: u64,
    /// Heartbeats acknowledged.
    pub heartbeats: u64,
    /// Events skipped as invalid (no type, refused at accept).
    pub skipped: u64,
    /// The bot's own events (its messages, reactions and edits) skipped
    /// because the realm does not deliver them (`own_events = false`).
    pub own_skipped: u64,
    /// Queues registered.
    pub registrations: u64,
    /// Queues lost (`BAD_EVENT_QUEUE_ID`).
    pub queue_losses: u64,
    /// 429 answers.
    pub rate_limited: u64,
    /// Accepts refused because the delivery queue was full.
    pub busy: u64,
    /// Failed requests of any kind.
    pub errors: u64,
}

/// The reply sink of a realm.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SinkStatus {
    /// Whether `zulip.*` actions of this realm are performed.
    pub enabled: bool,
    /// The built-in handler that performs them.
    pub handler: String,
    /// REST calls that succeeded.
    pub sent: u64,
    /// REST calls that failed (each failed attempt).
    pub failures: u64,
    /// The most recent failure.
    pub last_error: Option<LastError>,
}

impl ZulipStatus {
    pub(crate) fn new(realms: impl IntoIterator<Item = (String, Arc<RealmState>)>) -> Self {
        ZulipStatus {
            realms: Arc::new(realms.into_iter().collect()),
        }
    }

    /// Every realm, by name.
    pub fn snapshot(&self) -> Vec<RealmStatus> {
        self.realms
            .iter()
            .map(|(name, state)| state.snapshot(name))
            .collect()
    }

    /// The Prometheus text of the Zulip metrics (empty without realms).
    pub fn render_prometheus(&self) -> String {
        let snaps = self.snapshot();
        let rows = |get: &dyn Fn(&RealmStatus) -> i64| {
            snaps
                .iter()
                .map(|s| (s.name.as_str(), get(s)))
                .collect::<Vec<_>>()
        };
        let count = |get: &dyn Fn(&RealmStatus) -> u64| rows(&|s| get(s) as i64);
        let mut out = render_gauges(
            "realm",
            &[
                (
                    names::ZULIP_CONNECTED,
                    "Whether the realm's last register or poll succeeded.",
                    rows(&|s| i64::from(s.connected)),
                ),
                (
                    names::ZULIP_LAST_EVENT_ID,
                    "The last Zulip event id acknowledged.",
                    rows(&|s| s.last_event_id.unwrap_or(-1)),
                ),
            ],
        );
        out.push_str(&render_counters(
            "realm",
            &[
                (
                    names::ZULIP_EVENTS,
                    "Zulip events accepted.",
                    count(&|s| s.counters.events),
                ),
                (
                    names::ZULIP_HEARTBEATS,
                    "Zulip heartbeats acknowledged.",
                    count(&|s| s.counters.heartbeats),
                ),
                (
                    names::ZULIP_SKIPPED,
                    "Zulip events skipped as invalid.",
                    count(&|s| s.counters.skipped),
                ),
                (
                    names::ZULIP_REGISTRATIONS,
                    "Zulip event queues registered.",
                    count(&|s| s.counters.registrations),
                ),
                (
                    names::ZULIP_QUEUE_LOSSES,
                    "Zulip event queues lost (BAD_EVENT_QUEUE_ID).",
                    count(&|s| s.counters.queue_losses),
                ),
                (
                    names::ZULIP_RATE_LIMITED,
                    "Zulip 429 answers to the event source.",
                    count(&|s| s.counters.rate_limited),
                ),
                (
                    names::ZULIP_ERRORS,
                    "Failed Zulip requests of the event source.",
                    count(&|s| s.counters.errors),
                ),
                (
                    names::ZULIP_SINK_SENT,
                    "Zulip REST calls made by the reply sink.",
                    count(&|s| s.sink.sent),
                ),
                (
                    names::ZULIP_SINK_FAILURES,
                    "Failed Zulip REST calls of the reply sink.",
                    count(&|s| s.sink.failures),
                ),
            ],
        ));
        out
    }
}

impl RealmState {
    pub(crate) fn new(site: &str, sink_enabled: bool) -> Self {
        RealmState {
            site: site.to_string(),
            sink_enabled,
            source: Arc::default(),
            sink: SinkHealth::default(),
            fields: Mutex::default(),
            counters: Counters::default(),
        }
    }

    fn snapshot(&self, name: &str) -> RealmStatus {
        let f = lock(&self.fields);
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let source = self.source.snapshot();
        let sink = self.sink.snapshot();
        RealmStatus {
            name: name.to_string(),
            site: self.site.clone(),
            connected: source.connected,
            queue_id: f.queue_id.clone(),
            last_event_id: f.last_event_id,
            event_types: f.event_types.clone(),
            last_event_ms: source.last_event_ms,
            last_error: source.last_error,
            counters: SourceCounters {
                events: get(&c.events),
                heartbeats: get(&c.heartbeats),
                skipped: get(&c.skipped),
                own_skipped: get(&c.own_skipped),
                registrations: get(&c.registrations),
                queue_losses: get(&c.queue_losses),
                rate_limited: get(&c.rate_limited),
                busy: source.busy,
                errors: source.errors,
            },
            bot_user_id: f.bot_user_id,
            sink: SinkStatus {
                enabled: self.sink_enabled,
                handler: format!("zulip:{name}"),
                sent: sink.done,
                failures: sink.failures,
                last_error: sink.last_error,
            },
        }
    }

    /// A queue is in use (registered or resumed).
    pub(crate) fn queue(&self, queue_id: &str, last_event_id: i64, types: Option<&[String]>) {
        let mut f = lock(&self.fields);
        f.queue_id = Some(queue_id.to_string());
        f.last_event_id = Some(last_event_id);
        f.event_types = types.map(<[String]>::to_vec);
    }

    pub(crate) fn registered(&self) {
        self.counters.registrations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn connected(&self) {
        self.source.connected();
    }

    /// Events up to `last_event_id` were accepted (`accepted` of them as
    /// events, `heartbeats` acknowledged).
    pub(crate) fn acknowledged(&self, last_event_id: i64, accepted: u64, heartbeats: u64) {
        let c = &self.counters;
        c.events.fetch_add(accepted, Ordering::Relaxed);
        c.heartbeats.fetch_add(heartbeats, Ordering::Relaxed);
        lock(&self.fields).last_event_id = Some(last_event_id);
        self.source.accepted(accepted);
    }

    pub(crate) fn own_skipped(&self, n: u64) {
        self.counters.own_skipped.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn bot_user_id(&self, id: u64) {
        lock(&self.fields).bot_user_id = Some(id);
    }

    pub(crate) fn skipped(&self, why: &str) {
        self.counters.skipped.fetch_add(1, Ordering::Relaxed);
        self.source.note("invalid_event", why);
    }

    pub(crate) fn queue_lost(&self) {
        self.counters.queue_losses.fetch_add(1, Ordering::Relaxed);
        lock(&self.fields).queue_id = None;
        self.source.disconnected();
    }

    /// A failed request (`kind` from [`super::protocol::Failure::kind`]).
    pub(crate) fn failed(&self, kind: &str, message: &str) {
        if kind == "rate_limited" {
            self.counters.rate_limited.fetch_add(1, Ordering::Relaxed);
        }
        self.source.failed(kind, message);
    }

    pub(crate) fn sink_sent(&self) {
        self.sink.done();
    }

    pub(crate) fn sink_failed(&self, kind: &str, message: &str) {
        self.sink.failed(kind, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_and_metrics_follow_the_events() {
        let acme = Arc::new(RealmState::new("https://z.acme.test", true));
        let status = ZulipStatus::new([("acme".to_string(), acme.clone())]);
        acme.registered();
        acme.queue("q1", -1, Some(&["message".to_string()]));
        acme.connected();
        acme.acknowledged(4, 3, 2);
        acme.failed("rate_limited", "rate limited; retry after 1.0s");
        acme.sink_sent();
        acme.sink_failed("request", "HTTP 400: no such stream");

        let [s] = status.snapshot().try_into().unwrap();
        assert_eq!(s.name, "acme");
        assert!(!s.connected);
        assert_eq!(s.queue_id.as_deref(), Some("q1"));
        assert_eq!(s.last_event_id, Some(4));
        assert_eq!(s.event_types, Some(vec!["message".to_string()]));
        assert_eq!((s.counters.events, s.counters.heartbeats), (3, 2));
        assert_eq!((s.counters.errors, s.counters.rate_limited), (1, 1));
        assert_eq!(s.last_error.unwrap().kind, "rate_limited");
        assert_eq!((s.sink.sent, s.sink.failures), (1, 1));
        assert_eq!(s.sink.handler, "zulip:acme");

        let text = status.render_prometheus();
        assert!(
            text.contains("hookbox_zulip_connected{realm=\"acme\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("hookbox_zulip_last_event_id{realm=\"acme\"} 4"),
            "{text}"
        );
        assert!(
            text.contains("hookbox_zulip_events_total{realm=\"acme\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("hookbox_zulip_rate_limited_total{realm=\"acme\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("hookbox_zulip_sink_failures_total{realm=\"acme\"} 1"),
            "{text}"
        );

        acme.queue_lost();
        let [s] = status.snapshot().try_into().unwrap();
        assert_eq!((s.queue_id, s.counters.queue_losses), (None, 1));
        assert!(ZulipStatus::default().render_prometheus().is_empty());
    }
}
