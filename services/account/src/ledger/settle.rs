//! A transaction's life after the purchase: attempts claimed and retried,
//! settled once (SUCCESS: the held money becomes revenue and the
//! subscription runs; FAILED: the money goes back to whoever paid), parked
//! for review when the provider cannot tell, resolved by an operator, and
//! re-driven when a job was lost.

use chrono::{DateTime, Duration, Utc};
use offers_kit::audit::{Act, Deed};
use offers_proto::contracts::{PartnerEvent, ProvisionJob, Step};
use offers_proto::ids::TransactionId;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use uuid::Uuid;

use super::books::{PENDING, REVENUE, Transfer, is_system};
use super::{Ledger, kind_label, span};
use crate::entity::account::{self, Kind as AccountKind};
use crate::entity::transaction::{self, Kind, Status};
use crate::entity::{attempt, resolution, subscription, transfer};
use crate::error::LedgerError;

/// From an accepted activation to its settlement, by outcome: retries and
/// inquiries can take minutes.
pub const SETTLE_HISTOGRAM: (&str, &[f64]) = (
    "offers_activation_settle_duration_seconds",
    &[0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0],
);

pub struct Settled {
    pub transaction: transaction::Model,
    /// False when the transaction had already left PENDING (or the deciding
    /// attempt was stale).
    pub applied: bool,
}

/// An operator's decision on a transaction waiting for review.
#[derive(Debug, Clone)]

/// What makes a settlement the one to apply.
enum Decision<'a> {
    /// The worker's attempt: only if no later attempt was claimed since and
    /// the transaction is not waiting for review.
    Attempt(Option<i32>),
    /// An operator's, on a transaction waiting for review; recorded.
    Review(&'a Act),
}

/// The held money of a settling transaction, on its way to `to`: a sale or
/// a refund, keyed by the transaction so it happens once.
fn release(tx: &transaction::Model, to: Uuid, kind: transfer::Kind) -> Transfer {
    let what = if kind == transfer::Kind::Sale { "sale" } else { "refund" };
    Transfer {
        from: PENDING,
        to,
        amount: tx.amount,
        kind,
        key: format!("{what}:{}", tx.id),
        transaction_id: Some(tx.id),
        memo: format!("{} {} {what}", kind_label(tx.kind), tx.offer_code),
    }
}

/// Keeps what an attempt met, in the transaction that records its outcome.
async fn note_attempt(
    txn: &DatabaseTransaction,
    transaction_id: Uuid,
    attempt: i32,
    outcome: &str,
    answer: &str,
    now: DateTime<Utc>,
) -> Result<(), LedgerError> {
    let row = attempt::ActiveModel {
        id: Set(Uuid::now_v7()),
        transaction_id: Set(transaction_id),
        attempt: Set(attempt),
        outcome: Set(outcome.into()),
        answer: Set(answer.chars().take(500).collect()),
        recorded_at: Set(now),
    };
    attempt::Entity::insert(row).exec_without_returning(txn).await?;
    Ok(())
}

