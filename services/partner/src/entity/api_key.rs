use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "partner_api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub partner_id: Uuid,
    /// The visible start of the key, to tell keys apart in lists and logs.
    pub prefix: String,
    /// SHA-256 of the whole key; the key itself is shown once and never stored.
    #[sea_orm(unique)]
    pub key_hash: String,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(belongs_to = "super::partner::Entity", from = "Column::PartnerId", to = "super::partner::Column::Id")]
    Partner,
}

impl ActiveModelBehavior for ActiveModel {}
