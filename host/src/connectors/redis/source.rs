//! A bus's source: one task that keeps a connection to Redis and turns the
//! bus's messages into accepted events.
//!
//! - **pub/sub**: `PSUBSCRIBE <prefix>:*`; messages that arrive together
//!   are accepted as one batch. An idle connection is pinged, so a dead one
//!   is noticed. Pub/sub keeps nothing for a subscriber that is away: what
//!   is published while the source is disconnected (Hookbox down or
//!   restarting, the network cut) is lost, and so is what Redis drops when
//!   a slow subscriber passes its `client-output-buffer-limit`.
//! - **stream**: a consumer group (created at the stream's start with
//!   `MKSTREAM` if missing). First this consumer's pending entries — read
//!   before but not acknowledged, e.g. when Hookbox was killed — are read
//!   again from `0`, then new ones with `>`; each batch is accepted, then
//!   `XACK`ed, so an entry is acknowledged only after Hookbox durably
//!   accepted it. Entries read twice carry the same idempotency key (the
//!   envelope's `id`, else the entry id), so they are accepted once.
//!
//! Every message that is not an event (see `envelope`), and every event the
//! dispatcher refuses (a payload schema), is counted, logged with the
//! reason and its channel or entry, acknowledged, and skipped: it never
//! stops the source. Connection failures back off exponentially with
//! jitter up to `max_backoff`.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::AsyncConnectionConfig;
use redis::streams::StreamReadReply;

use super::config::{RedisConfig, RedisMode};
use super::envelope::{Mapped, Origin, map_message};
use super::status::BusState;
use crate::connectors::backoff::Backoff;
use crate::connectors::intake::{Intake, Stopped};
use crate::event::EventInput;

/// A subscription this long without a message is pinged.
const PING_EVERY: Duration = Duration::from_secs(15);
/// How long one `XREADGROUP` waits for new entries.
const BLOCK: Duration = Duration::from_secs(5);

type Step<T> = Result<T, Stopped>;

/// One message read: where from, and its bytes.
struct Message {
    /// The channel, or the entry id in stream mode.
    at: String,
    raw: Result<Vec<u8>, String>,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Source {
    cfg: RedisConfig,
    client: redis::Client,
    intake: Intake,
    state: Arc<BusState>,
    backoff: Backoff,
    /// The `publisher` mark of this bus's sink.
    own: String,
    /// Larger messages are skipped unparsed.
    max_bytes: usize,
}

impl Source {
    pub(crate) fn new(
        cfg: RedisConfig,
        client: redis::Client,
        intake: Intake,
        state: Arc<BusState>,
        max_payload_bytes: usize,
    ) -> Source {
        Source {
            backoff: Backoff::new(cfg.initial_backoff, cfg.max_backoff),
            own: super::publisher(&cfg.name),
            // The envelope around the payload: id, type, timestamp, names.
            max_bytes: max_payload_bytes.saturating_add(16 * 1024),
            cfg,
            client,
            intake,
            state,
        }
    }

    /// Runs until stopped.
    pub(crate) async fn run(mut self) {
        tracing::info!(bus = %self.cfg.name, url = %self.cfg.url, mode = self.cfg.mode.as_str(), "Redis source starting");
        let _ = match self.cfg.mode {
            RedisMode::Pubsub => self.pubsub_forever().await,
            RedisMode::Stream => self.stream_forever().await,
        };
        tracing::info!(bus = %self.cfg.name, "Redis source stopped");
    }

