use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum EntryKind {
    #[sea_orm(string_value = "TOPUP")]
    TopUp,
    #[sea_orm(string_value = "PURCHASE")]
    Purchase,
    #[sea_orm(string_value = "REFUND")]
    Refund,
    /// A failed partner activation: the user paid the partner, so the
    /// amount becomes balance here.
    #[sea_orm(string_value = "PARTNER_CREDIT")]
    PartnerCredit,
}

/// One movement of money. Append-only; `amount` is signed (credits
/// positive, debits negative), so a balance is the sum of its entries.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub transaction_id: Option<Uuid>,
    pub kind: EntryKind,
    pub amount: i64,
    pub currency: String,
    /// Derived from what caused the entry, so it can happen at most once.
    #[sea_orm(unique)]
    pub idempotency_key: String,
    pub memo: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
