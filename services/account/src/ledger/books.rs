//! Accounts and transfers: the one primitive that moves money. A transfer
//! takes an amount from one account and gives it to another in the
//! caller's database transaction; a debit of a user's or partner's account
//! happens only if it stays within the account's limit, and the transfer's
//! key (derived from its cause) makes it happen at most once.

use chrono::Utc;
use offers_kit::audit::{Act, Deed};
use offers_proto::ids::{PartnerId, UserId};
use offers_proto::wire;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait};
use uuid::Uuid;

use super::{Ledger, MAX_AMOUNT};
use crate::entity::account::{self, Kind as AccountKind};
use crate::entity::transfer::{self, Kind};
use crate::error::LedgerError;

/// Where money enters: top-ups, partners' floats, opening balances. Its
/// balance is minus all the money ever put in.
pub const FUNDING: Uuid = Uuid::from_u128(0x0f0f_0000_0000_0000_0000_0000_0000_0001);
/// Money held while provisioning runs.
pub const PENDING: Uuid = Uuid::from_u128(0x0f0f_0000_0000_0000_0000_0000_0000_0002);
/// Settled sales.
pub const REVENUE: Uuid = Uuid::from_u128(0x0f0f_0000_0000_0000_0000_0000_0000_0003);

pub const SYSTEM_ACCOUNTS: [(Uuid, &str); 3] = [(FUNDING, "funding"), (PENDING, "pending"), (REVENUE, "revenue")];

pub fn is_system(id: Uuid) -> bool {
    SYSTEM_ACCOUNTS.iter().any(|(system, _)| *system == id)
}

/// Whose account: a user's or a partner's (each has its owner's id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    User(UserId),
    Partner(PartnerId),
}

impl Owner {
    /// How the audit trail names the account.
    fn target(self) -> String {
        match self {
            Owner::User(user) => format!("user:{user}"),
            Owner::Partner(partner) => format!("partner:{partner}"),
        }
    }

    pub(crate) fn parts(self) -> (Uuid, AccountKind) {
        match self {
            Owner::User(user) => (user.uuid(), AccountKind::User),
            Owner::Partner(partner) => (partner.uuid(), AccountKind::Partner),
        }
    }
}

/// One movement of money.
pub(crate) struct Transfer {
    pub from: Uuid,
    pub to: Uuid,
    pub amount: i64,
    pub kind: Kind,
    /// Derived from the cause, so the transfer can happen only once.
    pub key: String,
    pub transaction_id: Option<Uuid>,
    pub memo: String,
}

