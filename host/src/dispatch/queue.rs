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
//!   back at the front of their queues. `drop_handler` (on delete) drops
//!   all of a deleted handler's jobs at once, wherever they wait.
//! - **No handler takes every worker.** While other handlers are enabled
//!   (`Gate::Run::shared`), a handler's cap is its policy's concurrency but
//!   at most `workers - 1` (and at least 1): one worker always stays free
//!   for the others, so a handler looping on every event cannot make them
//!   wait for its deadlines. A handler that is the only one enabled uses
//!   them all.
//! - **The kept worker is lent only to a proven-fast handler, while the
//!   others have nothing to run.** A running delivery cannot be
//!   preempted, so a worker handed to a busy handler is out of reach
//!   until that delivery ends. When a worker finds nothing else runnable
//!   and no other handler's delivery is running, it takes a job parked at
//!   the shared cap if that handler's last [`LEND_AFTER_RUNS`] deliveries
//!   each kept their worker busy under [`LEND_MAX_RUN_US`] (and it is
//!   under its policy's cap). Busy is the worker thread's CPU time plus
//!   the handler's own waits (`DeliveryReport::waited`), not wall time:
//!   in one run of the `dispatch` bench on two crowded cores, 322
//!   deliveries of a handler that needs ≈ 20 µs took 5–10 ms of wall
//!   time, preempted or waiting on the store, which is not the handler's
//!   doing. Another handler's next event then waits for one of its
//!   deliveries to end, and goes first, since only a worker that found
//!   nothing else lends. A slower delivery ends the lending for
//!   [`LEND_QUIET_MS`] or a hundred times its own length, whichever is
//!   longer: a handler that turns slow holds the kept worker for one
//!   deadline, then not for a hundred, about 1% of the time at most. A
//!   handler's record starts over when it is enabled, reloaded or
//!   deleted. What the lending
//!   costs a neighbour was measured (`noisy_neighbour`, a flooded fast
//!   handler at its default policy against concurrency 1, which is never
//!   lent): nothing beyond the runs' noise.
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
/// A delivery that kept its worker busy longer than this (µs; CPU time
/// and its own waits) is slow: its handler is not lent the kept worker.
pub(crate) const LEND_MAX_RUN_US: u64 = 5_000;
/// Fast deliveries in a row a handler needs before it is lent the kept
/// worker.
pub(crate) const LEND_AFTER_RUNS: u32 = 64;
/// The least time after a slow delivery before its handler is lent the
/// kept worker again (a hundred times the slow delivery, if longer).
pub(crate) const LEND_QUIET_MS: u64 = 60_000;

/// Room [`Scheduler::reserve`] promised a batch, per tenant; given back with
/// [`Scheduler::unreserve`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Reservation {
    jobs: Vec<(String, usize)>,
}

impl Reservation {
    /// The tenants of a batch and their jobs, each tenant once (a batch
    /// may name thousands: merged through a map, not a scan). A tenant
    /// without jobs (its events routed nowhere, or duplicates) takes no
    /// room and wants none: it is left out, so it is not held to its share.
    pub fn of<'a>(jobs: impl IntoIterator<Item = (&'a str, usize)>) -> Self {
        let mut merged: HashMap<&str, usize> = HashMap::new();
        for (tenant, n) in jobs.into_iter().filter(|(_, n)| *n > 0) {
            *merged.entry(tenant).or_insert(0) += n;
        }
        Reservation {
            jobs: merged
                .into_iter()
                .map(|(t, n)| (t.to_string(), n))
                .collect(),
        }
    }

    /// The tenants room is reserved for.
    pub fn tenants(&self) -> impl Iterator<Item = &str> {
        self.jobs.iter().map(|(t, _)| t.as_str())
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

/// A delivery that ran, for [`Scheduler::finish`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ran {
    /// How long it kept its worker busy, in µs: CPU time and its own waits.
    pub took_us: u64,
    /// When it ended (ms since the epoch).
    pub at_ms: u64,
}

