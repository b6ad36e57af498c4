//! The jobs that travel over the bus: topic names and payloads, shared by
//! the services that publish them and the workers that consume them.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Provision a PENDING transaction with the external system.
pub const PROVISION: &str = "activation.provision";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionJob {
    pub transaction_id: Uuid,
    /// The attempt this job may make; a job whose attempt was already made
    /// (a redelivery, a duplicate) is dropped.
    pub attempt: i32,
}

/// Tell a partner that one of its transactions reached a final state.
pub const PARTNER_CALLBACK: &str = "partner.callback";

/// A partner transaction's outcome, as its callback reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerEvent {
    /// Stable per event: the partner dedupes on it.
    pub event_id: Uuid,
    pub partner_id: Uuid,
    pub transaction_id: Uuid,
    pub reference: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Delivery attempts made before this one.
    #[serde(default)]
    pub attempt: u32,
}

/// Send one expiry reminder.
pub const REMINDER: &str = "notification.reminder";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderJob {
    pub reminder_id: Uuid,
    /// Delivery attempts made before this one.
    #[serde(default)]
    pub attempt: u32,
}

/// Every topic, for tooling that must know them all (tests clean them up).
pub const TOPICS: &[&str] = &[PROVISION, PARTNER_CALLBACK, REMINDER];