impl Ledger {
    /// Opens an account with nothing in it unless there is one.
    pub(crate) async fn ensure_account(
        &self,
        db: &impl ConnectionTrait,
        id: Uuid,
        kind: AccountKind,
    ) -> Result<(), LedgerError> {
        let now = Utc::now();
        let row = account::ActiveModel {
            id: Set(id),
            kind: Set(kind),
            balance: Set(0),
            credit_limit: Set(0),
            currency: Set(self.currency.clone()),
            created_at: Set(now),
            updated_at: Set(now),
        };
        account::Entity::insert(row)
            .on_conflict(OnConflict::column(account::Column::Id).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        Ok(())
    }

    pub async fn open_account(&self, owner: Owner) -> Result<account::Model, LedgerError> {
        let (id, kind) = owner.parts();
        self.ensure_account(&self.db, id, kind).await?;
        self.account(owner).await
    }

    /// The account of a user or partner; one that was never opened is empty.
    pub async fn account(&self, owner: Owner) -> Result<account::Model, LedgerError> {
        let (id, kind) = owner.parts();
        let found = account::Entity::find_by_id(id).one(&self.db).await?;
        match found {
            Some(account) if account.kind == kind => Ok(account),
            Some(_) => Err(LedgerError::NotFound("account")),
            None => {
                let now = Utc::now();
                let currency = self.currency.clone();
                Ok(account::Model { id, kind, balance: 0, credit_limit: 0, currency, created_at: now, updated_at: now })
            }
        }
    }

    /// Moves money in the caller's database transaction. A user's or
    /// partner's account is debited only if it stays within its limit
    /// (otherwise nothing is written and the caller rolls back); the system
    /// accounts have no rows to update.
    pub(crate) async fn transfer(&self, db: &impl ConnectionTrait, t: Transfer) -> Result<(), LedgerError> {
        if t.amount <= 0 || t.amount > MAX_AMOUNT || t.from == t.to {
            return Err(LedgerError::Invalid(format!(
                "a transfer moves between 1 and {MAX_AMOUNT} between two accounts"
            )));
        }
        let now = Utc::now();
        if !is_system(t.from) {
            // The one statement that takes money: it happens only if the money is there.
            let debited = account::Entity::update_many()
                .col_expr(account::Column::Balance, Expr::col(account::Column::Balance).sub(t.amount))
                .col_expr(account::Column::UpdatedAt, Expr::value(now))
                .filter(account::Column::Id.eq(t.from))
                .filter(Expr::col(account::Column::Balance).add(Expr::col(account::Column::CreditLimit)).gte(t.amount))
                .exec(db)
                .await?;
            if debited.rows_affected != 1 {
                let kind = account::Entity::find_by_id(t.from).one(db).await?.map(|a| a.kind);
                return Err(LedgerError::InsufficientFunds {
                    needed: t.amount,
                    payer: kind.unwrap_or(AccountKind::User),
                });
            }
        }
        if !is_system(t.to) {
            account::Entity::update_many()
                .col_expr(account::Column::Balance, Expr::col(account::Column::Balance).add(t.amount))
                .col_expr(account::Column::UpdatedAt, Expr::value(now))
                .filter(account::Column::Id.eq(t.to))
                .exec(db)
                .await?;
        }
        let row = transfer::ActiveModel {
            id: Set(Uuid::now_v7()),
            from_account: Set(t.from),
            to_account: Set(t.to),
            amount: Set(t.amount),
            currency: Set(self.currency.clone()),
            kind: Set(t.kind),
            transaction_id: Set(t.transaction_id),
            key: Set(t.key),
            memo: Set(t.memo),
            created_at: Set(now),
        };
        transfer::Entity::insert(row).exec_without_returning(db).await?;
        Ok(())
    }

    /// Moves `amount` from funding into a user's or partner's account (a
    /// top-up, a float), at most once per account and key. Returns whether
    /// this call moved it, and the account after.
    pub async fn credit(
        &self,
        whose: Owner,
        amount: i64,
        currency: &str,
        key: &str,
        memo: &str,
        act: &Act,
    ) -> Result<(bool, account::Model), LedgerError> {
        if amount <= 0 || amount > MAX_AMOUNT {
            return Err(LedgerError::Invalid(format!("amount must be between 1 and {MAX_AMOUNT}")));
        }
        if currency != self.currency {
            return Err(LedgerError::CurrencyMismatch { offer: currency.into(), balance: self.currency.clone() });
        }
        if !wire::is_idempotency_key(key) {
            return Err(LedgerError::Invalid("idempotency_key must be 1 to 255 visible ASCII characters".into()));
        }
        if !wire::is_text(memo, 1000) {
            return Err(LedgerError::Invalid("memo must be at most 1000 characters of text".into()));
        }
        let (owner, kind) = whose.parts();
        let key = format!("credit:{owner}:{key}");
        let txn = self.db.begin().await?;
        self.ensure_account(&txn, owner, kind).await?;
        let credit = Transfer {
            from: FUNDING,
            to: owner,
            amount,
            kind: Kind::Credit,
            key: key.clone(),
            transaction_id: None,
            memo: memo.into(),
        };
        let deed = Deed {
            action: "credit",
            target: whose.target(),
            detail: format!("amount={amount} {currency} memo={memo}"),
        };
        let applied = match self.transfer(&txn, credit).await {
            Ok(()) => {
                // A replay credits nothing and records nothing.
                self.trail.record(&txn, act, deed).await?;
                txn.commit().await?;
                true
            }
            Err(LedgerError::Db(e)) if offers_kit::db::is_unique_violation(&e) => {
                txn.rollback().await?;
                // The same key again: a replay if it credited the same amount.
                let earlier = transfer::Entity::find().filter(transfer::Column::Key.eq(key)).one(&self.db).await?;
                if earlier.is_some_and(|t| t.amount != amount) {
                    return Err(LedgerError::IdempotencyKeyReused);
                }
                false
            }
            Err(e) => return Err(e),
        };
        Ok((applied, self.account(whose).await?))
    }

    /// Sets how far below zero a partner's account may go. Lowering it
    /// below what the partner already owes is refused.
    pub async fn set_credit_limit(
        &self,
        whose: PartnerId,
        limit: i64,
        act: &Act,
    ) -> Result<account::Model, LedgerError> {
        let partner = whose.uuid();
        if !(0..=MAX_AMOUNT).contains(&limit) {
            return Err(LedgerError::Invalid(format!("credit_limit must be between 0 and {MAX_AMOUNT}")));
        }
        let txn = self.db.begin().await?;
        self.ensure_account(&txn, partner, AccountKind::Partner).await?;
        let set = account::Entity::update_many()
            .col_expr(account::Column::CreditLimit, Expr::value(limit))
            .col_expr(account::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(account::Column::Id.eq(partner))
            .filter(account::Column::Kind.eq(AccountKind::Partner))
            .filter(Expr::col(account::Column::Balance).add(limit).gte(0))
            .exec(&txn)
            .await?;
        if set.rows_affected != 1 {
            return Err(LedgerError::Invalid("the partner owes more than that limit".into()));
        }
        let deed = Deed {
            action: "credit_limit.set",
            target: format!("partner:{partner}"),
            detail: format!("credit_limit={limit} {}", self.currency),
        };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        self.account(Owner::Partner(whose)).await
    }
}
