use sea_orm::entity::prelude::*;

/// What one provisioning attempt of a transaction met, as the worker
/// reported it: kept for operators deciding a review. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_transaction_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub transaction_id: Uuid,
    /// The attempt's number (0 for a settlement that named none).
    pub attempt: i32,
    /// `retry`, `review`, `SUCCESS` or `FAILED`.
    pub outcome: String,
    /// What the provider answered, or why it could not be asked.
    pub answer: String,
    pub recorded_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
