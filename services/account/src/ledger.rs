//! The ledger: the only writer of money and transaction state. Every
//! operation is one database transaction — a conditional balance update, an
//! append-only ledger entry, the transaction row and an outbox job, together
//! or not at all — and every state change is conditional, so retries and
//! redeliveries change nothing the second time.

use chrono::{DateTime, Duration, Utc};
use offers_kit::outbox::{Outbox, OutboxError};
use offers_proto::contracts::{Job, PartnerEvent, ProvisionJob};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};
use uuid::Uuid;

use crate::entity::ledger_entry::EntryKind;
use crate::entity::transaction::{Kind, Status};
use crate::entity::{balance, idempotency_key, ledger_entry, subscription, transaction};
use crate::error::LedgerError;
use crate::settings::LedgerSettings;
use crate::status_cache::StatusCache;

/// The offer as bought; the transaction keeps this copy.
#[derive(Debug, Clone)]
pub struct OfferSnapshot {
    pub id: Uuid,
    pub code: String,
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub duration_days: i32,
}

#[derive(Debug, Clone)]
pub struct Idempotency {
    pub scope: String,
    pub key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone)]
pub struct Purchase {
    pub user_id: Uuid,
    pub kind: Kind,
    pub offer: OfferSnapshot,
    pub subscription_id: Option<Uuid>,
    pub partner_id: Option<Uuid>,
    pub reference: Option<String>,
    pub idempotency: Option<Idempotency>,
    /// Answer only a replay; never create.
    pub replay_only: bool,
}

pub struct Purchased {
    pub transaction: transaction::Model,
    /// An earlier request with the same idempotency key made it.
    pub replayed: bool,
}

pub struct Settled {
    pub transaction: transaction::Model,
    /// False when the transaction had already left PENDING.
    pub applied: bool,
}

/// The largest amount one operation may move (10^12 minor units): far above
/// any real price or top-up, far below where sums could overflow.
pub const MAX_AMOUNT: i64 = 1_000_000_000_000;

/// One ledger entry to write; `key` makes it happen at most once.
struct Entry {
    user_id: Uuid,
    transaction_id: Option<Uuid>,
    kind: EntryKind,
    amount: i64,
    key: String,
    memo: String,
}

pub struct Ledger {
    db: DatabaseConnection,
    status: StatusCache,
    settings: LedgerSettings,
    currency: String,
    outbox: Outbox,
}

fn secs(s: u64) -> Duration {
    Duration::seconds(i64::try_from(s).unwrap_or(i64::MAX / 1000))
}

impl Ledger {
    pub fn new(
        db: DatabaseConnection,
        status: StatusCache,
        settings: LedgerSettings,
        currency: String,
        outbox: Outbox,
    ) -> Self {
        Self { db, status, settings, currency, outbox }
    }

    pub fn settings(&self) -> &LedgerSettings {
        &self.settings
    }

