//! Backoff for retried work, and the policy a setting gives it.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::Problems;

/// How often and how patiently to try again: one setting (`retry`) of
/// each owner of retried work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// The wait after the first failure; it doubles after each further one.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// The longest wait between two attempts.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// Attempts in all, the first one included.
    pub attempts: u32,
}

impl RetryPolicy {
    /// The wait after the `failed`-th failed attempt.
    pub fn delay(&self, failed: u32) -> Duration {
        backoff(i32::try_from(failed).unwrap_or(i32::MAX), self.base, self.max)
    }

    /// Whether another attempt may follow the `attempt`-th.
    pub fn allows_after(&self, attempt: u32) -> bool {
        attempt < self.attempts
    }

    /// Records its problems under `key`: a zero base, a maximum below the
    /// base or above a day, attempts outside 1 to `most_attempts`.
    pub fn check(&self, p: &mut Problems, key: &str, most_attempts: u32) {
        p.within(&format!("{key}.base"), self.base, Duration::from_millis(1)..=Duration::from_hours(24));
        p.within(&format!("{key}.max"), self.max, self.base..=Duration::from_hours(24));
        p.check(
            (1..=most_attempts).contains(&self.attempts),
            &format!("{key}.attempts"),
            format!("between 1 and {most_attempts}"),
        );
    }
}

/// Exponential backoff with jitter: attempt n waits between half and all of
/// `base · 2^(n-1)`, capped at `max`. The jitter spreads retries of many
/// failures that happened together.
pub(crate) fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
    let exponent = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(20);
    let ceiling = base.saturating_mul(1 << exponent).min(max);
    let ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(rand::random_range(ms / 2..=ms.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(1);
        for _ in 0..50 {
            let first = backoff(1, base, max);
            assert!((50..=100).contains(&first.as_millis()), "{first:?}");
            let third = backoff(3, base, max);
            assert!((200..=400).contains(&third.as_millis()), "{third:?}");
            assert!(backoff(30, base, max) <= max);
        }
    }

    #[test]
    fn a_policy_refuses_a_zero_wait_and_a_maximum_below_its_base() {
        let policy = RetryPolicy { base: Duration::ZERO, max: Duration::from_secs(1), attempts: 0 };
        let mut p = Problems::default();
        policy.check(&mut p, "retry", 10);
        let Err(crate::config::ConfigError::Invalid(errors)) = p.into_result() else { panic!("expected invalid") };
        assert!(errors[0].starts_with("retry.base: between 1ms and 1day"), "{errors:?}");
        assert!(errors[1].starts_with("retry.attempts"), "{errors:?}");
        let inverted = RetryPolicy { base: Duration::from_secs(2), max: Duration::from_secs(1), attempts: 3 };
        let mut p = Problems::default();
        inverted.check(&mut p, "retry", 10);
        assert!(p.into_result().is_err());
    }
}
