//! Shared plumbing of the Offers services.
#![forbid(unsafe_code)]

pub mod bus;
pub mod cache;
pub mod config;
pub mod credentials;
pub mod db;
pub mod error;
pub mod grpc;
pub mod jobs;
pub mod ops;
pub mod outbox;
pub mod retry;
pub mod telemetry;
pub mod token;

pub use error::{Error, ErrorCode, Result};
