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
//! [`WAITING_BYTES_MAX`] of bodies between them, wait at once, and with a
//! tenant share (`tenant_queue_share`) each tenant's requests at most
//! that share of both, so one tenant's flood of requests leaves the rest
//! of the waiting room to the others; past any of these a request is
//! refused at once, as without the wait. A batch that needs more room
//! than the whole queue has is refused at once too (413: it never fits).
//!
//! Order: waiting requests get room in arrival order *per tenant*. Only
//! the oldest waiting request of each of its batch's tenants tries for
//! room (the scheduler's own check, tenant shares included), and a request
//! arriving while others of its tenants wait queues behind them: by its
//! sketch, or, for a body the sketch cannot read, by its accept, which
//! refuses a producer's batch that holds no room while its tenants have a
//! line (the caller then waits in it). So a
//! large batch is not passed, poll after poll, by small ones that each
//! need less room than it (it would wait out its whole `queue_wait` and be
//! refused), while another tenant's requests, which the line does not
//! hold up, take the room their own share allows.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::queue::{Refused, Reservation};
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

/// The requests waiting for room, the body bytes they hold, and their
/// order per tenant.
#[derive(Debug, Default)]
pub(super) struct Waiting {
    state: Mutex<WaitState>,
}

#[derive(Debug, Default)]
struct WaitState {
    requests: usize,
    bytes: usize,
    /// The next request's place in line.
    next: u64,
    /// Each tenant's line; tenants with none waiting are absent.
    lines: HashMap<String, Line>,
}

/// The requests of one tenant waiting for room.
#[derive(Debug, Default)]
struct Line {
    /// Their places, oldest first.
    places: BTreeSet<u64>,
    /// The body bytes they hold.
    bytes: usize,
}

/// What one tenant's waiting requests may hold: requests and body bytes.
pub(super) type TenantCap = (usize, usize);

/// [`WAITERS_MAX`] and [`WAITING_BYTES_MAX`] scaled to a tenant share of
/// `pct` percent (at least one request); `None` for 100 (no share).
pub(super) fn tenant_cap(pct: u8) -> Option<TenantCap> {
    let pct = usize::from(pct);
    (pct < 100).then(|| {
        (
            (WAITERS_MAX * pct / 100).max(1),
            WAITING_BYTES_MAX * pct / 100,
        )
    })
}

impl Waiting {
    fn state(&self) -> MutexGuard<'_, WaitState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The requests waiting now.
    fn count(&self) -> usize {
        self.state().requests
    }

    /// Whether a request for `room` may try for it now: none of its
    /// tenants has a request waiting ahead of it (`waiter`, its place in
    /// line once it waits; `None` before).
    pub(super) fn may_try(&self, room: &Reservation, waiter: Option<&Waiter>) -> bool {
        let st = self.state();
        room.tenants().all(
            |t| match (st.lines.get(t).and_then(|l| l.places.first()), waiter) {
                (None, _) => true,
                (Some(first), Some(w)) => *first == w.place,
                (Some(_), None) => false,
            },
        )
    }

    /// Counts one more waiting request of `bytes` for `room`, last in line
    /// for each of its tenants, unless that passes a cap: the global ones,
    /// or `cap` for any of its tenants.
    fn enter(
        self: &Arc<Self>,
        bytes: usize,
        room: &Reservation,
        cap: Option<TenantCap>,
    ) -> Option<Waiter> {
        let mut st = self.state();
        if st.requests >= WAITERS_MAX || st.bytes.saturating_add(bytes) > WAITING_BYTES_MAX {
            return None;
        }
        if let Some((requests, held)) = cap {
            let over =
                |l: &Line| l.places.len() >= requests || l.bytes.saturating_add(bytes) > held;
            if room.tenants().any(|t| st.lines.get(t).is_some_and(over)) {
                return None;
            }
        }
        st.requests += 1;
        st.bytes += bytes;
        let place = st.next;
        st.next += 1;
        let tenants: Vec<String> = room.tenants().map(String::from).collect();
        for t in &tenants {
            let line = st.lines.entry(t.clone()).or_default();
            line.places.insert(place);
            line.bytes += bytes;
        }
        Some(Waiter {
            waiting: self.clone(),
            bytes,
            place,
            tenants,
        })
    }
}

