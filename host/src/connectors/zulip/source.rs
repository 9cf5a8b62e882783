//! A realm's event source: one task that keeps a Zulip event queue
//! registered and long-polls it, accepting what arrives.
//!
//! The loop, per realm:
//! 1. Resume the queue saved in the store, or register one (`POST
//!    /register`) for the Zulip types the deployed handlers subscribe to
//!    (or the types pinned in the config). After a lost queue, accept a
//!    `zulip.queue_lost` event before anything from the new queue.
//! 2. Long-poll `GET /events` after the last acknowledged id. Map each
//!    event; accept them in batches on the blocking pool; only after an
//!    accept returned Ok save the new `last_event_id` (heartbeats are
//!    acknowledged the same way, without an event). A full delivery queue
//!    (`Busy`) is waited out and the *same* events offered again.
//! 3. `BAD_EVENT_QUEUE_ID` → register again (step 1). 429 → wait what
//!    `Retry-After` says. Other failures → exponential backoff with jitter,
//!    capped at `max_backoff`.
//! 4. When handlers come to subscribe to types the queue was not
//!    registered for, register a new queue, drain the old one, delete it.
//!
//! The register asks for no initial state (`fetch_event_types=[]`): Hookbox
//! uses none, and for a realm of thousands of members it is megabytes. The
//! bot's user id comes from `GET /users/me` once; every event carries it as
//! metadata (`zulip_bot_user_id`), and the bot's own events — its messages,
//! reactions and edits, echoed to its queue by Zulip — are acknowledged and
//! skipped unless the realm sets `own_events = true` (then they carry
//! `zulip_own_event = "true"`). That is the loop brake of handler chains
//! through Zulip: a handler replying to messages never sees its replies.
//!
//! Stopping is checked at every await; a stop between an accept and the
//! cursor save re-delivers that batch from the same queue on the next
//! start, where the events' idempotency keys drop the duplicates.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use super::client::Client;
use super::config::RealmConfig;
use super::mapping::{self, Bot, LostQueue, Mapped};
use super::protocol::{Failure, Received, Registered};
use super::status::RealmState;
use crate::connectors::backoff::Backoff;
use crate::connectors::intake::{Intake, Stopped};
use crate::event::{EventInput, now_ms};
use crate::store::ZulipCursor;

/// Added to the server's long-poll hold time before we give up on an answer.
const POLL_SLACK: Duration = Duration::from_secs(15);

type Step<T> = Result<T, Stopped>;

/// The queue being polled.
#[derive(Clone, Debug)]
struct Queue {
    queue_id: String,
    last_event_id: i64,
    event_types: Option<Vec<String>>,
    poll_wait: Duration,
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Source {
    realm: RealmConfig,
    client: Client,
    /// Accepts events as `zulip:<realm>`.
    intake: Intake,
    state: Arc<RealmState>,
    /// The reconnection schedule (the intake has its own for the store).
    backoff: Backoff,
    /// The realm's bot, to recognise its own events.
    bot: Bot,
}

impl Source {
    pub(crate) fn new(
        realm: RealmConfig,
        client: Client,
        intake: Intake,
        state: Arc<RealmState>,
    ) -> Source {
        Source {
            backoff: Backoff::new(realm.initial_backoff, realm.max_backoff),
            bot: Bot {
                user_id: None,
                email: realm.email.clone(),
            },
            realm,
            client,
            intake,
            state,
        }
    }

    /// Runs until stopped.
    pub(crate) async fn run(mut self) {
        tracing::info!(realm = %self.realm.name, site = %self.realm.site, "Zulip source starting");
        let _ = self.poll_forever().await;
        tracing::info!(realm = %self.realm.name, "Zulip source stopped");
    }

