//! One circuit breaker and its auto-disable count: a pure state machine
//! over delivery outcomes with an injected clock (every method takes
//! `now_ms`), so each rule is unit-tested table-style. A handler has one
//! for events without a tenant and one per failing tenant
//! ([`super::breakers`] keeps them); the dispatcher consults them when it
//! pops a job.
//!
//! States:
//! - **closed** — deliveries run. Each failed attempt counts; the breaker
//!   opens after `consecutive_failures` failures in a row, or when the last
//!   `window_ms` (kept in ten buckets, so the window is 90–100% of it) holds
//!   at least `min_attempts` attempts of which `failure_rate` or more failed.
//! - **open** — for `cooldown_ms` no delivery starts; the scheduler parks
//!   the handler's jobs (they wait, they are neither failed nor dropped).
//! - **half-open** — after the cool-down exactly one *trial* delivery runs;
//!   success closes the breaker, failure opens it again.
//!
//! Deliveries already running when the breaker opens finish; their outcomes
//! are ignored (each delivery carries the breaker *generation* it started
//! in). Every opening (from closed or from a failed trial) is counted; the
//! `auto_disable_opens`-th opening within `auto_disable_window_ms` reports
//! that the count was reached (what that disables is
//! [`super::breakers`]' rule). Breaker state lives in memory only: a
//! restart starts every handler closed, and a handler still failing opens
//! again after the same number of failures.

use std::collections::VecDeque;

use serde::Serialize;
use utoipa::ToSchema;

use crate::manifest::BreakerSpec;

/// Buckets of the failure-rate window.
const BUCKETS: u64 = 10;

/// A handler's resolved breaker settings (manifest over daemon defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct BreakerPolicy {
    /// Failures in a row that open the breaker; 0: this trigger is off.
    pub consecutive_failures: u32,
    /// Failed share of the window's attempts that opens it; 0: off.
    pub failure_rate: f64,
    /// Attempts the window must hold before `failure_rate` applies.
    pub min_attempts: u32,
    /// The failure-rate window.
    pub window_ms: u64,
    /// How long the breaker stays open before a trial.
    pub cooldown_ms: u64,
    /// Openings within `auto_disable_window_ms` that disable the handler; 0: never.
    pub auto_disable_opens: u32,
    /// The period openings are counted over.
    pub auto_disable_window_ms: u64,
}

impl Default for BreakerPolicy {
    /// Ten failures in a row, or half of at least 20 attempts in a minute,
    /// open the breaker for 30 s. Five openings within an hour (a handler
    /// whose every trial fails gets there in about two minutes) disable it.
    fn default() -> Self {
        BreakerPolicy {
            consecutive_failures: 10,
            failure_rate: 0.5,
            min_attempts: 20,
            window_ms: 60_000,
            cooldown_ms: 30_000,
            auto_disable_opens: 5,
            auto_disable_window_ms: 3_600_000,
        }
    }
}

impl BreakerPolicy {
    /// These settings with every field `spec` sets replaced.
    pub fn with_overrides(&self, spec: &BreakerSpec) -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: spec
                .consecutive_failures
                .unwrap_or(self.consecutive_failures),
            failure_rate: spec.failure_rate.unwrap_or(self.failure_rate),
            min_attempts: spec.min_attempts.unwrap_or(self.min_attempts).max(1),
            window_ms: spec.window_ms.unwrap_or(self.window_ms).max(1),
            cooldown_ms: spec.cooldown_ms.unwrap_or(self.cooldown_ms).max(1),
            auto_disable_opens: spec.auto_disable_opens.unwrap_or(self.auto_disable_opens),
            auto_disable_window_ms: spec
                .auto_disable_window_ms
                .unwrap_or(self.auto_disable_window_ms),
        }
    }
}

/// A breaker's state as the API shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Deliveries run.
    Closed,
    /// Deliveries wait for the cool-down to end.
    Open,
    /// The cool-down is over: one trial delivery decides.
    HalfOpen,
}

