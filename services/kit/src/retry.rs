//! Backoff for retried work.

use std::time::Duration;

/// Exponential backoff with jitter: attempt n waits between half and all of
/// `base · 2^(n-1)`, capped at `max`. The jitter spreads retries of many
/// failures that happened together.
pub fn backoff(attempt: i32, base: Duration, max: Duration) -> Duration {
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
}
