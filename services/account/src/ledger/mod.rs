//! The ledger: the only writer of money and transaction state. Money is
//! double entry — every movement is one transfer between two accounts, so
//! the accounts always sum to zero — and every operation is one database
//! transaction: conditional debits, the transfers, the transaction row and
//! an outbox job, together or not at all. Every state change is
//! conditional, so retries and redeliveries change nothing the second time.

mod books;
mod check;
mod purchase;
mod queries;
mod renewal;
mod settle;

use chrono::{DateTime, Duration, Utc};
use offers_kit::audit::Trail;
use offers_kit::outbox::{Outbox, OutboxError};
use offers_proto::contracts::Job;
use sea_orm::{ConnectionTrait, DatabaseConnection};

pub use books::{FUNDING, Owner, PENDING, REVENUE};
pub use check::Books;
pub use renewal::Announcement;
pub use settle::SETTLE_HISTOGRAM;

/// The account service's audit trail.
pub const TRAIL: &str = "account";

use crate::entity::transaction::Kind;
use crate::error::LedgerError;
use crate::settings::{GiftingSettings, LedgerSettings};
use crate::status_cache::StatusCache;

/// The largest amount one operation may move (10^12 minor units): far above
/// any real price or top-up, far below where sums could overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

pub struct Ledger {
    db: DatabaseConnection,
    status: StatusCache,
    settings: LedgerSettings,
    gifting: GiftingSettings,
    currency: String,
    outbox: Outbox,
    /// The administrative acts on the books (credits, credit limits,
    /// resolutions), each written with the act.
    trail: Trail,
}

/// A setting's span as a database time offset (validated settings are far
/// below chrono's limit).
fn span(d: std::time::Duration) -> Duration {
    Duration::from_std(d).unwrap_or(Duration::MAX)
}

impl Ledger {
    pub fn new(
        db: DatabaseConnection,
        status: StatusCache,
        (settings, gifting): (LedgerSettings, GiftingSettings),
        currency: String,
        outbox: Outbox,
    ) -> Self {
        let trail = Trail::new(TRAIL, db.clone());
        Self { db, status, settings, gifting, currency, outbox, trail }
    }

    pub fn settings(&self) -> &LedgerSettings {
        &self.settings
    }

    async fn enqueue<J: Job>(&self, db: &impl ConnectionTrait, job: &J, at: DateTime<Utc>) -> Result<(), LedgerError> {
        self.outbox.enqueue(db, J::TOPIC, job, at).await.map_err(|e| match e {
            OutboxError::Db(e) => LedgerError::Db(e),
            other => LedgerError::Invalid(other.to_string()),
        })
    }

    /// Forgets idempotency keys past their retention and published jobs
    /// older than a day.
    pub async fn housekeeping(&self) -> Result<(), LedgerError> {
        use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

        use crate::entity::idempotency_key;
        let keep_keys = Utc::now() - span(std::time::Duration::from_hours(self.settings.idempotency_retention_hours));
        idempotency_key::Entity::delete_many()
            .filter(idempotency_key::Column::CreatedAt.lt(keep_keys))
            .exec(&self.db)
            .await?;
        self.outbox.prune(&self.db).await?;
        Ok(())
    }
}

pub fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Activation => "ACTIVATION",
        Kind::Renewal => "RENEWAL",
        Kind::AutoRenewal => "AUTO_RENEWAL",
        Kind::PartnerActivation => "PARTNER_ACTIVATION",
        Kind::Gift => "GIFT",
    }
}
