//! The auth service: users, argon2id passwords, Ed25519 access tokens and
//! rotating refresh tokens.
#![forbid(unsafe_code)]

mod entity;
mod error;
mod grpc;
mod migration;
mod password;
mod service;

use std::sync::Arc;

use offers_proto::auth::v1::auth_service_server::AuthServiceServer;
use offers_proto::auth::v1::user_admin_service_server::UserAdminServiceServer;

pub use error::AuthError;
pub use grpc::{AuthApi, UserAdminApi};
pub use migration::migrations;
pub use service::{Auth, NewUser};

/// The public and internal gRPC services of one [`Auth`].
pub fn servers(auth: Arc<Auth>) -> (AuthServiceServer<AuthApi>, UserAdminServiceServer<UserAdminApi>) {
    (AuthServiceServer::new(AuthApi(auth.clone())), UserAdminServiceServer::new(UserAdminApi(auth)))
}
