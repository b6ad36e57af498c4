use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateOffers),
        Box::new(offers_kit::audit::TrailMigration {
            trail: crate::service::TRAIL,
            migration: "m20261207_000210_catalog_audit",
        }),
    ]
}

struct CreateOffers;

impl MigrationName for CreateOffers {
    fn name(&self) -> &str {
        "m20261126_000200_catalog_offers"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateOffers {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("catalog_offers")
                .col(uuid("id").primary_key())
                .col(string_uniq("code"))
                .col(string("name"))
                .col(text("description"))
                .col(big_integer("price"))
                .col(string_len("currency", 3))
                .col(integer("duration_days"))
                .col(big_integer("data_mb"))
                .col(big_integer("voice_minutes"))
                .col(big_integer("sms"))
                .col(boolean("is_active"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .check(Expr::col("price").gt(0))
                .check(Expr::col("duration_days").gt(0))
                .to_owned(),
        )
        .await
    }
}
