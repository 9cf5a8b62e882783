//! Outgoing webhooks: a sink per `[[webhook]]` endpoint (Standard Webhooks
//! signed JSON, Discord, Slack). A handler emits [`SEND_EVENT`] with
//! `{"endpoint": "<name>", "body": …}`; the built-in handler
//! `webhook:<name>` — subscribed to the events whose `endpoint` is its
//! name, from the endpoint's `tenants` — POSTs the body with the queue's
//! retries, breaker and dead letters ([`sink`]).
//!
//! An event naming an endpoint that is not configured (or one its tenant
//! may not use) matches no sink: it is accepted, and `GET /v1/events/{id}`
//! shows it went to no handler.

mod config;
mod sign;
mod sink;
mod status;

use std::sync::Arc;

use crate::connectors::{Connector, ConnectorError, sink_policy};
use crate::dispatch::Builtin;
use crate::manifest::{Filter, Subscription};

pub use config::{SigningKey, WebhookConfig, WebhookKind, WebhookSection, validate_webhooks};
pub use status::{EndpointStatus, WebhookStatus};

/// Emitted by handlers to call a configured endpoint.
pub const SEND_EVENT: &str = "webhook.send";

/// Receivers' outages are usually minutes: retries spread over about half
/// an hour before dead-lettering (rate limits do not use attempts).
const SINK_MAX_ATTEMPTS: u32 = 8;
const SINK_INITIAL_BACKOFF_MS: u64 = 1_000;
const SINK_MAX_BACKOFF_MS: u64 = 10 * 60 * 1_000;

/// The configured endpoints, ready to run.
#[derive(Debug, Default)]
pub struct Webhooks {
    endpoints: Vec<(WebhookConfig, reqwest::Client, Arc<status::EndpointState>)>,
    status: WebhookStatus,
}

impl Webhooks {
    /// Checks the endpoints and builds their HTTP clients. No I/O.
    pub fn new(hooks: Vec<WebhookConfig>) -> Result<Webhooks, ConnectorError> {
        validate_webhooks(&hooks).map_err(ConnectorError)?;
        let endpoints = hooks
            .into_iter()
            .map(|cfg| {
                let client = reqwest::Client::builder()
                    .user_agent(concat!("hookbox/", env!("CARGO_PKG_VERSION")))
                    // The config is the allow-list: a redirect could lead anywhere.
                    .redirect(reqwest::redirect::Policy::none())
                    .connect_timeout(cfg.timeout)
                    .build()
                    .map_err(|e| ConnectorError(format!("[[webhook]] {:?}: {e}", cfg.name)))?;
                let state = Arc::new(status::EndpointState::new(&cfg));
                Ok((cfg, client, state))
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        let status = WebhookStatus::new(
            endpoints
                .iter()
                .map(|(c, _, s)| (c.name.clone(), s.clone())),
        );
        Ok(Webhooks { endpoints, status })
    }

    /// Each endpoint's counters.
    pub fn status(&self) -> WebhookStatus {
        self.status.clone()
    }
}

/// Sinks only: no source.
impl Connector for Webhooks {
    /// One sink per endpoint.
    fn builtins(&self, runtime: tokio::runtime::Handle) -> Vec<Builtin> {
        self.endpoints
            .iter()
            .map(|(cfg, client, state)| Builtin {
                name: cfg.sink_name(),
                subscription: Subscription {
                    events: vec![SEND_EVENT.into()],
                    tenants: cfg.tenants.clone(),
                    filters: vec![Filter::Equals {
                        pointer: "/endpoint".into(),
                        value: cfg.name.clone().into(),
                    }],
                },
                delivery: sink_policy(
                    SINK_MAX_ATTEMPTS,
                    SINK_INITIAL_BACKOFF_MS,
                    SINK_MAX_BACKOFF_MS,
                    true,
                    cfg.concurrency,
                ),
                handler: Arc::new(sink::Sink::new(
                    cfg.clone(),
                    client.clone(),
                    runtime.clone(),
                    state.clone(),
                )),
            })
            .collect()
    }
}
