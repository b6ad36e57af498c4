//! One-shot jobs, for Kubernetes CronJobs (and for trying things by hand).

use anyhow::Context;
use chrono::{DateTime, Utc};
use offers_kit::config::Settings;
use offers_kit::outbox::Outbox;
use offers_notifier::RunReport;

use crate::clients::InternalClients;
use crate::suite::{connect_database, scheduler};

/// Queues the reminders due at `at`; `None` when another run holds the
/// lock. The reminders' jobs go through the notifier's outbox: published
/// here when the bus is RabbitMQ, or by the running suite's relay in the
/// embedded mode (whose bus lives inside that process).
pub async fn expiring_subscriptions(
    settings: &Settings,
    token: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<RunReport>> {
    let db = connect_database(settings, false).await?;
    let clients =
        InternalClients::new(settings, token, std::time::Duration::from_millis(settings.gateway.upstream_timeout_ms))?;
    let outbox = Outbox::new(offers_notifier::OUTBOX);
    let report = scheduler(settings, db.clone(), clients.ledger, outbox.clone()).run_once(at).await?;
    if settings.bus.url != "memory://" {
        let bus = offers_kit::bus::from_settings(&settings.bus).await;
        outbox.drain(&db, &bus).await.context("could not publish the queued reminders")?;
    }
    Ok(report)
}
