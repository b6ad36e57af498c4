//! The `offers` binary's library: the process builder and its roles, the
//! composed settings, migrations, the embedded mode, administration and
//! one-shot jobs. Tests start processes through it.

pub mod admin;
pub mod clients;
pub mod console;
pub mod cron;
pub mod dev;
pub mod jwks;
pub mod migrator;
pub mod ops;
pub mod parked_jobs;
pub mod process;
pub mod roles;
pub mod settings;
pub mod tls;

use offers_proto::contracts::{Job, PartnerEvent, ProvisionJob, RenewalNotice};

/// Every bus topic, for tooling that must know them all (tests clean up
/// their queues by it).
pub const TOPICS: &[&str] =
    &[ProvisionJob::TOPIC, PartnerEvent::TOPIC, offers_notifier::ReminderJob::TOPIC, RenewalNotice::TOPIC];