    /// Runs a Redis call with the command timeout, unless stopped first.
    async fn call<T, E: std::fmt::Display>(
        &self,
        fut: impl Future<Output = Result<T, E>>,
    ) -> Step<Result<T, String>> {
        let out = self
            .intake
            .stoppable(tokio::time::timeout(self.cfg.timeout, fut))
            .await?;
        Ok(match out {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.cfg.timeout)),
        })
    }

    /// Records a failure and waits out the backoff.
    async fn pause_after(&mut self, what: &str, error: &str) -> Step<()> {
        let message = format!("{what}: {error}");
        self.state.failed(&message);
        let wait = self.backoff.next(rand::random());
        tracing::warn!(bus = %self.cfg.name, error = %message, retry_in_ms = wait.as_millis() as u64, "Redis source lost its connection");
        self.intake.sleep(wait).await
    }

    fn connected(&mut self, what: &str) {
        self.state.connected();
        self.backoff.reset();
        tracing::info!(bus = %self.cfg.name, subscribed = %what, "Redis source connected");
    }

    async fn pubsub_forever(&mut self) -> Step<()> {
        let pattern = self.cfg.pattern();
        loop {
            let mut pubsub = match self.call(self.client.get_async_pubsub()).await? {
                Ok(p) => p,
                Err(e) => {
                    self.pause_after("connecting", &e).await?;
                    continue;
                }
            };
            if let Err(e) = self.call(pubsub.psubscribe(&pattern)).await? {
                self.pause_after("PSUBSCRIBE", &e).await?;
                continue;
            }
            self.connected(&pattern);
            let (mut sink, mut stream) = pubsub.split();
            let why = loop {
                let next = self
                    .intake
                    .stoppable(tokio::time::timeout(PING_EVERY, stream.next()))
                    .await?;
                let first = match next {
                    Ok(Some(m)) => m,
                    Ok(None) => break "the connection closed".to_string(),
                    Err(_) => match self.call(sink.ping::<redis::Value>()).await? {
                        Ok(_) => continue,
                        Err(e) => break format!("PING: {e}"),
                    },
                };
                let mut batch = vec![first];
                while batch.len() < self.cfg.batch {
                    match stream.next().now_or_never() {
                        Some(Some(m)) => batch.push(m),
                        _ => break,
                    }
                }
                let messages = batch
                    .iter()
                    .map(|m| Message {
                        at: m.get_channel_name().to_string(),
                        raw: Ok(m.get_payload_bytes().to_vec()),
                    })
                    .collect();
                self.take(messages, false).await?;
            };
            self.pause_after("subscription", &why).await?;
        }
    }

    async fn stream_forever(&mut self) -> Step<()> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.cfg.timeout))
            .set_response_timeout(Some(BLOCK + self.cfg.timeout));
        let read = format!(
            "{}/{}/{}",
            self.cfg.stream, self.cfg.group, self.cfg.consumer
        );
        loop {
            let connecting = self
                .client
                .get_multiplexed_async_connection_with_config(&config);
            let mut conn = match self.call(connecting).await? {
                Ok(c) => c,
                Err(e) => {
                    self.pause_after("connecting", &e).await?;
                    continue;
                }
            };
            let created: Result<(), String> = match self
                .call(
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(&self.cfg.stream)
                        .arg(&self.cfg.group)
                        .arg("0")
                        .arg("MKSTREAM")
                        .query_async::<()>(&mut conn),
                )
                .await?
            {
                Err(e) if !e.contains("BUSYGROUP") => Err(e),
                _ => Ok(()),
            };
            if let Err(e) = created {
                self.pause_after("XGROUP CREATE", &e).await?;
                continue;
            }
            self.connected(&read);
            // This consumer's pending entries first, then new ones.
            let mut pending = true;
            let why = loop {
                let cmd = self.read_command(self.cfg.batch, !pending, pending);
                let reply = self
                    .intake
                    .stoppable(cmd.query_async::<Option<StreamReadReply>>(&mut conn))
                    .await?;
                let mut entries: Vec<_> = match reply {
                    Err(e) => break format!("XREADGROUP: {e}"),
                    Ok(r) => r
                        .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
                        .unwrap_or_default(),
                };
                // A blocked read returns as soon as one entry arrives: Redis
                // answers after the first `XADD` of a publisher's pipeline.
                // Take what came with it now, so the batch is accepted in
                // one round rather than one entry first.
                if !pending && !entries.is_empty() && entries.len() < self.cfg.batch {
                    let more = self.read_command(self.cfg.batch - entries.len(), false, false);
                    let reply = self
                        .intake
                        .stoppable(more.query_async::<Option<StreamReadReply>>(&mut conn))
                        .await?;
                    match reply {
                        Err(e) => break format!("XREADGROUP: {e}"),
                        Ok(r) => entries.extend(
                            r.into_iter()
                                .flat_map(|r| r.keys.into_iter().flat_map(|k| k.ids)),
                        ),
                    }
                }
                if entries.is_empty() {
                    pending = false;
                    continue;
                }
                let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
                let messages = entries
                    .into_iter()
                    .map(|e| Message {
                        raw: field_bytes(e.map.get(&self.cfg.stream_field))
                            .ok_or_else(|| format!("no `{}` field", self.cfg.stream_field)),
                        at: e.id,
                    })
                    .collect();
                self.take(messages, true).await?;
                let acked = self
                    .call(
                        redis::cmd("XACK")
                            .arg(&self.cfg.stream)
                            .arg(&self.cfg.group)
                            .arg(&ids)
                            .query_async::<u64>(&mut conn),
                    )
                    .await?;
                if let Err(e) = acked {
                    break format!("XACK: {e}");
                }
                self.state.taken(0, 0, ids.last().map(String::as_str));
            };
            self.pause_after("stream", &why).await?;
        }
    }

    /// `XREADGROUP` of at most `count` entries: this consumer's pending
    /// ones (`pending`), else new ones, waiting up to [`BLOCK`] if `block`.
    fn read_command(&self, count: usize, block: bool, pending: bool) -> redis::Cmd {
        let mut cmd = redis::cmd("XREADGROUP");
        cmd.arg("GROUP")
            .arg(&self.cfg.group)
            .arg(&self.cfg.consumer)
            .arg("COUNT")
            .arg(count);
        if block {
            cmd.arg("BLOCK").arg(BLOCK.as_millis() as u64);
        }
        cmd.arg("STREAMS")
            .arg(&self.cfg.stream)
            .arg(if pending { "0" } else { ">" });
        cmd
    }

    /// Maps and accepts one batch; skipped messages are counted and logged.
    async fn take(&mut self, messages: Vec<Message>, stream: bool) -> Step<()> {
        self.state.received(messages.len() as u64);
        let mut inputs: Vec<EventInput> = Vec::new();
        let mut places: Vec<String> = Vec::new();
        for m in messages {
            let origin = if stream {
                Origin::Entry(&self.cfg.stream, &m.at)
            } else {
                Origin::Channel(&m.at)
            };
            let mapped = match &m.raw {
                Ok(raw) => map_message(&self.own, self.max_bytes, origin, raw),
                Err(why) => Mapped::Invalid(why.clone()),
            };
            match mapped {
                Mapped::Event(input) => {
                    inputs.push(*input);
                    places.push(m.at);
                }
                Mapped::Own => self.state.own(),
                Mapped::Invalid(why) => self.skip("malformed", &m.at, &why, stream),
            }
        }
        if inputs.is_empty() {
            return Ok(());
        }
        let taken = self.intake.accept_all(inputs).await?;
        for (i, why) in &taken.refused {
            self.skip("refused", &places[*i], why, stream);
        }
        self.state.taken(taken.accepted, taken.duplicates, None);
        Ok(())
    }

    fn skip(&self, kind: &str, at: &str, why: &str, stream: bool) {
        let place = if stream {
            format!("{} entry {at}", self.cfg.stream)
        } else {
            format!("channel {at}")
        };
        tracing::warn!(bus = %self.cfg.name, %kind, at = %place, reason = %why, "Skipped a Redis message");
        self.state.skipped(kind, &format!("{place}: {why}"));
    }
}

/// The bytes of a stream entry's field.
fn field_bytes(v: Option<&redis::Value>) -> Option<Vec<u8>> {
    match v? {
        redis::Value::BulkString(b) => Some(b.clone()),
        redis::Value::SimpleString(s) => Some(s.clone().into_bytes()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone().into_bytes()),
        _ => None,
    }
}
