//! The in-memory scheduler in front of the workers: four priority queues,
//! a delay line for retries, per-handler concurrency caps, a worker kept
//! out of any one handler's reach, and per-key ordering. Pure data
//! structure (no threads, no clock, no I/O) so every rule is unit-tested;
//! the durable copy of every job lives in the store.
//!
//! Rules:
//! - `pop` takes the oldest runnable job of the most urgent priority.
//! - A job whose handler is at its concurrency cap, disabled or not loaded
//!   is parked per handler; one its tenant's breaker holds is parked per
//!   (handler, tenant), so the handler's other tenants keep running
//!   (`unpark_tenant` when that breaker lets it through). A finished
//!   delivery unparks one, back in its queue in arrival order (ahead of
//!   every later job); `unpark_all` (on enable / reload) unparks all,
//!   back at the front of their queues.
//! - **No handler takes every worker.** While other handlers are enabled
//!   (`Gate::Run::shared`), a handler's cap is its policy's concurrency but
//!   at most `workers - 1` (and at least 1): one worker always stays free
//!   for the others, so a handler looping on every event cannot make them
//!   wait for its deadlines. The worker is reserved, not lent: a running
//!   delivery cannot be preempted, so a worker handed to the busy handler
//!   while the others were idle would be out of reach when their next
//!   event arrives. A handler that is the only one enabled uses them all.
//! - For handlers that ask for ordering, a job with a key holds that key
//!   from its first pop until its delivery is final (ok or dead-lettered),
//!   retries included; later jobs with the same key wait behind it in
//!   arrival order. The key is taken before the concurrency cap is
//!   checked, so a job parked at the cap keeps its place in its key's line
//!   however parked jobs come back.
//! - Room for a batch is reserved (`reserve`) between its capacity check
//!   and its push, so concurrent accepts cannot all pass one check.
//! - **No tenant takes the whole queue.** With a tenant share set, a tenant
//!   may hold at most that many jobs while another tenant holds jobs, is in
//!   the same batch, or was refused for a full queue in the last
//!   [`WANT_MS`]. A tenant alone uses the whole queue; once another one
//!   asks, the first is refused until it is back under its share, so the
//!   room it frees goes to the newcomer instead of to its own next batch.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::event::Priority;

/// How long a tenant refused for a full queue counts as wanting room
/// (it sends again after `Retry-After`, 1 s).
pub(crate) const WANT_MS: u64 = 5_000;
/// The most tenants remembered as wanting room.
const MAX_WANTING: usize = 64;

/// Room [`Scheduler::reserve`] promised a batch, per tenant; given back with
/// [`Scheduler::unreserve`].
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Reservation {
    jobs: Vec<(String, usize)>,
}

impl Reservation {
    /// The tenants of a batch and their jobs, each tenant once (a batch
    /// may name thousands: merged through a map, not a scan).
    pub fn of<'a>(jobs: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let mut merged: HashMap<&str, usize> = HashMap::new();
        for (tenant, n) in jobs {
            *merged.entry(tenant).or_insert(0) += n;
        }
        Reservation {
            jobs: merged
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
        }
    }

    /// Jobs reserved in all.
    pub fn total(&self) -> usize {
        self.jobs.iter().map(|(_, n)| n).sum()
    }
}

/// Why [`Scheduler::reserve`] refused a batch.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The queue is at its limit.
    Full,
    /// This tenant holds its share while others want room.
    TenantShare(String),
}

/// What the routing table says about a handler when a job is popped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Runnable, with its policy.
    Run {
        /// Deliveries that may run at once.
        concurrency: u32,
        /// Whether same-key events go one at a time.
        ordered: bool,
        /// Whether other enabled handlers share the worker pool (then one
        /// worker stays out of this handler's reach).
        shared: bool,
    },
    /// Disabled or not loaded: keep the job, do not run it.
    Hold,
    /// Its tenant's breaker is open: keep it apart until
    /// [`Scheduler::unpark_tenant`]; the handler's other jobs still run.
    HoldTenant,
    /// Deleted: its durable pendings are gone, drop the job.
    Drop,
}

