//! What a process runs. A role is one module here: it says what it needs
//! from its process ([`Needs`]) and builds its [`Parts`] from what the
//! process has ([`Shared`]). `offers dev` runs every role in one process;
//! `offers serve <role>...` the named ones; the process just loops.

mod account;
mod activation;
mod auth;
mod catalog;
mod console;
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
    /// The operator console at `/console/` on the HTTP listener.
    Console,
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
    /// Settings it cannot start without, beyond the credential and its
    /// backends: at least one key of each group (a unit test below starts
    /// each role without them).
    pub requires: &'static [&'static [&'static str]],
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
        Role::Console,
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
            Role::Console => console::NEEDS,
        }
    }

    /// The audit trail the role's service keeps of its administrative
    /// acts, if it has any.
    pub fn audit_trail(self) -> Option<&'static str> {
        match self {
            Role::Auth => Some(offers_auth::TRAIL),
            Role::Catalog => Some(offers_catalog::TRAIL),
            Role::Account => Some(offers_account::TRAIL),
            Role::Partner => Some(offers_partner::TRAIL),
            Role::Activation | Role::Worker | Role::Notifier | Role::Scheduler | Role::Gateway | Role::Console => None,
        }
    }

    pub async fn build(self, shared: &Shared) -> anyhow::Result<Parts> {
        let parts = match self {
            Role::Auth => auth::build(shared).await,
            Role::Catalog => catalog::build(shared),
            Role::Account => account::build(shared),
            Role::Activation => activation::build(shared),
            Role::Worker => worker::build(shared),
            Role::Partner => partner::build(shared),
            Role::Notifier => notifier::build(shared),
            Role::Scheduler => scheduler::build(shared),
            Role::Gateway => gateway::build(shared),
            Role::Console => console::build(shared),
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
        requires: &[],
    })
}

/// What a deployment must give a role, as `offers roles` prints it for the
/// chart's checks: its listeners with the default ports, its probes, and
/// the settings it needs (each a group of which one must be set).
#[derive(Debug, serde::Serialize)]
pub struct Facts {
    pub role: String,
    pub listeners: Vec<(&'static str, u16)>,
    pub liveness: &'static str,
    pub readiness: &'static str,
    pub requires: Vec<Vec<&'static str>>,
}

impl Role {
    pub fn facts(self) -> Facts {
        let needs = self.needs();
        let defaults = Settings::default();
        let mut listeners = vec![("http", defaults.http_addr.port())];
        if needs.serves.is_some() {
            listeners.push(("grpc", defaults.grpc_addr.port()));
            listeners.push(("grpc-internal", defaults.internal_grpc_addr.port()));
        }
        // The embedded defaults of the backends serve one process only.
        let mut requires = vec![vec!["internal.token"]];
        requires.extend(needs.database.then(|| vec!["database.url"]));
        requires.extend(needs.bus.then(|| vec!["bus.url"]));
        requires.extend(needs.requires.iter().map(|group| group.to_vec()));
        Facts { role: self.to_string(), listeners, liveness: "/healthz", readiness: "/readyz", requires }
    }
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
    pub(crate) fn db(&self) -> anyhow::Result<DatabaseConnection> {
        self.db.clone().context("the role needs the database but did not declare it")
    }

    fn bus(&self) -> anyhow::Result<SharedBus> {
        self.bus.clone().context("the role needs the bus but did not declare it")
    }

    fn clients(&self) -> anyhow::Result<&InternalClients> {
        self.clients.as_ref().context("the role needs internal clients but did not declare them")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Process;

    /// Clears one setting named in a role's `requires`.
    fn clear(settings: &mut Settings, key: &str) {
        match key {
            "provisioning.url" => settings.provisioning.url = None,
            "notifier.smtp_url" => settings.notifier.smtp_url = None,
            "notifier.sms_url" => settings.notifier.sms_url = None,
            "notifier.sink_file" => settings.notifier.sink_file = None,
            "auth.key_encryption_key" => settings.auth.key_encryption_key = None,
            other => panic!("no way to clear {other}: add it here"),
        }
    }

    #[tokio::test]
    async fn a_role_does_not_start_without_what_it_requires() {
        let dir = std::env::temp_dir().join(format!("offers-roles-{}", uuid::Uuid::new_v4().simple()));
        let mut base = Settings::default().embedded(&dir).expect("embedded settings");
        let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        (base.http_addr, base.grpc_addr, base.internal_grpc_addr) = (any, any, any);
        for &role in Role::ALL {
            for group in role.needs().requires {
                let mut settings = base.clone();
                for key in *group {
                    clear(&mut settings, key);
                }
                let started = Process::start(settings, &[role], true).await;
                let error =
                    format!("{:#}", started.err().unwrap_or_else(|| panic!("{role} started without {group:?}")));
                assert!(group.iter().any(|key| error.contains(key)), "{role}: the error names the setting: {error}");
            }
        }
        let mut settings = base.clone();
        settings.internal.token = None;
        let error = format!("{:#}", Process::start(settings, &[Role::Catalog], true).await.err().expect("refused"));
        assert!(error.contains("internal.token"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn facts_name_listeners_probes_and_settings() {
        let worker = Role::Worker.facts();
        assert_eq!(worker.listeners, [("http", 8080)]);
        assert!(worker.requires.contains(&vec!["provisioning.url"]) && worker.requires.contains(&vec!["bus.url"]));
        let catalog = Role::Catalog.facts();
        assert_eq!(catalog.listeners, [("http", 8080), ("grpc", 50051), ("grpc-internal", 50052)]);
        assert!(catalog.requires.contains(&vec!["database.url"]) && !catalog.requires.contains(&vec!["bus.url"]));
    }
}
