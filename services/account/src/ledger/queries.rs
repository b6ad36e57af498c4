//! What the ledger answers without changing anything.

use chrono::DurationRound;
use chrono::{DateTime, Utc};
use offers_proto::ids::{OfferId, PartnerId, SubscriptionId, TransactionId, UserId};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use uuid::Uuid;

use super::Ledger;
use crate::entity::subscription;
use crate::entity::transaction::{self, Status};
use crate::error::LedgerError;

impl Ledger {
    pub async fn transaction(&self, id: TransactionId) -> Result<transaction::Model, LedgerError> {
        transaction::Entity::find_by_id(id.uuid()).one(&self.db).await?.ok_or(LedgerError::NotFound("transaction"))
    }

    /// A transaction for the status endpoint: read from the database and
    /// put back in the cache.
    pub async fn lookup(&self, id: TransactionId) -> Result<transaction::Model, LedgerError> {
        let tx = self.transaction(id).await?;
        self.status.write(&tx).await;
        Ok(tx)
    }

    pub async fn by_reference(
        &self,
        reference: &str,
        partner_id: PartnerId,
    ) -> Result<transaction::Model, LedgerError> {
        transaction::Entity::find()
            .filter(transaction::Column::Reference.eq(reference))
            .filter(transaction::Column::PartnerId.eq(partner_id.uuid()))
            .one(&self.db)
            .await?
            .ok_or(LedgerError::NotFound("transaction"))
    }

    pub async fn transactions(
        &self,
        user_id: UserId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<transaction::Model>, LedgerError> {
        let mut query = transaction::Entity::find().filter(transaction::Column::UserId.eq(user_id.uuid()));
        if let Some(after) = after {
            query = query.filter(transaction::Column::Id.lt(after));
        }
        Ok(query.order_by_desc(transaction::Column::Id).limit(limit).all(&self.db).await?)
    }

    pub async fn subscriptions(
        &self,
        user_id: UserId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<subscription::Model>, LedgerError> {
        let mut query = subscription::Entity::find().filter(subscription::Column::UserId.eq(user_id.uuid()));
        if let Some(after) = after {
            query = query.filter(subscription::Column::Id.lt(after));
        }
        Ok(query.order_by_desc(subscription::Column::Id).limit(limit).all(&self.db).await?)
    }

    pub async fn subscription(&self, id: SubscriptionId) -> Result<subscription::Model, LedgerError> {
        subscription::Entity::find_by_id(id.uuid()).one(&self.db).await?.ok_or(LedgerError::NotFound("subscription"))
    }

    /// The user's subscription to an offer that runs longest.
    pub async fn subscription_of_offer(
        &self,
        user_id: UserId,
        offer_id: OfferId,
    ) -> Result<subscription::Model, LedgerError> {
        subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user_id.uuid()))
            .filter(subscription::Column::OfferId.eq(offer_id.uuid()))
            .order_by_desc(subscription::Column::ExpiresAt)
            .one(&self.db)
            .await?
            .ok_or(LedgerError::NotFound("subscription"))
    }

    pub async fn expiring(
        &self,
        after: DateTime<Utc>,
        before: DateTime<Utc>,
        cursor: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<subscription::Model>, LedgerError> {
        let mut query = subscription::Entity::find()
            .filter(subscription::Column::ExpiresAt.gte(after))
            .filter(subscription::Column::ExpiresAt.lt(before));
        if let Some(cursor) = cursor {
            query = query.filter(subscription::Column::Id.lt(cursor));
        }
        Ok(query.order_by_desc(subscription::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// The transactions a partner paid for, newest first.
    pub async fn partner_transactions(
        &self,
        partner_id: PartnerId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<transaction::Model>, LedgerError> {
        let mut query = transaction::Entity::find()
            .filter(transaction::Column::PayerAccountId.eq(partner_id.uuid()))
            .filter(transaction::Column::PartnerId.eq(partner_id.uuid()));
        if let Some(after) = after {
            query = query.filter(transaction::Column::Id.lt(after));
        }
        Ok(query.order_by_desc(transaction::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// The transactions waiting for review, oldest first.
    pub async fn reviews(&self, after: Option<Uuid>, limit: u64) -> Result<Vec<transaction::Model>, LedgerError> {
        let mut query = transaction::Entity::find()
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(true));
        if let Some(after) = after {
            query = query.filter(transaction::Column::Id.gt(after));
        }
        Ok(query.order_by_asc(transaction::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// How many transactions wait for review.
    pub async fn reviews_waiting(&self) -> Result<u64, LedgerError> {
        use sea_orm::PaginatorTrait;
        Ok(transaction::Entity::find()
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(true))
            .count(&self.db)
            .await?)
    }

    /// What operators watch: purchases accepted in each of the last
    /// `hours` hours (the current one last) by state, the review queue's
    /// size and oldest entry, and the outbox's oldest due job.
    pub async fn overview(&self, hours: u32, now: DateTime<Utc>) -> Result<Overview, LedgerError> {
        let this_hour = now.duration_trunc(chrono::TimeDelta::hours(1)).unwrap_or(now);
        let mut by_hour = Vec::new();
        for back in (0..i64::from(hours)).rev() {
            let start = this_hour - chrono::TimeDelta::hours(back);
            // Ids are UUIDv7: the id range of an hour is its time range, on the primary key.
            let counts: StatusCounts = transaction::Entity::find()
                .select_only()
                .column(transaction::Column::Status)
                .column_as(transaction::Column::Id.count(), "n")
                .filter(transaction::Column::Id.gte(v7_floor(start)))
                .filter(transaction::Column::Id.lt(v7_floor(start + chrono::TimeDelta::hours(1))))
                .group_by(transaction::Column::Status)
                .into_tuple()
                .all(&self.db)
                .await?;
            by_hour.push((start, counts));
        }
        let reviews_waiting = self.reviews_waiting().await?;
        let oldest_review = self.reviews(None, 1).await?.first().map(|t| t.created_at);
        let oldest_outbox = self.outbox.oldest_due(&self.db, now).await?;
        Ok(Overview { by_hour, reviews_waiting, oldest_review, oldest_outbox })
    }
}

/// How many transactions are in each state (the states with none left out).
pub type StatusCounts = Vec<(Status, i64)>;

/// See [`Ledger::overview`].
pub struct Overview {
    /// Each hour's start with its transactions' count by state.
    pub by_hour: Vec<(DateTime<Utc>, StatusCounts)>,
    pub reviews_waiting: u64,
    pub oldest_review: Option<DateTime<Utc>>,
    pub oldest_outbox: Option<DateTime<Utc>>,
}

/// The smallest UUIDv7 of a moment (its millisecond, every other bit zero).
fn v7_floor(at: DateTime<Utc>) -> Uuid {
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    Uuid::from_bytes(bytes)
}
