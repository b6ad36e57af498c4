use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

/// An offer as stored: the catalog's domain type (see `offer.rs`), also
/// what the cache holds.
#[derive(Clone, Debug, Default, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "catalog_offers")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    #[sea_orm(unique)]
    pub code: String,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub currency: String,
    pub duration_days: i32,
    pub data_mb: i64,
    pub voice_minutes: i64,
    pub sms: i64,
    pub is_active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
