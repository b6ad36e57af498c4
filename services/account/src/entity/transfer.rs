use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Kind {
    /// Funding → an account, when balances moved into the double-entry ledger.
    #[sea_orm(string_value = "OPENING")]
    Opening,
    /// Funding → a user (a top-up) or a partner (its float).
    #[sea_orm(string_value = "CREDIT")]
    Credit,
    /// Payer → pending: the price held while provisioning runs.
    #[sea_orm(string_value = "HOLD")]
    Hold,
    /// Pending → revenue: the sale went through.
    #[sea_orm(string_value = "SALE")]
    Sale,
    /// Pending → payer: the sale failed; the money goes back to whoever paid.
    #[sea_orm(string_value = "REFUND")]
    Refund,
}

/// One movement of money between two accounts. Append-only; the key is
/// derived from what caused it, so it happens at most once.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_transfers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub from_account: Uuid,
    pub to_account: Uuid,
    /// Minor units, always positive.
    pub amount: i64,
    pub currency: String,
    pub kind: Kind,
    pub transaction_id: Option<Uuid>,
    #[sea_orm(unique)]
    pub key: String,
    pub memo: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