impl Ledger {
    /// What each attempt of a transaction met, oldest first.
    pub async fn attempts(&self, id: TransactionId) -> Result<Vec<attempt::Model>, LedgerError> {
        self.transaction(id).await?;
        Ok(attempt::Entity::find()
            .filter(attempt::Column::TransactionId.eq(id.uuid()))
            .order_by_asc(attempt::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Claims attempt `attempt` of a PENDING transaction: only if it is the
    /// next one, so a duplicate or stale job finds nothing to do. The claim
    /// keeps the reconciler off for the attempt lease.
    pub async fn claim_attempt(
        &self,
        tx_id: TransactionId,
        attempt: i32,
    ) -> Result<(bool, transaction::Model), LedgerError> {
        let (now, id) = (Utc::now(), tx_id.uuid());
        let claimed = transaction::Entity::update_many()
            .col_expr(transaction::Column::Attempts, Expr::value(attempt))
            .col_expr(transaction::Column::RedriveAt, Expr::value(now + span(self.settings.attempt_lease)))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(false))
            .filter(transaction::Column::Attempts.eq(attempt - 1))
            .exec(&self.db)
            .await?;
        let tx = self.transaction(tx_id).await?;
        if claimed.rows_affected == 1 {
            self.status.write(&tx).await;
        }
        Ok((claimed.rows_affected == 1, tx))
    }

    /// Queues attempt `attempt + 1`, doing `step`, after `delay`, if
    /// `attempt` is still the latest one of a PENDING transaction.
    pub async fn schedule_retry(
        &self,
        tx_id: TransactionId,
        attempt: i32,
        step: Step,
        delay: std::time::Duration,
        last_error: &str,
    ) -> Result<bool, LedgerError> {
        let (now, id) = (Utc::now(), tx_id.uuid());
        let delay = Duration::from_std(delay).unwrap_or(Duration::zero());
        let txn = self.db.begin().await?;
        let updated = transaction::Entity::update_many()
            .col_expr(transaction::Column::RedriveAt, Expr::value(now + delay + span(self.settings.attempt_lease)))
            .col_expr(transaction::Column::LastError, Expr::value(last_error.chars().take(500).collect::<String>()))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(false))
            .filter(transaction::Column::Attempts.eq(attempt))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 1 {
            let job = ProvisionJob { transaction_id: tx_id, attempt: attempt + 1, step };
            self.enqueue(&txn, &job, now + delay).await?;
            note_attempt(&txn, id, attempt, "retry", last_error, now).await?;
        }
        txn.commit().await?;
        if updated.rows_affected == 1 {
            metrics::counter!("offers_ledger_retries_scheduled_total").increment(1);
            self.outbox.notify();
        }
        Ok(updated.rows_affected == 1)
    }

    /// Parks a PENDING transaction for an operator: the provider could not
    /// say whether attempt `attempt` provisioned it. It is no longer
    /// re-driven and nothing is refunded until someone decides.
    pub async fn mark_for_review(
        &self,
        tx_id: TransactionId,
        attempt: i32,
        reason: &str,
    ) -> Result<Settled, LedgerError> {
        let (id, now) = (tx_id.uuid(), Utc::now());
        let txn = self.db.begin().await?;
        let marked = transaction::Entity::update_many()
            .col_expr(transaction::Column::NeedsReview, Expr::value(true))
            .col_expr(transaction::Column::ReviewReason, Expr::value(reason.chars().take(500).collect::<String>()))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(false))
            .filter(transaction::Column::Attempts.eq(attempt))
            .exec(&txn)
            .await?;
        if marked.rows_affected == 1 {
            note_attempt(&txn, id, attempt, "review", reason, now).await?;
        }
        txn.commit().await?;
        let tx = self.transaction(tx_id).await?;
        if marked.rows_affected == 1 {
            metrics::counter!("offers_ledger_reviews_total").increment(1);
            tracing::warn!(transaction_id = %id, reason, "transaction waits for review");
            self.status.write(&tx).await;
        }
        Ok(Settled { transaction: tx, applied: marked.rows_affected == 1 })
    }

    /// Moves a PENDING transaction to SUCCESS or FAILED, exactly once, as
    /// decided by the worker's `attempt` (any attempt when `None`).
    pub async fn settle(
        &self,
        id: TransactionId,
        outcome: Status,
        reason: Option<String>,
        attempt: Option<i32>,
    ) -> Result<Settled, LedgerError> {
        self.settle_as(id, outcome, reason, Decision::Attempt(attempt)).await
    }

    /// Settles a transaction waiting for review as an operator decided, with
    /// the record of who and why, through the same path as any settlement.
    pub async fn resolve(
        &self,
        id: TransactionId,
        outcome: Status,
        act: &Act,
    ) -> Result<transaction::Model, LedgerError> {
        if act.note.trim().is_empty() || act.actor.trim().is_empty() {
            return Err(LedgerError::Invalid("a resolution needs who decided and a note saying why".into()));
        }
        let reason = (outcome == Status::Failed).then(|| "the provider did not provision it".to_string());
        let settled = self.settle_as(id, outcome, reason, Decision::Review(act)).await?;
        if !settled.applied {
            return Err(LedgerError::Conflict("the transaction is not waiting for review".into()));
        }
        Ok(settled.transaction)
    }

