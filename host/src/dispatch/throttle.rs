//! Backpressure from the far side of a built-in sink: a rate limit (Zulip's
//! 429 with `Retry-After`, or any sink's equivalent) pauses the handler's
//! deliveries until the window ends.
//!
//! A throttled delivery is not a failure. It does not count toward the
//! circuit breaker, it does not use up an attempt, it writes no retry: the
//! job goes back to the scheduler as it was, and while the handler is
//! throttled the scheduler parks its jobs (like an open breaker), so no
//! other delivery is sent into the same window only to be refused. When the
//! window ends the parked jobs run again in their order. The state is in
//! memory: after a restart the first delivery finds out again.
//!
//! Pure state with an injected clock; the dispatcher keeps one behind a
//! mutex, taken after the breakers' when both are needed.

use std::collections::{BTreeSet, HashMap};

/// When each throttled handler may send again.
#[derive(Debug, Default)]
pub(super) struct Throttles {
    until: HashMap<String, u64>,
    /// `(until_ms, handler)` of every window, to wake up and unpark.
    wakeups: BTreeSet<(u64, String)>,
}

impl Throttles {
    /// Pauses `handler` until `until_ms` (a later window extends, an
    /// earlier one does not shorten).
    pub(super) fn pause(&mut self, handler: &str, until_ms: u64) {
        let slot = self.until.entry(handler.to_string()).or_insert(0);
        if until_ms > *slot {
            *slot = until_ms;
            self.wakeups.insert((until_ms, handler.to_string()));
        }
    }

    /// Whether `handler`'s deliveries must wait at `now_ms`.
    pub(super) fn holds(&self, handler: &str, now_ms: u64) -> bool {
        self.until.get(handler).is_some_and(|&u| u > now_ms)
    }

    /// Handlers whose window ended by `now_ms`: their parked jobs may run.
    pub(super) fn due(&mut self, now_ms: u64) -> Vec<String> {
        let mut out = Vec::new();
        while let Some((at, _)) = self.wakeups.first() {
            if *at > now_ms {
                break;
            }
            let (at, handler) = self.wakeups.pop_first().expect("non-empty");
            if self.until.get(&handler) == Some(&at) {
                self.until.remove(&handler);
                out.push(handler);
            }
        }
        out
    }

    /// The next window end, to bound the workers' sleep.
    pub(super) fn next_wakeup(&self) -> Option<u64> {
        self.wakeups.first().map(|(at, _)| *at)
    }

    /// Forgets a deleted handler.
    pub(super) fn remove(&mut self, handler: &str) {
        self.until.remove(handler);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_holds_until_it_ends_then_wakes_once() {
        let mut t = Throttles::default();
        assert!(!t.holds("zulip:a", 0));
        t.pause("zulip:a", 1_000);
        assert!(t.holds("zulip:a", 999));
        assert!(!t.holds("zulip:b", 999));
        assert_eq!(t.next_wakeup(), Some(1_000));
        assert!(t.due(999).is_empty());
        assert_eq!(t.due(1_000), ["zulip:a"]);
        assert!(!t.holds("zulip:a", 1_000));
        assert!(t.due(5_000).is_empty());
        assert_eq!(t.next_wakeup(), None);
    }

    #[test]
    fn a_later_window_extends_an_earlier_one_does_not_shorten() {
        let mut t = Throttles::default();
        t.pause("h", 1_000);
        t.pause("h", 3_000);
        t.pause("h", 2_000);
        // The first window's wake-up passes without releasing the handler.
        assert!(t.due(1_500).is_empty());
        assert!(t.holds("h", 2_500));
        assert_eq!(t.due(3_000), ["h"]);
    }

    #[test]
    fn removed_handlers_are_not_reported() {
        let mut t = Throttles::default();
        t.pause("h", 10);
        t.remove("h");
        assert!(!t.holds("h", 0));
        assert!(t.due(100).is_empty());
    }
}
