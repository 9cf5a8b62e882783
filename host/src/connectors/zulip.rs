//! Zulip as an event source and a reply sink — the only code that speaks
//! Zulip's REST API.
//!
//! - **Source** ([`source`]): per `[[zulip]]` realm, a task registers an
//!   event queue and long-polls it, accepting each Zulip event as a Hookbox
//!   event (type `type` or `type.op`, tenant = the realm's name, source
//!   `zulip:<realm>`, payload = the event's JSON as sent) and saving the
//!   queue position only after the accept succeeded. A lost queue is
//!   replaced and announced with a [`QUEUE_LOST_EVENT`].
//! - **Sink** ([`sink`]): per realm, a built-in dispatcher handler
//!   `zulip:<realm>` performs the [`SEND_MESSAGE_EVENT`],
//!   [`ADD_REACTION_EVENT`], [`REMOVE_REACTION_EVENT`] and
//!   [`UPDATE_MESSAGE_EVENT`] events handlers
//!   emit for that tenant, with the dispatcher's retries and dead letters.
//! - **Status** ([`ZulipStatus`]): per realm connection state, queue
//!   position, last error and counters for `GET /v1/zulip` and `/metrics`.
//!
//! A connector like the others (see [`crate::connectors`]): the source
//! accepts through the shared intake, the sink is a built-in handler,
//! status is made of the shared source and sink health, the API key is a
//! [`Secret`](crate::connectors::Secret) read like every connector secret.

mod client;
mod config;
mod mapping;
mod protocol;
mod sink;
mod source;
mod status;

use std::sync::Arc;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::connectors::intake::Intake;
use crate::connectors::{Connector, ConnectorError, sink_policy};
use crate::dispatch::{Builtin, DispatchConfig, Dispatcher};
use crate::manifest::Subscription;

pub use config::{RealmConfig, RealmSection, validate_realms};
pub use status::{RealmStatus, SinkStatus, SourceCounters, ZulipStatus};

/// Emitted by handlers to post a message (payload: the SDK's `SendMessage`).
pub const SEND_MESSAGE_EVENT: &str = "zulip.send_message";
/// Emitted by handlers to add an emoji reaction to a message.
pub const ADD_REACTION_EVENT: &str = "zulip.add_reaction";
/// Emitted by handlers to remove the bot's emoji reaction from a message.
pub const REMOVE_REACTION_EVENT: &str = "zulip.remove_reaction";
/// Emitted by handlers to edit or move a message.
pub const UPDATE_MESSAGE_EVENT: &str = "zulip.update_message";
/// Accepted when a realm's event queue was lost and replaced: events
/// between the old queue's last id and the new queue may be missing.
pub const QUEUE_LOST_EVENT: &str = "zulip.queue_lost";

/// The sink's retry policy: Zulip outages and rate limits are usually
/// minutes, so retries spread over about half an hour before dead-lettering.
const SINK_MAX_ATTEMPTS: u32 = 8;
const SINK_INITIAL_BACKOFF_MS: u64 = 1_000;
const SINK_MAX_BACKOFF_MS: u64 = 10 * 60 * 1_000;

/// The configured realms, ready to start.
#[derive(Debug)]
pub struct Zulip {
    realms: Vec<Realm>,
    status: ZulipStatus,
}

#[derive(Debug)]
struct Realm {
    cfg: RealmConfig,
    client: client::Client,
    state: Arc<status::RealmState>,
}

impl Zulip {
    /// Checks the realms and builds their HTTP clients. No I/O.
    pub fn new(realms: Vec<RealmConfig>) -> Result<Zulip, ConnectorError> {
        validate_realms(&realms).map_err(ConnectorError)?;
        let realms = realms
            .into_iter()
            .map(|cfg| {
                let client = client::Client::new(&cfg).map_err(ConnectorError)?;
                let state = Arc::new(status::RealmState::new(&cfg.site, cfg.sink));
                Ok(Realm { cfg, client, state })
            })
            .collect::<Result<Vec<_>, ConnectorError>>()?;
        let status = ZulipStatus::new(realms.iter().map(|r| (r.cfg.name.clone(), r.state.clone())));
        Ok(Zulip { realms, status })
    }

    /// Live status of every realm.
    pub fn status(&self) -> ZulipStatus {
        self.status.clone()
    }
}

impl Connector for Zulip {
    /// The sinks of the realms that have one, as built-in handlers. Their
    /// REST calls run on `runtime` (the daemon's); the dispatcher's worker
    /// threads wait for them.
    fn builtins(&self, runtime: tokio::runtime::Handle) -> Vec<Builtin> {
        self.realms
            .iter()
            .filter(|r| r.cfg.sink)
            .map(|r| Builtin {
                name: r.cfg.sink_name(),
                subscription: Subscription {
                    events: vec![
                        SEND_MESSAGE_EVENT.into(),
                        ADD_REACTION_EVENT.into(),
                        REMOVE_REACTION_EVENT.into(),
                        UPDATE_MESSAGE_EVENT.into(),
                    ],
                    tenants: vec![r.cfg.name.clone()],
                    filters: Vec::new(),
                },
                // Replies keyed by conversation stay in order.
                delivery: sink_policy(
                    SINK_MAX_ATTEMPTS,
                    SINK_INITIAL_BACKOFF_MS,
                    SINK_MAX_BACKOFF_MS,
                    true,
                    r.cfg.sink_concurrency,
                ),
                handler: Arc::new(sink::Sink::new(
                    r.cfg.name.clone(),
                    r.client.clone(),
                    runtime.clone(),
                    r.cfg.request_timeout,
                    r.state.clone(),
                )),
            })
            .collect()
    }

    /// Starts one source task per realm on the current tokio runtime,
    /// each accepting through an [`Intake`] as `zulip:<realm>`.
    fn start(
        &self,
        dispatcher: &Dispatcher,
        limits: &DispatchConfig,
        stop: &watch::Receiver<bool>,
    ) -> Vec<JoinHandle<()>> {
        self.realms
            .iter()
            .map(|r| {
                let intake = Intake::new(
                    dispatcher.clone(),
                    format!("zulip:{}", r.cfg.name),
                    limits.max_batch,
                    stop.clone(),
                    r.state.source.clone(),
                );
                let source =
                    source::Source::new(r.cfg.clone(), r.client.clone(), intake, r.state.clone());
                tokio::spawn(source.run())
            })
            .collect()
    }
}
