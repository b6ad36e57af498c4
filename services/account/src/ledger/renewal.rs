//! Automatic renewal as the ledger keeps it: each subscription's choice,
//! set by its owner (or by a purchase that asked for it, when it
//! succeeds); which subscriptions the renewal pass must look at; and how
//! their latest renewal went. The charge itself is an ordinary purchase
//! (`PurchaseKind::AutoRenewal`), held to one per period like any renewal.

use chrono::{DateTime, Utc};
use offers_proto::contracts::{Price, RenewalNotice};
use offers_proto::ids::{SubscriptionId, UserId};
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait, UpdateMany,
};
use uuid::Uuid;

use super::Ledger;
use crate::entity::subscription;
use crate::entity::transaction::{self, Status};
use crate::error::LedgerError;

/// Why a renewal charged nothing, as the subscription shows it.
pub const LAPSED: &str = "lapsed";

/// A new price for a subscription's next automatic renewal, told its
/// subscriber at `at`.
pub struct Announcement {
    /// The expiry that renewal extends.
    pub period_end: DateTime<Utc>,
    pub price: i64,
    pub currency: String,
    pub at: DateTime<Utc>,
}

impl Ledger {
    /// Turns a user's subscription's automatic renewal on or off; another
    /// user's does not exist.
    pub async fn set_auto_renew(
        &self,
        user_id: UserId,
        id: SubscriptionId,
        auto_renew: bool,
    ) -> Result<subscription::Model, LedgerError> {
        let updated = subscription::Entity::update_many()
            .col_expr(subscription::Column::AutoRenew, Expr::value(auto_renew))
            .col_expr(subscription::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(subscription::Column::Id.eq(id.uuid()))
            .filter(subscription::Column::UserId.eq(user_id.uuid()))
            .exec(&self.db)
            .await?;
        if updated.rows_affected != 1 {
            return Err(LedgerError::NotFound("subscription"));
        }
        self.subscription(id).await
    }

    /// The subscriptions asking for renewal that end before `due_before`
    /// (ended ones included), by id after `after`, each with what its
    /// latest successful purchase charged (0 if none is known).
    pub async fn renewals_due(
        &self,
        due_before: DateTime<Utc>,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<(subscription::Model, i64)>, LedgerError> {
        let mut query = subscription::Entity::find()
            .filter(subscription::Column::AutoRenew.eq(true))
            .filter(subscription::Column::ExpiresAt.lt(due_before));
        if let Some(after) = after {
            query = query.filter(subscription::Column::Id.gt(after));
        }
        let due = query.order_by_asc(subscription::Column::Id).limit(limit).all(&self.db).await?;
        let mut priced = Vec::with_capacity(due.len());
        for sub in due {
            let price = self.last_price(sub.id.into()).await?;
            priced.push((sub, price));
        }
        Ok(priced)
    }

    /// What a subscription's latest successful purchase charged: the price
    /// its automatic renewal charges (0 if none is known).
    pub async fn last_price(&self, id: SubscriptionId) -> Result<i64, LedgerError> {
        let last = transaction::Entity::find()
            .filter(transaction::Column::SubscriptionId.eq(id.uuid()))
            .filter(transaction::Column::Status.eq(Status::Success))
            .order_by_desc(transaction::Column::Id)
            .one(&self.db)
            .await?;
        Ok(last.map_or(0, |t| t.amount))
    }

    /// Records a renewal of the period ending `period_end` that charged
    /// nothing, turning automatic renewal off with `stop`; nothing changes
    /// if the subscription has moved on to another period since, or if the
    /// same note stands already (each pass retries, and the first failure's
    /// time and a single count are what operators want).
    pub async fn note_renewal(
        &self,
        id: SubscriptionId,
        period_end: DateTime<Utc>,
        reason: &str,
        stop: bool,
    ) -> Result<(bool, subscription::Model), LedgerError> {
        let now = Utc::now();
        let mut update = subscription::Entity::update_many()
            .col_expr(subscription::Column::LastRenewalStatus, Expr::value(Status::Failed.as_str()))
            .col_expr(subscription::Column::LastRenewalAt, Expr::value(now))
            .col_expr(
                subscription::Column::LastRenewalReason,
                Expr::value(reason.chars().take(200).collect::<String>()),
            )
            .col_expr(subscription::Column::UpdatedAt, Expr::value(now));
        if stop {
            update = update.col_expr(subscription::Column::AutoRenew, Expr::value(false));
        }
        let mut update = update
            .filter(subscription::Column::Id.eq(id.uuid()))
            .filter(subscription::Column::ExpiresAt.eq(period_end))
            .filter(subscription::Column::AutoRenew.eq(true));
        if !stop {
            // Spelled out: a NULL outcome must count as different.
            let differs = Condition::any()
                .add(subscription::Column::LastRenewalStatus.is_null())
                .add(subscription::Column::LastRenewalStatus.ne(Status::Failed.as_str()))
                .add(subscription::Column::LastRenewalReason.is_null())
                .add(subscription::Column::LastRenewalReason.ne(reason));
            update = update.filter(differs);
        }
        let noted = self.change_and_tell(update, id, period_end, reason, None).await?;
        if noted {
            metrics::counter!("offers_renewals_total", "outcome" => outcome_label(reason)).increment(1);
        }
        Ok((noted, self.subscription(id).await?))
    }

    /// Records that the subscriber is told `announcement`'s price and tells
    /// them, unless that price was announced already or the subscription
    /// no longer ends at its `period_end` or no longer renews itself.
    pub async fn announce_price(
        &self,
        id: SubscriptionId,
        announcement: Announcement,
    ) -> Result<(bool, subscription::Model), LedgerError> {
        let Announcement { period_end, price, currency, at } = announcement;
        let differs = Condition::any()
            .add(subscription::Column::AnnouncedPrice.is_null())
            .add(subscription::Column::AnnouncedPrice.ne(price));
        let update = subscription::Entity::update_many()
            .col_expr(subscription::Column::AnnouncedPrice, Expr::value(price))
            .col_expr(subscription::Column::PriceAnnouncedAt, Expr::value(at))
            .col_expr(subscription::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(subscription::Column::Id.eq(id.uuid()))
            .filter(subscription::Column::ExpiresAt.eq(period_end))
            .filter(subscription::Column::AutoRenew.eq(true))
            .filter(differs);
        // A price is never counted as told unless the telling is on its way.
        let price = Price { amount: price, currency };
        let announced = self.change_and_tell(update, id, period_end, RenewalNotice::PRICE_NOTICE, Some(price)).await?;
        Ok((announced, self.subscription(id).await?))
    }

    /// Applies `update` to the subscription and, if it changed it, queues
    /// the notice telling its owner why (`reason`, with `price` for a price
    /// notice): together or not at all. Whether it changed.
    async fn change_and_tell(
        &self,
        update: UpdateMany<subscription::Entity>,
        id: SubscriptionId,
        period_end: DateTime<Utc>,
        reason: &str,
        price: Option<Price>,
    ) -> Result<bool, LedgerError> {
        let txn = self.db.begin().await?;
        let changed = update.exec(&txn).await?.rows_affected == 1;
        if changed {
            let sub = subscription::Entity::find_by_id(id.uuid())
                .one(&txn)
                .await?
                .ok_or(LedgerError::NotFound("subscription"))?;
            let notice = RenewalNotice {
                subscription_id: id,
                user_id: sub.user_id.into(),
                offer_name: sub.offer_name,
                period_end,
                reason: reason.into(),
                price,
            };
            self.enqueue(&txn, &notice, Utc::now()).await?;
        }
        txn.commit().await?;
        if changed {
            self.outbox.notify();
        }
        Ok(changed)
    }

    /// Sets the subscription's latest renewal outcome, in the caller's
    /// database transaction (a purchase's or a settlement's).
    pub(crate) async fn renewal_outcome(
        &self,
        db: &impl ConnectionTrait,
        subscription: Uuid,
        status: Status,
        reason: Option<String>,
        at: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        subscription::Entity::update_many()
            .col_expr(subscription::Column::LastRenewalStatus, Expr::value(status.as_str()))
            .col_expr(subscription::Column::LastRenewalAt, Expr::value(at))
            .col_expr(subscription::Column::LastRenewalReason, Expr::value(reason))
            .filter(subscription::Column::Id.eq(subscription))
            .exec(db)
            .await?;
        if status != Status::Pending {
            let outcome = if status == Status::Success { "renewed" } else { "provisioning_failed" };
            metrics::counter!("offers_renewals_total", "outcome" => outcome).increment(1);
        }
        Ok(())
    }
}

/// The metric label of a renewal that charged nothing: one of the reasons
/// the pass gives, never free text.
fn outcome_label(reason: &str) -> &'static str {
    match reason {
        "insufficient_balance" => "insufficient_balance",
        "offer_inactive" => "offer_inactive",
        "price_changed" => "price_changed",
        LAPSED => LAPSED,
        _ => "other",
    }
}
