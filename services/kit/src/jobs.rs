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

/// Every topic, for tooling that must know them all (tests clean them up).
pub const TOPICS: &[&str] = &[PROVISION];