/// A snapshot of one handler's breaker.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct CircuitStatus {
    /// The handler.
    pub handler: String,
    /// The state now.
    pub state: CircuitState,
    /// Failed attempts in a row (while closed).
    pub consecutive_failures: u32,
    /// Attempts in the failure-rate window (while closed).
    pub window_attempts: u32,
    /// Failed attempts in that window.
    pub window_failures: u32,
    /// When an open breaker lets a trial through, ms since the epoch.
    pub open_until_ms: Option<u64>,
    /// Openings since the daemon started (or the handler was last changed).
    pub opened_total: u64,
    /// The latest opening, ms since the epoch.
    pub last_opened_ms: Option<u64>,
    /// Why it last opened.
    pub last_reason: Option<String>,
    /// Tenants with a breaker of their own (their events failed lately);
    /// each tenant's failures open only its own breaker. At most
    /// [`super::breakers::MAX_TENANTS`] per handler.
    pub tenants_tracked: u32,
    /// The tenant breakers that are open or half-open, by tenant.
    pub tenants: Vec<TenantCircuitStatus>,
}

/// A snapshot of one tenant's breaker of a handler.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct TenantCircuitStatus {
    /// The tenant.
    pub tenant: String,
    /// The state now.
    pub state: CircuitState,
    /// When an open breaker lets a trial through, ms since the epoch.
    pub open_until_ms: Option<u64>,
    /// Openings since the daemon started (or the handler was last changed).
    pub opened_total: u64,
    /// Why it last opened.
    pub last_reason: Option<String>,
}

/// What the scheduler may do with a job of the handler now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Run as the handler's policy allows.
    Run,
    /// Run one delivery only (the half-open trial).
    One,
    /// Park the job.
    Hold,
    /// Park the job until its tenant's breaker lets it through (the
    /// handler's other tenants run).
    HoldTenant,
}

/// Handed out when a delivery starts; given back with its outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ticket {
    generation: u64,
    trial: bool,
}

/// A state change the dispatcher announces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Transition {
    /// The breaker opened (from closed, or after a failed trial).
    Opened {
        /// Why, for people.
        reason: String,
        /// When a trial may run.
        until_ms: u64,
        /// Set when this opening reached the auto-disable count: why.
        disable: Option<String>,
    },
    /// A trial succeeded.
    Closed {
        /// Why, for people.
        reason: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Closed,
    Open { until_ms: u64 },
    HalfOpen { trial_running: bool },
}

/// Attempt counts of one bucket (`index` = time / bucket width).
#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    index: u64,
    attempts: u32,
    failures: u32,
}

/// The failure-rate window: ten buckets, a ring indexed by time.
#[derive(Clone, Debug)]
struct Window {
    width_ms: u64,
    buckets: [Bucket; BUCKETS as usize],
}

impl Window {
    fn new(window_ms: u64) -> Self {
        Window {
            width_ms: (window_ms / BUCKETS).max(1),
            buckets: [Bucket::default(); BUCKETS as usize],
        }
    }

    fn record(&mut self, now_ms: u64, failed: bool) {
        let index = now_ms / self.width_ms;
        let b = &mut self.buckets[(index % BUCKETS) as usize];
        if b.index != index {
            *b = Bucket {
                index,
                ..Bucket::default()
            };
        }
        b.attempts = b.attempts.saturating_add(1);
        b.failures = b.failures.saturating_add(u32::from(failed));
    }

    /// (attempts, failures) of the buckets inside the window at `now_ms`.
    fn totals(&self, now_ms: u64) -> (u32, u32) {
        let index = now_ms / self.width_ms;
        self.buckets
            .iter()
            .filter(|b| b.index <= index && b.index + BUCKETS > index)
            .fold((0u32, 0u32), |(a, f), b| {
                (a.saturating_add(b.attempts), f.saturating_add(b.failures))
            })
    }

    fn clear(&mut self) {
        self.buckets = [Bucket::default(); BUCKETS as usize];
    }
}

