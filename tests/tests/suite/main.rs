//! End-to-end scenarios, each run against the embedded and the real
//! backends (see `offers_tests::both!`).

mod activation;
mod auth;
mod bus;
mod edge;
mod faults;
mod grpc_errors;
mod ledger;
mod listeners;
mod metrics;
mod migration;
mod notifier;
mod offers;
mod outbox;
mod partner;
mod provisioning;
mod reflection;
mod tls;
mod topology;
