use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Kind {
    #[sea_orm(string_value = "USER")]
    User,
    #[sea_orm(string_value = "PARTNER")]
    Partner,
}

/// A user's or partner's account in the double-entry ledger; its id is its
/// owner's. The system accounts (funding, pending, revenue) have no row:
/// they are the other ends of transfers, and their balances the sums of
/// those, so no row is written by every purchase.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_accounts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub kind: Kind,
    /// Minor units; every debit is conditional on it.
    pub balance: i64,
    /// How far below zero the balance may go (a partner's credit line).
    pub credit_limit: i64,
    pub currency: String,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
