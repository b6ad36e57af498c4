use sea_orm::entity::prelude::*;

/// An operator's decision on a transaction that waited for review: who,
/// what and why. Append-only, one per transaction.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_resolutions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub transaction_id: Uuid,
    /// SUCCESS or FAILED.
    pub outcome: String,
    pub actor: String,
    pub note: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
