//! Every handler's circuit breakers, split by tenant, and the rule that
//! decides when failures disable a whole handler (issue 12, hole 4: one
//! tenant's traffic must not take a shared handler from the others).
//!
//! - **Events without a tenant** use the handler's own breaker, as before:
//!   its openings park every job of the handler, and its
//!   `auto_disable_opens`-th opening within the window disables it.
//! - **Events with a tenant** use a breaker of that (handler, tenant) pair.
//!   Its failures open only it: that tenant's jobs park (a trial per
//!   cool-down, as for a handler) while the other tenants' deliveries run.
//!   A pair reaching the auto-disable count does not disable anything by
//!   itself — it keeps opening, one trial per cool-down, which costs one
//!   failed delivery per tenant and cool-down. The handler is disabled
//!   when pairs of [`AUTO_DISABLE_TENANTS`] different tenants have reached
//!   the count within one auto-disable window: then it fails for more
//!   than one tenant's traffic.
//! - **Bounded.** A pair gets a breaker at its first failure and loses it
//!   when a success leaves it idle (closed, nothing failed in its window,
//!   no opening still counting toward auto-disable). At most
//!   [`MAX_TENANTS`] pairs per handler: a new failing tenant past that
//!   evicts the idlest closed pair, and when every pair is open (that many
//!   tenants failing at once) its failure counts on the handler's own
//!   breaker — the handler fails for everyone.
//! - The handler's own breaker gates every job: while it is open nothing
//!   of the handler runs, and its half-open trial may be any tenant's job
//!   (that outcome decides the handler's breaker).
//!
//! Pure state (no threads, no clock): every method takes `now_ms`.

use std::collections::{BTreeSet, HashMap};

use super::breaker::{Admit, Breaker, BreakerPolicy, CircuitStatus, Ticket, Transition};

/// Tenant breakers one handler keeps at most. With ~0.5 KiB each, 1 024
/// cost ~0.5 MiB per handler; more tenants failing at once than this is
/// the handler failing for everyone.
pub const MAX_TENANTS: usize = 1_024;

/// Distinct tenants whose breakers must reach the auto-disable count
/// within one window before tenant traffic disables the whole handler:
/// one tenant alone never can.
pub const AUTO_DISABLE_TENANTS: usize = 2;

/// Handed out when a delivery starts; given back with its outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Pass {
    /// The handler's reset count when it started (a reset forgets it).
    epoch: u64,
    /// The breaker it counts on: `""` for the handler's own.
    tenant: String,
    /// That breaker's ticket, when the breaker existed at the start.
    ticket: Option<Ticket>,
}

/// A transition of one of a handler's breakers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Scoped {
    /// Whose breaker: `""` for the handler's own.
    pub tenant: String,
    /// What happened. An opening's `disable` asks to disable the handler.
    pub transition: Transition,
}

/// One handler's breakers.
#[derive(Debug)]
struct Handler {
    policy: BreakerPolicy,
    epoch: u64,
    own: Breaker,
    tenants: HashMap<String, Breaker>,
    /// The latest tenant whose breaker reached the auto-disable count, and when.
    first_to_count: Option<(String, u64)>,
}

impl Handler {
    fn new(policy: BreakerPolicy, epoch: u64) -> Self {
        Handler {
            own: Breaker::new(policy.clone()),
            policy,
            epoch,
            tenants: HashMap::new(),
            first_to_count: None,
        }
    }

    fn is_open(&self) -> bool {
        self.own.is_open() || self.tenants.values().any(Breaker::is_open)
    }

    /// Room for one more tenant breaker: whether there is (after evicting
    /// the idlest closed one if full).
    fn make_room(&mut self) -> bool {
        if self.tenants.len() < MAX_TENANTS {
            return true;
        }
        let victim = self
            .tenants
            .iter()
            .filter(|(_, b)| !b.is_open())
            .min_by_key(|(_, b)| b.touched_ms())
            .map(|(t, _)| t.clone());
        match victim {
            Some(t) => {
                self.tenants.remove(&t);
                true
            }
            None => false,
        }
    }