/// One handler's breaker. See the module docs.
#[derive(Clone, Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    state: State,
    generation: u64,
    consecutive: u32,
    window: Window,
    /// Opening times within the auto-disable period, oldest first.
    opens: VecDeque<u64>,
    opened_total: u64,
    last_opened_ms: Option<u64>,
    last_reason: Option<String>,
    /// The latest outcome recorded (0: none yet).
    touched_ms: u64,
}

impl Breaker {
    pub fn new(policy: BreakerPolicy) -> Self {
        Breaker {
            window: Window::new(policy.window_ms),
            policy,
            state: State::Closed,
            generation: 0,
            consecutive: 0,
            opens: VecDeque::new(),
            opened_total: 0,
            last_opened_ms: None,
            last_reason: None,
            touched_ms: 0,
        }
    }

    /// The ticket of a delivery that starts now while the breaker is
    /// closed, for an outcome whose start this breaker did not see.
    pub fn closed_ticket(&self) -> Ticket {
        Ticket {
            generation: self.generation,
            trial: false,
        }
    }

    /// Whether a job may start at `now_ms`. Pure: the cool-down ending is
    /// applied by [`Self::start`].
    pub fn admit(&self, now_ms: u64) -> Admit {
        match self.state {
            State::Closed => Admit::Run,
            State::Open { until_ms } if now_ms < until_ms => Admit::Hold,
            State::Open { .. }
            | State::HalfOpen {
                trial_running: false,
            } => Admit::One,
            State::HalfOpen {
                trial_running: true,
            } => Admit::Hold,
        }
    }

    /// A delivery starts (it was admitted at `now_ms`); the first one after
    /// the cool-down is the trial.
    pub fn start(&mut self, now_ms: u64) -> Ticket {
        if let State::Open { until_ms } = self.state
            && now_ms >= until_ms
        {
            self.state = State::HalfOpen {
                trial_running: false,
            };
        }
        let trial = self.state
            == State::HalfOpen {
                trial_running: false,
            };
        if trial {
            self.state = State::HalfOpen {
                trial_running: true,
            };
        }
        Ticket {
            generation: self.generation,
            trial,
        }
    }

    /// A started delivery did not run after all (it was put back): a trial
    /// slot it held is free again.
    pub fn abandon(&mut self, ticket: Ticket) {
        if ticket.trial && ticket.generation == self.generation {
            self.state = State::HalfOpen {
                trial_running: false,
            };
        }
    }

    /// A delivery that started with `ticket` ended; `failure` describes a
    /// failed attempt (`None`: it counts as a success).
    pub fn record(
        &mut self,
        ticket: Ticket,
        failure: Option<&str>,
        now_ms: u64,
    ) -> Option<Transition> {
        if ticket.generation != self.generation {
            return None;
        }
        self.touched_ms = now_ms;
        match (self.state, ticket.trial) {
            (State::HalfOpen { .. }, true) => Some(match failure {
                Some(why) => self.open(now_ms, format!("the trial delivery failed: {why}")),
                None => {
                    self.state = State::Closed;
                    Transition::Closed {
                        reason: "a trial delivery succeeded".into(),
                    }
                }
            }),
            (State::Closed, _) => {
                self.window.record(now_ms, failure.is_some());
                let Some(why) = failure else {
                    self.consecutive = 0;
                    return None;
                };
                self.consecutive = self.consecutive.saturating_add(1);
                let p = &self.policy;
                if p.consecutive_failures > 0 && self.consecutive >= p.consecutive_failures {
                    let reason = format!("{} failures in a row; last: {why}", self.consecutive);
                    return Some(self.open(now_ms, reason));
                }
                let (attempts, failures) = self.window.totals(now_ms);
                if p.failure_rate > 0.0
                    && attempts >= p.min_attempts
                    && f64::from(failures) >= p.failure_rate * f64::from(attempts)
                {
                    let reason = format!(
                        "{failures} of {attempts} attempts failed within {} ms; last: {why}",
                        p.window_ms
                    );
                    return Some(self.open(now_ms, reason));
                }
                None
            }
            // Same generation but not a trial while open or half-open cannot
            // happen (nothing else is admitted); ignore it if it does.
            _ => None,
        }
    }

