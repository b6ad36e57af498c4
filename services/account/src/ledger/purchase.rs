//! A purchase order made real: the price held from whoever pays (the user,
//! or the partner for a partner activation) in the pending account, the
//! PENDING transaction and its provisioning job, in one database
//! transaction. With an idempotency key, a repeat of the same request
//! returns the first transaction and moves nothing.

use chrono::{DateTime, Utc};
use offers_proto::contracts::{Idempotency, Payer, ProvisionJob, PurchaseKind, PurchaseOrder, Step};
use offers_proto::ids::{SubscriptionId, TransactionId, UserId};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseTransaction, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait,
};
use uuid::Uuid;

use super::books::{PENDING, Transfer};
use super::{Ledger, MAX_AMOUNT, kind_label, span};
use crate::entity::account::Kind as AccountKind;
use crate::entity::transaction::{self, Kind, Model as Transaction, Status};
use crate::entity::{idempotency_key, subscription, transfer};
use crate::error::LedgerError;

pub struct Purchased {
    pub transaction: transaction::Model,
    /// An earlier request with the same idempotency key made it.
    pub replayed: bool,
}

/// The row's columns that depend on the kind of purchase.
struct KindColumns {
    kind: Kind,
    /// Whose transaction it is (`user_id`).
    owner: Uuid,
    subscription_id: Option<Uuid>,
    partner_id: Option<Uuid>,
    reference: Option<String>,
    recipient_id: Option<Uuid>,
}

impl KindColumns {
    fn of(order: &PurchaseOrder) -> Self {
        let recipient = order.recipient.uuid();
        let only = |kind| Self {
            kind,
            owner: recipient,
            subscription_id: None,
            partner_id: None,
            reference: None,
            recipient_id: None,
        };
        match &order.kind {
            PurchaseKind::Activation => only(Kind::Activation),
            PurchaseKind::Renewal { subscription } => {
                Self { subscription_id: Some(subscription.uuid()), ..only(Kind::Renewal) }
            }
            PurchaseKind::AutoRenewal { subscription, .. } => {
                Self { subscription_id: Some(subscription.uuid()), ..only(Kind::AutoRenewal) }
            }
            PurchaseKind::Partner { partner, reference } => Self {
                partner_id: Some(partner.uuid()),
                reference: Some(reference.clone()),
                ..only(Kind::PartnerActivation)
            },
            // The payer's transaction; the recipient only gets the subscription.
            PurchaseKind::Gift { payer } => {
                Self { owner: payer.uuid(), recipient_id: Some(recipient), ..only(Kind::Gift) }
            }
        }
    }
}

/// The account the price is held from.
fn payer_account(order: &PurchaseOrder) -> (Uuid, AccountKind) {
    match order.payer() {
        Payer::User(user) => (user.uuid(), AccountKind::User),
        Payer::Partner(partner) => (partner.uuid(), AccountKind::Partner),
    }
}

impl Ledger {
    async fn replayed(&self, existing: idempotency_key::Model, fingerprint: &str) -> Result<Purchased, LedgerError> {
        if existing.request_hash != fingerprint {
            return Err(LedgerError::IdempotencyKeyReused);
        }
        let transaction = self.transaction(existing.transaction_id.into()).await?;
        Ok(Purchased { transaction, replayed: true })
    }

    /// The purchase an earlier request with this key made, creating
    /// nothing: what was accepted once stays accepted, whatever changed
    /// since.
    pub async fn replay(&self, idempotency: &Idempotency) -> Result<Transaction, LedgerError> {
        match self.stored_key(Some(idempotency)).await? {
            Some(existing) => Ok(self.replayed(existing, &idempotency.fingerprint).await?.transaction),
            None => Err(LedgerError::NotFound("request with this idempotency key")),
        }
    }

    pub async fn purchase(&self, p: PurchaseOrder) -> Result<Purchased, LedgerError> {
        // A replay is answered before anything else is checked.
        let fingerprint = p.idempotency.as_ref().map_or("", |i| i.fingerprint.as_str());
        if let Some(existing) = self.stored_key(p.idempotency.as_ref()).await? {
            return self.replayed(existing, fingerprint).await;
        }
        if p.offer.price > MAX_AMOUNT {
            return Err(LedgerError::Invalid(format!("price must be at most {MAX_AMOUNT}")));
        }
        if p.offer.currency != self.currency {
            return Err(LedgerError::CurrencyMismatch {
                offer: p.offer.currency.clone(),
                balance: self.currency.clone(),
            });
        }
        let txn = self.db.begin().await?;
        match self.purchase_in(&txn, &p).await {
            Ok(created) => {
                txn.commit().await?;
                metrics::counter!("offers_ledger_purchases_total", "kind" => kind_label(created.kind)).increment(1);
                self.status.write(&created).await;
                self.outbox.notify();
                Ok(Purchased { transaction: created, replayed: false })
            }
            Err(e) => {
                txn.rollback().await?;
                // A concurrent request with the same key got there first: it
                // blocked this one on the key's unique index and committed.
                // Whatever this attempt ran into, the answer is that one's.
                match self.stored_key(p.idempotency.as_ref()).await? {
                    Some(existing) => self.replayed(existing, fingerprint).await,
                    None => Err(e),
                }
            }
        }
    }