    /// A tenant breaker reached the auto-disable count: the handler is
    /// disabled only when another tenant's did too within the window.
    fn tenant_counted(&mut self, tenant: &str, why: String, now_ms: u64) -> Option<String> {
        let since = now_ms.saturating_sub(self.policy.auto_disable_window_ms);
        match &self.first_to_count {
            Some((other, at)) if other != tenant && *at >= since => {
                debug_assert_eq!(AUTO_DISABLE_TENANTS, 2);
                let reason = format!(
                    "it keeps failing for more than one tenant: the breakers of tenants {other:?} and {tenant:?} each reached the auto-disable count; last: {why}"
                );
                self.first_to_count = None;
                Some(reason)
            }
            _ => {
                self.first_to_count = Some((tenant.to_string(), now_ms));
                None
            }
        }
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    map: HashMap<String, Handler>,
    /// (cool-down end, handler, tenant): when parked jobs must be looked at again.
    wakeups: BTreeSet<(u64, String, String)>,
}

impl Breakers {
    /// Starts `handler` afresh (closed, no history, no tenant breakers)
    /// with `policy`; whether any of its breakers was open or half-open.
    /// Deliveries still running under the old breakers are ignored when
    /// they end.
    pub fn reset(&mut self, handler: &str, policy: BreakerPolicy) -> bool {
        let (epoch, was_open) = self
            .map
            .get(handler)
            .map_or((0, false), |h| (h.epoch + 1, h.is_open()));
        self.map
            .insert(handler.to_string(), Handler::new(policy, epoch));
        was_open
    }

    /// Forgets a deleted handler.
    pub fn remove(&mut self, handler: &str) {
        self.map.remove(handler);
    }

    /// Whether a job of `handler` for `tenant` may start at `now_ms`: the
    /// handler's own breaker first, then the tenant's. A handler without
    /// breakers runs.
    pub fn admit(&self, handler: &str, tenant: &str, now_ms: u64) -> Admit {
        let Some(h) = self.map.get(handler) else {
            return Admit::Run;
        };
        match h.own.admit(now_ms) {
            Admit::Run => {}
            other => return other,
        }
        if tenant.is_empty() {
            return Admit::Run;
        }
        match h.tenants.get(tenant).map(|b| b.admit(now_ms)) {
            // A tenant's trial is one delivery: once it starts, the
            // tenant's next jobs see `Hold`.
            None | Some(Admit::Run | Admit::One) => Admit::Run,
            Some(Admit::Hold | Admit::HoldTenant) => Admit::HoldTenant,
        }
    }

    /// A delivery of `tenant`'s event starts (it was admitted at `now_ms`).
    pub fn start(&mut self, handler: &str, tenant: &str, now_ms: u64) -> Option<Pass> {
        let h = self.map.get_mut(handler)?;
        // The handler's own trial, or an event without a tenant.
        if tenant.is_empty() || h.own.admit(now_ms) != Admit::Run {
            return Some(Pass {
                epoch: h.epoch,
                tenant: String::new(),
                ticket: Some(h.own.start(now_ms)),
            });
        }
        Some(Pass {
            epoch: h.epoch,
            tenant: tenant.to_string(),
            ticket: h.tenants.get_mut(tenant).map(|b| b.start(now_ms)),
        })
    }

    /// A started delivery did not run after all: a trial slot it held is free.
    pub fn abandon(&mut self, handler: &str, pass: Option<Pass>) {
        let (Some(h), Some(p)) = (self.map.get_mut(handler), pass) else {
            return;
        };
        let Some(t) = p.ticket.filter(|_| p.epoch == h.epoch) else {
            return;
        };
        if p.tenant.is_empty() {
            h.own.abandon(t);
        } else if let Some(b) = h.tenants.get_mut(&p.tenant) {
            b.abandon(t);
        }
    }

    /// A delivery that started with `pass` ended; `failure` describes a
    /// failed attempt (`None`: success). An opening schedules a wake-up at
    /// its cool-down end; see the module docs for what disables a handler.
    pub fn record(
        &mut self,
        handler: &str,
        pass: Option<Pass>,
        failure: Option<&str>,
        now_ms: u64,
    ) -> Option<Scoped> {
        let h = self.map.get_mut(handler)?;
        let pass = pass.filter(|p| p.epoch == h.epoch)?;
        let (tenant, transition) = if pass.tenant.is_empty() {
            (String::new(), h.own.record(pass.ticket?, failure, now_ms)?)
        } else {
            let tenant = pass.tenant;
            if !h.tenants.contains_key(&tenant) {
                // A success of a tenant without a breaker: nothing to keep.
                failure?;
                if !h.make_room() {
                    // Every tenant breaker is open: the handler fails for all.
                    let t = h.own.closed_ticket();
                    let s = h.own.record(t, failure, now_ms)?;
                    return Some(self.scheduled(handler, String::new(), s));
                }
                h.tenants
                    .insert(tenant.clone(), Breaker::new(h.policy.clone()));
            }
            let b = h.tenants.get_mut(&tenant)?;
            // A breaker made after the delivery started: it started closed.
            let ticket = pass.ticket.unwrap_or_else(|| b.closed_ticket());
            let t = b.record(ticket, failure, now_ms);
            if t.is_none() && failure.is_none() && b.is_idle(now_ms) {
                h.tenants.remove(&tenant);
            }
            let mut t = t?;
            if let Transition::Opened { disable, .. } = &mut t
                && let Some(why) = disable.take()
            {
                *disable = h.tenant_counted(&tenant, why, now_ms);
            }
            (tenant, t)
        };
        Some(self.scheduled(handler, tenant, transition))
    }

