//! The auth service: users, argon2id passwords, Ed25519 access tokens and
//! rotating refresh tokens.

mod entity;
mod error;
mod grpc;
mod keys;
mod migration;
mod password;
mod service;
mod settings;

use std::sync::Arc;

use offers_kit::Parts;
use offers_kit::cache::SharedCache;
use offers_proto::auth::v1::auth_service_server::AuthServiceServer;
use offers_proto::auth::v1::signing_key_admin_service_server::SigningKeyAdminServiceServer;
use offers_proto::auth::v1::user_admin_service_server::UserAdminServiceServer;
use sea_orm::DatabaseConnection;

pub use error::AuthError;
pub use keys::TRAIL;
pub use migration::migrations;
pub use password::Hasher;
pub use settings::AuthSettings;

use crate::grpc::{AuthApi, SigningKeyAdminApi, UserAdminApi};
use crate::service::Auth;

/// What the auth service runs on.
pub struct Deps {
    pub db: DatabaseConnection,
    pub cache: SharedCache,
}

/// The public `AuthService` and the internal `UserAdminService` and
/// `SigningKeyAdminService`.
/// Refuses to build when a signing key in service opens with none of the
/// configured key encryption keys.
pub async fn build(settings: &AuthSettings, deps: Deps) -> Result<Parts, AuthError> {
    let keys = Arc::new(settings.key_store(deps.db.clone())?);
    keys.check_opens().await?;
    let auth = Arc::new(Auth::new(deps.db, deps.cache, keys.clone(), settings.clone()));
    let mut parts = Parts::default();
    parts.public.add(AuthServiceServer::new(AuthApi { auth: auth.clone(), keys: keys.clone() }));
    parts.internal.add(UserAdminServiceServer::new(UserAdminApi(auth)));
    parts.internal.add(SigningKeyAdminServiceServer::new(SigningKeyAdminApi(keys)));
    Ok(parts)
}
