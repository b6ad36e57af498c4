//! What a process runs. A role is one module here: it says what it needs
//! from its process ([`Needs`]) and builds its [`Parts`] from what the
//! process has ([`Shared`]). `offers dev` runs every role in one process;
//! `offers serve <role>...` the named ones; the process just loops.

mod account;
mod activation;
mod auth;
mod catalog;
mod gateway;
mod notifier;
mod partner;
mod scheduler;
mod worker;

use anyhow::Context;
use clap::ValueEnum;
use offers_kit::Parts;
use offers_kit::bus::SharedBus;
use offers_kit::cache::SharedCache;
use offers_kit::token::TokenVerifier;
use sea_orm::DatabaseConnection;

use crate::clients::InternalClients;
use crate::settings::{Settings, Upstream};

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

/// What a role needs from the process it runs in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Needs {
    /// Keeps state in the database.
    pub database: bool,
    /// Publishes or consumes jobs.
    pub bus: bool,
    /// Calls other services' internal APIs.
    pub clients: bool,
    /// Serves gRPC: the service other roles reach at these listeners.
    pub serves: Option<Upstream>,
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

    pub fn needs(self) -> Needs {
        match self {
            Role::Auth => auth::NEEDS,
            Role::Catalog => catalog::NEEDS,
            Role::Account => account::NEEDS,
            Role::Activation => activation::NEEDS,
            Role::Worker => worker::NEEDS,
            Role::Partner => partner::NEEDS,
            Role::Notifier => notifier::NEEDS,
            Role::Scheduler => scheduler::NEEDS,
            Role::Gateway => gateway::NEEDS,
        }
    }

    pub fn build(self, shared: &Shared) -> anyhow::Result<Parts> {
        let parts = match self {
            Role::Auth => auth::build(shared),
            Role::Catalog => catalog::build(shared),
            Role::Account => account::build(shared),
            Role::Activation => activation::build(shared),
            Role::Worker => worker::build(shared),
            Role::Partner => partner::build(shared),
            Role::Notifier => notifier::build(shared),
            Role::Scheduler => scheduler::build(shared),
            Role::Gateway => gateway::build(shared),
        };
        parts.with_context(|| format!("cannot start the {self} role"))
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.to_possible_value() {
            Some(value) => f.write_str(value.get_name()),
            None => write!(f, "{self:?}"),
        }
    }
}

/// Everything some role of `roles` needs.
pub fn needs_of(roles: &[Role]) -> Needs {
    roles.iter().map(|r| r.needs()).fold(Needs::default(), |all, n| Needs {
        database: all.database || n.database,
        bus: all.bus || n.bus,
        clients: all.clients || n.clients,
        serves: all.serves.or(n.serves),
    })
}

/// What a process has for its roles to build on: its settings (upstreams
/// pointing home for the roles it runs), the backends its roles need, and
/// its operational HTTP paths (which the gateway serves with the API).
pub struct Shared {
    pub settings: Settings,
    pub db: Option<DatabaseConnection>,
    pub cache: SharedCache,
    pub bus: Option<SharedBus>,
    pub clients: Option<InternalClients>,
    pub verifier: TokenVerifier,
    pub ops: axum::Router,
}

impl Shared {
    // A role that uses what it did not declare in its `Needs` is a bug here,
    // not a configuration problem.
    fn db(&self) -> anyhow::Result<DatabaseConnection> {
        self.db.clone().context("the role needs the database but did not declare it")
    }

    fn bus(&self) -> anyhow::Result<SharedBus> {
        self.bus.clone().context("the role needs the bus but did not declare it")
    }

    fn clients(&self) -> anyhow::Result<&InternalClients> {
        self.clients.as_ref().context("the role needs internal clients but did not declare them")
    }
}
