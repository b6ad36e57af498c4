//! One-shot jobs, for Kubernetes CronJobs (and for trying things by hand).

use chrono::{DateTime, Utc};
use offers_activation::renewals::{RenewalReport, Renewals};
use offers_notifier::RunReport;

use crate::clients::InternalClients;
use crate::process::connect_database;
use crate::settings::Settings;

/// Queues the reminders due at `at`; `None` when another run holds the
/// lock. The reminders' jobs go through the notifier's outbox: published
/// here when the bus is RabbitMQ, or by the running process's relay in the
/// embedded mode (whose bus lives inside that process).
pub async fn expiring_subscriptions(
    settings: &Settings,
    token: &str,
    at: DateTime<Utc>,
) -> anyhow::Result<Option<RunReport>> {
    let db = connect_database(settings, false).await?;
    let clients = InternalClients::new(settings, token)?;
    let bus = match settings.bus.url.as_str() {
        "memory://" => None,
        _ => Some(offers_kit::bus::from_settings(&settings.bus)?),
    };
    Ok(offers_notifier::run_once(&settings.notifier, db, clients.ledger, bus, at).await?)
}

/// One renewal pass as of `at`: renews what ends within `renewal.lead` of
/// it from its owner's balance, and announces new prices of what ends
/// within `renewal.price_notice_days` beyond that (safe beside the scheduler role's own passes:
/// the ledger charges a period once).
pub async fn renewals(settings: &Settings, token: &str, at: DateTime<Utc>) -> anyhow::Result<RenewalReport> {
    let clients = InternalClients::new(settings, token)?;
    let renewals = Renewals { ledger: clients.ledger, catalog: clients.catalog, settings: settings.renewal.clone() };
    Ok(renewals.run_once(at).await?)
}