/// A queued delivery.
#[derive(Debug)]
pub(crate) struct Job<T> {
    /// The handler it is for.
    pub handler: String,
    /// The event's ordering key.
    pub key: Option<String>,
    /// The event's tenant (`""`: none).
    pub tenant: String,
    /// The event's priority.
    pub priority: Priority,
    /// Whether this job holds its `(handler, key)` (ordered handlers only).
    pub holds_key: bool,
    /// Arrival order, assigned by the scheduler on the first push (0 before).
    seq: u64,
    /// Whatever the caller needs to run it.
    pub data: T,
}

impl<T> Job<T> {
    /// A job that holds nothing yet.
    pub fn new(handler: String, key: Option<String>, priority: Priority, data: T) -> Self {
        Job {
            handler,
            key,
            tenant: String::new(),
            priority,
            holds_key: false,
            seq: 0,
            data,
        }
    }

    /// This job, for an event of `tenant`.
    pub fn with_tenant(mut self, tenant: String) -> Self {
        self.tenant = tenant;
        self
    }
}

/// See the module docs.
#[derive(Debug)]
pub(crate) struct Scheduler<T> {
    ready: [VecDeque<Job<T>>; 4],
    delayed: BTreeMap<(u64, u64), Job<T>>,
    seq: u64,
    inflight: HashMap<String, u32>,
    parked: HashMap<String, VecDeque<Job<T>>>,
    /// Jobs held by their tenant's breaker, per (handler, tenant).
    parked_tenant: HashMap<(String, String), VecDeque<Job<T>>>,
    keys: HashMap<(String, String), VecDeque<Job<T>>>,
    len: usize,
    /// Room promised to batches that passed their capacity check and are
    /// being written; they push their jobs, then give it back.
    reserved: usize,
    /// Jobs held and reserved per tenant; tenants with none are absent.
    tenants: HashMap<String, usize>,
    /// Tenants refused for a full queue, until when they count as wanting
    /// room.
    wanting: HashMap<String, u64>,
    /// The most deliveries one handler may run at once while it shares
    /// the pool: `workers - 1`, at least 1.
    shared_cap: u32,
}

impl<T> Scheduler<T> {
    /// A scheduler feeding a pool of `workers` threads.
    pub fn new(workers: usize) -> Self {
        let workers = u32::try_from(workers).unwrap_or(u32::MAX);
        Scheduler {
            ready: Default::default(),
            delayed: BTreeMap::new(),
            seq: 0,
            inflight: HashMap::new(),
            parked: HashMap::new(),
            parked_tenant: HashMap::new(),
            keys: HashMap::new(),
            len: 0,
            reserved: 0,
            tenants: HashMap::new(),
            wanting: HashMap::new(),
            shared_cap: workers.saturating_sub(1).max(1),
        }
    }

    /// Jobs held (ready, delayed, parked or waiting on a key); not in-flight ones.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Reserves room for the jobs of `batch` if the jobs held, those
    /// already reserved and these stay within `limit`, and, with a
    /// `tenant_share`, no tenant of the batch goes past it while another
    /// tenant wants room (module docs). A batch refused as [`Refused::Full`]
    /// marks its tenants as wanting room until `now_ms` + [`WANT_MS`].
    pub fn reserve(
        &mut self,
        batch: Reservation,
        limit: usize,
        tenant_share: Option<usize>,
        now_ms: u64,
    ) -> Result<Reservation, Refused> {
        if let Some(share) = tenant_share {
            self.wanting.retain(|_, until| *until > now_ms);
            for (tenant, n) in &batch.jobs {
                let held = self.tenants.get(tenant).copied().unwrap_or(0);
                if held.saturating_add(*n) <= share {
                    continue;
                }
                let other = |t: &String| t != tenant;
                let others_want = self.tenants.keys().any(other)
                    || self.wanting.keys().any(other)
                    || batch.jobs.iter().any(|(t, _)| other(t));
                if others_want {
                    return Err(Refused::TenantShare(tenant.clone()));
                }
            }
        }
        let after = self
            .len
            .saturating_add(self.reserved)
            .saturating_add(batch.total());
        if after > limit {
            if tenant_share.is_some() {
                for (tenant, _) in &batch.jobs {
                    // Two tenants wanting room already give every tenant
                    // another one: past a few the map need not grow (a
                    // batch may name thousands).
                    if self.wanting.len() >= MAX_WANTING && !self.wanting.contains_key(tenant) {
                        break;
                    }
                    self.wanting
                        .insert(tenant.clone(), now_ms.saturating_add(WANT_MS));
                }
            }
            return Err(Refused::Full);
        }
        self.reserved += batch.total();
        for (tenant, n) in &batch.jobs {
            self.add_tenant(tenant, *n);
        }
        Ok(batch)
    }

