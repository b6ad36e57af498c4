use sea_orm::entity::prelude::*;

/// A job written in the same database transaction as the change that calls
/// for it; the relay publishes it to the bus.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_outbox")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub topic: String,
    pub payload: String,
    /// Not to be delivered before this (retries wait here).
    pub available_at: DateTimeUtc,
    /// A relay is publishing it; others keep off until then.
    pub lease_until: Option<DateTimeUtc>,
    pub published_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
