//! The catalog service: offers, with a cache-aside read path.

mod entity;
mod error;
mod grpc;
mod migration;
mod offer;
mod service;
mod settings;

use std::sync::Arc;

use offers_kit::Parts;
use offers_kit::cache::SharedCache;
use offers_proto::catalog::v1::catalog_admin_service_server::CatalogAdminServiceServer;
use offers_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use sea_orm::DatabaseConnection;

pub use error::CatalogError;
pub use migration::migrations;
pub use service::TRAIL;
pub use settings::CatalogSettings;

use crate::grpc::{CatalogAdminApi, CatalogApi};
use crate::service::Catalog;

/// What the catalog runs on.
pub struct Deps {
    pub db: DatabaseConnection,
    pub cache: SharedCache,
    /// The one currency offers are priced in.
    pub currency: String,
}

/// The public `CatalogService` and the internal `CatalogAdminService`.
pub fn build(settings: &CatalogSettings, deps: Deps) -> Parts {
    let ttl = settings.cache_ttl;
    let catalog = Arc::new(Catalog::new(deps.db, deps.cache, deps.currency, ttl));
    let mut parts = Parts::default();
    parts.public.add(CatalogServiceServer::new(CatalogApi(catalog.clone())));
    parts.internal.add(CatalogAdminServiceServer::new(CatalogAdminApi(catalog)));
    parts
}