/// How long each of `waiting` requests sleeps between its checks for room.
pub(crate) fn poll_interval(waiting: usize) -> Duration {
    let rounds = u32::try_from(waiting.div_ceil(POLLERS)).unwrap_or(u32::MAX);
    POLL.saturating_mul(rounds.max(1))
}

/// One waiting request, counted and in line until dropped.
pub(super) struct Waiter {
    waiting: Arc<Waiting>,
    bytes: usize,
    place: u64,
    tenants: Vec<String>,
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut st = self.waiting.state();
        st.requests = st.requests.saturating_sub(1);
        st.bytes = st.bytes.saturating_sub(self.bytes);
        for t in &self.tenants {
            if let Some(line) = st.lines.get_mut(t) {
                line.places.remove(&self.place);
                line.bytes = line.bytes.saturating_sub(self.bytes);
                if line.places.is_empty() {
                    st.lines.remove(t);
                }
            }
        }
    }
}

impl Dispatcher {
    /// Counts the events of a refusal for room ([`AcceptError::Busy`],
    /// [`AcceptError::TooManyDeliveries`]) as rejected, unless they were
    /// already: what the caller answering it calls.
    pub(crate) fn refused(&self, e: &AcceptError) {
        match e {
            AcceptError::Busy { needed, .. } => self.inner.metrics.rejected(needed.events as u64),
            AcceptError::TooManyDeliveries { events, .. } => {
                self.inner.metrics.rejected(*events as u64);
            }
            _ => {}
        }
    }

    /// Prometheus text of the requests waiting for room now.
    pub fn render_waiting_metrics(&self) -> String {
        let mut out = String::new();
        super::metrics::gauge(
            &mut out,
            super::metric_names::QUEUE_WAITING,
            "Publish requests (and sources' batches) waiting for room in the queue now.",
            self.inner.waiting.count() as u64,
        );
        out
    }

