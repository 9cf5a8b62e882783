//! Admission: room in the delivery queue held for a batch before its
//! events are built, and a short, bounded wait for that room when the
//! queue (or the tenant's share of it) is full.
//!
//! Under load, `POST /v1/events` reads only what a batch is sure to need
//! (its events without an idempotency key, by type and tenant, each
//! routed) and asks [`Dispatcher::admit`] for that room. Granted, the room
//! is *held* ([`Room`]) while the body is parsed and validated, and handed
//! to the batch's accept, which swaps it for the batch's exact reservation
//! in one step under the scheduler's lock: between the two no other batch
//! can take it. Not granted, the request waits, polling every
//! [`POLL`] (longer with many waiting: [`poll_interval`]), up to the
//! API's `queue_wait`, and only then is answered 429.
//! What the sketch cannot count (events with idempotency keys, which may
//! be duplicates; handlers' payload filters) its accept may still find
//! without room: the refusal carries the room the batch needed
//! ([`Needed`]), and the request waits the rest of its time for that room
//! and builds the batch again. A refusal's events are counted as rejected
//! once, by whoever answers it ([`Dispatcher::refused`]).
//!
//! Why wait at all: a client refused at once retries at once, and each
//! refusal costs a read of the whole body and a pass over it. Measured
//! (BENCHMARKS.md, fifteenth round): eight clients retrying a 100-event
//! batch at once cut the events delivered per second from 33.7k to 18.6k,
//! the refusals taking about one of the two cores. A request that waits
//! costs nothing while it waits, and one pass over its body in all.
//!
//! Bounds: at most [`WAITERS_MAX`] requests, holding at most
//! [`WAITING_BYTES_MAX`] of bodies between them, wait at once; past
//! either a request is refused at once, as without the wait. Waiters are
//! not served in order: each poll tries the scheduler's own check
//! (tenant shares included), so a small batch may pass a large one that
//! waits for more room.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::queue::Reservation;
use super::{AcceptError, Dispatcher, Inner, busy};
use crate::event::now_ms;

/// How often a waiting request checks for room, with up to
/// [`POLLERS`] waiting.
pub(crate) const POLL: Duration = Duration::from_millis(1);
/// Waiting requests that may each poll every [`POLL`]; past them the
/// interval grows, so all of them together poll at most ≈ 8 000 times a
/// second (each poll takes the scheduler's lock the workers use).
pub(crate) const POLLERS: usize = 8;
/// The most requests waiting for room at once.
pub(crate) const WAITERS_MAX: usize = 256;
/// The most body bytes the waiting requests may hold between them.
pub(crate) const WAITING_BYTES_MAX: usize = 256 << 20;

/// What a batch refused for room ([`AcceptError::Busy`]) needed, and its
/// events not counted as rejected yet: the caller answering the refusal
/// counts them ([`Dispatcher::refused`]), or waits for the room first.
#[derive(Debug, Default)]
pub struct Needed {
    room: Option<Reservation>,
    events: usize,
}

impl Needed {
    pub(super) fn new(room: Reservation, events: usize) -> Self {
        Needed {
            room: Some(room),
            events,
        }
    }

    /// The room to wait for, and the batch's events; `None` for a refusal
    /// that was waited for (and counted) already, and for one that needed
    /// no room (a queue over its limit, as a restart's replay may leave
    /// it, refuses even those): there is nothing to wait for.
    pub(crate) fn take(&mut self) -> Option<(Reservation, usize)> {
        let room = self.room.take().filter(|r| r.total() > 0)?;
        Some((room, std::mem::take(&mut self.events)))
    }
}

/// Room in the queue held for a batch by [`Dispatcher::admit`]: handed to
/// its accept ([`Dispatcher::accept_spawned`]), or given back when dropped
/// (the request failed, or its client hung up).
#[derive(Debug)]
pub struct Room {
    inner: Arc<Inner>,
    held: Option<Reservation>,
}

impl Room {
    /// The reservation, no longer given back on drop: the caller holds the
    /// scheduler's lock and swaps it for the batch's own.
    pub(super) fn take(mut self) -> Reservation {
        self.held.take().unwrap_or_default()
    }
}

impl Drop for Room {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            self.inner.sched().unreserve(held);
        }
    }
}

/// The requests waiting for room, and the body bytes they hold.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    state: Mutex<(usize, usize)>,
}

impl Waiting {
    /// The requests waiting now.
    fn count(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    /// Counts one more waiting request of `bytes`, unless that passes a cap.
    fn enter(self: &Arc<Self>, bytes: usize) -> Option<Waiter> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (requests, held) = *st;
        if requests >= WAITERS_MAX || held.saturating_add(bytes) > WAITING_BYTES_MAX {
            return None;
        }
        *st = (requests + 1, held + bytes);
        Some(Waiter {
            waiting: self.clone(),
            bytes,
        })
    }
}

/// How long each of `waiting` requests sleeps between its checks for room.
pub(crate) fn poll_interval(waiting: usize) -> Duration {
    let rounds = u32::try_from(waiting.div_ceil(POLLERS)).unwrap_or(u32::MAX);
    POLL.saturating_mul(rounds.max(1))
}

