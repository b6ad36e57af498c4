use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateReminders),
        Box::new(ReminderJobs),
        Box::new(OutboxAttempts),
        Box::new(OutboxTrace),
        Box::new(RenewalNotices),
        Box::new(PriceNotices),
    ]
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

/// Each reminder records its pending job, so a lost one is re-driven; the
/// ones still queued get theirs (the job is just the reminder and its
/// attempt), due since they were queued.
struct ReminderJobs;

impl MigrationName for ReminderJobs {
    fn name(&self) -> &str {
        "m20261129_000510_notifier_reminder_jobs"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ReminderJobs {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        offers_kit::lease::Lease::add_job_columns(m, "notifier_reminders").await?;
        let db = m.get_connection();
        let queued = Query::select()
            .columns(["id", "attempts", "created_at"])
            .from("notifier_reminders")
            .and_where(Expr::col("status").eq("QUEUED"))
            .to_owned();
        for row in db.query_all(&queued).await? {
            let id: uuid::Uuid = row.try_get("", "id")?;
            let attempts: i32 = row.try_get("", "attempts")?;
            let queued_at: chrono::DateTime<chrono::Utc> = row.try_get("", "created_at")?;
            let job = crate::worker::ReminderJob { reminder_id: id, attempt: attempts.try_into().unwrap_or(0) };
            let update = Query::update()
                .table("notifier_reminders")
                .value("job", serde_json::to_string(&job).map_err(|e| DbErr::Custom(e.to_string()))?)
                .value("job_due_at", queued_at)
                .and_where(Expr::col("id").eq(id))
                .to_owned();
            db.execute(&update).await?;
        }
        Ok(())
    }
}

/// The trace each outbox job belongs to, so its handler continues it.
struct OutboxTrace;

impl MigrationName for OutboxTrace {
    fn name(&self) -> &str {
        "m20261130_000530_notifier_outbox_trace"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxTrace {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        offers_kit::outbox::Outbox::add_trace_context(m, crate::OUTBOX).await
    }
}

/// Renewal notices travel as reminders with a `notice` (why a renewal
/// charged nothing; empty for an expiry reminder), one per subscription,
/// period and notice: the once-rule's index takes the notice in.
struct RenewalNotices;

impl MigrationName for RenewalNotices {
    fn name(&self) -> &str {
        "m20261207_000540_notifier_renewal_notices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RenewalNotices {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let notice = string_len("notice", 32).default("").to_owned();
        m.alter_table(Table::alter().table("notifier_reminders").add_column(notice).to_owned()).await?;
        once_rule(m, &["subscription_id", "window_hours", "expires_at", "notice"]).await
    }
}

/// A price notice is told once per price: a second change of price in the
/// same period is news, the same price again is not. The once-rule's index
/// takes the price in (0 for every other reminder).
struct PriceNotices;

impl MigrationName for PriceNotices {
    fn name(&self) -> &str {
        "m20261207_000550_notifier_price_notices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for PriceNotices {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let price = big_integer("price").default(0).to_owned();
        m.alter_table(Table::alter().table("notifier_reminders").add_column(price).to_owned()).await?;
        once_rule(m, &["subscription_id", "window_hours", "expires_at", "notice", "price"]).await
    }
}

/// Makes the once-rule's unique index over `columns` anew.
async fn once_rule(m: &SchemaManager<'_>, columns: &[&'static str]) -> Result<(), DbErr> {
    m.drop_index(Index::drop().name("notifier_reminders_once").table("notifier_reminders").to_owned()).await?;
    let mut index = Index::create().name("notifier_reminders_once").table("notifier_reminders").unique().to_owned();
    for column in columns {
        index.col(*column);
    }
    m.create_index(index).await
}
