//! The bus's sink: the built-in handler `redis:<name>` publishes what
//! `redis.publish` events ask for — `PUBLISH <prefix>:<eventType>` in
//! pub/sub mode, `XADD <stream> * <field> <envelope>` in stream mode — so
//! handlers' output reaches the bus's other subscribers. Payload faults
//! are dead-lettered at once; a connection or command failure is retried
//! by the sink's policy (the envelope's `id` is the same on every attempt).
//! One multiplexed connection is kept and replaced after a failure.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use super::config::{RedisConfig, RedisMode};
use super::envelope::envelope;
use super::status::BusState;
use crate::connectors::block_on;
use crate::dispatch::{BuiltinError, BuiltinHandler};
use crate::event::Event;

/// Added to the command timeout before a worker stops waiting for the
/// async side (a runtime shutting down).
const HANDOFF_SLACK: Duration = Duration::from_secs(5);

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Sink {
    cfg: RedisConfig,
    client: redis::Client,
    runtime: tokio::runtime::Handle,
    state: Arc<BusState>,
    conn: Arc<Mutex<Option<MultiplexedConnection>>>,
    publisher: String,
}

impl Sink {
    pub(crate) fn new(
        cfg: RedisConfig,
        client: redis::Client,
        runtime: tokio::runtime::Handle,
        state: Arc<BusState>,
    ) -> Self {
        Sink {
            publisher: super::publisher(&cfg.name),
            cfg,
            client,
            runtime,
            state,
            conn: Arc::default(),
        }
    }

    /// The command that publishes `envelope` of `event_type`.
    fn command(&self, event_type: &str, envelope: String) -> redis::Cmd {
        match self.cfg.mode {
            RedisMode::Pubsub => {
                let mut c = redis::cmd("PUBLISH");
                c.arg(self.cfg.channel(event_type)).arg(envelope);
                c
            }
            RedisMode::Stream => {
                let mut c = redis::cmd("XADD");
                c.arg(&self.cfg.stream)
                    .arg("*")
                    .arg(&self.cfg.stream_field)
                    .arg(envelope);
                c
            }
        }
    }
}

/// Runs `cmd` on the kept connection (multiplexed: concurrent publishes
/// share it), connecting first if there is none; a failure drops it so the
/// next attempt connects afresh.
async fn run(
    client: redis::Client,
    slot: Arc<Mutex<Option<MultiplexedConnection>>>,
    cmd: redis::Cmd,
    timeout: Duration,
) -> Result<(), String> {
    let mut conn = {
        let mut kept = slot.lock().await;
        match &*kept {
            Some(c) => c.clone(),
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout));
                let c = client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map_err(|e| format!("connecting: {e}"))?;
                *kept = Some(c.clone());
                c
            }
        }
    };
    if let Err(e) = cmd.query_async::<redis::Value>(&mut conn).await {
        *slot.lock().await = None;
        return Err(e.to_string());
    }
    Ok(())
}

impl BuiltinHandler for Sink {
    fn deliver(&self, event: &Event, _attempt: u32) -> Result<(), BuiltinError> {
        if event.event_type != super::PUBLISH_EVENT {
            return Err(BuiltinError::fatal(format!(
                "the Redis sink does not perform `{}` events",
                event.event_type
            )));
        }
        let (event_type, text) = envelope(&self.publisher, event).map_err(|e| {
            self.state.publish_failed(&e);
            BuiltinError::fatal(e)
        })?;
        let cmd = self.command(&event_type, text);
        let done = block_on(
            &self.runtime,
            self.cfg.timeout * 2 + HANDOFF_SLACK,
            run(
                self.client.clone(),
                self.conn.clone(),
                cmd,
                self.cfg.timeout,
            ),
        );
        let error = match done {
            Ok(Ok(())) => {
                self.state.published();
                return Ok(());
            }
            Ok(Err(e)) => e,
            Err(_) => "no answer from the async runtime (shutting down?)".to_string(),
        };
        self.state.publish_failed(&error);
        tracing::warn!(bus = %self.cfg.name, event = %event.id, %error, "Redis publish failed; will retry");
        Err(BuiltinError::retryable(format!("Redis: {error}")))
    }
}
