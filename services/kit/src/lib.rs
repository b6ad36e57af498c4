//! Shared plumbing of the Offers services: configuration, errors and their
//! gRPC mapping, tokens and credentials, the database, the cache and the bus
//! (with their embedded implementations; Redis, RabbitMQ and telemetry
//! behind features the binary turns on), the outbox, leased delivery, and
//! the shape of what a service contributes to a process.

pub mod bus;
pub mod cache;
pub mod config;
pub mod cors;
pub mod credentials;
pub mod db;
pub mod error;
pub mod grpc;
pub mod lease;
pub mod outbox;
pub mod parts;
pub mod rate_limit;
pub mod retry;
#[cfg(feature = "telemetry")]
pub mod telemetry;
pub mod token;
pub mod trace;

pub use error::{Error, ErrorCode, Result};

/// Histograms whose buckets are not the call-latency default (the
/// telemetry set-up gives them theirs).
pub mod histograms {
    /// One call to the provisioning system, by outcome.
    pub const PROVIDER_CALL: &str = "offers_provider_call_duration_seconds";
    /// From an accepted activation to its settlement, by outcome.
    pub const ACTIVATION_SETTLED: &str = "offers_activation_settle_duration_seconds";
}
pub use parts::Parts;
