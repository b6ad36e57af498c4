//! The activation service: `activate`, `renew` and `status` for users, the
//! worker that drives the provisioning system, and a simulator of it.

mod error;
mod grpc;
mod provider;
pub mod renewals;
mod service;
mod settings;
pub mod simulator;
mod worker;

use std::sync::Arc;

use offers_kit::Parts;
use offers_kit::bus::SharedBus;
use offers_kit::cache::SharedCache;
use offers_kit::grpc::InternalChannel;
use offers_proto::account::v1::ledger_service_client::LedgerServiceClient;
use offers_proto::activation::v1::activation_service_server::ActivationServiceServer;
use offers_proto::auth::v1::user_admin_service_client::UserAdminServiceClient;
use offers_proto::catalog::v1::catalog_admin_service_client::CatalogAdminServiceClient;
use offers_proto::contracts::{Job, ProvisionJob};

pub use provider::PROVIDER_CALL_HISTOGRAM;
pub use settings::{ProvisioningSettings, RenewalSettings};

use crate::grpc::ActivationApi;
use crate::provider::Provider;
use crate::service::Activation;
use crate::worker::Worker;

/// What the activation service calls.
pub struct Deps {
    /// Who a gift's recipient is.
    pub users: UserAdminServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub cache: SharedCache,
}

/// The public `ActivationService`.
pub fn build(deps: Deps) -> Parts {
    let activation = Activation { users: deps.users, catalog: deps.catalog, ledger: deps.ledger, cache: deps.cache };
    let mut parts = Parts::default();
    parts.public.add(ActivationServiceServer::new(ActivationApi(Arc::new(activation))));
    parts
}

/// What the provisioning worker uses.
pub struct WorkerDeps {
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub bus: SharedBus,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("the worker needs provisioning.url (OFFERS_PROVISIONING__URL)")]
    NoProvider,
    #[error("provisioning client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The provisioning worker, consuming provisioning jobs until shutdown.
pub fn build_worker(settings: &ProvisioningSettings, deps: WorkerDeps) -> Result<Parts, WorkerError> {
    let url = settings.url.as_deref().ok_or(WorkerError::NoProvider)?;
    let provider = Provider::new(url, settings.api_key.clone(), settings.timeout)?;
    let worker = Arc::new(Worker { ledger: deps.ledger, provider, settings: settings.clone() });
    let bus = deps.bus;
    Ok(Parts::default().task("provisioning worker", move |stop| async move {
        bus.consume(ProvisionJob::TOPIC, worker, stop).await;
    }))
}

/// What the renewal pass calls.
pub struct RenewalDeps {
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
}

/// The renewal pass, every `renewal.interval` until shutdown.
pub fn build_renewals(settings: &RenewalSettings, deps: RenewalDeps) -> Parts {
    let renewals = renewals::Renewals { ledger: deps.ledger, catalog: deps.catalog, settings: settings.clone() };
    Parts::default().task("renewal pass", move |stop| renewals.run(stop))
}
