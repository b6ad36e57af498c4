use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateReminders), Box::new(OutboxAttempts)]
}

struct CreateReminders;

impl MigrationName for CreateReminders {
    fn name(&self) -> &str {
        "m20261126_000500_notifier_reminders"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateReminders {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("notifier_reminders")
                .col(uuid("id").primary_key())
                .col(uuid("subscription_id"))
                .col(integer("window_hours"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(uuid("user_id"))
                .col(string("offer_name"))
                .col(string_len("status", 16))
                .col(string("sent_channels"))
                .col(integer("attempts"))
                .col(timestamp_with_time_zone_null("lease_until"))
                .col(text_null("last_error"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("finished_at"))
                .to_owned(),
        )
        .await?;
        // The rule that keeps reminders from going out twice: one per
        // subscription, window and expiry (a renewal moves the expiry and so
        // re-arms them).
        m.create_index(
            Index::create()
                .name("notifier_reminders_once")
                .table("notifier_reminders")
                .col("subscription_id")
                .col("window_hours")
                .col("expires_at")
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("notifier_locks")
                .col(string("name").primary_key())
                .col(string("holder"))
                .col(timestamp_with_time_zone("locked_until"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("notifier_runs")
                .col(string("period").primary_key())
                .col(integer("scheduled"))
                .col(timestamp_with_time_zone("finished_at"))
                .to_owned(),
        )
        .await?;
        offers_kit::outbox::Outbox::create_table(m, "notifier_outbox").await
    }
}

/// Counts refused publishes, so one job the broker refuses waits with a
/// backoff instead of holding up the outbox.
struct OutboxAttempts;

impl MigrationName for OutboxAttempts {
    fn name(&self) -> &str {
        "m20261129_000520_notifier_outbox_attempts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxAttempts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        offers_kit::outbox::Outbox::add_attempts(m, crate::OUTBOX).await
    }
}
