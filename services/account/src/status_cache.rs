//! Transaction status in the cache (a hash per transaction), written after
//! every commit that changes it. Never the truth: a failed write is only
//! logged, and readers fall back to the database.

use std::time::Duration;

use offers_kit::cache::{SharedCache, VersionedHash};
use offers_proto::contracts::StatusEntry;

use crate::entity::transaction::{self, Status};

#[derive(Clone)]
pub struct StatusCache {
    cache: SharedCache,
    ttl: Duration,
    pending_fresh: Duration,
}

impl StatusCache {
    pub fn new(cache: SharedCache, ttl: Duration, pending_fresh: Duration) -> Self {
        Self { cache, ttl, pending_fresh }
    }

    pub async fn write(&self, tx: &transaction::Model) {
        let entry = StatusEntry {
            user_id: tx.user_id.into(),
            status: tx.status.into(),
            offer_id: tx.offer_id.into(),
            amount: tx.amount,
            currency: tx.currency.clone(),
            failure_reason: tx.failure_reason.clone(),
            updated_at: tx.updated_at,
            revision: tx.revision,
            // A settled status never changes. A PENDING one is trusted only
            // briefly, so a write that fails after settlement (leaving the
            // old PENDING behind) costs at most that long a wrong answer;
            // after that readers ask the ledger, and fall back to the entry
            // (marked stale) only while the ledger cannot answer.
            fresh_until: (tx.status == Status::Pending)
                .then(|| chrono::Utc::now() + chrono::Duration::from_std(self.pending_fresh).unwrap_or_default()),
        };
        let key = StatusEntry::key(tx.id.into());
        let fields = entry.to_fields();
        let hash = VersionedHash { revision: entry.revision, fields: &fields, ttl: self.ttl };
        if let Err(e) = self.cache.hash_set_if_newer(&key, hash).await {
            tracing::warn!(transaction_id = %tx.id, error = %e, "could not cache the transaction status");
            let _ = self.cache.delete(&[&key]).await;
        }
    }
}
