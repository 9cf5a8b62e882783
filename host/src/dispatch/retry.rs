//! The retry schedule: how long a failed delivery waits before its next
//! attempt. Pure, so it is tested table-style with a fixed random draw.

use std::time::Duration;

use crate::manifest::DeliveryPolicy;

/// The delay before attempt `next_attempt` (2 for the first retry).
///
/// `initial × factor^(next_attempt − 2)`, capped at `max_backoff_ms`, then
/// spread by ±`jitter` using `unit_random` (a draw from `[0, 1)`), and never
/// above the cap after the spread either.
pub fn backoff(policy: &DeliveryPolicy, next_attempt: u32, unit_random: f64) -> Duration {
    let exponent = next_attempt.saturating_sub(2).min(64) as i32;
    let cap = policy.max_backoff_ms as f64;
    let base = (policy.initial_backoff_ms as f64 * policy.backoff_factor.powi(exponent)).min(cap);
    let spread = 1.0 + policy.jitter * (2.0 * unit_random.clamp(0.0, 1.0) - 1.0);
    Duration::from_millis((base * spread).clamp(0.0, cap).round() as u64)
}

/// Whether a delivery that failed on `attempt` gets another one.
pub fn should_retry(policy: &DeliveryPolicy, attempt: u32, retryable: bool) -> bool {
    retryable && attempt < policy.max_attempts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(jitter: f64) -> DeliveryPolicy {
        DeliveryPolicy {
            max_attempts: 5,
            initial_backoff_ms: 100,
            backoff_factor: 2.0,
            max_backoff_ms: 1000,
            jitter,
            ..DeliveryPolicy::default()
        }
    }

    #[test]
    fn grows_exponentially_to_the_cap() {
        let p = policy(0.0);
        let ms: Vec<u64> = (2..=7)
            .map(|a| backoff(&p, a, 0.5).as_millis() as u64)
            .collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
    }

    #[test]
    fn jitter_spreads_both_ways_within_the_cap() {
        let p = policy(0.2);
        assert_eq!(backoff(&p, 2, 0.0).as_millis(), 80);
        assert_eq!(backoff(&p, 2, 0.5).as_millis(), 100);
        assert_eq!(backoff(&p, 2, 1.0).as_millis(), 120);
        assert_eq!(backoff(&p, 9, 1.0).as_millis(), 1000);
    }

    #[test]
    fn huge_attempt_numbers_do_not_overflow() {
        assert_eq!(backoff(&policy(0.0), u32::MAX, 0.5).as_millis(), 1000);
    }

    #[test]
    fn retry_decision() {
        let p = policy(0.0);
        assert!(should_retry(&p, 1, true));
        assert!(should_retry(&p, 4, true));
        assert!(!should_retry(&p, 5, true));
        assert!(!should_retry(&p, 1, false));
    }
}