    async fn poll_forever(&mut self) -> Step<()> {
        let mut current = self.resume().await;
        let mut lost: Option<LostQueue> = None;
        loop {
            let mut queue = match current.take() {
                Some(q) => q,
                None => match self.register(lost.as_ref()).await? {
                    Some(q) => {
                        lost = None;
                        q
                    }
                    None => continue,
                },
            };
            self.learn_bot_id().await?;
            let polled = self
                .intake
                .stoppable(self.client.events(
                    &queue.queue_id,
                    queue.last_event_id,
                    false,
                    queue.poll_wait,
                ))
                .await?;
            match polled {
                Ok(events) => {
                    self.state.connected();
                    self.backoff.reset();
                    self.take(&mut queue, events).await?;
                    current = Some(self.switch_if_needed(queue).await?);
                }
                Err(Failure::BadQueue(reason)) => {
                    tracing::warn!(realm = %self.realm.name, queue = %queue.queue_id, %reason, "Zulip event queue lost; registering a new one");
                    self.state.queue_lost();
                    self.state.failed("bad_queue", &reason);
                    lost = Some(LostQueue {
                        queue_id: queue.queue_id,
                        last_event_id: queue.last_event_id,
                        reason,
                    });
                }
                Err(f) => {
                    self.pause_after(&f).await?;
                    current = Some(queue);
                }
            }
        }
    }

    /// Asks the server for the bot's user id until it has it. A failure is
    /// not fatal: until then own messages are recognised by email alone.
    async fn learn_bot_id(&mut self) -> Step<()> {
        if self.bot.user_id.is_some() {
            return Ok(());
        }
        match self.intake.stoppable(self.client.me()).await? {
            Ok(me) => {
                tracing::info!(realm = %self.realm.name, bot_user_id = me.user_id, "Learned the bot's Zulip user id");
                self.bot.user_id = Some(me.user_id);
                self.state.bot_user_id(me.user_id);
            }
            Err(f) => {
                tracing::warn!(realm = %self.realm.name, error = %f, "Could not learn the bot's user id; recognising its own messages by email until it is known");
            }
        }
        Ok(())
    }

    /// The saved queue, if it belongs to this server and bot.
    async fn resume(&mut self) -> Option<Queue> {
        let store = self.intake.dispatcher().store().clone();
        let name = self.realm.name.clone();
        let saved = tokio::task::spawn_blocking(move || store.zulip_cursor(&name)).await;
        let cursor = match saved {
            Ok(Ok(Some(c))) => c,
            Ok(Ok(None)) => return None,
            Ok(Err(e)) => {
                tracing::error!(realm = %self.realm.name, error = %e, "Reading the saved Zulip queue failed; registering a new one");
                return None;
            }
            Err(e) => {
                tracing::error!(realm = %self.realm.name, error = %e, "Reading the saved Zulip queue panicked");
                return None;
            }
        };
        if cursor.site != self.realm.site || cursor.email != self.realm.email {
            tracing::info!(realm = %self.realm.name, "The saved Zulip queue belongs to another server or bot; registering a new one");
            return None;
        }
        tracing::info!(realm = %self.realm.name, queue = %cursor.queue_id, last_event_id = cursor.last_event_id, "Resuming the saved Zulip event queue");
        self.state.queue(
            &cursor.queue_id,
            cursor.last_event_id,
            cursor.event_types.as_deref(),
        );
        Some(Queue {
            queue_id: cursor.queue_id,
            last_event_id: cursor.last_event_id,
            event_types: cursor.event_types,
            poll_wait: self.realm.poll_timeout,
        })
    }

    /// Registers a queue; after a loss, announces it before anything else.
    /// `None` after a failure (already waited out).
    async fn register(&mut self, lost: Option<&LostQueue>) -> Step<Option<Queue>> {
        let types = self.target_types().await?;
        let queue = match self.try_register(types).await? {
            Some(q) => q,
            None => return Ok(None),
        };
        if let Some(lost) = lost {
            let event =
                mapping::queue_lost(&self.realm.name, &self.realm.site, lost, &queue.queue_id);
            self.accept_all(vec![event]).await?;
        }
        self.save(&queue).await;
        Ok(Some(queue))
    }