    /// Gives back room taken by [`Self::reserve`] (after pushing the jobs,
    /// or when the batch failed).
    pub fn unreserve(&mut self, taken: Reservation) {
        self.reserved = self.reserved.saturating_sub(taken.total());
        for (tenant, n) in &taken.jobs {
            self.sub_tenant(tenant, *n);
        }
    }

    fn add_tenant(&mut self, tenant: &str, n: usize) {
        if n == 0 {
            return;
        }
        match self.tenants.get_mut(tenant) {
            Some(held) => *held += n,
            None => {
                self.tenants.insert(tenant.to_string(), n);
            }
        }
    }

    fn sub_tenant(&mut self, tenant: &str, n: usize) {
        if let Some(held) = self.tenants.get_mut(tenant) {
            *held = held.saturating_sub(n);
            if *held == 0 {
                self.tenants.remove(tenant);
            }
        }
    }

    /// Jobs held and reserved for `tenant`.
    #[cfg(test)]
    pub fn tenant_len(&self, tenant: &str) -> usize {
        self.tenants.get(tenant).copied().unwrap_or(0)
    }

    /// Ready jobs per priority, most urgent first.
    pub fn depths(&self) -> [usize; 4] {
        let mut d = [0; 4];
        for (i, q) in self.ready.iter().enumerate() {
            d[i] = q.len();
        }
        d
    }

    /// Deliveries running now.
    #[cfg(test)]
    pub fn inflight(&self) -> usize {
        self.inflight.values().map(|&n| n as usize).sum()
    }

    /// Queues a job to run as soon as possible.
    pub fn push(&mut self, mut job: Job<T>) {
        self.len += 1;
        self.add_tenant(&job.tenant, 1);
        self.number(&mut job);
        self.ready[job.priority.index()].push_back(job);
    }

    /// Makes `job` hold its `(handler, key)` now, unless another job holds
    /// it: for a retry read back from the store at start-up. It held the
    /// key when its attempt failed, and the hold is not stored, so without
    /// this a later job with the key (ready while the retry waits for its
    /// time) would take the key and run first.
    pub fn hold_key(&mut self, job: &mut Job<T>) {
        let Some(key) = &job.key else { return };
        if job.holds_key {
            return;
        }
        let k = (job.handler.clone(), key.clone());
        if let std::collections::hash_map::Entry::Vacant(e) = self.keys.entry(k) {
            e.insert(VecDeque::new());
            job.holds_key = true;
        }
    }

    /// Queues a job to run at `due_ms`.
    pub fn push_delayed(&mut self, due_ms: u64, mut job: Job<T>) {
        self.len += 1;
        self.add_tenant(&job.tenant, 1);
        self.number(&mut job);
        self.seq += 1;
        self.delayed.insert((due_ms, self.seq), job);
    }

    /// Gives a job its arrival number, once.
    fn number(&mut self, job: &mut Job<T>) {
        if job.seq == 0 {
            self.seq += 1;
            job.seq = self.seq;
        }
    }