    /// Schedules the wake-up an opening needs.
    fn scheduled(&mut self, handler: &str, tenant: String, transition: Transition) -> Scoped {
        if let Transition::Opened { until_ms, .. } = &transition {
            self.wakeups
                .insert((*until_ms, handler.to_string(), tenant.clone()));
        }
        Scoped { tenant, transition }
    }

    /// (handler, tenant) pairs whose cool-down ended by `now_ms`, each
    /// reported once; tenant `""` is the handler's own breaker.
    pub fn due(&mut self, now_ms: u64) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some(first) = self.wakeups.first() {
            if first.0 > now_ms {
                break;
            }
            if let Some((_, h, t)) = self.wakeups.pop_first() {
                out.push((h, t));
            }
        }
        out
    }

    /// The earliest pending cool-down end.
    pub fn next_wakeup(&self) -> Option<u64> {
        self.wakeups.first().map(|(t, ..)| *t)
    }

    /// How many of a handler's tenant breakers are open or half-open.
    pub fn tenants_open(&self, handler: &str) -> u64 {
        self.map.get(handler).map_or(0, |h| {
            h.tenants.values().filter(|b| b.is_open()).count() as u64
        })
    }

    /// One handler's snapshot.
    pub fn status(&self, handler: &str, now_ms: u64) -> Option<CircuitStatus> {
        let h = self.map.get(handler)?;
        let mut s = h.own.status(handler, now_ms);
        s.tenants_tracked = u32::try_from(h.tenants.len()).unwrap_or(u32::MAX);
        s.tenants = h
            .tenants
            .iter()
            .filter(|(_, b)| b.is_open())
            .map(|(t, b)| b.tenant_status(t, now_ms))
            .collect();
        s.tenants.sort_by(|a, b| a.tenant.cmp(&b.tenant));
        Some(s)
    }