/// One waiting request, counted until dropped.
struct Waiter {
    waiting: Arc<Waiting>,
    bytes: usize,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut st = self.waiting.state.lock().unwrap_or_else(|p| p.into_inner());
        st.0 = st.0.saturating_sub(1);
        st.1 = st.1.saturating_sub(self.bytes);
    }
}

impl Dispatcher {
    /// Counts the events of a refusal ([`AcceptError::Busy`]) as rejected,
    /// unless they were already: what the caller answering it calls.
    pub(crate) fn refused(&self, e: &AcceptError) {
        if let AcceptError::Busy { needed, .. } = e {
            self.inner.metrics.rejected(needed.events as u64);
        }
    }

    /// Whether the queue is loaded enough for [`Dispatcher::admit`] to be
    /// worth a pass over a body: at least half full, or holding a tenant's
    /// share.
    pub fn under_pressure(&self) -> bool {
        let limit = self.inner.cfg.queue_capacity;
        let from = (limit / 2).min(self.inner.tenant_share().unwrap_or(limit));
        self.inner.sched().held() >= from
    }

    /// The room a batch's deliveries are sure to take, before its events
    /// are built: each event's handlers whatever its payload, none for an
    /// event with an idempotency key (it may be a duplicate). `counts`: the
    /// batch's events without an idempotency key by type and tenant.
    /// Routes each pair: blocking for a batch that names thousands.
    pub(crate) fn sure_room<'a>(
        &self,
        counts: impl IntoIterator<Item = ((&'a str, &'a str), usize)>,
    ) -> Reservation {
        Reservation::of(counts.into_iter().map(|((ty, tenant), n)| {
            let each = self.inner.registry.routed_at_least(ty, tenant);
            (tenant, n.saturating_mul(each))
        }))
    }

    /// Holds `sure` room ([`Dispatcher::sure_room`]) in the queue for a
    /// batch of `events` events read from a body of `bytes` bytes, as its
    /// accept would reserve it (capacity and tenant shares alike), waiting
    /// up to `wait` for it (module docs). `None`: the batch needs no room.
    /// Refused in the end, the batch's events are counted as rejected and
    /// its tenants marked as wanting room, as by a refused accept.
    pub(crate) async fn admit(
        &self,
        sure: Reservation,
        events: usize,
        bytes: usize,
        wait: Duration,
    ) -> Result<Option<Room>, AcceptError> {
        if sure.total() == 0 {
            return Ok(None);
        }
        let deadline = Instant::now() + wait;
        let mut waiter = None;
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Err(AcceptError::ShuttingDown);
            }
            let refused = match self.inner.hold(&sure) {
                Ok(room) => return Ok(Some(room)),
                Err(refused) => refused,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if waiter.is_none() && !left.is_zero() {
                waiter = self.inner.waiting.enter(bytes);
                if waiter.is_some() {
                    self.inner.metrics.queue_wait();
                }
            }
            if left.is_zero() || waiter.is_none() {
                self.inner.metrics.rejected(events as u64);
                return Err(busy(refused, Needed::default()));
            }
            tokio::time::sleep(poll_interval(self.inner.waiting.count()).min(left)).await;
        }
    }
}

impl Inner {
    /// Reserves `sure` room for an external batch, held as a [`Room`].
    fn hold(self: &Arc<Self>, sure: &Reservation) -> Result<Room, super::queue::Refused> {
        let limit = self.cfg.queue_capacity;
        self.sched()
            .reserve(sure, limit, self.tenant_share(), now_ms())?;
        Ok(Room {
            inner: self.clone(),
            held: Some(sure.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_waiters_poll_less_often_each() {
        assert_eq!(poll_interval(0), POLL);
        assert_eq!(poll_interval(POLLERS), POLL);
        assert_eq!(poll_interval(POLLERS + 1), 2 * POLL);
        // The cap on waiters keeps the interval within a poll per 32 ms.
        assert_eq!(poll_interval(WAITERS_MAX), 32 * POLL);
    }

    #[test]
    fn waiters_are_capped_by_number_and_by_the_bytes_they_hold() {
        let waiting = Arc::new(Waiting::default());
        let mut held: Vec<Waiter> = (0..WAITERS_MAX)
            .map(|_| waiting.enter(1).expect("under the caps"))
            .collect();
        assert!(waiting.enter(1).is_none(), "one waiter past the cap");
        assert_eq!(waiting.count(), WAITERS_MAX);
        held.clear();
        assert_eq!(waiting.count(), 0);
        // Bytes: two bodies of half the cap fit, a third byte does not.
        let a = waiting.enter(WAITING_BYTES_MAX / 2).unwrap();
        let b = waiting.enter(WAITING_BYTES_MAX / 2).unwrap();
        assert!(waiting.enter(1).is_none(), "a byte past the cap");
        drop(a);
        assert!(waiting.enter(1).is_some());
        drop(b);
        assert_eq!(*waiting.state.lock().unwrap(), (0, 0));
    }
}
