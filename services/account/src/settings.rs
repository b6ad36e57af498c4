//! How the account service keeps transactions moving.

use std::time::Duration;

use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// A PENDING transaction with no job in flight for this long is re-driven.
    #[serde(with = "humantime_serde")]
    pub pending_deadline: Duration,
    /// How long a worker's claim on an attempt keeps the reconciler away.
    #[serde(with = "humantime_serde")]
    pub attempt_lease: Duration,
    /// How often the reconciler looks for stuck transactions.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How often the outbox relay polls when nothing wakes it.
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// Idempotency keys are kept at least this long (≥ 24).
    pub idempotency_retention_hours: u64,
    /// Time to live of a transaction's cached status.
    #[serde(with = "humantime_serde")]
    pub status_cache_ttl: Duration,
    /// How long a cached PENDING status is served without asking the
    /// ledger (after that, only while the ledger cannot be reached, marked
    /// stale).
    #[serde(with = "humantime_serde")]
    pub status_fresh: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            pending_deadline: Duration::from_mins(2),
            attempt_lease: Duration::from_mins(1),
            reconcile_interval: Duration::from_secs(5),
            relay_interval: Duration::from_secs(1),
            idempotency_retention_hours: 48,
            status_cache_ttl: Duration::from_hours(24),
            status_fresh: Duration::from_secs(30),
        }
    }
}

impl Validate for LedgerSettings {
    fn validate(&self, p: &mut Problems) {
        const MS: Duration = Duration::from_millis(1);
        const SECOND: Duration = Duration::from_secs(1);
        p.within("pending_deadline", self.pending_deadline, SECOND..=Duration::from_hours(24));
        p.within("attempt_lease", self.attempt_lease, SECOND..=Duration::from_hours(1));
        p.within("reconcile_interval", self.reconcile_interval, MS..=Duration::from_hours(1));
        p.within("relay_interval", self.relay_interval, MS..=Duration::from_mins(1));
        p.check(
            (24..=2_160).contains(&self.idempotency_retention_hours),
            "idempotency_retention_hours",
            "between 24 and 2160 (90 days)",
        );
        p.within("status_cache_ttl", self.status_cache_ttl, Duration::ZERO..=Duration::from_hours(30 * 24));
        p.within("status_fresh", self.status_fresh, SECOND..=Duration::from_hours(1));
        p.check(self.status_fresh < self.status_cache_ttl, "status_fresh", "must be below status_cache_ttl");
    }
}

/// Offers bought for another user.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GiftingSettings {
    /// How many gifts one user may make in 24 hours (0: gifting is off);
    /// failed ones, refunded, do not count.
    pub max_per_day: u32,
}

impl Default for GiftingSettings {
    fn default() -> Self {
        Self { max_per_day: 10 }
    }
}

impl Validate for GiftingSettings {
    fn validate(&self, p: &mut Problems) {
        p.check(self.max_per_day <= 10_000, "max_per_day", "at most 10000");
    }
}