/// A handler's recent deliveries, for lending it the kept worker.
#[derive(Clone, Copy, Debug, Default)]
struct Record {
    /// Fast deliveries in a row.
    fast: u32,
    /// Not lent before this time (ms), after a slow delivery.
    quiet_until_ms: u64,
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
    /// Whether it was started on the kept worker, lent (set by `pop`).
    pub lent: bool,
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
            lent: false,
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
    /// The workers in the pool: the most deliveries running at once.
    workers: u32,
    /// Handlers' recent deliveries, once they ran one.
    records: HashMap<String, Record>,
    /// Handlers with jobs parked at the shared cap that may be lent the
    /// kept worker, in turn (a few: each has `shared_cap` running).
    lendable: VecDeque<String>,
    /// The time of the last [`Self::promote_due`] (ms): the clock lending
    /// reads.
    now_ms: u64,
    /// Deliveries running, all handlers together.
    running: u32,
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
            workers: workers.max(1),
            records: HashMap::new(),
            lendable: VecDeque::new(),
            now_ms: 0,
            running: 0,
        }
    }

    /// Jobs held and room reserved for batches being written.
    pub fn held(&self) -> usize {
        self.len.saturating_add(self.reserved)
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
    /// Reserved, `batch` is the room to give back with [`Self::unreserve`].
    pub fn reserve(
        &mut self,
        batch: &Reservation,
        limit: usize,
        tenant_share: Option<usize>,
        now_ms: u64,
    ) -> Result<(), Refused> {
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
        Ok(())
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

    /// `handler`'s deliveries running now.
    pub fn running_of(&self, handler: &str) -> u32 {
        self.inflight.get(handler).copied().unwrap_or(0)
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
        self.now_ms = self.now_ms.max(now_ms);
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
                            if cap < concurrency && !self.lendable.contains(&job.handler) {
                                self.lendable.push_back(job.handler.clone());
                            }
                            self.park(job);
                            continue;
                        }
                        return Some(self.start(job));
                    }
                }
            }
        }
        self.lend(gate)
    }

    /// Counts `job` as running (not lent, unless [`Self::lend`] says so).
    fn start(&mut self, mut job: Job<T>) -> Job<T> {
        job.lent = false;
        match self.inflight.get_mut(&job.handler) {
            Some(n) => *n += 1,
            None => {
                self.inflight.insert(job.handler.clone(), 1);
            }
        }
        self.running += 1;
        self.len -= 1;
        self.sub_tenant(&job.tenant, 1);
        job
    }

    /// Whether `handler`'s recent deliveries earn it the kept worker.
    fn is_fast(&self, handler: &str) -> bool {
        self.records
            .get(handler)
            .is_some_and(|r| r.fast >= LEND_AFTER_RUNS && self.now_ms >= r.quiet_until_ms)
    }

    /// With nothing else runnable, the oldest job parked at the shared cap
    /// of a fast handler under its policy's cap, handlers taking turns.
    fn lend(&mut self, gate: impl Fn(&Job<T>) -> Gate) -> Option<Job<T>> {
        for _ in 0..self.lendable.len() {
            let handler = self.lendable.pop_front()?;
            let running = self.inflight.get(&handler).copied().unwrap_or(0);
            // Under the pool's size, no other handler's delivery running.
            let may_lend =
                running < self.workers && self.running == running && self.is_fast(&handler);
            let Some(parked) = self.parked.get_mut(&handler) else {
                // Nothing parked any more: out of the turn.
                continue;
            };
            let runs = may_lend
                && matches!(parked.front().map(&gate),
                    Some(Gate::Run { concurrency, .. }) if running < concurrency);
            let job = if runs { parked.pop_front() } else { None };
            let Some(job) = job else {
                // Not now: maybe once it has proven fast, or is under its cap.
                self.lendable.push_back(handler);
                continue;
            };
            if parked.is_empty() {
                self.parked.remove(&handler);
            } else {
                self.lendable.push_back(handler);
            }
            let mut job = self.start(job);
            job.lent = true;
            return Some(job);
        }
        None
    }

    /// Parks `job` behind its handler's parked jobs, or in front of them
    /// if it is older (a job put back by `finish` and parked again while
    /// its handler runs on a lent worker keeps its place).
    fn park(&mut self, job: Job<T>) {
        let parked = match self.parked.get_mut(&job.handler) {
            Some(parked) => parked,
            None => self.parked.entry(job.handler.clone()).or_default(),
        };
        if parked.front().is_some_and(|first| first.seq > job.seq) {
            parked.push_front(job);
        } else {
            parked.push_back(job);
        }
    }

    /// Counts a delivery of `handler` that ran towards lending it the
    /// kept worker.
    fn note_run(&mut self, handler: &str, ran: Ran) {
        let record = match self.records.get_mut(handler) {
            Some(r) => r,
            None => self.records.entry(handler.to_string()).or_default(),
        };
        if ran.took_us <= LEND_MAX_RUN_US {
            record.fast = record.fast.saturating_add(1);
        } else {
            record.fast = 0;
            let quiet = (ran.took_us / 1_000).saturating_mul(100).max(LEND_QUIET_MS);
            record.quiet_until_ms = ran.at_ms.saturating_add(quiet);
        }
    }

    /// Ends an in-flight delivery. `final_attempt` releases a held key (the
    /// next job with that key becomes runnable); a retry keeps holding it.
    /// `ran` is how long it ran, if it did (not for a job given back
    /// unrun): it counts towards lending the handler the kept worker.
    pub fn finish(
        &mut self,
        handler: &str,
        key: Option<&str>,
        holds_key: bool,
        final_attempt: bool,
        ran: Option<Ran>,
    ) {
        if let Some(ran) = ran {
            self.note_run(handler, ran);
        }
        if let Some(n) = self.inflight.get_mut(handler) {
            self.running = self.running.saturating_sub(1);
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

    /// Drops every job of `handler` held here (ready, delayed, parked,
    /// waiting on a key), as `pop` drops one its gate calls deleted, but at
    /// once: the handler was deleted, and a handler deployed again under
    /// its name before a worker came to them must not run what was routed
    /// to the old one. Running jobs are left to finish. How many went.
    pub fn drop_handler(&mut self, handler: &str) -> usize {
        let mine = |j: &Job<T>| j.handler == handler;
        let mut gone: Vec<Job<T>> = Vec::new();
        for q in &mut self.ready {
            let (drop, keep): (VecDeque<_>, VecDeque<_>) =
                std::mem::take(q).into_iter().partition(mine);
            *q = keep;
            gone.extend(drop);
        }
        gone.extend(self.delayed.extract_if(.., |_, j| mine(j)).map(|(_, j)| j));
        gone.extend(self.parked.remove(handler).into_iter().flatten());
        let tenants = self.parked_tenant.extract_if(|(h, _), _| h == handler);
        gone.extend(tenants.flat_map(|(_, parked)| parked));
        for ((h, _), waiting) in &mut self.keys {
            if h == handler {
                gone.extend(waiting.drain(..));
            }
        }
        for job in &gone {
            self.len -= 1;
            self.sub_tenant(&job.tenant, 1);
            // A key whose holder went here has nobody left to release
            // it (its waiters went too); one held by a running delivery
            // is released when that ends.
            if job.holds_key
                && let Some(key) = &job.key
            {
                self.keys.remove(&(job.handler.clone(), key.clone()));
            }
        }
        self.records.remove(handler);
        self.lendable.retain(|h| h != handler);
        gone.len()
    }

    /// Makes every parked job of `handler` runnable again, its tenants'
    /// included (after it is enabled, reloaded or deleted; `pop` applies
    /// the new gate). Its record of recent deliveries starts over: new
    /// code earns the kept worker anew.
    pub fn unpark_all(&mut self, handler: &str) {
        self.records.remove(handler);
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
        s.finish("h", None, false, true, None);
        assert_eq!(s.pop(&gate).unwrap().data, 1);
        assert!(s.pop(&gate).is_none());
        s.finish("h", None, false, true, None);
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

    /// A deleted handler's jobs go at once wherever they wait (a handler
    /// deployed again under the name must not run them); its running ones
    /// stay counted until they finish, and every count adds up.
    #[test]
    fn dropping_a_handler_takes_every_job_it_holds_at_once() {
        let mut s = Scheduler::new(WORKERS);
        let t = |h: &str, key: Option<&str>, n| {
            job(h, key, Priority::Normal, n).with_tenant("acme".into())
        };
        for j in [
            t("gone", Some("k"), 1),
            t("gone", Some("k"), 2),
            t("gone", None, 3),
            t("h", None, 4),
            t("gone", None, 5),
        ] {
            s.push(j);
        }
        let gate = run(2, true);
        // 1 runs holding `k`, 2 waits on `k`, 3 and 4 run, 5 parks at the cap.
        assert_eq!(pop_all(&mut s, &gate), ["gone", "gone", "h"]);
        s.push(t("gone", None, 6));
        assert!(
            s.pop(|_| Gate::HoldTenant).is_none(),
            "6 waits on its tenant"
        );
        s.push_delayed(1_000, t("gone", None, 7));
        s.push(t("h", None, 8));
        assert_eq!((s.len(), s.tenant_len("acme")), (5, 5));

        assert_eq!(s.drop_handler("gone"), 4, "2, 5, 6 and 7");
        assert_eq!((s.len(), s.tenant_len("acme"), s.inflight()), (1, 1, 3));
        s.finish("gone", Some("k"), true, true, None);
        s.finish("gone", None, false, true, None);
        // `k` is free for the next handler of the name; nothing of the old
        // one comes back, the delayed retry included.
        s.push(t("gone", Some("k"), 9));
        s.promote_due(2_000);
        let order: Vec<u32> = std::iter::from_fn(|| s.pop(&gate).map(|j| j.data)).collect();
        assert_eq!(order, [8, 9]);
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
        s.finish("h", Some("k"), true, false, None);
        s.push_delayed(100, first);
        assert!(s.pop(&gate).is_none());
        s.promote_due(99);
        assert!(s.pop(&gate).is_none());
        s.promote_due(100);
        let retried = s.pop(&gate).unwrap();
        assert_eq!(retried.data, 1);
        s.finish("h", Some("k"), true, true, None);
        let next = s.pop(&gate).unwrap();
        assert_eq!((next.data, next.holds_key), (2, true));
        s.finish("h", Some("k"), true, true, None);
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
        s.finish("h", Some("k"), true, true, None);
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
        s.finish("good", None, false, true, None);
        assert!(s.pop(shared(16)).is_none());
        // The looper's delivery ends: its next job runs, one at a time.
        s.finish("looper", None, false, true, None);
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
        s.finish("h", None, false, true, None);
        s.finish("h", None, false, true, None);
        // The parked low jobs come back in arrival order; 2 waits behind 1.
        let first = s.pop(gate).unwrap();
        assert_eq!((first.data, first.holds_key), (1, true));
        assert_eq!(s.pop(gate).unwrap().data, 3);
        assert!(s.pop(gate).is_none());
        s.finish("h", Some("k"), true, true, None);
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
        s.finish("h", None, false, true, None);
        s.finish("h", None, false, true, None);
        let started: Vec<(u32, bool)> = std::iter::from_fn(|| s.pop(&gate))
            .map(|j| (j.data, j.holds_key))
            .collect();
        assert_eq!(started, [(3, true), (5, false)], "4 waits for 3's key");
        s.finish("h", Some("k"), true, true, None);
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
        s.finish("h", None, false, true, None);
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

    /// A delivery of `took_us` that ended at `at_ms`.
    fn ran(took_us: u64, at_ms: u64) -> Option<Ran> {
        Some(Ran { took_us, at_ms })
    }

    /// Runs `LEND_AFTER_RUNS` fast deliveries of `handler`, one at a time.
    fn earn(s: &mut Scheduler<u32>, handler: &str, at_ms: u64) {
        for n in 0..LEND_AFTER_RUNS {
            s.push(job(handler, None, Priority::Normal, n));
            let started = s.pop(shared(16)).unwrap();
            assert_eq!(started.handler, handler);
            s.finish(handler, None, false, true, ran(LEND_MAX_RUN_US, at_ms));
        }
    }

    #[test]
    fn a_fast_handler_is_lent_the_kept_worker_while_nothing_else_waits() {
        let mut s = Scheduler::new(2);
        // Not yet proven fast: one worker stays free.
        earn_but_one(&mut s);
        for n in 1..=4 {
            s.push(job("fast", None, Priority::Normal, n));
        }
        assert_eq!(pop_all(&mut s, shared(16)), ["fast"]);
        s.finish("fast", None, false, true, ran(10, 0));
        // Now it is: with nothing else waiting it takes both workers, the
        // second one lent.
        let lent: Vec<bool> = std::iter::from_fn(|| s.pop(shared(16)).map(|j| j.lent)).collect();
        assert_eq!(lent, [false, true]);
        // Another handler's event comes in while both run; the first
        // worker to come free takes it before the fast handler's next.
        s.push(job("good", None, Priority::Low, 9));
        s.finish("fast", None, false, true, ran(10, 0));
        assert_eq!(s.pop(shared(16)).unwrap().handler, "good");
        // Both workers busy again (good + fast); then good ends, and the
        // free worker is lent for the fast handler's last job.
        s.finish("good", None, false, true, ran(10, 0));
        assert_eq!(pop_all(&mut s, shared(16)), ["fast"]);
        assert_eq!((s.len(), s.inflight()), (0, 2));
    }

    #[test]
    fn the_kept_worker_is_not_lent_while_another_handler_runs() {
        let mut s = Scheduler::new(3);
        earn(&mut s, "fast", 0);
        s.push(job("other", None, Priority::Normal, 0));
        assert_eq!(s.pop(shared(16)).unwrap().handler, "other");
        for n in 1..=4 {
            s.push(job("fast", None, Priority::Normal, n));
        }
        // The pool is full; a fourth delivery would overcommit it.
        assert_eq!(pop_all(&mut s, shared(16)), ["fast", "fast"]);
        s.finish("other", None, false, true, ran(10, 0));
        assert_eq!(pop_all(&mut s, shared(16)), ["fast"]);
        assert_eq!((s.len(), s.inflight()), (1, 3));
    }

    /// `LEND_AFTER_RUNS - 1` fast deliveries of "fast": one short.
    fn earn_but_one(s: &mut Scheduler<u32>) {
        earn(s, "fast", 0);
        // A slow one long ago resets the count, its quiet time over.
        s.push(job("fast", None, Priority::Normal, 0));
        s.pop(shared(16)).unwrap();
        s.finish("fast", None, false, true, ran(LEND_MAX_RUN_US + 1, 0));
        s.promote_due(LEND_QUIET_MS);
        for n in 1..LEND_AFTER_RUNS {
            s.push(job("fast", None, Priority::Normal, n));
            s.pop(shared(16)).unwrap();
            s.finish("fast", None, false, true, ran(1, LEND_QUIET_MS));
        }
    }

    #[test]
    fn a_slow_delivery_ends_the_lending_for_its_quiet_time() {
        let quiet_after = |took_us: u64, at_ms: u64| {
            let mut s = Scheduler::new(2);
            earn(&mut s, "h", 0);
            s.push(job("h", None, Priority::Normal, 1));
            s.pop(shared(16)).unwrap();
            // The slow delivery, then a new run of fast ones.
            s.finish("h", None, false, true, ran(took_us, at_ms));
            earn(&mut s, "h", at_ms);
            for n in 0..3 {
                s.push(job("h", None, Priority::Normal, n));
            }
            assert_eq!(pop_all(&mut s, shared(16)).len(), 1);
            let mut now = at_ms;
            loop {
                s.promote_due(now);
                if s.pop(shared(16)).is_some() {
                    return now - at_ms;
                }
                now += 1_000;
            }
        };
        // A minute at least; a hundred times the slow delivery if longer.
        assert_eq!(quiet_after(LEND_MAX_RUN_US + 1, 5_000), LEND_QUIET_MS);
        assert_eq!(quiet_after(5_000_000, 5_000), 500_000);
    }

    #[test]
    fn a_lent_worker_keeps_the_policys_cap_and_the_pools_size() {
        let started = |workers: usize, concurrency: u32| {
            let mut s = Scheduler::new(workers);
            earn(&mut s, "h", 0);
            for n in 0..10 {
                s.push(job("h", None, Priority::Normal, n));
            }
            pop_all(&mut s, shared(concurrency)).len()
        };
        assert_eq!(started(4, 16), 4, "every worker, and no more");
        assert_eq!(started(4, 3), 3, "the policy's cap holds");
        assert_eq!(started(1, 16), 1);
    }

    #[test]
    fn new_code_earns_the_kept_worker_anew() {
        let mut s = Scheduler::new(2);
        earn(&mut s, "h", 0);
        // Enabled again, reloaded or redeployed.
        s.unpark_all("h");
        for n in 0..3 {
            s.push(job("h", None, Priority::Normal, n));
        }
        assert_eq!(pop_all(&mut s, shared(16)), ["h"]);
    }

    #[test]
    fn jobs_on_a_lent_worker_start_in_arrival_order() {
        let mut s = Scheduler::new(2);
        earn(&mut s, "h", 0);
        for n in 1..=6 {
            s.push(job("h", None, Priority::Normal, n));
        }
        let mut order: Vec<u32> =
            std::iter::from_fn(|| s.pop(shared(16)).map(|j| j.data)).collect();
        assert_eq!(order, [1, 2]);
        // Each end puts one parked job back, which parks again at the cap
        // while the other worker is lent: it keeps its place.
        while s.len() > 0 {
            s.finish("h", None, false, true, ran(10, 0));
            order.extend(std::iter::from_fn(|| s.pop(shared(16)).map(|j| j.data)));
        }
        assert_eq!(order, [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_held_handler_is_not_lent_a_worker_until_it_may_run_again() {
        let mut s = Scheduler::new(2);
        earn(&mut s, "h", 0);
        for n in 0..3 {
            s.push(job("h", None, Priority::Normal, n));
        }
        assert_eq!(s.pop(shared(16)).unwrap().handler, "h");
        // Disabled, or its breaker open, while one delivery runs.
        assert!(s.pop(|_: &Job<u32>| Gate::Hold).is_none());
        assert_eq!(s.len(), 2);
        // Its rate-limit window ends: the kept worker is lent again.
        s.unpark_handler("h");
        assert_eq!(pop_all(&mut s, shared(16)), ["h"]);
        assert_eq!(s.inflight(), 2);
    }

    #[test]
    fn reserved_room_counts_until_it_is_given_back() {
        let mut s = Scheduler::new(WORKERS);
        s.push(job("h", None, Priority::Normal, 1));
        let first = of("", 6);
        s.reserve(&first, 10, None, 0).unwrap();
        // Held 1 + reserved 6: 3 more fit, 4 do not.
        assert_eq!(
            s.reserve(&of("", 4), 10, None, 0).unwrap_err(),
            Refused::Full
        );
        let second = of("", 3);
        s.reserve(&second, 10, None, 0).unwrap();
        assert!(s.reserve(&of("", 1), 10, None, 0).is_err());
        // The first batch failed to be written; the second pushes its jobs.
        s.unreserve(first);
        s.unreserve(second);
        for n in 0..3 {
            s.push(job("h", None, Priority::Normal, n));
        }
        assert_eq!(s.len(), 4);
        assert!(s.reserve(&of("", 6), 10, None, 0).is_ok());
        assert!(s.reserve(&of("", 1), 10, None, 0).is_err());
        assert!(
            s.reserve(&of("", 0), 10, None, 0).is_ok(),
            "an empty batch always fits a full queue"
        );
    }

    #[test]
    fn a_tenant_alone_fills_the_queue_and_yields_its_share_to_a_newcomer() {
        let mut s = Scheduler::new(WORKERS);
        let hot = |n| job("h", None, Priority::Normal, n).with_tenant("hot".into());
        // Alone, `hot` goes past its share of 5 up to the limit of 10.
        let r = of("hot", 10);
        s.reserve(&r, 10, Some(5), 0).unwrap();
        s.unreserve(r);
        for n in 0..10 {
            s.push(hot(n));
        }
        assert_eq!(s.tenant_len("hot"), 10);
        // The queue is full: `bg` is refused and now wants room.
        assert_eq!(s.reserve(&of("bg", 1), 10, Some(5), 0), Err(Refused::Full));
        // Room freed by `hot`'s jobs running goes to `bg`, not to `hot`.
        for _ in 0..4 {
            s.pop(run(10, false)).unwrap();
            s.finish("h", None, false, true, None);
        }
        assert_eq!(
            s.reserve(&of("hot", 1), 10, Some(5), 1_000),
            Err(Refused::TenantShare("hot".into()))
        );
        let r = of("bg", 4);
        s.reserve(&r, 10, Some(5), 1_000).unwrap();
        assert_eq!(s.tenant_len("bg"), 4);
        s.unreserve(r);
        assert_eq!(s.tenant_len("bg"), 0);
        // A batch of many tenants refused for a full queue leaves a bounded
        // trace.
        let many: Vec<String> = (0..1_000).map(|i| format!("t{i}")).collect();
        let r = Reservation::of(many.iter().map(|t| (t.as_str(), 1)));
        assert_eq!(s.reserve(&r, 10, Some(5), 1_000), Err(Refused::Full));
        assert_eq!(s.wanting.len(), MAX_WANTING);
        // Once the others stopped asking, `hot` is alone again.
        assert!(
            s.reserve(&of("hot", 4), 10, Some(5), 1_000 + WANT_MS)
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
            s.reserve(&of("a", 1), 100, Some(2), 0),
            Err(Refused::TenantShare("a".into()))
        );
        let gate = |j: &Job<u32>| match j.handler.as_str() {
            "gone" => Gate::Drop,
            _ => run(10, false)(j),
        };
        assert_eq!(s.pop(gate).unwrap().data, 1);
        assert_eq!((s.tenant_len("a"), s.tenant_len("b")), (1, 0));
        // `b` is gone; a batch of both tenants still holds each to its share.
        assert!(s.reserve(&of("a", 5), 100, Some(2), 0).is_ok());
        assert_eq!(
            s.reserve(&Reservation::of([("a", 1), ("b", 1)]), 100, Some(2), 0),
            Err(Refused::TenantShare("a".into()))
        );
        // Events of `a` that route nowhere take none of its room: the
        // batch's part for `b` is taken.
        assert!(
            s.reserve(&Reservation::of([("a", 0), ("b", 1)]), 100, Some(2), 0)
                .is_ok()
        );
    }
}