    /// Every handler's snapshot, by name.
    pub fn statuses(&self, now_ms: u64) -> Vec<CircuitStatus> {
        let mut all: Vec<_> = self
            .map
            .keys()
            .filter_map(|h| self.status(h, now_ms))
            .collect();
        all.sort_by(|a, b| a.handler.cmp(&b.handler));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::super::breaker::CircuitState;
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 1,
            failure_rate: 0.0,
            min_attempts: 4,
            window_ms: 1_000,
            cooldown_ms: 100,
            auto_disable_opens: 0,
            auto_disable_window_ms: 10_000,
        }
    }

    /// One delivery of `tenant`'s event at `now`: admitted, run, recorded.
    fn run(all: &mut Breakers, tenant: &str, ok: bool, now: u64) -> Option<Scoped> {
        assert!(
            matches!(all.admit("h", tenant, now), Admit::Run | Admit::One),
            "{tenant:?} was not admitted at {now}"
        );
        let pass = all.start("h", tenant, now);
        all.record("h", pass, (!ok).then_some("trap"), now)
    }

    #[test]
    fn breakers_wake_at_cooldown_end_and_reset_forgets() {
        let mut all = Breakers::default();
        all.reset("a", policy());
        all.reset("b", policy());
        assert_eq!(all.admit("unknown", "", 0), Admit::Run);
        let t = all.start("a", "", 5);
        assert!(all.record("a", t, Some("trap"), 5).is_some());
        let t = all.start("b", "acme", 7);
        assert!(all.record("b", t, Some("trap"), 7).is_some());
        assert_eq!(all.next_wakeup(), Some(105));
        assert!(all.due(104).is_empty());
        let due = all.due(200);
        assert_eq!(
            due,
            [("a".into(), String::new()), ("b".into(), "acme".into())]
        );
        assert!(all.due(300).is_empty());
        assert_eq!(all.next_wakeup(), None);

        // A reset closes it; a delivery of the old breakers no longer counts.
        let stale = all.start("a", "", 110);
        assert!(all.reset("a", policy()), "it was half-open");
        assert_eq!(all.record("a", stale, Some("trap"), 111), None);
        assert_eq!(all.admit("a", "", 111), Admit::Run);
        assert!(!all.reset("a", policy()), "it was closed");
        assert!(all.reset("b", policy()), "a tenant breaker was open");
        assert_eq!(all.admit("b", "acme", 111), Admit::Run);
        let names: Vec<_> = all.statuses(111).into_iter().map(|s| s.handler).collect();
        assert_eq!(names, ["a", "b"]);
        all.remove("a");
        assert!(all.status("a", 111).is_none());
    }

    #[test]
    fn a_tenants_failures_park_only_that_tenant() {
        let mut all = Breakers::default();
        all.reset("h", policy());
        let opened = run(&mut all, "evil", false, 10).unwrap();
        assert_eq!(opened.tenant, "evil");
        assert_eq!(all.admit("h", "evil", 11), Admit::HoldTenant);
        // Other tenants and events without a tenant still run.
        assert!(run(&mut all, "good", true, 12).is_none());
        assert!(run(&mut all, "", true, 13).is_none());
        let s = all.status("h", 14).unwrap();
        assert_eq!(s.state, CircuitState::Closed);
        assert_eq!(s.tenants_tracked, 1, "a success leaves no breaker behind");
        assert_eq!(s.tenants.len(), 1);
        assert_eq!(s.tenants[0].tenant, "evil");
        assert_eq!(s.tenants[0].state, CircuitState::Open);
        assert_eq!(all.tenants_open("h"), 1);
        // After the cool-down one trial of the tenant runs; its next job waits.
        assert_eq!(all.admit("h", "evil", 110), Admit::Run);
        let trial = all.start("h", "evil", 110);
        assert_eq!(all.admit("h", "evil", 110), Admit::HoldTenant);
        assert_eq!(all.admit("h", "good", 110), Admit::Run);
        let closed = all.record("h", trial, None, 111).unwrap();
        assert_eq!(closed.tenant, "evil");
        assert!(matches!(closed.transition, Transition::Closed { .. }));
        assert_eq!(all.admit("h", "evil", 112), Admit::Run);
    }

    #[test]
    fn events_without_a_tenant_open_the_handlers_own_breaker_for_all() {
        let mut all = Breakers::default();
        all.reset("h", policy());
        let opened = run(&mut all, "", false, 10).unwrap();
        assert_eq!(opened.tenant, "");
        assert_eq!(all.admit("h", "acme", 11), Admit::Hold);
        assert_eq!(all.admit("h", "", 11), Admit::Hold);
        // Its trial may be a tenant's job; that outcome decides the handler's.
        assert_eq!(all.admit("h", "acme", 110), Admit::One);
        let trial = all.start("h", "acme", 110);
        assert_eq!(all.admit("h", "other", 110), Admit::Hold);
        let s = all.record("h", trial, Some("trap"), 111).unwrap();
        assert_eq!(s.tenant, "");
        assert_eq!(all.tenants_open("h"), 0);
    }

    #[test]
    fn one_tenant_never_disables_the_handler_two_do() {
        let p = BreakerPolicy {
            auto_disable_opens: 2,
            ..policy()
        };
        let mut all = Breakers::default();
        all.reset("h", p);
        let disables = |s: Option<Scoped>| match s {
            Some(Scoped {
                transition: Transition::Opened { disable, .. },
                ..
            }) => disable,
            other => panic!("expected an opening, got {other:?}"),
        };
        // "evil" fails forever: it reaches the count, again and again.
        let mut now = 0;
        for _ in 0..6 {
            assert_eq!(disables(run(&mut all, "evil", false, now)), None);
            now += 100;
        }
        // A second tenant reaching the count within the window disables it.
        assert_eq!(disables(run(&mut all, "other", false, now)), None);
        now += 100;
        let why = disables(run(&mut all, "other", false, now)).unwrap();
        assert!(
            why.contains("\"evil\"") && why.contains("\"other\""),
            "{why}"
        );
    }

    #[test]
    fn tenant_breakers_are_bounded() {
        let mut all = Breakers::default();
        all.reset("h", policy());
        // MAX_TENANTS tenants fail and stay open.
        for i in 0..MAX_TENANTS {
            let s = run(&mut all, &format!("t{i}"), false, 10).unwrap();
            assert_eq!(s.tenant, format!("t{i}"));
        }
        assert_eq!(all.tenants_open("h"), MAX_TENANTS as u64);
        // One more failing tenant: no closed breaker to evict, so it
        // counts on the handler's own, which opens for everyone.
        let s = run(&mut all, "one-too-many", false, 11).unwrap();
        assert_eq!(s.tenant, "");
        assert_eq!(all.admit("h", "t0", 12), Admit::Hold);
        assert_eq!(all.status("h", 12).unwrap().tenants_tracked, 1_024);

        // With closed breakers present, the idlest is evicted instead.
        let mut all = Breakers::default();
        all.reset(
            "h",
            BreakerPolicy {
                consecutive_failures: 2,
                ..policy()
            },
        );
        for i in 0..MAX_TENANTS {
            assert!(run(&mut all, &format!("t{i}"), false, i as u64 + 1).is_none());
        }
        assert!(run(&mut all, "new", false, 5_000).is_none());
        let s = all.status("h", 5_000).unwrap();
        assert_eq!(s.tenants_tracked, MAX_TENANTS as u32);
        assert_eq!(s.state, CircuitState::Closed);
        // t0 (the idlest) was forgotten: its next failure is its first again.
        assert!(run(&mut all, "t0", false, 5_001).is_none());
        assert!(run(&mut all, "t0", false, 5_002).is_some());
    }
}