    async fn try_register(&mut self, types: Option<Vec<String>>) -> Step<Option<Queue>> {
        let registered = self
            .intake
            .stoppable(
                self.client
                    .register(types.as_deref(), self.realm.all_public_streams),
            )
            .await?;
        match registered {
            Ok(reg) => {
                let queue = self.queue_from(reg, types);
                tracing::info!(realm = %self.realm.name, queue = %queue.queue_id, event_types = ?queue.event_types, "Registered a Zulip event queue");
                self.state.registered();
                self.state.connected();
                self.state.queue(
                    &queue.queue_id,
                    queue.last_event_id,
                    queue.event_types.as_deref(),
                );
                self.backoff.reset();
                Ok(Some(queue))
            }
            Err(f) => {
                self.pause_after(&f).await?;
                Ok(None)
            }
        }
    }

    fn queue_from(&self, reg: Registered, event_types: Option<Vec<String>>) -> Queue {
        let held = reg
            .event_queue_longpoll_timeout_seconds
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)) + POLL_SLACK);
        Queue {
            queue_id: reg.queue_id,
            last_event_id: reg.last_event_id,
            event_types,
            poll_wait: held.map_or(self.realm.poll_timeout, |h| h.max(self.realm.poll_timeout)),
        }
    }

    /// The types to register for: pinned in the config, else what the
    /// deployed handlers of this realm subscribe to (`None`: all).
    async fn target_types(&self) -> Step<Option<Vec<String>>> {
        if let Some(pinned) = &self.realm.event_types {
            return Ok(Some(pinned.clone()));
        }
        Ok(self
            .subscribed_types()
            .await?
            .map(|s| s.into_iter().collect()))
    }

    async fn subscribed_types(&self) -> Step<Option<BTreeSet<String>>> {
        let store = self.intake.dispatcher().store().clone();
        let realm = self.realm.name.clone();
        let patterns = tokio::task::spawn_blocking(
            move || -> Result<Vec<String>, crate::store::StoreError> {
                let mut patterns = Vec::new();
                for h in store.handlers()? {
                    let Some(v) = store.version(&h.name, h.active_version)? else {
                        continue;
                    };
                    let sub = v.manifest.subscription;
                    if sub.tenants.is_empty() || sub.tenants.contains(&realm) {
                        patterns.extend(sub.events);
                    }
                }
                Ok(patterns)
            },
        )
        .await;
        match patterns {
            Ok(Ok(p)) => Ok(mapping::wanted_types(p.iter().map(String::as_str))),
            Ok(Err(e)) => {
                tracing::error!(realm = %self.realm.name, error = %e, "Reading subscriptions failed; registering for all event types");
                Ok(None)
            }
            Err(e) => {
                tracing::error!(realm = %self.realm.name, error = %e, "Reading subscriptions panicked; registering for all event types");
                Ok(None)
            }
        }
    }

    /// Accepts a poll's events in batches, saving the position after each.
    async fn take(&mut self, queue: &mut Queue, events: Vec<Received>) -> Step<()> {
        let mut batch: Vec<EventInput> = Vec::new();
        let mut heartbeats = 0;
        let mut last = queue.last_event_id;
        for event in &events {
            match mapping::map_event(&self.realm.name, &queue.queue_id, event) {
                Mapped::Heartbeat => heartbeats += 1,
                Mapped::Event(mut input) => {
                    let own = self.bot.mark(&mut input, &event.value);
                    if own && !self.realm.own_events {
                        self.state.own_skipped(1);
                    } else {
                        batch.push(*input);
                    }
                }
                Mapped::Invalid(why) => {
                    tracing::warn!(realm = %self.realm.name, %why, "Skipped a Zulip event");
                    self.state.skipped(&why);
                }
            }
            last = last.max(event.id);
            if batch.len() >= self.intake.max_batch() {
                self.acknowledge(queue, std::mem::take(&mut batch), heartbeats, last)
                    .await?;
                heartbeats = 0;
            }
        }
        if !batch.is_empty() || last != queue.last_event_id {
            self.acknowledge(queue, batch, heartbeats, last).await?;
        }
        Ok(())
    }

    async fn acknowledge(
        &mut self,
        queue: &mut Queue,
        batch: Vec<EventInput>,
        heartbeats: u64,
        last: i64,
    ) -> Step<()> {
        let accepted = self.accept_all(batch).await?;
        queue.last_event_id = last;
        self.state.acknowledged(last, accepted, heartbeats);
        self.save(queue).await;
        Ok(())
    }

    /// Accepts `inputs` in order through the intake (which waits out a
    /// full queue and store failures), recording the events the dispatcher
    /// refuses as invalid as skipped. Returns how many were accepted
    /// (duplicates of earlier events included).
    async fn accept_all(&mut self, inputs: Vec<EventInput>) -> Step<u64> {
        let taken = self.intake.accept_all(inputs).await?;
        for (_, why) in &taken.refused {
            tracing::warn!(realm = %self.realm.name, %why, "Skipped a Zulip event");
            self.state.skipped(why);
        }
        Ok(taken.accepted + taken.duplicates)
    }

    /// Saves the queue position. A failure is logged, not fatal: the next
    /// save catches up, and a restart in between re-reads from the older
    /// position (duplicates are dropped by idempotency keys).
    async fn save(&self, queue: &Queue) {
        let store = self.intake.dispatcher().store().clone();
        let name = self.realm.name.clone();
        let cursor = ZulipCursor {
            site: self.realm.site.clone(),
            email: self.realm.email.clone(),
            queue_id: queue.queue_id.clone(),
            last_event_id: queue.last_event_id,
            event_types: queue.event_types.clone(),
            updated_ms: now_ms(),
        };
        let saved =
            tokio::task::spawn_blocking(move || store.put_zulip_cursor(&name, &cursor)).await;
        let error = match saved {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        tracing::error!(realm = %self.realm.name, %error, "Saving the Zulip queue position failed");
        self.state.source.local_error("store", &error);
    }

    /// Moves to a new queue when the current one misses types that are now
    /// wanted: register the new one, drain the old one, delete it.
    async fn switch_if_needed(&mut self, old: Queue) -> Step<Queue> {
        let needed = match &self.realm.event_types {
            Some(pinned) => old.event_types.as_ref() != Some(pinned),
            None => {
                let wanted = self.subscribed_types().await?;
                !mapping::covers(old.event_types.as_deref(), wanted.as_ref())
            }
        };
        if !needed {
            return Ok(old);
        }
        let types = self.target_types().await?;
        tracing::info!(realm = %self.realm.name, from = ?old.event_types, to = ?types, "Handlers want other Zulip event types; switching queues");
        let Some(new) = self.try_register(types).await? else {
            return Ok(old);
        };
        let mut old = old;
        let drained = self
            .intake
            .stoppable(
                self.client
                    .events(&old.queue_id, old.last_event_id, true, old.poll_wait),
            )
            .await?;
        match drained {
            Ok(events) => self.take(&mut old, events).await?,
            Err(f) => {
                let lost = LostQueue {
                    queue_id: old.queue_id.clone(),
                    last_event_id: old.last_event_id,
                    reason: format!("draining the queue before a switch failed: {f}"),
                };
                let event =
                    mapping::queue_lost(&self.realm.name, &self.realm.site, &lost, &new.queue_id);
                self.accept_all(vec![event]).await?;
            }
        }
        if let Err(f) = self.client.delete_queue(&old.queue_id).await {
            tracing::info!(realm = %self.realm.name, queue = %old.queue_id, error = %f, "Deleting the old Zulip queue failed; the server expires it");
        }
        self.save(&new).await;
        Ok(new)
    }

    /// Records a failed request and waits: `Retry-After` for a 429 that
    /// has one, else the next backoff step.
    async fn pause_after(&mut self, f: &Failure) -> Step<()> {
        let message = f.to_string();
        self.state.failed(f.kind(), &message);
        let wait = match f {
            Failure::RateLimited(Some(d)) => *d,
            _ => self.backoff.next(rand::random()),
        };
        tracing::warn!(realm = %self.realm.name, kind = f.kind(), error = %message, retry_in_ms = wait.as_millis() as u64, "Zulip request failed");
        self.intake.sleep(wait).await
    }
}