    /// Whether the queue is loaded enough for [`Dispatcher::admit`] to be
    /// worth a pass over a body: at least half full, or holding a tenant's
    /// share, or with requests waiting for room (a new one may have to
    /// queue behind them).
    pub fn under_pressure(&self) -> bool {
        let limit = self.inner.cfg.queue_capacity;
        let from = (limit / 2).min(self.inner.tenant_share().unwrap_or(limit));
        self.inner.waiting.count() > 0 || self.inner.sched().held() >= from
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
        // Never fits: waiting in line would only hold up the tenant's
        // other requests, and a retry would fare no better.
        if let Some(refused) = self.inner.never_fits(&sure, 0) {
            self.inner.metrics.rejected(events as u64);
            return Err(refused);
        }
        let waiting = &self.inner.waiting;
        let deadline = Instant::now() + wait;
        let mut waiter = None;
        // What a request that never came to the front of its line hears.
        let mut refused = Refused::Full;
        loop {
            if self.inner.stopping.load(Ordering::SeqCst) {
                return Err(AcceptError::ShuttingDown);
            }
            if waiting.may_try(&sure, waiter.as_ref()) {
                match self.inner.hold(&sure) {
                    Ok(room) => return Ok(Some(room)),
                    Err(r) => refused = r,
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if waiter.is_none() && !left.is_zero() {
                let cap = tenant_cap(self.inner.cfg.tenant_queue_share);
                waiter = waiting.enter(bytes, &sure, cap);
                if waiter.is_some() {
                    self.inner.metrics.queue_wait();
                }
            }
            if left.is_zero() || waiter.is_none() {
                self.inner.metrics.rejected(events as u64);
                return Err(busy(refused, Needed::default()));
            }
            tokio::time::sleep(poll_interval(waiting.count()).min(left)).await;
        }
    }
}

impl Inner {
    /// The refusal of a producer's batch that needs more `room` than the
    /// whole queue has, which it never fits ([`AcceptError::TooManyDeliveries`],
    /// its `events` not counted yet); `None` if it fits an empty queue.
    pub(super) fn never_fits(&self, room: &Reservation, events: usize) -> Option<AcceptError> {
        let capacity = self.cfg.queue_capacity;
        (room.total() > capacity).then(|| AcceptError::TooManyDeliveries {
            deliveries: room.total(),
            capacity,
            events,
        })
    }

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
        let room = Reservation::of([("acme", 1)]);
        let mut held: Vec<Waiter> = (0..WAITERS_MAX)
            .map(|_| waiting.enter(1, &room, None).expect("under the caps"))
            .collect();
        assert!(
            waiting.enter(1, &room, None).is_none(),
            "one waiter past the cap"
        );
        assert_eq!(waiting.count(), WAITERS_MAX);
        held.clear();
        assert_eq!(waiting.count(), 0);
        // Bytes: two bodies of half the cap fit, a third byte does not.
        let a = waiting.enter(WAITING_BYTES_MAX / 2, &room, None).unwrap();
        let b = waiting.enter(WAITING_BYTES_MAX / 2, &room, None).unwrap();
        assert!(
            waiting.enter(1, &room, None).is_none(),
            "a byte past the cap"
        );
        drop(a);
        assert!(waiting.enter(1, &room, None).is_some());
        drop(b);
        let st = waiting.state();
        assert_eq!((st.requests, st.bytes, st.lines.len()), (0, 0, 0));
    }

    /// Each tenant's waiting requests try for room one at a time, oldest
    /// first; a batch of several tenants waits for the front of each line,
    /// and a request that arrives while its tenant's line is not empty
    /// queues behind it.
    #[test]
    fn only_the_oldest_waiting_request_of_each_tenant_tries() {
        let waiting = Arc::new(Waiting::default());
        let (a, b, c) = (
            Reservation::of([("a", 5)]),
            Reservation::of([("b", 1)]),
            Reservation::of([("c", 1)]),
        );
        let both = Reservation::of([("a", 1), ("b", 1)]);
        assert!(waiting.may_try(&a, None), "nobody waits");
        let first = waiting.enter(1, &a, None).unwrap();
        let second = waiting.enter(1, &both, None).unwrap();
        let third = waiting.enter(1, &a, None).unwrap();
        assert!(waiting.may_try(&a, Some(&first)));
        assert!(!waiting.may_try(&a, None), "a newcomer queues behind");
        assert!(waiting.may_try(&c, None), "another tenant's line is empty");
        assert!(!waiting.may_try(&b, None), "`second` waits for b too");
        assert!(
            !waiting.may_try(&both, Some(&second)),
            "`first` is ahead for a"
        );
        assert!(!waiting.may_try(&a, Some(&third)));
        drop(first);
        assert!(waiting.may_try(&both, Some(&second)));
        assert!(!waiting.may_try(&a, Some(&third)));
        drop(second);
        assert!(waiting.may_try(&a, Some(&third)));
        drop(third);
        assert!(waiting.state().lines.is_empty());
    }

    /// With a tenant share, one tenant's requests hold at most that share
    /// of the waiting room (requests and bytes), leaving the rest to the
    /// others; a batch of several tenants counts against each.
    #[test]
    fn each_tenant_holds_at_most_its_share_of_the_waiting_room() {
        assert_eq!(tenant_cap(100), None);
        assert_eq!(
            tenant_cap(50),
            Some((WAITERS_MAX / 2, WAITING_BYTES_MAX / 2))
        );
        assert_eq!(tenant_cap(0).map(|c| c.0), Some(1));
        let waiting = Arc::new(Waiting::default());
        let (a, b) = (Reservation::of([("a", 1)]), Reservation::of([("b", 1)]));
        let both = Reservation::of([("a", 1), ("b", 1)]);
        let cap = Some((2, 100));
        let a1 = waiting.enter(10, &a, cap).unwrap();
        let a2 = waiting.enter(10, &a, cap).unwrap();
        assert!(waiting.enter(10, &a, cap).is_none(), "a's third request");
        assert!(
            waiting.enter(10, &both, cap).is_none(),
            "a batch with a's events"
        );
        let b1 = waiting.enter(90, &b, cap).unwrap();
        assert!(
            waiting.enter(11, &b, cap).is_none(),
            "b's bytes past its cap"
        );
        assert!(waiting.enter(10, &b, cap).is_some(), "b's bytes at its cap");
        drop((a1, a2, b1));
        assert!(waiting.enter(10, &both, cap).is_some());
        assert!(waiting.enter(10, &a, None).is_some(), "no share, no cap");
    }
}
