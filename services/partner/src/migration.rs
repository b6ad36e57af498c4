use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreatePartners),
        Box::new(DeliveryJobs),
        Box::new(offers_kit::audit::TrailMigration {
            trail: crate::service::TRAIL,
            migration: "m20261207_000420_partner_audit",
        }),
    ]
}

struct CreatePartners;

impl MigrationName for CreatePartners {
    fn name(&self) -> &str {
        "m20261126_000400_partner_partners_keys_deliveries"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreatePartners {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("partner_partners")
                .col(uuid("id").primary_key())
                .col(string_uniq("name"))
                .col(string_len("status", 16))
                .col(string_null("callback_url"))
                .col(string_null("callback_secret"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("partner_api_keys")
                .col(uuid("id").primary_key())
                .col(uuid("partner_id"))
                .col(string("prefix"))
                .col(string_uniq("key_hash"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(ForeignKey::create().from("partner_api_keys", "partner_id").to("partner_partners", "id"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("partner_callback_deliveries")
                .col(uuid("event_id").primary_key())
                .col(uuid("partner_id"))
                .col(uuid("transaction_id"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(timestamp_with_time_zone_null("delivered_at"))
                .col(timestamp_with_time_zone_null("abandoned_at"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await
    }
}

/// Each delivery row records its pending job, so a lost one is re-driven.
/// Rows already open keep none: their events cannot be rebuilt from the row.
struct DeliveryJobs;

impl MigrationName for DeliveryJobs {
    fn name(&self) -> &str {
        "m20261129_000410_partner_delivery_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DeliveryJobs {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        offers_kit::lease::Lease::add_job_columns(m, "partner_callback_deliveries").await
    }
}
