use sea_orm::entity::prelude::*;

/// A client's idempotency key and the transaction its first request made.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_idempotency_keys")]
pub struct Model {
    /// Whose key it is (`user:<id>`, `partner:<id>`): keys never collide across callers.
    #[sea_orm(primary_key, auto_increment = false)]
    pub scope: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Hash of what the first request asked, to tell a replay from a reuse.
    pub request_hash: String,
    pub transaction_id: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
