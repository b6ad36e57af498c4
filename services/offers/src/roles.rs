//! What a process runs. `offers dev` runs every role in one process;
//! `offers serve <role>...` runs the named ones.

use clap::ValueEnum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, ValueEnum)]
pub enum Role {
    /// Users, login, tokens (public + internal gRPC).
    Auth,
    /// Offers (public + internal gRPC).
    Catalog,
    /// Balances, the ledger, transactions, subscriptions (public +
    /// internal gRPC), with the outbox relay and the reconciler.
    Account,
    /// Activate, renew and status (public gRPC).
    Activation,
    /// Consumes provisioning jobs and drives the provisioning system.
    Worker,
    /// Partner activation and validation (public + internal gRPC), with
    /// the completion-callback worker.
    Partner,
    /// Delivers expiry reminders by email and SMS.
    Notifier,
    /// Runs the daily expiring-subscriptions pass (one replica at a time)
    /// and relays the reminders it queues.
    Scheduler,
    /// The REST/JSON edge on the HTTP listener.
    Gateway,
}

impl Role {
    pub const ALL: &'static [Role] = &[
        Role::Auth,
        Role::Catalog,
        Role::Account,
        Role::Activation,
        Role::Worker,
        Role::Partner,
        Role::Notifier,
        Role::Scheduler,
        Role::Gateway,
    ];

    /// Whether the role keeps state in the database.
    pub fn needs_database(self) -> bool {
        matches!(self, Role::Auth | Role::Catalog | Role::Account | Role::Partner | Role::Notifier | Role::Scheduler)
    }

    /// Whether the role publishes or consumes jobs.
    pub fn needs_bus(self) -> bool {
        matches!(self, Role::Account | Role::Worker | Role::Partner | Role::Notifier | Role::Scheduler)
    }

    /// Whether the role serves gRPC.
    pub fn serves_grpc(self) -> bool {
        matches!(self, Role::Auth | Role::Catalog | Role::Account | Role::Activation | Role::Partner)
    }
}
