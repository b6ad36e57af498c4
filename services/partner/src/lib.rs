//! The partner service: partners and their API keys, partner activations,
//! reference validation and signed completion callbacks.
#![forbid(unsafe_code)]

mod callbacks;
mod entity;
mod error;
mod grpc;
mod keys;
mod migration;
mod service;

use std::sync::Arc;

use offers_proto::partner::v1::partner_admin_service_server::PartnerAdminServiceServer;
use offers_proto::partner::v1::partner_service_server::PartnerServiceServer;

pub use callbacks::{CallbackWorker, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use error::PartnerError;
pub use grpc::{PartnerAdminApi, PartnerApi};
pub use migration::migrations;
pub use service::{Clients, Partners};

/// The public and internal gRPC services of one [`Partners`].
pub fn servers(
    partners: Arc<Partners>,
) -> (PartnerServiceServer<PartnerApi>, PartnerAdminServiceServer<PartnerAdminApi>) {
    (PartnerServiceServer::new(PartnerApi(partners.clone())), PartnerAdminServiceServer::new(PartnerAdminApi(partners)))
}
