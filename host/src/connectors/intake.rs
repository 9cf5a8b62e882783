//! How a source hands events to the dispatcher: in batches on the blocking
//! pool (accept writes to the store), waiting out a full delivery queue
//! and store failures rather than dropping anything, and setting aside the
//! events the dispatcher refuses as invalid (a payload schema, a bound) so
//! one bad message never blocks the ones behind it. Everything waits on
//! the source's stop signal. Every source (Zulip, Redis, the next one)
//! accepts through an [`Intake`], which reports waits and store failures
//! to the source's [`SourceHealth`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::backoff::Backoff;
use super::status::SourceHealth;
use crate::dispatch::{AcceptError, Dispatcher};
use crate::event::EventInput;

/// The source is stopping.
#[derive(Debug)]
pub(crate) struct Stopped;

/// What became of a list of inputs.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Taken {
    /// Accepted as new events.
    pub accepted: u64,
    /// Answered with an earlier event's id (idempotency key seen before).
    pub duplicates: u64,
    /// Refused: (index in the list given, why).
    pub refused: Vec<(usize, String)>,
}

impl Taken {
    /// Records the event at index `at` of the list given as refused.
    fn refuse(&mut self, (at, input): (usize, EventInput), why: impl std::fmt::Display) {
        let line = format!("a `{}` event was refused: {why}", input.event_type);
        self.refused.push((at, line));
    }
}

/// A source's side of the dispatcher.
#[derive(Debug)]
pub(crate) struct Intake {
    dispatcher: Dispatcher,
    /// The `source` of accepted events (`redis:<name>`, `zulip:<realm>`).
    source: String,
    max_batch: usize,
    stop: watch::Receiver<bool>,
    backoff: Backoff,
    health: Arc<SourceHealth>,
}

impl Intake {
    pub(crate) fn new(
        dispatcher: Dispatcher,
        source: String,
        max_batch: usize,
        stop: watch::Receiver<bool>,
        health: Arc<SourceHealth>,
    ) -> Intake {
        Intake {
            dispatcher,
            source,
            max_batch: max_batch.max(1),
            stop,
            backoff: Backoff::new(Duration::from_millis(100), Duration::from_secs(10)),
            health,
        }
    }

    /// The dispatcher events go to (for a source's own store reads).
    pub(crate) fn dispatcher(&self) -> &Dispatcher {
        &self.dispatcher
    }

    /// The batch limit (lowered when the dispatcher says so).
    pub(crate) fn max_batch(&self) -> usize {
        self.max_batch
    }

    /// Accepts `inputs` in order; returns once each is accepted or refused.
    /// A batch refused for a full queue waits for the room it needed, up
    /// to `Retry-After`, as a publish does (`dispatch/admission.rs`), and
    /// goes in as soon as that room is free; still refused (`busy`), it is
    /// tried again halved (down to one event), so a batch larger than the
    /// queue's room still goes in piecemeal; one that could not fit the
    /// queue even empty is halved at once. Store failures (`store`) are
    /// waited out and tried again. Both are reported to the source's
    /// health.
    pub(crate) async fn accept_all(&mut self, inputs: Vec<EventInput>) -> Result<Taken, Stopped> {
        let mut left: Vec<(usize, EventInput)> = inputs.into_iter().enumerate().collect();
        let mut taken = Taken::default();
        let mut limit = self.max_batch;
        // Room held for the next chunk by a wait for it.
        let mut room = None;
        while !left.is_empty() {
            let n = left.len().min(limit);
            let chunk: Vec<EventInput> = left[..n].iter().map(|(_, e)| e.clone()).collect();
            let result = match self
                .dispatcher
                .accept_spawned(chunk, &self.source, room.take())
            {
                Ok(accepting) => accepting.await,
                Err(refused) => Ok(Err(refused)),
            };
            match result {
                Ok(Ok(accepted)) => {
                    left.drain(..n);
                    let dups = accepted.iter().filter(|a| a.duplicate).count() as u64;
                    taken.duplicates += dups;
                    taken.accepted += accepted.len() as u64 - dups;
                    self.backoff.reset();
                }
                Ok(Err(mut e @ AcceptError::Busy { retry_after, .. })) => {
                    let jitter = retry_after.mul_f64(rand::random::<f64>() * 0.2);
                    let started = std::time::Instant::now();
                    let needed = match &mut e {
                        AcceptError::Busy { needed, .. } => needed.take(),
                        _ => None,
                    };
                    if let Some((needed, events)) = needed {
                        // Counted as rejected by `admit` if it refuses.
                        let wait = self
                            .dispatcher
                            .admit(needed, events, 0, retry_after + jitter);
                        match self.stoppable(wait).await? {
                            Ok(held) => {
                                room = held;
                                continue;
                            }
                            Err(AcceptError::ShuttingDown) => return Err(Stopped),
                            Err(refused) => e = refused,
                        }
                    } else {
                        self.dispatcher.refused(&e);
                    }
                    limit = (n / 2).max(1);
                    self.health.local_error("busy", &e.to_string());
                    // What the wait did not take of the pause (all of it
                    // when too many requests wait already).
                    let rest = (retry_after + jitter).saturating_sub(started.elapsed());
                    self.sleep(rest).await?;
                }
                Ok(Err(AcceptError::ShuttingDown)) => return Err(Stopped),
                Ok(Err(AcceptError::Invalid { index, error })) => {
                    taken.refuse(left.remove(index), error);
                }
                // More deliveries than the whole queue holds: smaller
                // chunks fit, down to one event; one event alone that
                // fans out past it is refused like an invalid one.
                Ok(Err(AcceptError::TooManyDeliveries { .. })) if n > 1 => {
                    limit = n / 2;
                }
                Ok(Err(e @ AcceptError::TooManyDeliveries { .. })) => {
                    self.dispatcher.refused(&e);
                    taken.refuse(left.remove(0), &e);
                }
                Ok(Err(AcceptError::BatchTooLarge { max, .. })) => {
                    self.max_batch = max.max(1);
                    limit = limit.min(self.max_batch);
                }
                Ok(Err(AcceptError::Empty)) => break,
                Ok(Err(e)) => {
                    let message = e.to_string();
                    tracing::error!(source = %self.source, error = %message, "Accepting events failed; will retry");
                    self.health.local_error("store", &message);
                    let pause = self.backoff.next(rand::random());
                    self.sleep(pause).await?;
                }
                Err(e) => {
                    tracing::error!(source = %self.source, error = %e, "Accepting events panicked; will retry");
                    self.health.local_error("store", "accept panicked");
                    let pause = self.backoff.next(rand::random());
                    self.sleep(pause).await?;
                }
            }
        }
        Ok(taken)
    }

    /// Sleeps unless stopped first.
    pub(crate) async fn sleep(&self, d: Duration) -> Result<(), Stopped> {
        self.stoppable(tokio::time::sleep(d)).await
    }

    /// Runs `fut` unless the source is told to stop first.
    pub(crate) async fn stoppable<T>(
        &self,
        fut: impl std::future::Future<Output = T>,
    ) -> Result<T, Stopped> {
        let mut stop = self.stop.clone();
        if *stop.borrow() {
            return Err(Stopped);
        }
        tokio::select! {
            out = fut => Ok(out),
            _ = stop.wait_for(|s| *s) => Err(Stopped),
        }
    }
}
