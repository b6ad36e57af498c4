//! The catalog service: offers, with a cache-aside read path.
#![forbid(unsafe_code)]

mod entity;
mod error;
mod grpc;
mod migration;
mod service;

use std::sync::Arc;

use offers_proto::catalog::v1::catalog_admin_service_server::CatalogAdminServiceServer;
use offers_proto::catalog::v1::catalog_service_server::CatalogServiceServer;

pub use error::CatalogError;
pub use grpc::{CatalogAdminApi, CatalogApi};
pub use migration::migrations;
pub use service::{Catalog, OfferFields};

/// The public and internal gRPC services of one [`Catalog`].
pub fn servers(
    catalog: Arc<Catalog>,
) -> (CatalogServiceServer<CatalogApi>, CatalogAdminServiceServer<CatalogAdminApi>) {
    (CatalogServiceServer::new(CatalogApi(catalog.clone())), CatalogAdminServiceServer::new(CatalogAdminApi(catalog)))
}
