//! Shared plumbing of the Offers services: configuration, errors and their
//! gRPC mapping, tokens and credentials, the database, the cache and the bus
//! (with their embedded implementations; Redis, RabbitMQ and telemetry
//! behind features the binary turns on), the outbox, leased delivery, and
//! the shape of what a service contributes to a process.

pub mod audit;
pub mod bus;
pub mod cache;
pub mod config;
pub mod cors;
pub mod credentials;
pub mod db;
pub mod error;
pub mod grpc;
pub mod jwt_crypto;
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

pub use parts::Parts;
