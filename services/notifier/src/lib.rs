//! The notifier: reminds users before their subscriptions expire, and tells
//! them when an automatic renewal charged nothing. A daily scheduler queues
//! reminders through its outbox, the ledger sends renewal notices on the
//! bus; a worker delivers both by every channel that reaches the user.

mod channels;
mod entity;
mod error;
mod migration;
mod scheduler;
mod settings;
mod worker;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use offers_kit::Parts;
use offers_kit::bus::SharedBus;
use offers_kit::grpc::InternalChannel;
use offers_kit::outbox::Outbox;
use offers_proto::account::v1::ledger_service_client::LedgerServiceClient;
use offers_proto::auth::v1::user_admin_service_client::UserAdminServiceClient;
use offers_proto::contracts::{Job, RenewalNotice};
use sea_orm::DatabaseConnection;

pub use channels::{Channel, ChannelError, SendError, Text};
pub use error::NotifierError;
pub use migration::migrations;
pub use scheduler::{RunReport, bands};
pub use settings::NotifierSettings;
pub use worker::{ReminderJob, Renewing, render};

use crate::scheduler::Scheduler;
use crate::worker::{NoticeIntake, ReminderWorker};

/// The notifier's outbox table.
const OUTBOX: &str = "notifier_outbox";

/// What the reminder worker uses.
pub struct DeliveryDeps {
    pub db: DatabaseConnection,
    pub bus: SharedBus,
    pub users: UserAdminServiceClient<InternalChannel>,
    /// How a subscription renews, for what its reminder says.
    pub ledger: LedgerServiceClient<InternalChannel>,
}

/// The reminder worker, delivering by every configured channel, and its
/// reconciler.
pub fn build_delivery(settings: &NotifierSettings, deps: DeliveryDeps) -> Result<Parts, ChannelError> {
    let channels = channels::from_settings(settings)?;
    let bus = deps.bus.clone();
    let worker =
        Arc::new(ReminderWorker::new(deps.db, deps.bus, (deps.users, deps.ledger), channels, settings.clone()));
    let reconciler = worker.clone();
    let (intake, notices) = (Arc::new(NoticeIntake(worker.clone())), bus.clone());
    Ok(Parts::default()
        .task("reminder worker", move |stop| async move {
            bus.consume(ReminderJob::TOPIC, worker, stop).await;
        })
        .task("renewal notice intake", move |stop| async move {
            notices.consume(RenewalNotice::TOPIC, intake, stop).await;
        })
        .task("reminder reconciler", move |stop| reconciler.reconcile(stop)))
}

/// What the scheduler uses.
pub struct SchedulerDeps {
    pub db: DatabaseConnection,
    pub bus: SharedBus,
    pub ledger: LedgerServiceClient<InternalChannel>,
}

/// The daily expiring-subscriptions pass and the relay of its outbox.
pub fn build_scheduler(settings: &NotifierSettings, deps: SchedulerDeps) -> Parts {
    let relay_interval = settings.relay_interval;
    let outbox = Outbox::new(OUTBOX);
    let scheduler = Scheduler::new(deps.db.clone(), deps.ledger, outbox.clone(), settings.clone());
    let (db, bus) = (deps.db, deps.bus);
    Parts::default()
        .task("notifier outbox relay", move |stop| outbox.relay(db, bus, relay_interval, stop))
        .task("reminder scheduler", move |stop| scheduler.run_daily(stop))
}

/// One expiring-subscriptions pass as of `at` (for a CronJob); `None` when
/// another run holds the lock. With a bus, the queued reminders are
/// published before returning; without one (the embedded mode, whose bus
/// lives in the running process) that process's relay publishes them.
pub async fn run_once(
    settings: &NotifierSettings,
    db: DatabaseConnection,
    ledger: LedgerServiceClient<InternalChannel>,
    bus: Option<SharedBus>,
    at: DateTime<Utc>,
) -> Result<Option<RunReport>, NotifierError> {
    let outbox = Outbox::new(OUTBOX);
    let report = Scheduler::new(db.clone(), ledger, outbox.clone(), settings.clone()).run_once(at).await?;
    if let Some(bus) = bus {
        outbox.drain(&db, &bus).await?;
    }
    Ok(report)
}