    fn open(&mut self, now_ms: u64, reason: String) -> Transition {
        let until_ms = now_ms.saturating_add(self.policy.cooldown_ms);
        self.generation += 1;
        self.state = State::Open { until_ms };
        self.consecutive = 0;
        self.window.clear();
        self.opened_total += 1;
        self.last_opened_ms = Some(now_ms);
        self.last_reason = Some(reason.clone());
        let p = &self.policy;
        let mut disable = None;
        if p.auto_disable_opens > 0 {
            let since = now_ms.saturating_sub(p.auto_disable_window_ms);
            self.opens.push_back(now_ms);
            while self.opens.front().is_some_and(|&t| t < since) {
                self.opens.pop_front();
            }
            if self.opens.len() >= p.auto_disable_opens as usize {
                disable = Some(format!(
                    "circuit breaker opened {} times within {} ms; last: {reason}",
                    self.opens.len(),
                    p.auto_disable_window_ms
                ));
                self.opens.clear();
            }
        }
        Transition::Opened {
            reason,
            until_ms,
            disable,
        }
    }

    /// Whether the breaker is anything but closed.
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    /// Whether it holds nothing worth keeping at `now_ms`: closed, no
    /// failure in its window or in a row, no opening that still counts
    /// toward auto-disable. Forgetting it changes no decision.
    pub fn is_idle(&self, now_ms: u64) -> bool {
        let since = now_ms.saturating_sub(self.policy.auto_disable_window_ms);
        self.state == State::Closed
            && self.consecutive == 0
            && self.window.totals(now_ms).1 == 0
            && self.opens.iter().all(|&t| t < since)
    }

    /// When it last recorded an outcome.
    pub fn touched_ms(&self) -> u64 {
        self.touched_ms
    }

    /// The snapshot at `now_ms`, as one tenant's breaker.
    pub fn tenant_status(&self, tenant: &str, now_ms: u64) -> TenantCircuitStatus {
        let s = self.status("", now_ms);
        TenantCircuitStatus {
            tenant: tenant.to_string(),
            state: s.state,
            open_until_ms: s.open_until_ms,
            opened_total: s.opened_total,
            last_reason: s.last_reason,
        }
    }

    /// When an open breaker's cool-down ends.
    fn open_until(&self) -> Option<u64> {
        match self.state {
            State::Open { until_ms } => Some(until_ms),
            _ => None,
        }
    }

    /// The snapshot at `now_ms`.
    pub fn status(&self, handler: &str, now_ms: u64) -> CircuitStatus {
        let state = match self.state {
            State::Closed => CircuitState::Closed,
            State::Open { until_ms } if now_ms < until_ms => CircuitState::Open,
            State::Open { .. } | State::HalfOpen { .. } => CircuitState::HalfOpen,
        };
        let (window_attempts, window_failures) = match self.state {
            State::Closed => self.window.totals(now_ms),
            _ => (0, 0),
        };
        CircuitStatus {
            handler: handler.to_string(),
            state,
            consecutive_failures: self.consecutive,
            window_attempts,
            window_failures,
            open_until_ms: self.open_until(),
            opened_total: self.opened_total,
            last_opened_ms: self.last_opened_ms,
            last_reason: self.last_reason.clone(),
            tenants_tracked: 0,
            tenants: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_rate: 0.0,
            min_attempts: 4,
            window_ms: 1_000,
            cooldown_ms: 100,
            auto_disable_opens: 0,
            auto_disable_window_ms: 10_000,
        }
    }

    /// One step of a scenario: at `t`, do something, then expect.
    #[derive(Clone, Copy, Debug)]
    enum Step {
        /// A delivery starts and ends at `t`: ok (`true`) or failed.
        Run(u64, bool),
        /// The gate's answer at `t`.
        Admit(u64, Admit),
        /// The state at `t`.
        State(u64, CircuitState),
    }

