//! The activation service: `activate`, `renew` and `status` for users, the
//! worker that drives the provisioning system, and a simulator of it.
#![forbid(unsafe_code)]

mod grpc;
mod provider;
mod service;
pub mod simulator;
mod worker;

pub use grpc::ActivationApi;
pub use provider::{Outcome, Provider};
pub use service::Activation;
pub use worker::Worker;
