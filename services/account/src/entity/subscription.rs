use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_subscriptions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub offer_id: Uuid,
    pub offer_name: String,
    pub activated_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
    /// Renewed from the balance before it ends.
    pub auto_renew: bool,
    /// The latest automatic renewal: PENDING, SUCCESS or FAILED, when, and
    /// why it failed.
    pub last_renewal_status: Option<String>,
    pub last_renewal_at: Option<DateTimeUtc>,
    pub last_renewal_reason: Option<String>,
    /// A changed price the subscriber was told their automatic renewal
    /// will charge, and when.
    pub announced_price: Option<i64>,
    pub price_announced_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

impl Model {
    pub fn is_active(&self, now: DateTimeUtc) -> bool {
        self.expires_at > now
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
