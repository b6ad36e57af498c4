//! A purchase: the price held from whoever pays (the user, or the partner
//! for a partner activation) in the pending account, the PENDING
//! transaction and its provisioning job, in one database transaction. With
//! an idempotency key, a repeat of the same request returns the first
//! transaction and moves nothing.

use chrono::Utc;
use offers_proto::contracts::{ProvisionJob, Step};
use sea_orm::{ActiveValue::Set, DatabaseTransaction, EntityTrait, TransactionTrait};
use uuid::Uuid;

use super::books::{PENDING, Transfer};
use super::{Ledger, MAX_AMOUNT, kind_label, span};
use crate::entity::account::Kind as AccountKind;
use crate::entity::transaction::{self, Kind, Status};
use crate::entity::{idempotency_key, transfer};
use crate::error::LedgerError;

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

/// Who pays for a purchase (and gets the money back if it fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payer {
    /// The user, from their balance.
    User,
    /// A partner, from its account with us (float plus credit limit).
    Partner(Uuid),
}

#[derive(Debug, Clone)]
pub struct Purchase {
    pub user_id: Uuid,
    pub kind: Kind,
    pub offer: OfferSnapshot,
    pub subscription_id: Option<Uuid>,
    pub payer: Payer,
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

impl Purchase {
    fn payer_account(&self) -> (Uuid, AccountKind) {
        match self.payer {
            Payer::User => (self.user_id, AccountKind::User),
            Payer::Partner(partner) => (partner, AccountKind::Partner),
        }
    }

    fn request_hash(&self) -> &str {
        self.idempotency.as_ref().map_or("", |i| i.request_hash.as_str())
    }
}

impl Ledger {
    async fn replay(&self, existing: idempotency_key::Model, request_hash: &str) -> Result<Purchased, LedgerError> {
        if existing.request_hash != request_hash {
            return Err(LedgerError::IdempotencyKeyReused);
        }
        let transaction = self.transaction(existing.transaction_id).await?;
        Ok(Purchased { transaction, replayed: true })
    }

    pub async fn purchase(&self, p: Purchase) -> Result<Purchased, LedgerError> {
        // A replay is answered before anything else is checked: what was
        // accepted once stays accepted, whatever changed since.
        if let Some(existing) = self.stored_key(&p).await? {
            return self.replay(existing, p.request_hash()).await;
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
                    Some(existing) => self.replay(existing, p.request_hash()).await,
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
        // before it can touch any money.
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
        let (payer, payer_kind) = p.payer_account();
        self.ensure_account(txn, payer, payer_kind).await?;
        let hold = Transfer {
            from: payer,
            to: PENDING,
            amount,
            kind: transfer::Kind::Hold,
            key: format!("hold:{id}"),
            transaction_id: Some(id),
            memo: format!("{} {}", kind_label(p.kind), p.offer.code),
        };
        self.transfer(txn, hold).await?;
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
            partner_id: Set(match p.payer {
                Payer::Partner(partner) => Some(partner),
                Payer::User => None,
            }),
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
            created_at: Set(now),
            updated_at: Set(now),
        };
        let created = transaction::Entity::insert(row).exec_with_returning(txn).await?;
        self.enqueue(txn, &ProvisionJob { transaction_id: id, attempt: 1, step: Step::Provision }, now).await?;
        Ok(created)
    }
}
