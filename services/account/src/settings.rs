//! How the account service keeps transactions moving.

use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// A PENDING transaction with no job in flight for this long is re-driven.
    pub pending_deadline_secs: u64,
    /// How long a worker's claim on an attempt keeps the reconciler away.
    pub attempt_lease_secs: u64,
    /// How often the reconciler looks for stuck transactions.
    pub reconcile_interval_ms: u64,
    /// How often the outbox relay polls when nothing wakes it.
    pub relay_interval_ms: u64,
    /// Idempotency keys are kept at least this long (≥ 24).
    pub idempotency_retention_hours: u64,
    /// Time to live of a transaction's cached status.
    pub status_cache_ttl_secs: u64,
    /// How long a cached PENDING status is served without asking the
    /// ledger (after that, only while the ledger cannot be reached, marked
    /// stale).
    pub status_fresh_secs: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            pending_deadline_secs: 120,
            attempt_lease_secs: 60,
            reconcile_interval_ms: 5_000,
            relay_interval_ms: 1_000,
            idempotency_retention_hours: 48,
            status_cache_ttl_secs: 86_400,
            status_fresh_secs: 30,
        }
    }
}

impl Validate for LedgerSettings {
    fn validate(&self, p: &mut Problems) {
        p.check(
            (1..=86_400).contains(&self.pending_deadline_secs),
            "pending_deadline_secs",
            "between 1 and 86400 (a day)",
        );
        p.check((1..=3_600).contains(&self.attempt_lease_secs), "attempt_lease_secs", "between 1 and 3600 (an hour)");
        p.check(
            (1..=3_600_000).contains(&self.reconcile_interval_ms),
            "reconcile_interval_ms",
            "between 1 and 3600000 (an hour)",
        );
        p.check((1..=60_000).contains(&self.relay_interval_ms), "relay_interval_ms", "between 1 and 60000 (a minute)");
        p.check(
            (24..=2_160).contains(&self.idempotency_retention_hours),
            "idempotency_retention_hours",
            "between 24 and 2160 (90 days)",
        );
        p.check(self.status_cache_ttl_secs <= 30 * 86_400, "status_cache_ttl_secs", "at most 30 days");
        let fresh = self.status_fresh_secs;
        p.check((1..=3600).contains(&fresh), "status_fresh_secs", "between 1 and 3600");
        p.check(fresh < self.status_cache_ttl_secs, "status_fresh_secs", "must be below status_cache_ttl_secs");
    }
}
