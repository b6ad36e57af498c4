//! End-to-end scenarios, each run against the embedded and the real
//! backends (see `offers_tests::both!`).

mod activation;
mod audit;
mod auth;
mod bus;
mod console;
mod edge;
mod faults;
mod gifts;
mod grpc_errors;
mod keys;
mod ledger;
mod listeners;
mod metrics;
mod migration;
mod newcomer;
mod notifier;
mod offers;
mod outbox;
mod partner;
mod provisioning;
mod reflection;
mod renewals;
mod tls;
mod topology;