    /// Opens a zero balance unless there is one.
    async fn ensure_balance(&self, db: &impl ConnectionTrait, user_id: Uuid) -> Result<(), LedgerError> {
        let row = balance::ActiveModel {
            user_id: Set(user_id),
            balance: Set(0),
            currency: Set(self.currency.clone()),
            updated_at: Set(Utc::now()),
        };
        balance::Entity::insert(row)
            .on_conflict(OnConflict::column(balance::Column::UserId).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    pub async fn open_account(&self, user_id: Uuid) -> Result<balance::Model, LedgerError> {
        self.ensure_balance(&self.db, user_id).await?;
        self.balance(user_id).await
    }

    pub async fn balance(&self, user_id: Uuid) -> Result<balance::Model, LedgerError> {
        Ok(balance::Entity::find_by_id(user_id).one(&self.db).await?.unwrap_or(balance::Model {
            user_id,
            balance: 0,
            currency: self.currency.clone(),
            updated_at: Utc::now(),
        }))
    }

    async fn enqueue<J: Job>(&self, db: &impl ConnectionTrait, job: &J, at: DateTime<Utc>) -> Result<(), LedgerError> {
        self.outbox.enqueue(db, J::TOPIC, job, at).await.map_err(|e| match e {
            OutboxError::Db(e) => LedgerError::Db(e),
            other => LedgerError::Invalid(other.to_string()),
        })
    }

    async fn record(&self, db: &impl ConnectionTrait, entry: Entry) -> Result<(), LedgerError> {
        let row = ledger_entry::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(entry.user_id),
            transaction_id: Set(entry.transaction_id),
            kind: Set(entry.kind),
            amount: Set(entry.amount),
            currency: Set(self.currency.clone()),
            idempotency_key: Set(entry.key),
            memo: Set(entry.memo),
            created_at: Set(Utc::now()),
        };
        ledger_entry::Entity::insert(row).exec_without_returning(db).await?;
        Ok(())
    }

    /// Adds to a balance; the caller's ledger entry says why.
    async fn add(&self, db: &impl ConnectionTrait, user_id: Uuid, amount: i64) -> Result<(), LedgerError> {
        self.ensure_balance(db, user_id).await?;
        balance::Entity::update_many()
            .col_expr(balance::Column::Balance, Expr::col(balance::Column::Balance).add(amount))
            .col_expr(balance::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(balance::Column::UserId.eq(user_id))
            .exec(db)
            .await?;
        Ok(())
    }

    async fn replay(&self, existing: idempotency_key::Model, request_hash: &str) -> Result<Purchased, LedgerError> {
        if existing.request_hash != request_hash {
            return Err(LedgerError::IdempotencyKeyReused);
        }
        let transaction = self.transaction(existing.transaction_id).await?;
        Ok(Purchased { transaction, replayed: true })
    }

    /// Charges (unless a partner collected the money), records a PENDING
    /// transaction and queues its provisioning, all at once. With an
    /// idempotency key, a repeat of the same request returns the first
    /// transaction and charges nothing.
    pub async fn purchase(&self, p: Purchase) -> Result<Purchased, LedgerError> {
        // A replay is answered before anything else is checked: what was
        // accepted once stays accepted, whatever changed since.
        if let Some(existing) = self.stored_key(&p).await? {
            return self.replay(existing, p.idempotency.as_ref().map_or("", |i| i.request_hash.as_str())).await;
        }
        if p.replay_only {
            return Err(LedgerError::NotFound("request with this idempotency key"));
        }
        if p.offer.price <= 0 || p.offer.price > MAX_AMOUNT {
            return Err(LedgerError::Invalid(format!("price must be between 1 and {MAX_AMOUNT}")));
        }
        if p.offer.currency != self.currency {
            return Err(LedgerError::CurrencyMismatch { offer: p.offer.currency, balance: self.currency.clone() });
        }
        let txn = self.db.begin().await?;
        match self.purchase_in(&txn, &p).await {
            Ok(created) => {
                txn.commit().await?;
                metrics::counter!("offers_ledger_purchases_total", "kind" => kind_label(p.kind)).increment(1);
                self.status.write(&created).await;
                self.outbox.notify();
                Ok(Purchased { transaction: created, replayed: false })
            }
            Err(e) => {
                txn.rollback().await?;
                // A concurrent request with the same key got there first: it
                // blocked this one on the key's unique index and committed.
                // Whatever this attempt ran into, the answer is that one's.
                match self.stored_key(&p).await? {
                    Some(existing) => {
                        self.replay(existing, p.idempotency.as_ref().map_or("", |i| i.request_hash.as_str())).await
                    }
                    None => Err(e),
                }
            }
        }
    }

    async fn stored_key(&self, p: &Purchase) -> Result<Option<idempotency_key::Model>, LedgerError> {
        match &p.idempotency {
            Some(idem) => {
                Ok(idempotency_key::Entity::find_by_id((idem.scope.clone(), idem.key.clone())).one(&self.db).await?)
            }
            None => Ok(None),
        }
    }

    async fn purchase_in(&self, txn: &DatabaseTransaction, p: &Purchase) -> Result<transaction::Model, LedgerError> {
        let now = Utc::now();
        let id = Uuid::now_v7();
        let amount = p.offer.price;
        // The key first: a concurrent request with the same key waits here on
        // the unique index until this one ends, then fails and replays it —
        // before it can touch the balance.
        if let Some(idem) = &p.idempotency {
            let key = idempotency_key::ActiveModel {
                scope: Set(idem.scope.clone()),
                key: Set(idem.key.clone()),
                request_hash: Set(idem.request_hash.clone()),
                transaction_id: Set(id),
                created_at: Set(now),
            };
            idempotency_key::Entity::insert(key).exec_without_returning(txn).await?;
        }
        self.ensure_balance(txn, p.user_id).await?;
        if p.kind.debits() {
            // The one statement that takes money: it happens only if the money is there.
            let debited = balance::Entity::update_many()
                .col_expr(balance::Column::Balance, Expr::col(balance::Column::Balance).sub(amount))
                .col_expr(balance::Column::UpdatedAt, Expr::value(now))
                .filter(balance::Column::UserId.eq(p.user_id))
                .filter(balance::Column::Balance.gte(amount))
                .exec(txn)
                .await?;
            if debited.rows_affected != 1 {
                return Err(LedgerError::InsufficientBalance { needed: amount });
            }
            let memo = format!("{} {}", kind_label(p.kind), p.offer.code);
            let entry = Entry {
                user_id: p.user_id,
                transaction_id: Some(id),
                kind: EntryKind::Purchase,
                amount: -amount,
                key: format!("purchase:{id}"),
                memo,
            };
            self.record(txn, entry).await?;
        }
        let row = transaction::ActiveModel {
            id: Set(id),
            user_id: Set(p.user_id),
            kind: Set(p.kind),
            offer_id: Set(p.offer.id),
            offer_code: Set(p.offer.code.clone()),
            offer_name: Set(p.offer.name.clone()),
            duration_days: Set(p.offer.duration_days),
            subscription_id: Set(p.subscription_id),
            amount: Set(amount),
            currency: Set(p.offer.currency.clone()),
            status: Set(Status::Pending),
            reference: Set(p.reference.clone()),
            partner_id: Set(p.partner_id),
            failure_reason: Set(None),
            last_error: Set(None),
            attempts: Set(0),
            revision: Set(1),
            redrive_at: Set(now + secs(self.settings.pending_deadline_secs)),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let created = transaction::Entity::insert(row).exec_with_returning(txn).await?;
        self.enqueue(txn, &ProvisionJob { transaction_id: id, attempt: 1 }, now).await?;
        Ok(created)
    }

    /// Claims attempt `attempt` of a PENDING transaction: only if it is the
    /// next one, so a duplicate or stale job finds nothing to do. The claim
    /// keeps the reconciler off for the attempt lease.
    pub async fn claim_attempt(&self, id: Uuid, attempt: i32) -> Result<(bool, transaction::Model), LedgerError> {
        let now = Utc::now();
        let claimed = transaction::Entity::update_many()
            .col_expr(transaction::Column::Attempts, Expr::value(attempt))
            .col_expr(transaction::Column::RedriveAt, Expr::value(now + secs(self.settings.attempt_lease_secs)))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::Attempts.eq(attempt - 1))
            .exec(&self.db)
            .await?;
        let tx = self.transaction(id).await?;
        if claimed.rows_affected == 1 {
            self.status.write(&tx).await;
        }
        Ok((claimed.rows_affected == 1, tx))
    }

    /// Queues attempt `attempt + 1` after `delay`, if `attempt` is still the
    /// latest one of a PENDING transaction.
    pub async fn schedule_retry(
        &self,
        id: Uuid,
        attempt: i32,
        delay: std::time::Duration,
        last_error: &str,
    ) -> Result<bool, LedgerError> {
        let now = Utc::now();
        let delay = Duration::from_std(delay).unwrap_or(Duration::zero());
        let txn = self.db.begin().await?;
        let updated = transaction::Entity::update_many()
            .col_expr(transaction::Column::RedriveAt, Expr::value(now + delay + secs(self.settings.attempt_lease_secs)))
            .col_expr(transaction::Column::LastError, Expr::value(last_error.chars().take(500).collect::<String>()))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::Attempts.eq(attempt))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 1 {
            let job = ProvisionJob { transaction_id: id, attempt: attempt + 1 };
            self.enqueue(&txn, &job, now + delay).await?;
        }
        txn.commit().await?;
        if updated.rows_affected == 1 {
            metrics::counter!("offers_ledger_retries_scheduled_total").increment(1);
            self.outbox.notify();
        }
        Ok(updated.rows_affected == 1)
    }

    /// Moves a PENDING transaction to SUCCESS (creating or extending its
    /// subscription) or FAILED (giving the money back), exactly once.
    pub async fn settle(
        &self,
        id: Uuid,
        outcome: Status,
        reason: Option<String>,
        attempt: Option<i32>,
    ) -> Result<Settled, LedgerError> {
        if outcome == Status::Pending {
            return Err(LedgerError::Invalid("a transaction settles to SUCCESS or FAILED".into()));
        }
        let txn = self.db.begin().await?;
        let now = Utc::now();
        let mut moving = transaction::Entity::update_many()
            .col_expr(transaction::Column::Status, Expr::value(outcome))
            .col_expr(transaction::Column::FailureReason, Expr::value(reason.clone()))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .col_expr(transaction::Column::UpdatedAt, Expr::value(now))
            .filter(transaction::Column::Id.eq(id))
            .filter(transaction::Column::Status.eq(Status::Pending));
        // A stale attempt (one that outlived its lease while a later one was
        // claimed) must not decide the outcome.
        if let Some(attempt) = attempt {
            moving = moving.filter(transaction::Column::Attempts.eq(attempt));
        }
        let moved = moving.exec(&txn).await?;
        if moved.rows_affected != 1 {
            txn.rollback().await?;
            return Ok(Settled { transaction: self.transaction(id).await?, applied: false });
        }
        let tx = transaction::Entity::find_by_id(id).one(&txn).await?.ok_or(LedgerError::NotFound("transaction"))?;
        // Serialise everything that settles for this user on their balance
        // row (FOR UPDATE on PostgreSQL; SQLite runs one transaction at a
        // time anyway): two settlements extending one subscription must not
        // both read the old expiry.
        self.ensure_balance(&txn, tx.user_id).await?;
        balance::Entity::find_by_id(tx.user_id).lock_exclusive().one(&txn).await?;
        match outcome {
            Status::Success => self.provisioned(&txn, &tx, now).await?,
            _ => self.give_back(&txn, &tx).await?,
        }
        let tx = transaction::Entity::find_by_id(id).one(&txn).await?.ok_or(LedgerError::NotFound("transaction"))?;
        if let (Some(partner_id), Some(reference)) = (tx.partner_id, tx.reference.clone()) {
            let event = PartnerEvent {
                event_id: Uuid::now_v7(),
                partner_id,
                transaction_id: tx.id,
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
        self.status.write(&tx).await;
        Ok(Settled { transaction: tx, applied: true })
    }

    /// SUCCESS: a renewal extends its subscription from its expiry (or from
    /// now, if it had lapsed); an activation extends the user's running
    /// subscription to the same offer, or starts one.
    async fn provisioned(
        &self,
        txn: &DatabaseTransaction,
        tx: &transaction::Model,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let length = Duration::days(i64::from(tx.duration_days));
        let existing = match tx.subscription_id {
            Some(id) => subscription::Entity::find_by_id(id).one(txn).await?,
            None => {
                subscription::Entity::find()
                    .filter(subscription::Column::UserId.eq(tx.user_id))
                    .filter(subscription::Column::OfferId.eq(tx.offer_id))
                    .filter(subscription::Column::ExpiresAt.gt(now))
                    .order_by_desc(subscription::Column::ExpiresAt)
                    .one(txn)
                    .await?
            }
        };
        let subscription_id = match existing {
            Some(sub) => {
                let from = Ord::max(sub.expires_at, now);
                subscription::Entity::update_many()
                    .col_expr(subscription::Column::ExpiresAt, Expr::value(from + length))
                    .col_expr(subscription::Column::UpdatedAt, Expr::value(now))
                    .filter(subscription::Column::Id.eq(sub.id))
                    .exec(txn)
                    .await?;
                sub.id
            }
            None => {
                let id = Uuid::now_v7();
                let row = subscription::ActiveModel {
                    id: Set(id),
                    user_id: Set(tx.user_id),
                    offer_id: Set(tx.offer_id),
                    offer_name: Set(tx.offer_name.clone()),
                    activated_at: Set(now),
                    expires_at: Set(now + length),
                    created_at: Set(now),
                    updated_at: Set(now),
                };
                subscription::Entity::insert(row).exec_without_returning(txn).await?;
                id
            }
        };
        transaction::Entity::update_many()
            .col_expr(transaction::Column::SubscriptionId, Expr::value(subscription_id))
            .filter(transaction::Column::Id.eq(tx.id))
            .exec(txn)
            .await?;
        Ok(())
    }

    /// FAILED: the amount goes (back) to the user's balance. The entry's key
    /// is derived from the transaction, so it can be written only once.
    async fn give_back(&self, txn: &DatabaseTransaction, tx: &transaction::Model) -> Result<(), LedgerError> {
        let (kind, key) = if tx.kind.debits() {
            (EntryKind::Refund, format!("refund:{}", tx.id))
        } else {
            (EntryKind::PartnerCredit, format!("partner-credit:{}", tx.id))
        };
        let memo = format!("{} {} failed", kind_label(tx.kind), tx.offer_code);
        let entry = Entry { user_id: tx.user_id, transaction_id: Some(tx.id), kind, amount: tx.amount, key, memo };
        self.record(txn, entry).await?;
        self.add(txn, tx.user_id, tx.amount).await
    }

    /// Administrative top-up, at most once per key.
    pub async fn credit(
        &self,
        user_id: Uuid,
        amount: i64,
        currency: &str,
        key: &str,
        memo: &str,
    ) -> Result<(bool, balance::Model), LedgerError> {
        if amount <= 0 || amount > MAX_AMOUNT {
            return Err(LedgerError::Invalid(format!("amount must be between 1 and {MAX_AMOUNT}")));
        }
        if currency != self.currency {
            return Err(LedgerError::CurrencyMismatch { offer: currency.into(), balance: self.currency.clone() });
        }
        if key.is_empty() {
            return Err(LedgerError::Invalid("idempotency_key is required".into()));
        }
        let txn = self.db.begin().await?;
        let key = format!("topup:{user_id}:{key}");
        let entry = Entry {
            user_id,
            transaction_id: None,
            kind: EntryKind::TopUp,
            amount,
            key: key.clone(),
            memo: memo.into(),
        };
        let recorded = self.record(&txn, entry).await;
        let applied = match recorded {
            Ok(()) => {
                self.add(&txn, user_id, amount).await?;
                txn.commit().await?;
                true
            }
            Err(LedgerError::Db(e)) if offers_kit::db::is_unique_violation(&e) => {
                txn.rollback().await?;
                // The same key again: a replay if it credited the same amount.
                let earlier = ledger_entry::Entity::find()
                    .filter(ledger_entry::Column::IdempotencyKey.eq(key))
                    .one(&self.db)
                    .await?;
                if earlier.is_some_and(|e| e.amount != amount) {
                    return Err(LedgerError::IdempotencyKeyReused);
                }
                false
            }
            Err(e) => return Err(e),
        };
        Ok((applied, self.balance(user_id).await?))
    }

    pub async fn transaction(&self, id: Uuid) -> Result<transaction::Model, LedgerError> {
        transaction::Entity::find_by_id(id).one(&self.db).await?.ok_or(LedgerError::NotFound("transaction"))
    }

    /// A transaction for the status endpoint: read from the database and
    /// put back in the cache.
    pub async fn lookup(&self, id: Uuid) -> Result<transaction::Model, LedgerError> {
        let tx = self.transaction(id).await?;
        self.status.write(&tx).await;
        Ok(tx)
    }

    pub async fn by_reference(&self, reference: &str, partner_id: Uuid) -> Result<transaction::Model, LedgerError> {
        transaction::Entity::find()
            .filter(transaction::Column::Reference.eq(reference))
            .filter(transaction::Column::PartnerId.eq(partner_id))
            .one(&self.db)
            .await?
            .ok_or(LedgerError::NotFound("transaction"))
    }

    pub async fn transactions(
        &self,
        user_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<transaction::Model>, LedgerError> {
        let mut query = transaction::Entity::find().filter(transaction::Column::UserId.eq(user_id));
        if let Some(after) = after {
            query = query.filter(transaction::Column::Id.lt(after));
        }
        Ok(query.order_by_desc(transaction::Column::Id).limit(limit).all(&self.db).await?)
    }

    pub async fn subscriptions(
        &self,
        user_id: Uuid,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<subscription::Model>, LedgerError> {
        let mut query = subscription::Entity::find().filter(subscription::Column::UserId.eq(user_id));
        if let Some(after) = after {
            query = query.filter(subscription::Column::Id.lt(after));
        }
        Ok(query.order_by_desc(subscription::Column::Id).limit(limit).all(&self.db).await?)
    }

    pub async fn subscription(&self, id: Uuid) -> Result<subscription::Model, LedgerError> {
        subscription::Entity::find_by_id(id).one(&self.db).await?.ok_or(LedgerError::NotFound("subscription"))
    }

    /// The user's subscription to an offer that runs longest.
    pub async fn subscription_of_offer(
        &self,
        user_id: Uuid,
        offer_id: Uuid,
    ) -> Result<subscription::Model, LedgerError> {
        subscription::Entity::find()
            .filter(subscription::Column::UserId.eq(user_id))
            .filter(subscription::Column::OfferId.eq(offer_id))
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

    /// PENDING transactions whose deadline passed with no job in flight.
    pub async fn overdue(&self, limit: u64) -> Result<Vec<transaction::Model>, LedgerError> {
        Ok(transaction::Entity::find()
            .filter(transaction::Column::Status.eq(Status::Pending))
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
            .col_expr(transaction::Column::RedriveAt, Expr::value(now + secs(self.settings.pending_deadline_secs)))
            .col_expr(transaction::Column::Revision, Expr::col(transaction::Column::Revision).add(1))
            .filter(transaction::Column::Id.eq(tx.id))
            .filter(transaction::Column::Status.eq(Status::Pending))
            .filter(transaction::Column::Revision.eq(tx.revision))
            .exec(&txn)
            .await?;
        if updated.rows_affected == 1 {
            let job = ProvisionJob { transaction_id: tx.id, attempt: tx.attempts + 1 };
            self.enqueue(&txn, &job, now).await?;
        }
        txn.commit().await?;
        if updated.rows_affected == 1 {
            self.outbox.notify();
        }
        Ok(updated.rows_affected == 1)
    }

    /// Forgets idempotency keys past their retention and published jobs
    /// older than a day.
    pub async fn housekeeping(&self) -> Result<(), LedgerError> {
        let now = Utc::now();
        let keep_keys = now - secs(self.settings.idempotency_retention_hours * 3600);
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
        Kind::PartnerActivation => "PARTNER_ACTIVATION",
    }
}
