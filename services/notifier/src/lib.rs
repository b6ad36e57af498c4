//! The notifier: reminds users before their subscriptions expire. A daily
//! scheduler queues reminders through its outbox; a worker delivers them by
//! email and SMS.
#![forbid(unsafe_code)]

mod channels;
mod entity;
mod error;
mod migration;
mod scheduler;
mod worker;

pub use channels::{ChannelError, Channels};
pub use error::NotifierError;
pub use migration::migrations;
pub use scheduler::{RunReport, Scheduler, bands};
pub use worker::{ReminderWorker, render};

/// The notifier's outbox table.
pub const OUTBOX: &str = "notifier_outbox";