    /// Runs a scenario; returns the transitions as `open@t` / `close@t`
    /// (`disable@t` for an opening that asks for the handler to be disabled).
    fn play(p: BreakerPolicy, steps: &[Step]) -> Vec<String> {
        let mut b = Breaker::new(p);
        let mut seen = Vec::new();
        for (i, step) in steps.iter().enumerate() {
            match *step {
                Step::Run(t, ok) => {
                    assert_ne!(
                        b.admit(t),
                        Admit::Hold,
                        "step {i}: {step:?} was not admitted"
                    );
                    let ticket = b.start(t);
                    let failure = (!ok).then_some("trap");
                    match b.record(ticket, failure, t) {
                        Some(Transition::Opened { disable: None, .. }) => {
                            seen.push(format!("open@{t}"))
                        }
                        Some(Transition::Opened {
                            disable: Some(_), ..
                        }) => seen.push(format!("disable@{t}")),
                        Some(Transition::Closed { .. }) => seen.push(format!("close@{t}")),
                        None => {}
                    }
                }
                Step::Admit(t, want) => assert_eq!(b.admit(t), want, "step {i}: {step:?}"),
                Step::State(t, want) => {
                    assert_eq!(b.status("h", t).state, want, "step {i}: {step:?}")
                }
            }
        }
        seen
    }

    use CircuitState::{Closed, HalfOpen, Open};
    use Step::{Admit as A, Run, State as S};

    #[test]
    fn scenarios() {
        let table: Vec<(&str, BreakerPolicy, Vec<Step>, Vec<&str>)> = vec![
            (
                "a success resets the run of failures",
                policy(),
                vec![
                    Run(0, false),
                    Run(1, false),
                    Run(2, true),
                    Run(3, false),
                    Run(4, false),
                    S(5, Closed),
                ],
                vec![],
            ),
            (
                "n failures in a row open it; it holds for the cool-down",
                policy(),
                vec![
                    Run(0, false),
                    Run(1, false),
                    Run(2, false),
                    S(2, Open),
                    A(50, Admit::Hold),
                    A(101, Admit::Hold),
                    S(102, HalfOpen),
                    A(102, Admit::One),
                ],
                vec!["open@2"],
            ),
            (
                "a successful trial closes it",
                policy(),
                vec![
                    Run(0, false),
                    Run(1, false),
                    Run(2, false),
                    Run(102, true),
                    S(103, Closed),
                    A(103, Admit::Run),
                ],
                vec!["open@2", "close@102"],
            ),
            (
                "a failed trial opens it for another cool-down",
                policy(),
                vec![
                    Run(0, false),
                    Run(1, false),
                    Run(2, false),
                    Run(102, false),
                    S(150, Open),
                    A(201, Admit::Hold),
                    A(202, Admit::One),
                    Run(202, true),
                ],
                vec!["open@2", "open@102", "close@202"],
            ),
            (
                "the failure rate opens it once the window holds enough attempts",
                BreakerPolicy {
                    consecutive_failures: 0,
                    failure_rate: 0.5,
                    ..policy()
                },
                vec![
                    Run(0, false),
                    Run(1, true),
                    Run(2, false),
                    S(3, Closed),
                    Run(4, true),
                    Run(5, false),
                ],
                vec!["open@5"],
            ),
            (
                "old attempts leave the window",
                BreakerPolicy {
                    consecutive_failures: 0,
                    failure_rate: 0.5,
                    ..policy()
                },
                vec![
                    Run(0, false),
                    Run(1, false),
                    Run(2, false),
                    // 1.5 s later the three failures are out of the 1 s window.
                    Run(1_500, true),
                    Run(1_501, true),
                    Run(1_502, true),
                    Run(1_503, false),
                    S(1_504, Closed),
                ],
                vec![],
            ),
            (
                "a rate below the threshold keeps it closed",
                BreakerPolicy {
                    consecutive_failures: 0,
                    failure_rate: 0.75,
                    ..policy()
                },
                vec![
                    Run(0, false),
                    Run(1, true),
                    Run(2, false),
                    Run(3, true),
                    Run(4, false),
                    S(5, Closed),
                ],
                vec![],
            ),
            (
                "both triggers off: it never opens",
                BreakerPolicy {
                    consecutive_failures: 0,
                    failure_rate: 0.0,
                    ..policy()
                },
                (0..50).map(|t| Run(t, false)).collect(),
                vec![],
            ),
            (
                "the k-th opening within the period disables",
                BreakerPolicy {
                    consecutive_failures: 1,
                    auto_disable_opens: 3,
                    ..policy()
                },
                vec![
                    Run(0, false),
                    Run(100, false),
                    Run(200, false),
                    Run(300, true),
                ],
                vec!["open@0", "open@100", "disable@200", "close@300"],
            ),
            (
                "openings older than the period do not count",
                BreakerPolicy {
                    consecutive_failures: 1,
                    auto_disable_opens: 2,
                    auto_disable_window_ms: 150,
                    ..policy()
                },
                vec![
                    Run(0, false),
                    Run(100, true),
                    Run(200, false),
                    Run(300, false),
                ],
                vec!["open@0", "close@100", "open@200", "disable@300"],
            ),
        ];
        for (name, p, steps, want) in table {
            assert_eq!(play(p, &steps), want, "{name}");
        }
    }

