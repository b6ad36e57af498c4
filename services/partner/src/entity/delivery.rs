use sea_orm::entity::prelude::*;

/// One callback event and how its delivery went.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "partner_callback_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub event_id: Uuid,
    pub partner_id: Uuid,
    pub transaction_id: Uuid,
    pub attempts: i32,
    /// A worker is delivering it; others keep off until then.
    pub lease_until: Option<DateTimeUtc>,
    pub delivered_at: Option<DateTimeUtc>,
    pub abandoned_at: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    /// The event job the row waits for, and when it is due: what the
    /// reconciler publishes again if it is lost. Unset on rows from before
    /// it was recorded.
    pub job: Option<String>,
    pub job_due_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