    /// Moves delayed jobs due by `now_ms` to the ready queues.
    pub fn promote_due(&mut self, now_ms: u64) {
        while let Some(entry) = self.delayed.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let job = entry.remove();
            self.ready[job.priority.index()].push_back(job);
        }
    }

    /// When the next delayed job falls due.
    pub fn next_due(&self) -> Option<u64> {
        self.delayed.keys().next().map(|(due, _)| *due)
    }

    /// The next runnable job, counted as in flight until [`Self::finish`].
    pub fn pop(&mut self, gate: impl Fn(&Job<T>) -> Gate) -> Option<Job<T>> {
        for p in 0..self.ready.len() {
            while let Some(mut job) = self.ready[p].pop_front() {
                match gate(&job) {
                    Gate::Drop => {
                        self.len -= 1;
                        self.sub_tenant(&job.tenant, 1);
                        if job.holds_key {
                            self.release_key(&job.handler, job.key.as_deref());
                        }
                    }
                    Gate::Hold => self.park(job),
                    Gate::HoldTenant => self
                        .parked_tenant
                        .entry((job.handler.clone(), job.tenant.clone()))
                        .or_default()
                        .push_back(job),
                    Gate::Run {
                        concurrency,
                        ordered,
                        shared,
                    } => {
                        if ordered
                            && !job.holds_key
                            && let Some(key) = &job.key
                        {
                            let k = (job.handler.clone(), key.clone());
                            if let Some(waiting) = self.keys.get_mut(&k) {
                                waiting.push_back(job);
                                continue;
                            }
                            self.keys.insert(k, VecDeque::new());
                            job.holds_key = true;
                        }
                        let cap = if shared {
                            concurrency.min(self.shared_cap)
                        } else {
                            concurrency
                        };
                        let running = self.inflight.get(&job.handler).copied().unwrap_or(0);
                        if running >= cap {
                            self.park(job);
                            continue;
                        }
                        *self.inflight.entry(job.handler.clone()).or_insert(0) += 1;
                        self.len -= 1;
                        self.sub_tenant(&job.tenant, 1);
                        return Some(job);
                    }
                }
            }
        }
        None
    }

    fn park(&mut self, job: Job<T>) {
        self.parked
            .entry(job.handler.clone())
            .or_default()
            .push_back(job);
    }

    /// Ends an in-flight delivery. `final_attempt` releases a held key (the
    /// next job with that key becomes runnable); a retry keeps holding it.
    pub fn finish(
        &mut self,
        handler: &str,
        key: Option<&str>,
        holds_key: bool,
        final_attempt: bool,
    ) {
        if let Some(n) = self.inflight.get_mut(handler) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.inflight.remove(handler);
            }
        }
        if holds_key && final_attempt {
            self.release_key(handler, key);
        }
        if let Some(parked) = self.parked.get_mut(handler) {
            let job = parked.pop_front();
            if parked.is_empty() {
                self.parked.remove(handler);
            }
            if let Some(job) = job {
                self.unpark_in_order(job);
            }
        }
    }

    /// Puts a parked job back ahead of every later arrival in its queue.
    /// It was parked when it reached the front, so only jobs put back the
    /// same way (or retries come due) can be older: the scan stops early.
    fn unpark_in_order(&mut self, job: Job<T>) {
        let q = &mut self.ready[job.priority.index()];
        let at = q.iter().position(|j| j.seq > job.seq).unwrap_or(q.len());
        q.insert(at, job);
    }

    /// Lets the next job waiting on `(handler, key)` run (after a job that
    /// held it was finished without releasing it).
    pub fn release_key(&mut self, handler: &str, key: Option<&str>) {
        let Some(key) = key else { return };
        let k = (handler.to_string(), key.to_string());
        let Some(waiting) = self.keys.get_mut(&k) else {
            return;
        };
        match waiting.pop_front() {
            Some(mut next) => {
                next.holds_key = true;
                self.ready[next.priority.index()].push_front(next);
            }
            None => {
                self.keys.remove(&k);
            }
        }
    }

    /// Makes every parked job of `handler` runnable again, its tenants'
    /// included (after it is enabled, reloaded or deleted; `pop` applies
    /// the new gate).
    pub fn unpark_all(&mut self, handler: &str) {
        self.unpark_handler(handler);
        let tenants: Vec<_> = self
            .parked_tenant
            .keys()
            .filter(|(h, _)| h == handler)
            .cloned()
            .collect();
        for (h, t) in tenants {
            self.unpark_tenant(&h, &t);
        }
    }

    /// Makes the jobs parked per handler runnable again (its breaker's
    /// cool-down ended); those its tenants' breakers hold stay.
    pub fn unpark_handler(&mut self, handler: &str) {
        if let Some(parked) = self.parked.remove(handler) {
            for job in parked.into_iter().rev() {
                self.ready[job.priority.index()].push_front(job);
            }
        }
    }

    /// Makes the jobs `tenant`'s breaker held for `handler` runnable again.
    pub fn unpark_tenant(&mut self, handler: &str, tenant: &str) {
        let k = (handler.to_string(), tenant.to_string());
        if let Some(parked) = self.parked_tenant.remove(&k) {
            for job in parked {
                self.unpark_in_order(job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool most tests schedule for: larger than any cap they use.
    const WORKERS: usize = 64;

    fn job(handler: &str, key: Option<&str>, p: Priority, n: u32) -> Job<u32> {
        Job::new(handler.into(), key.map(String::from), p, n)
    }

    fn run(concurrency: u32, ordered: bool) -> impl Fn(&Job<u32>) -> Gate {
        move |_| Gate::Run {
            concurrency,
            ordered,
            shared: false,
        }
    }

    /// Every handler at `concurrency`, sharing the pool with the others.
    fn shared(concurrency: u32) -> impl Fn(&Job<u32>) -> Gate {
        move |_| Gate::Run {
            concurrency,
            ordered: false,
            shared: true,
        }
    }

    /// Pops until nothing runs; the handlers of the jobs started, in order.
    fn pop_all(s: &mut Scheduler<u32>, gate: impl Fn(&Job<u32>) -> Gate) -> Vec<String> {
        std::iter::from_fn(|| s.pop(&gate).map(|j| j.handler)).collect()
    }

    #[test]
    fn priorities_then_fifo() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", None, Priority::Low, 1));
        s.push(job("h", None, Priority::Normal, 2));
        s.push(job("h", None, Priority::Critical, 3));
        s.push(job("h", None, Priority::Normal, 4));
        assert_eq!(s.depths(), [1, 0, 2, 1]);
        let order: Vec<u32> =
            std::iter::from_fn(|| s.pop(run(10, false)).map(|j| j.data)).collect();
        assert_eq!(order, [3, 2, 4, 1]);
        assert_eq!(s.len(), 0);
        assert_eq!(s.inflight(), 4);
    }

    #[test]
    fn concurrency_cap_parks_and_finish_unparks() {
        let mut s = Scheduler::new(WORKERS);
        for n in 0..3 {
            s.push(job("h", None, Priority::Normal, n));
        }
        s.push(job("other", None, Priority::Low, 9));
        let gate = run(1, false);
        assert_eq!(s.pop(&gate).unwrap().data, 0);
        // `h` is at its cap: its jobs park, `other` still runs.
        assert_eq!(s.pop(&gate).unwrap().data, 9);
        assert!(s.pop(&gate).is_none());
        assert_eq!(s.len(), 2);
        s.finish("h", None, false, true);
        assert_eq!(s.pop(&gate).unwrap().data, 1);
        assert!(s.pop(&gate).is_none());
        s.finish("h", None, false, true);
        assert_eq!(s.pop(&gate).unwrap().data, 2);
    }

    #[test]
    fn held_handlers_keep_jobs_until_unparked() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", None, Priority::Normal, 1));
        s.push(job("h", None, Priority::Normal, 2));
        assert!(s.pop(|_| Gate::Hold).is_none());
        assert_eq!(s.len(), 2);
        s.unpark_all("h");
        let order: Vec<u32> =
            std::iter::from_fn(|| s.pop(run(10, false)).map(|j| j.data)).collect();
        assert_eq!(order, [1, 2]);
    }

    #[test]
    fn deleted_handlers_drop_jobs() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("gone", None, Priority::Normal, 1));
        s.push(job("h", None, Priority::Normal, 2));
        let gate = |j: &Job<u32>| {
            if j.handler == "gone" {
                Gate::Drop
            } else {
                Gate::Run {
                    concurrency: 1,
                    ordered: false,
                    shared: true,
                }
            }
        };
        assert_eq!(s.pop(gate).unwrap().data, 2);
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn ordered_keys_run_one_at_a_time_in_order_across_retries() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", Some("k"), Priority::Normal, 1));
        s.push(job("h", Some("k"), Priority::Normal, 2));
        s.push(job("h", Some("other"), Priority::Normal, 3));
        s.push(job("h", None, Priority::Normal, 4));
        let gate = run(10, true);
        let first = s.pop(&gate).unwrap();
        assert_eq!((first.data, first.holds_key), (1, true));
        // 2 waits behind 1; 3 and 4 are free to run.
        assert_eq!(s.pop(&gate).unwrap().data, 3);
        assert_eq!(s.pop(&gate).unwrap().data, 4);
        assert!(s.pop(&gate).is_none());
        // 1 fails and is retried later: the key stays held.
        s.finish("h", Some("k"), true, false);
        s.push_delayed(100, first);
        assert!(s.pop(&gate).is_none());
        s.promote_due(99);
        assert!(s.pop(&gate).is_none());
        s.promote_due(100);
        let retried = s.pop(&gate).unwrap();
        assert_eq!(retried.data, 1);
        s.finish("h", Some("k"), true, true);
        let next = s.pop(&gate).unwrap();
        assert_eq!((next.data, next.holds_key), (2, true));
        s.finish("h", Some("k"), true, true);
        assert_eq!(s.len(), 0);
    }

    /// At start-up a retry comes back from the store after its time, and a
    /// later job with its key comes back ready: the retry keeps the key.
    #[test]
    fn a_retry_read_back_at_start_up_keeps_its_key() {
        let mut s = Scheduler::new(WORKERS);
        let mut retry = job("h", Some("k"), Priority::Normal, 1);
        s.hold_key(&mut retry);
        assert!(retry.holds_key);
        s.push_delayed(100, retry);
        let mut later = job("h", Some("k"), Priority::Normal, 2);
        // Only one job holds a key.
        s.hold_key(&mut later);
        assert!(!later.holds_key);
        s.push(later);
        let gate = run(10, true);
        assert!(s.pop(&gate).is_none(), "2 waits for 1's retry");
        s.promote_due(100);
        assert_eq!(s.pop(&gate).unwrap().data, 1);
        s.finish("h", Some("k"), true, true);
        let next = s.pop(&gate).unwrap();
        assert_eq!((next.data, next.holds_key), (2, true));
    }

    #[test]
    fn unordered_handlers_ignore_keys() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", Some("k"), Priority::Normal, 1));
        s.push(job("h", Some("k"), Priority::Normal, 2));
        let gate = run(10, false);
        assert_eq!(s.pop(&gate).unwrap().data, 1);
        assert_eq!(s.pop(&gate).unwrap().data, 2);
    }

    #[test]
    fn delayed_jobs_come_due_in_time_order() {
        let mut s = Scheduler::new(WORKERS);
        s.push_delayed(30, job("h", None, Priority::Normal, 3));
        s.push_delayed(10, job("h", None, Priority::Normal, 1));
        s.push_delayed(20, job("h", None, Priority::Normal, 2));
        assert_eq!(s.next_due(), Some(10));
        s.promote_due(25);
        assert_eq!(s.next_due(), Some(30));
        let order: Vec<u32> =
            std::iter::from_fn(|| s.pop(run(10, false)).map(|j| j.data)).collect();
        assert_eq!(order, [1, 2]);
        assert_eq!(s.len(), 1);
    }

    #[test]
    fn a_shared_handler_leaves_one_worker_to_the_others() {
        // Two workers: the looper's policy allows 16, but while the pool is
        // shared it gets one worker and the other stays free.
        let mut s = Scheduler::new(2);
        for n in 0..4 {
            s.push(job("looper", None, Priority::Normal, n));
        }
        assert_eq!(pop_all(&mut s, shared(16)), ["looper"]);
        assert_eq!(s.inflight(), 1);
        s.push(job("good", None, Priority::Normal, 9));
        assert_eq!(pop_all(&mut s, shared(16)), ["good"]);
        // The good delivery ends; the free worker is still not the looper's.
        s.finish("good", None, false, true);
        assert!(s.pop(shared(16)).is_none());
        // The looper's delivery ends: its next job runs, one at a time.
        s.finish("looper", None, false, true);
        assert_eq!(pop_all(&mut s, shared(16)), ["looper"]);
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn the_shared_cap_is_workers_minus_one_and_never_below_one_or_the_policy() {
        let started = |workers: usize, concurrency: u32, shared: bool| {
            let mut s = Scheduler::new(workers);
            for n in 0..10 {
                s.push(job("h", None, Priority::Normal, n));
            }
            let gate = move |_: &Job<u32>| Gate::Run {
                concurrency,
                ordered: false,
                shared,
            };
            pop_all(&mut s, gate).len()
        };
        assert_eq!(started(4, 16, true), 3);
        assert_eq!(started(4, 2, true), 2, "the policy's own cap is lower");
        assert_eq!(started(2, 16, true), 1);
        assert_eq!(started(1, 16, true), 1, "one worker: nothing to keep back");
        assert_eq!(started(0, 16, true), 1);
        // The only enabled handler uses the whole pool (and its policy).
        assert_eq!(started(4, 16, false), 10);
        assert_eq!(started(4, 2, false), 2);
    }

    #[test]
    fn the_shared_cap_keeps_priorities_and_key_order() {
        let mut s = Scheduler::new(3);
        s.push(job("h", Some("k"), Priority::Low, 1));
        s.push(job("h", Some("k"), Priority::Low, 2));
        s.push(job("h", None, Priority::Low, 3));
        s.push(job("h", None, Priority::Critical, 4));
        s.push(job("h", None, Priority::High, 5));
        s.push(job("other", None, Priority::Low, 6));
        let gate = |_: &Job<u32>| Gate::Run {
            concurrency: 16,
            ordered: true,
            shared: true,
        };
        // `h` gets two of the three workers, most urgent first; `other`,
        // last in line, still gets the third.
        let started: Vec<u32> = std::iter::from_fn(|| s.pop(gate).map(|j| j.data)).collect();
        assert_eq!(started, [4, 5, 6]);
        s.finish("h", None, false, true);
        s.finish("h", None, false, true);
        // The parked low jobs come back in arrival order; 2 waits behind 1.
        let first = s.pop(gate).unwrap();
        assert_eq!((first.data, first.holds_key), (1, true));
        assert_eq!(s.pop(gate).unwrap().data, 3);
        assert!(s.pop(gate).is_none());
        s.finish("h", Some("k"), true, true);
        let next = s.pop(gate).unwrap();
        assert_eq!((next.data, next.holds_key), (2, true));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn jobs_parked_at_the_cap_keep_their_key_order_however_they_come_back() {
        // x and y fill the cap; k1 then k2 (one key) arrive behind them.
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", None, Priority::Normal, 1));
        s.push(job("h", None, Priority::Normal, 2));
        s.push(job("h", Some("k"), Priority::Normal, 3));
        s.push(job("h", Some("k"), Priority::Normal, 4));
        s.push(job("h", None, Priority::Normal, 5));
        let gate = run(2, true);
        assert_eq!(s.pop(&gate).unwrap().data, 1);
        assert_eq!(s.pop(&gate).unwrap().data, 2);
        assert!(s.pop(&gate).is_none());
        // Both running deliveries end before any worker pops again.
        s.finish("h", None, false, true);
        s.finish("h", None, false, true);
        let started: Vec<(u32, bool)> = std::iter::from_fn(|| s.pop(&gate))
            .map(|j| (j.data, j.holds_key))
            .collect();
        assert_eq!(started, [(3, true), (5, false)], "4 waits for 3's key");
        s.finish("h", Some("k"), true, true);
        let next = s.pop(&gate).unwrap();
        assert_eq!((next.data, next.holds_key), (4, true));
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn a_held_tenant_waits_apart_while_the_handlers_other_tenants_run() {
        let mut s = Scheduler::new(WORKERS);
        for (n, t) in [(1, "evil"), (2, "good"), (3, "evil"), (4, "")] {
            s.push(job("h", None, Priority::Normal, n).with_tenant(t.into()));
        }
        let gate = |j: &Job<u32>| {
            if j.tenant == "evil" {
                Gate::HoldTenant
            } else {
                Gate::Run {
                    concurrency: 10,
                    ordered: false,
                    shared: false,
                }
            }
        };
        let started: Vec<u32> = std::iter::from_fn(|| s.pop(gate).map(|j| j.data)).collect();
        assert_eq!(started, [2, 4]);
        assert_eq!(s.len(), 2);
        // Finishing the handler's deliveries does not wake the held tenant.
        s.finish("h", None, false, true);
        s.unpark_handler("h");
        assert!(s.pop(run(10, false)).is_none());
        // Its breaker closes: its jobs come back in arrival order.
        s.unpark_tenant("h", "good");
        assert!(s.pop(run(10, false)).is_none());
        s.unpark_tenant("h", "evil");
        let order: Vec<u32> =
            std::iter::from_fn(|| s.pop(run(10, false)).map(|j| j.data)).collect();
        assert_eq!(order, [1, 3]);
        // unpark_all wakes tenants' jobs too.
        s.push(job("h", None, Priority::Normal, 5).with_tenant("evil".into()));
        assert!(s.pop(gate).is_none());
        s.unpark_all("h");
        assert_eq!(s.pop(run(10, false)).unwrap().data, 5);
        assert_eq!(s.len(), 0);
    }

    /// `n` jobs of tenant `t`.
    fn of(t: &str, n: usize) -> Reservation {
        Reservation::of([(t, n)])
    }

    #[test]
    fn reserved_room_counts_until_it_is_given_back() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", None, Priority::Normal, 1));
        let first = s.reserve(of("", 6), 10, None, 0).unwrap();
        // Held 1 + reserved 6: 3 more fit, 4 do not.
        assert_eq!(
            s.reserve(of("", 4), 10, None, 0).unwrap_err(),
            Refused::Full
        );
        let second = s.reserve(of("", 3), 10, None, 0).unwrap();
        assert!(s.reserve(of("", 1), 10, None, 0).is_err());
        // The first batch failed to be written; the second pushes its jobs.
        s.unreserve(first);
        s.unreserve(second);
        for n in 0..3 {
            s.push(job("h", None, Priority::Normal, n));
        }
        assert_eq!(s.len(), 4);
        assert!(s.reserve(of("", 6), 10, None, 0).is_ok());
        assert!(s.reserve(of("", 1), 10, None, 0).is_err());
        assert!(
            s.reserve(of("", 0), 10, None, 0).is_ok(),
            "an empty batch always fits a full queue"
        );
    }

    #[test]
    fn a_tenant_alone_fills_the_queue_and_yields_its_share_to_a_newcomer() {
        let mut s = Scheduler::new(WORKERS);
        let hot = |n| job("h", None, Priority::Normal, n).with_tenant("hot".into());
        // Alone, `hot` goes past its share of 5 up to the limit of 10.
        let r = s.reserve(of("hot", 10), 10, Some(5), 0).unwrap();
        s.unreserve(r);
        for n in 0..10 {
            s.push(hot(n));
        }
        assert_eq!(s.tenant_len("hot"), 10);
        // The queue is full: `bg` is refused and now wants room.
        assert_eq!(s.reserve(of("bg", 1), 10, Some(5), 0), Err(Refused::Full));
        // Room freed by `hot`'s jobs running goes to `bg`, not to `hot`.
        for _ in 0..4 {
            s.pop(run(10, false)).unwrap();
            s.finish("h", None, false, true);
        }
        assert_eq!(
            s.reserve(of("hot", 1), 10, Some(5), 1_000),
            Err(Refused::TenantShare("hot".into()))
        );
        let r = s.reserve(of("bg", 4), 10, Some(5), 1_000).unwrap();
        assert_eq!(s.tenant_len("bg"), 4);
        s.unreserve(r);
        assert_eq!(s.tenant_len("bg"), 0);
        // A batch of many tenants refused for a full queue leaves a bounded
        // trace.
        let many: Vec<String> = (0..1_000).map(|i| format!("t{i}")).collect();
        let r = Reservation::of(many.iter().map(|t| (t.as_str(), 1)));
        assert_eq!(s.reserve(r, 10, Some(5), 1_000), Err(Refused::Full));
        assert_eq!(s.wanting.len(), MAX_WANTING);
        // Once the others stopped asking, `hot` is alone again.
        assert!(
            s.reserve(of("hot", 4), 10, Some(5), 1_000 + WANT_MS)
                .is_ok()
        );
    }

    #[test]
    fn tenants_held_jobs_count_until_they_run_or_are_dropped() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("gone", None, Priority::Normal, 3).with_tenant("b".into()));
        s.push(job("h", None, Priority::Normal, 1).with_tenant("a".into()));
        s.push_delayed(
            50,
            job("h", None, Priority::Normal, 2).with_tenant("a".into()),
        );
        assert_eq!((s.tenant_len("a"), s.tenant_len("b")), (2, 1));
        // `a` holds 2 of its share of 2 while `b` holds a job: refused.
        assert_eq!(
            s.reserve(of("a", 1), 100, Some(2), 0),
            Err(Refused::TenantShare("a".into()))
        );
        let gate = |j: &Job<u32>| match j.handler.as_str() {
            "gone" => Gate::Drop,
            _ => run(10, false)(j),
        };
        assert_eq!(s.pop(gate).unwrap().data, 1);
        assert_eq!((s.tenant_len("a"), s.tenant_len("b")), (1, 0));
        // `b` is gone; a batch of both tenants still holds each to its share.
        assert!(s.reserve(of("a", 5), 100, Some(2), 0).is_ok());
        assert_eq!(
            s.reserve(Reservation::of([("a", 1), ("b", 1)]), 100, Some(2), 0),
            Err(Refused::TenantShare("a".into()))
        );
    }
}