    #[test]
    fn one_trial_at_a_time_and_stale_outcomes_are_ignored() {
        let mut b = Breaker::new(BreakerPolicy {
            consecutive_failures: 1,
            ..policy()
        });
        let before = b.start(0);
        let failing = b.start(0);
        assert!(matches!(
            b.record(failing, Some("trap"), 0),
            Some(Transition::Opened { until_ms: 100, .. })
        ));
        // A delivery that started before the opening ends: ignored.
        assert_eq!(b.record(before, Some("trap"), 1), None);
        assert_eq!(b.record(before, None, 1), None);
        assert_eq!(b.admit(100), Admit::One);
        let trial = b.start(100);
        assert_eq!(b.admit(100), Admit::Hold, "only one trial");
        // The trial was put back without running: the slot is free again.
        b.abandon(trial);
        assert_eq!(b.admit(100), Admit::One);
        let trial = b.start(100);
        assert!(matches!(
            b.record(trial, None, 101),
            Some(Transition::Closed { .. })
        ));
        assert_eq!(b.admit(101), Admit::Run);
    }

    #[test]
    fn status_reports_counts_and_times() {
        let mut b = Breaker::new(policy());
        let t = b.start(10);
        b.record(t, Some("trap"), 10);
        let s = b.status("h", 10);
        assert_eq!(
            (
                s.state,
                s.consecutive_failures,
                s.window_attempts,
                s.window_failures
            ),
            (Closed, 1, 1, 1)
        );
        for now in [11, 12] {
            let t = b.start(now);
            b.record(t, Some("timeout"), now);
        }
        let s = b.status("h", 20);
        assert_eq!(s.state, Open);
        assert_eq!(s.open_until_ms, Some(112));
        assert_eq!(s.opened_total, 1);
        assert_eq!(s.last_opened_ms, Some(12));
        assert_eq!(
            s.last_reason.as_deref(),
            Some("3 failures in a row; last: timeout")
        );
        assert_eq!(b.status("h", 112).state, HalfOpen);
    }

    #[test]
    fn manifest_settings_override_daemon_defaults() {
        let spec = BreakerSpec {
            cooldown_ms: Some(5),
            failure_rate: Some(0.0),
            ..BreakerSpec::default()
        };
        let p = BreakerPolicy::default().with_overrides(&spec);
        assert_eq!(p.cooldown_ms, 5);
        assert_eq!(p.failure_rate, 0.0);
        assert_eq!(p.consecutive_failures, 10);
        assert_eq!(
            BreakerPolicy::default().with_overrides(&BreakerSpec::default()),
            BreakerPolicy::default()
        );
    }
}
