//! What each endpoint's sink has done, for `GET /v1/webhooks` and
//! `/metrics`. Never a URL path or secret: only the endpoint's origin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use utoipa::ToSchema;

use super::config::WebhookConfig;
use crate::connectors::status::{LastError, SinkHealth, render_counters};
use crate::dispatch::metric_names as names;

/// Every endpoint's state. Cheap to clone; `Default` is none configured.
#[derive(Clone, Debug, Default)]
pub struct WebhookStatus {
    endpoints: Arc<BTreeMap<String, Arc<EndpointState>>>,
}

/// One endpoint's live state.
#[derive(Debug)]
pub(crate) struct EndpointState {
    kind: &'static str,
    origin: String,
    tenants: Vec<String>,
    handler: String,
    sink: SinkHealth,
    rate_limited: AtomicU64,
}

/// One endpoint in `GET /v1/webhooks`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct EndpointStatus {
    /// The endpoint's name (what `webhook.send` names).
    pub name: String,
    /// `standard`, `discord` or `slack`.
    pub kind: String,
    /// Scheme, host and port of the URL (the rest may be a secret).
    pub origin: String,
    /// Tenants allowed to use it; empty: all.
    pub tenants: Vec<String>,
    /// The built-in handler that sends (`webhook:<name>`).
    pub handler: String,
    /// Requests answered 2xx.
    pub sent: u64,
    /// Failed attempts (network, 5xx, refusals).
    pub failures: u64,
    /// Answers asking to slow down (429).
    pub rate_limited: u64,
    /// The most recent failure.
    pub last_error: Option<LastError>,
}

impl EndpointState {
    pub(crate) fn new(cfg: &WebhookConfig) -> Self {
        EndpointState {
            kind: cfg.kind.as_str(),
            origin: cfg.origin.clone(),
            tenants: cfg.tenants.clone(),
            handler: cfg.sink_name(),
            sink: SinkHealth::default(),
            rate_limited: AtomicU64::new(0),
        }
    }

    pub(crate) fn sent(&self) {
        self.sink.done();
    }

    pub(crate) fn failed(&self, message: &str) {
        self.sink.failed("delivery", message);
    }

    pub(crate) fn rate_limited(&self, message: &str) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
        self.sink.note("rate_limited", message);
    }

    fn snapshot(&self, name: &str) -> EndpointStatus {
        let sink = self.sink.snapshot();
        EndpointStatus {
            name: name.to_string(),
            kind: self.kind.to_string(),
            origin: self.origin.clone(),
            tenants: self.tenants.clone(),
            handler: self.handler.clone(),
            sent: sink.done,
            failures: sink.failures,
            rate_limited: self.rate_limited.load(Ordering::Relaxed),
            last_error: sink.last_error,
        }
    }
}

impl WebhookStatus {
    pub(crate) fn new(endpoints: impl IntoIterator<Item = (String, Arc<EndpointState>)>) -> Self {
        WebhookStatus {
            endpoints: Arc::new(endpoints.into_iter().collect()),
        }
    }

    /// Every endpoint, by name.
    pub fn snapshot(&self) -> Vec<EndpointStatus> {
        self.endpoints
            .iter()
            .map(|(name, s)| s.snapshot(name))
            .collect()
    }

    /// The Prometheus text of the webhook metrics (empty without endpoints).
    pub fn render_prometheus(&self) -> String {
        let snaps = self.snapshot();
        let rows = |get: fn(&EndpointStatus) -> u64| {
            snaps
                .iter()
                .map(|s| (s.name.as_str(), get(s) as i64))
                .collect::<Vec<_>>()
        };
        let series = [
            (
                names::WEBHOOK_SENT,
                "Webhook requests answered 2xx.",
                rows(|s| s.sent),
            ),
            (
                names::WEBHOOK_FAILURES,
                "Failed webhook attempts.",
                rows(|s| s.failures),
            ),
            (
                names::WEBHOOK_RATE_LIMITED,
                "Webhook answers asking to slow down.",
                rows(|s| s.rate_limited),
            ),
        ];
        render_counters("endpoint", &series)
    }
}
