//! The reconnection schedule of a source (a Zulip realm, a Redis bus): exponential
//! backoff with "equal jitter" (half the delay fixed, half random), capped,
//! so many daemons that lost the same server do not return in lockstep.
//! Pure: the random draw is a parameter.

use std::time::Duration;

/// Consecutive failures and the schedule they follow.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            initial,
            max: max.max(initial),
            failures: 0,
        }
    }

    /// Counts a failure and returns the pause before the next try.
    pub(crate) fn next(&mut self, unit_random: f64) -> Duration {
        self.failures = self.failures.saturating_add(1);
        delay(self.initial, self.max, self.failures, unit_random)
    }

    /// A success: the next failure starts from `initial` again.
    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

/// The pause after `failures` (≥ 1) consecutive failures:
/// `min(initial × 2^(failures−1), max)`, of which the upper half is scaled
/// by `unit_random` (a draw from `[0, 1]`).
pub(crate) fn delay(initial: Duration, max: Duration, failures: u32, unit_random: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(32) as i32;
    let base = (initial.as_secs_f64() * 2f64.powi(exponent)).min(max.as_secs_f64());
    let draw = if unit_random.is_nan() {
        0.0
    } else {
        unit_random.clamp(0.0, 1.0)
    };
    let jittered = base / 2.0 + base / 2.0 * draw;
    Duration::from_secs_f64(jittered)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: fn(u64) -> Duration = Duration::from_millis;

    #[test]
    fn doubles_to_the_cap_with_the_upper_half_random() {
        let rows = [
            // failures, draw, expected
            (1, 1.0, 100),
            (1, 0.0, 50),
            (1, 0.5, 75),
            (2, 1.0, 200),
            (4, 1.0, 800),
            (5, 1.0, 1000),
            (5, 0.0, 500),
            (60, 1.0, 1000),
            (u32::MAX, 1.0, 1000),
        ];
        for (failures, draw, expected) in rows {
            assert_eq!(
                delay(MS(100), MS(1000), failures, draw).as_millis(),
                expected,
                "failures {failures}, draw {draw}"
            );
        }
    }

    #[test]
    fn out_of_range_draws_are_clamped() {
        assert_eq!(delay(MS(100), MS(1000), 1, 7.0), MS(100));
        assert_eq!(delay(MS(100), MS(1000), 1, -1.0), MS(50));
        assert_eq!(delay(MS(100), MS(1000), 1, f64::NAN).as_millis(), 50);
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::new(MS(100), MS(1000));
        assert_eq!(b.next(1.0), MS(100));
        assert_eq!(b.next(1.0), MS(200));
        b.reset();
        assert_eq!(b.next(1.0), MS(100));
    }
}
