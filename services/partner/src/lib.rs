//! The partner service: partners and their API keys, partner activations,
//! reference validation and signed completion callbacks.

mod callbacks;
mod destination;
mod egress;
mod entity;
mod error;
mod grpc;
mod keys;
mod migration;
mod service;
mod settings;

use std::sync::Arc;

use offers_kit::Parts;
use offers_kit::bus::SharedBus;
use offers_kit::cache::SharedCache;
use offers_proto::contracts::{Job, PartnerEvent};
use offers_proto::partner::v1::partner_admin_service_server::PartnerAdminServiceServer;
use offers_proto::partner::v1::partner_service_server::PartnerServiceServer;
use sea_orm::DatabaseConnection;

pub use callbacks::{EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use error::PartnerError;
pub use migration::migrations;
pub use service::{Clients, TRAIL};
pub use settings::PartnerSettings;

use crate::callbacks::CallbackWorker;
use crate::grpc::{PartnerAdminApi, PartnerApi};
use crate::service::Partners;

/// What the partner service runs on and calls.
pub struct Deps {
    pub db: DatabaseConnection,
    pub cache: SharedCache,
    pub bus: SharedBus,
    pub clients: Clients,
}

/// The public `PartnerService`, the internal `PartnerAdminService`, the
/// completion-callback worker and its reconciler.
pub fn build(settings: &PartnerSettings, deps: Deps) -> Result<Parts, PartnerError> {
    let Deps { db, cache, bus, clients } = deps;
    let callbacks = Arc::new(CallbackWorker::new(db.clone(), bus.clone(), settings.clone())?);
    let partners = Arc::new(Partners::new(db, cache, settings.clone(), clients));
    let mut parts = Parts::default();
    parts.public.add(PartnerServiceServer::new(PartnerApi(partners.clone())));
    parts.internal.add(PartnerAdminServiceServer::new(PartnerAdminApi(partners, callbacks.clone())));
    let reconciler = callbacks.clone();
    Ok(parts
        .task("partner callbacks", move |stop| async move {
            bus.consume(PartnerEvent::TOPIC, callbacks, stop).await;
        })
        .task("partner callback reconciler", move |stop| reconciler.reconcile(stop)))
}