    async fn stored_key(
        &self,
        idempotency: Option<&Idempotency>,
    ) -> Result<Option<idempotency_key::Model>, LedgerError> {
        match idempotency {
            Some(idem) => {
                Ok(idempotency_key::Entity::find_by_id((idem.scope.clone(), idem.key.clone())).one(&self.db).await?)
            }
            None => Ok(None),
        }
    }

    /// Refuses a payer's gift beyond `gifting.max_per_day` in the last 24
    /// hours (failed ones, refunded, do not count).
    async fn within_gift_limit(
        &self,
        txn: &DatabaseTransaction,
        payer: Uuid,
        now: DateTime<Utc>,
    ) -> Result<(), LedgerError> {
        let max = self.gifting.max_per_day;
        let made = transaction::Entity::find()
            .filter(transaction::Column::UserId.eq(payer))
            .filter(transaction::Column::Kind.eq(Kind::Gift))
            .filter(transaction::Column::Status.ne(Status::Failed))
            .filter(transaction::Column::CreatedAt.gt(now - chrono::Duration::hours(24)))
            .count(txn)
            .await?;
        if made >= u64::from(max) {
            return Err(LedgerError::GiftLimitReached { max });
        }
        Ok(())
    }

    /// The period a renewal of `subscription` renews: the expiry it runs to
    /// now. Another user's subscription does not exist.
    async fn period_of(
        &self,
        txn: &DatabaseTransaction,
        subscription: SubscriptionId,
        owner: UserId,
    ) -> Result<DateTime<Utc>, LedgerError> {
        subscription::Entity::find_by_id(subscription.uuid())
            .one(txn)
            .await?
            .filter(|s| s.user_id == owner.uuid())
            .map(|s| s.expires_at)
            .ok_or(LedgerError::NotFound("subscription"))
    }

    async fn purchase_in(
        &self,
        txn: &DatabaseTransaction,
        p: &PurchaseOrder,
    ) -> Result<transaction::Model, LedgerError> {
        let now = Utc::now();
        let id = TransactionId::generate().uuid();
        let columns = KindColumns::of(p);
        let renews_from = match &p.kind {
            PurchaseKind::Renewal { subscription } => Some(self.period_of(txn, *subscription, p.recipient).await?),
            PurchaseKind::AutoRenewal { subscription, period_end } => {
                let period = self.period_of(txn, *subscription, p.recipient).await?;
                // Renewed meanwhile (by its owner, or another pass that got
                // there first): this pass saw a period that is gone.
                if period != *period_end {
                    return Err(LedgerError::Conflict("this period of the subscription is already renewed".into()));
                }
                self.renewal_outcome(txn, subscription.uuid(), Status::Pending, None, now).await?;
                Some(period)
            }
            _ => None,
        };
        let amount = p.offer.price;
        // The key first: a concurrent request with the same key waits here on
        // the unique index until this one ends, then fails and replays it —
        // before it can touch any money.
        if let Some(idem) = &p.idempotency {
            let key = idempotency_key::ActiveModel {
                scope: Set(idem.scope.clone()),
                key: Set(idem.key.clone()),
                request_hash: Set(idem.fingerprint.clone()),
                transaction_id: Set(id),
                created_at: Set(now),
            };
            idempotency_key::Entity::insert(key).exec_without_returning(txn).await?;
        }
        let (payer, payer_kind) = payer_account(p);
        self.ensure_account(txn, payer, payer_kind).await?;
        let hold = Transfer {
            from: payer,
            to: PENDING,
            amount,
            kind: transfer::Kind::Hold,
            key: format!("hold:{id}"),
            transaction_id: Some(id),
            memo: format!("{} {}", kind_label(columns.kind), p.offer.code),
        };
        self.transfer(txn, hold).await?;
        if columns.kind == Kind::Gift {
            // After the hold, which locked the payer's account row: a
            // concurrent gift of theirs waits for this one and counts it.
            self.within_gift_limit(txn, columns.owner, now).await?;
        }
        let row = transaction::ActiveModel {
            id: Set(id),
            user_id: Set(columns.owner),
            kind: Set(columns.kind),
            offer_id: Set(p.offer.id.uuid()),
            offer_code: Set(p.offer.code.clone()),
            offer_name: Set(p.offer.name.clone()),
            duration_days: Set(p.offer.duration_days),
            subscription_id: Set(columns.subscription_id),
            amount: Set(amount),
            currency: Set(p.offer.currency.clone()),
            status: Set(Status::Pending),
            reference: Set(columns.reference),
            partner_id: Set(columns.partner_id),
            payer_account_id: Set(payer),
            failure_reason: Set(None),
            last_error: Set(None),
            attempts: Set(0),
            revision: Set(1),
            redrive_at: Set(now + span(self.settings.pending_deadline)),
            needs_review: Set(false),
            review_reason: Set(None),
            legacy: Set(false),
            extended_to: Set(None),
            recipient_id: Set(columns.recipient_id),
            auto_renew: Set(p.auto_renew),
            renews_from: Set(renews_from),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let created = transaction::Entity::insert(row).exec_with_returning(txn).await.map_err(|e| {
            if renews_from.is_some() && offers_kit::db::is_unique_violation(&e) {
                LedgerError::Conflict("this period of the subscription is already renewed or being renewed".into())
            } else {
                e.into()
            }
        })?;
        self.enqueue(txn, &ProvisionJob { transaction_id: id.into(), attempt: 1, step: Step::Provision }, now).await?;
        Ok(created)
    }
}
