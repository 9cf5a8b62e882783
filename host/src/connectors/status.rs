//! What every connector's status report is made of: the last error, a
//! source's health (connected or not, errors, waits for room, the last
//! event), a sink's health (calls done, failures, the last failure), and
//! the Prometheus rendering of per-connector series. Each system's status
//! type (`GET /v1/zulip`, `/v1/redis`, `/v1/webhooks`) adds its own
//! fields and counters around these. Updated by the source tasks and the
//! sinks, read by the API; atomics and short-held locks only.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;
use utoipa::ToSchema;

use crate::event::now_ms;

/// An error and when it happened.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct LastError {
    /// What kind of error: `network`, `server`, `rate_limited`, `auth`,
    /// `bad_queue`, `request`, `malformed`, `busy`, `store`,
    /// `invalid_event` (Zulip); `redis`, `busy`, `store`, `malformed`,
    /// `refused`, `publish` (Redis); `delivery`, `rate_limited` (webhooks).
    pub kind: String,
    /// What happened (never contains a key, password or secret).
    pub message: String,
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
}

impl LastError {
    /// An error that happened now.
    pub(crate) fn now(kind: &str, message: &str) -> LastError {
        LastError {
            kind: kind.to_string(),
            message: message.to_string(),
            time_ms: now_ms(),
        }
    }
}

/// Locks plain status data; a panic elsewhere leaves nothing half-updated
/// that matters, so a poisoned lock is used as is.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn add(a: &AtomicU64, n: u64) {
    a.fetch_add(n, Ordering::Relaxed);
}

fn get(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

/// A source's health: what its connection and its accepts are doing.
#[derive(Debug, Default)]
pub(crate) struct SourceHealth {
    connected: AtomicBool,
    errors: AtomicU64,
    busy: AtomicU64,
    last: Mutex<SourceLast>,
}

#[derive(Debug, Default)]
struct SourceLast {
    event_ms: Option<u64>,
    error: Option<LastError>,
}

/// A copy of a [`SourceHealth`].
#[derive(Debug)]
pub(crate) struct SourceSnapshot {
    pub connected: bool,
    pub errors: u64,
    pub busy: u64,
    pub last_event_ms: Option<u64>,
    pub last_error: Option<LastError>,
}

impl SourceHealth {
    /// The connection is up.
    pub(crate) fn connected(&self) {
        self.connected.store(true, Ordering::Relaxed);
    }

    /// A request to the outside system failed: the connection is down.
    pub(crate) fn failed(&self, kind: &str, message: &str) {
        add(&self.errors, 1);
        self.connected.store(false, Ordering::Relaxed);
        self.note(kind, message);
    }

    /// The connection is down without an error (a lost queue, a restart).
    pub(crate) fn disconnected(&self) {
        self.connected.store(false, Ordering::Relaxed);
    }

    /// A problem on our side (`busy`: the delivery queue is full; `store`);
    /// the connection is fine. Called by the intake.
    pub(crate) fn local_error(&self, kind: &str, message: &str) {
        if kind == "busy" {
            add(&self.busy, 1);
        }
        self.note(kind, message);
    }

    /// Records `message` as the last error without counting it.
    pub(crate) fn note(&self, kind: &str, message: &str) {
        lock(&self.last).error = Some(LastError::now(kind, message));
    }

    /// `n` events were accepted now.
    pub(crate) fn accepted(&self, n: u64) {
        if n > 0 {
            lock(&self.last).event_ms = Some(now_ms());
        }
    }

    pub(crate) fn snapshot(&self) -> SourceSnapshot {
        let last = lock(&self.last);
        SourceSnapshot {
            connected: self.connected.load(Ordering::Relaxed),
            errors: get(&self.errors),
            busy: get(&self.busy),
            last_event_ms: last.event_ms,
            last_error: last.error.clone(),
        }
    }
}

/// A sink's health: calls that did what was asked, failed attempts, the
/// last failure.
#[derive(Debug, Default)]
pub(crate) struct SinkHealth {
    done: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<LastError>>,
}

/// A copy of a [`SinkHealth`].
#[derive(Debug)]
pub(crate) struct SinkSnapshot {
    pub done: u64,
    pub failures: u64,
    pub last_error: Option<LastError>,
}

impl SinkHealth {
    /// A call did what was asked.
    pub(crate) fn done(&self) {
        add(&self.done, 1);
    }

    /// An attempt failed.
    pub(crate) fn failed(&self, kind: &str, message: &str) {
        add(&self.failures, 1);
        self.note(kind, message);
    }

    /// Records `message` as the last error without counting a failure
    /// (a rate limit: backpressure, not a failed attempt).
    pub(crate) fn note(&self, kind: &str, message: &str) {
        *lock(&self.last_error) = Some(LastError::now(kind, message));
    }

    pub(crate) fn snapshot(&self) -> SinkSnapshot {
        SinkSnapshot {
            done: get(&self.done),
            failures: get(&self.failures),
            last_error: lock(&self.last_error).clone(),
        }
    }
}

/// One metric: name, help, and a value per connector.
pub(crate) type Series<'a> = (&'static str, &'static str, Vec<(&'a str, i64)>);

/// Counters in the Prometheus text format, one line per connector
/// labelled `label="<name>"`; nothing for a metric without connectors.
pub(crate) fn render_counters(label: &str, series: &[Series<'_>]) -> String {
    render("counter", label, series)
}

/// Gauges, like [`render_counters`].
pub(crate) fn render_gauges(label: &str, series: &[Series<'_>]) -> String {
    render("gauge", label, series)
}

fn render(kind: &str, label: &str, series: &[Series<'_>]) -> String {
    let mut out = String::new();
    for (name, help, rows) in series {
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (who, value) in rows {
            let _ = writeln!(out, "{name}{{{label}=\"{who}\"}} {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_line_per_connector() {
        let text = render_counters(
            "bus",
            &[
                ("hookbox_x_total", "Xs.", vec![("a", 1), ("b", 2)]),
                ("hookbox_y_total", "Ys.", vec![]),
            ],
        );
        assert_eq!(
            text,
            "# HELP hookbox_x_total Xs.\n# TYPE hookbox_x_total counter\n\
             hookbox_x_total{bus=\"a\"} 1\nhookbox_x_total{bus=\"b\"} 2\n"
        );
        assert!(render_gauges("bus", &[("g", "G.", vec![("a", -1)])]).contains("g{bus=\"a\"} -1"));
    }

    #[test]
    fn health_follows_what_happened() {
        let source = SourceHealth::default();
        source.connected();
        source.accepted(0);
        assert!(source.snapshot().last_event_ms.is_none());
        source.accepted(3);
        source.local_error("busy", "the delivery queue is full");
        let s = source.snapshot();
        assert!(s.connected && s.last_event_ms.is_some());
        assert_eq!((s.busy, s.errors), (1, 0));
        source.failed("network", "connection refused");
        let s = source.snapshot();
        assert!(!s.connected);
        assert_eq!(s.errors, 1);
        assert_eq!(s.last_error.unwrap().kind, "network");

        let sink = SinkHealth::default();
        sink.done();
        sink.note("rate_limited", "wait 1s");
        sink.failed("publish", "connection reset");
        let s = sink.snapshot();
        assert_eq!((s.done, s.failures), (1, 1));
        assert_eq!(s.last_error.unwrap().message, "connection reset");
    }
}