    async fn settle_as(
        &self,
        id: TransactionId,
        outcome: Status,
        reason: Option<String>,
        decision: Decision<'_>,
    ) -> Result<Settled, LedgerError> {
        if outcome == Status::Pending {
            return Err(LedgerError::Invalid("a transaction settles to SUCCESS or FAILED".into()));
        }
        let (tx_id, id) = (id, id.uuid());
        let txn = self.db.begin().await?;
        let now = Utc::now();
        let mut moving = transaction::Entity::update_many()
            .col_expr(transaction::Column::Status, Expr::value(outcome))
            .col_expr(transaction::Column::FailureReason, Expr::value(reason))
            .col_expr(transaction::Column::NeedsReview, Expr::value(false))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending));
        moving = match &decision {
            // A stale attempt (one that outlived its lease while a later one
            // was claimed) must not decide the outcome, nor may any attempt
            // once an operator owns the decision.
            Decision::Attempt(attempt) => {
                let moving = moving.filter(transaction::Column::NeedsReview.eq(false));
                match attempt {
                    Some(attempt) => moving.filter(transaction::Column::Attempts.eq(*attempt)),
                    None => moving,
                }
            }
            Decision::Review(_) => moving.filter(transaction::Column::NeedsReview.eq(true)),
        };
        if moving.exec(&txn).await?.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Settled { transaction: self.transaction(tx_id).await?, applied: false });
        }
        let tx = transaction::Entity::find_by_id(id).one(&txn).await?.ok_or(LedgerError::NotFound("transaction"))?;
        // Serialise everything that settles for the subscriber (the
        // recipient of a gift) on their account row (FOR UPDATE on
        // PostgreSQL; SQLite runs one transaction at a time anyway): two
        // settlements extending one subscription must not both read the old
        // expiry.
        self.ensure_account(&txn, tx.subscriber(), AccountKind::User).await?;
        account::Entity::find_by_id(tx.subscriber()).lock_exclusive().one(&txn).await?;
        match outcome {
            Status::Success => self.provisioned(&txn, &tx, now).await?,
            _ => self.give_back(&txn, &tx).await?,
        }
        if let (Kind::AutoRenewal, Some(subscription)) = (tx.kind, tx.subscription_id) {
            self.renewal_outcome(&txn, subscription, outcome, tx.failure_reason.clone(), now).await?;
        }
        if let Decision::Attempt(attempt) = &decision {
            let answer = tx.failure_reason.as_deref().unwrap_or("provisioned");
            note_attempt(&txn, id, attempt.unwrap_or(0), outcome.as_str(), answer, now).await?;
        }
        if let Decision::Review(act) = &decision {
            let row = resolution::ActiveModel {
                transaction_id: Set(id),
                outcome: Set(outcome.as_str().into()),
                actor: Set(act.actor.clone()),
                note: Set(act.note.clone()),
                created_at: Set(now),
            };
            resolution::Entity::insert(row).exec_without_returning(&txn).await?;
            let deed = Deed {
                action: "transaction.resolve",
                target: format!("transaction:{id}"),
                detail: format!("outcome={} amount={} {}", outcome.as_str(), tx.amount, tx.currency),
            };
            self.trail.record(&txn, act, deed).await?;
        }
        let tx = transaction::Entity::find_by_id(id).one(&txn).await?.ok_or(LedgerError::NotFound("transaction"))?;
        if let (Some(partner_id), Some(reference)) = (tx.partner_id, tx.reference.clone()) {
            let event = PartnerEvent {
                event_id: Uuid::now_v7(),
                partner_id: partner_id.into(),
                transaction_id: tx_id,
                reference,
                status: tx.status.as_str().into(),
                failure_reason: tx.failure_reason.clone(),
                occurred_at: now,
                attempt: 0,
            };
            self.enqueue(&txn, &event, now).await?;
        }
        txn.commit().await?;
        self.outbox.notify();
        metrics::counter!("offers_ledger_settled_total", "status" => outcome.as_str(), "kind" => kind_label(tx.kind))
            .increment(1);
        let waited = (now - tx.created_at).to_std().unwrap_or_default();
        metrics::histogram!(SETTLE_HISTOGRAM.0, "status" => outcome.as_str(), "kind" => kind_label(tx.kind))
            .record(waited.as_secs_f64());
        self.status.write(&tx).await;
        Ok(Settled { transaction: tx, applied: true })
    }

    /// SUCCESS: the held money becomes revenue; a renewal extends its
    /// subscription from its expiry (if bought while it ran, whenever it
    /// settles; from now if bought after it lapsed); an activation extends
    /// the user's running subscription to the same offer, or starts one.
    /// An order that asked for it turns on the subscription's renewal.
    async fn provisioned(
        &self,
        txn: &DatabaseTransaction,
        tx: &transaction::Model,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        self.transfer(txn, release(tx, REVENUE, transfer::Kind::Sale)).await?;
        let length = Duration::days(i64::from(tx.duration_days));
        let existing = match tx.subscription_id {
            Some(id) => subscription::Entity::find_by_id(id).one(txn).await?,
            None => {
                subscription::Entity::find()
                    .filter(subscription::Column::UserId.eq(tx.subscriber()))
                    .filter(subscription::Column::OfferId.eq(tx.offer_id))
                    .filter(subscription::Column::ExpiresAt.gt(now))
                    .order_by_desc(subscription::Column::ExpiresAt)
                    .one(txn)
                    .await?
            }
        };
        let (subscription_id, expires_at) = match existing {
            Some(sub) => {
                // A renewal bought while its period ran extends from that
                // period's end however late it settles: no gap, no overlap.
                // Anything else extends a lapsed subscription from now.
                let bought_in_time = tx.renews_from.is_some_and(|period| period >= tx.created_at);
                let from = if bought_in_time { sub.expires_at } else { Ord::max(sub.expires_at, now) };
                subscription::Entity::update_many()
                    .col_expr(subscription::Column::ExpiresAt, Expr::value(from + length))
                    .col_expr(subscription::Column::AutoRenew, Expr::value(sub.auto_renew || tx.auto_renew))
                    .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
                    .filter(subscription::Column::Id.eq(sub.id))
                    .exec(txn)
                    .await?;
                (sub.id, from + length)
            }
            None => {
                let id = Uuid::now_v7();
                let row = subscription::ActiveModel {
                    id: Set(id),
                    user_id: Set(tx.subscriber()),
                    offer_id: Set(tx.offer_id),
                    offer_name: Set(tx.offer_name.clone()),
                    activated_at: Set(now),
                    expires_at: Set(now + length),
                    auto_renew: Set(tx.auto_renew),
                    last_renewal_status: Set(None),
                    last_renewal_at: Set(None),
                    last_renewal_reason: Set(None),
                    announced_price: Set(None),
                    price_announced_at: Set(None),
                    created_at: Set(now),
                    updated_at: Set(now),
                };
                subscription::Entity::insert(row).exec_without_returning(txn).await?;
                (id, now + length)
            }
        };
        transaction::Entity::update_many()
            .col_expr(transaction::Column::SubscriptionId, Expr::value(subscription_id))
            .col_expr(transaction::Column::ExtendedTo, Expr::value(expires_at))
            .filter(transaction::Column::Id.eq(tx.id))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// FAILED: the held money goes back to whoever paid — the user, or the
    /// partner for a partner activation. The transfer's key is derived from
    /// the transaction, so it can happen only once.
    async fn give_back(&self, txn: &DatabaseTransaction, tx: &transaction::Model) -> Result<(), LedgerError> {
        let payer = tx.payer_account_id;
        if !is_system(payer) {
            let kind = if tx.partner_id == Some(payer) { AccountKind::Partner } else { AccountKind::User };
            self.ensure_account(txn, payer, kind).await?;
        }
        self.transfer(txn, release(tx, payer, transfer::Kind::Refund)).await
    }

    /// PENDING transactions whose deadline passed with no job in flight (not
    /// those waiting for review: only an operator moves them on).
    pub async fn overdue(&self, limit: u64) -> Result<Vec<transaction::Model>, LedgerError> {
        Ok(transaction::Entity::find()
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(false))
            .filter(transaction::Column::RedriveAt.lt(Utc::now()))
            .order_by_asc(transaction::Column::RedriveAt)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Queues the next attempt of an overdue transaction, unless it changed
    /// since it was read (another reconciler, a worker) — one re-drive per
    /// deadline.
    pub async fn redrive(&self, tx: &transaction::Model) -> Result<bool, LedgerError> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let updated = transaction::Entity::update_many()
            .col_expr(transaction::Column::RedriveAt, Expr::value(now + span(self.settings.pending_deadline)))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .filter(transaction::Column::Id.eq(tx.id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::NeedsReview.eq(false))
            .filter(transaction::Column::Revision.eq(tx.revision))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 1 {
            let job = ProvisionJob { transaction_id: tx.id.into(), attempt: tx.attempts + 1, step: Step::Provision };
            self.enqueue(&txn, &job, now).await?;
        }
        txn.commit().await?;
        if updated.rows_affected == 1 {
            self.outbox.notify();
        }
        Ok(updated.rows_affected == 1)
    }
}
