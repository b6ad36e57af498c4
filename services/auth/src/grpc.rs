//! The auth gRPC services: thin translations to and from [`Auth`].

use std::sync::Arc;

use offers_kit::audit::Act;
use offers_kit::credentials::{client_address, user};
use offers_kit::grpc::{parse_id, to_timestamp};
use offers_kit::{Error, ErrorCode};
use offers_proto::auth::v1 as pb;
use tonic::{Request, Response, Status};

use crate::entity::user::{self as user_entity, ConsoleRole};
use crate::keys::{KeyInfo, KeyState, KeyStore};
use crate::service::{Auth, NewUser, TokenPair};

pub struct AuthApi {
    pub auth: Arc<Auth>,
    pub keys: Arc<KeyStore>,
}
pub struct UserAdminApi(pub Arc<Auth>);
pub struct SigningKeyAdminApi(pub Arc<KeyStore>);

fn key_proto(info: KeyInfo) -> pb::SigningKey {
    let state = match info.state {
        KeyState::Next => pb::SigningKeyState::Next,
        KeyState::Signing => pb::SigningKeyState::Signing,
        KeyState::Retiring => pb::SigningKeyState::Retiring,
        KeyState::Retired => pb::SigningKeyState::Retired,
    };
    pb::SigningKey {
        kid: info.key.kid,
        create_time: Some(to_timestamp(info.key.created_at)),
        retire_time: info.key.retire_at.map(to_timestamp),
        signing: info.state == KeyState::Signing,
        state: state.into(),
        sign_time: Some(to_timestamp(info.key.signs_from)),
        generation: info.key.generation,
    }
}

fn tokens(pair: TokenPair) -> Option<pb::TokenPair> {
    Some(pb::TokenPair {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: "Bearer".into(),
        expires_in: pair.expires_in,
    })
}

fn to_proto(u: user_entity::Model) -> pb::User {
    pb::User {
        id: u.id.to_string(),
        username: u.username,
        email: u.email,
        phone_number: u.phone_number,
        first_name: u.first_name,
        last_name: u.last_name,
        date_joined: Some(to_timestamp(u.date_joined)),
        is_active: u.is_active,
        is_admin: u.is_admin,
        console_role: match u.console_role {
            None => pb::ConsoleRole::Unspecified,
            Some(ConsoleRole::Viewer) => pb::ConsoleRole::Viewer,
            Some(ConsoleRole::Operator) => pb::ConsoleRole::Operator,
        }
        .into(),
    }
}

/// The console role a request names (UNSPECIFIED: none).
fn console_role(value: i32) -> Result<Option<ConsoleRole>, Error> {
    match pb::ConsoleRole::try_from(value) {
        Ok(pb::ConsoleRole::Unspecified) => Ok(None),
        Ok(pb::ConsoleRole::Viewer) => Ok(Some(ConsoleRole::Viewer)),
        Ok(pb::ConsoleRole::Operator) => Ok(Some(ConsoleRole::Operator)),
        Err(_) => Err(Error::invalid_request("console_role is not a console role")),
    }
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Error> {
    if value.is_empty() { Err(Error::invalid_request(format!("{field} is required"))) } else { Ok(value) }
}

#[tonic::async_trait]
impl pb::auth_service_server::AuthService for AuthApi {
    async fn login(&self, request: Request<pb::LoginRequest>) -> Result<Response<pb::LoginResponse>, Status> {
        let client = client_address(&request);
        let body = request.into_inner();
        let username = required(&body.username, "username")?;
        let password = required(&body.password, "password")?;
        let pair = self.auth.login(username, password, client).await?;
        Ok(Response::new(pb::LoginResponse { tokens: tokens(pair) }))
    }

    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::RefreshTokenResponse>, Status> {
        let body = request.into_inner();
        let token = required(&body.refresh_token, "refresh_token")?;
        let pair = self.auth.refresh(token).await?;
        Ok(Response::new(pb::RefreshTokenResponse { tokens: tokens(pair) }))
    }

    async fn logout(&self, request: Request<pb::LogoutRequest>) -> Result<Response<pb::LogoutResponse>, Status> {
        let principal = user(&request).await?;
        let body = request.into_inner();
        let token = required(&body.refresh_token, "refresh_token")?;
        self.auth.logout(principal.user_id, token).await?;
        Ok(Response::new(pb::LogoutResponse {}))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let principal = user(&request).await?;
        let found = self.auth.user_by_id(principal.user_id.into()).await?;
        if !found.is_active {
            return Err(Error::new(ErrorCode::InvalidToken, "the account is disabled").into());
        }
        Ok(Response::new(pb::GetProfileResponse { user: Some(to_proto(found)) }))
    }

    async fn get_jwks(&self, _request: Request<pb::GetJwksRequest>) -> Result<Response<pb::GetJwksResponse>, Status> {
        let keys = self.keys.jwks().await?;
        let keys = keys
            .into_iter()
            .map(|k| pb::Jwk { kty: k.kty, crv: k.crv, x: k.x, kid: k.kid, alg: k.alg, r#use: k.use_ })
            .collect();
        Ok(Response::new(pb::GetJwksResponse { keys }))
    }
}

#[tonic::async_trait]
impl pb::user_admin_service_server::UserAdminService for UserAdminApi {
    async fn create_user(
        &self,
        request: Request<pb::CreateUserRequest>,
    ) -> Result<Response<pb::CreateUserResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let b = request.into_inner();
        let created = self
            .0
            .create_user(
                NewUser {
                    username: b.username,
                    password: b.password,
                    email: b.email,
                    phone_number: b.phone_number,
                    first_name: b.first_name,
                    last_name: b.last_name,
                    is_admin: b.is_admin,
                    console_role: console_role(b.console_role)?,
                },
                &act,
            )
            .await?;
        Ok(Response::new(pb::CreateUserResponse { user: Some(to_proto(created)) }))
    }

    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Result<Response<pb::GetUserResponse>, Status> {
        let found = match request.into_inner().lookup {
            Some(pb::get_user_request::Lookup::Id(id)) => self.0.user_by_id(parse_id(&id)?).await,
            Some(pb::get_user_request::Lookup::Username(name)) => self.0.user_by_username(&name).await,
            None => return Err(Error::invalid_request("id or username is required").into()),
        }?;
        Ok(Response::new(pb::GetUserResponse { user: Some(to_proto(found)) }))
    }

    async fn set_console_role(
        &self,
        request: Request<pb::SetConsoleRoleRequest>,
    ) -> Result<Response<pb::SetConsoleRoleResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let b = request.into_inner();
        let user = self.0.set_console_role(parse_id(&b.user_id)?, console_role(b.console_role)?, &act).await?;
        Ok(Response::new(pb::SetConsoleRoleResponse { user: Some(to_proto(user)) }))
    }

    async fn sign_in_operator(
        &self,
        request: Request<pb::SignInOperatorRequest>,
    ) -> Result<Response<pb::SignInOperatorResponse>, Status> {
        let b = request.into_inner();
        // The console's own reading of the browser's address; one it could
        // not read counts with every other such sign-in.
        let client = b.client_address.parse().ok();
        let user = self.0.sign_in_operator(&b.username, &b.password, client).await?;
        Ok(Response::new(pb::SignInOperatorResponse { user: Some(to_proto(user)) }))
    }
}

#[tonic::async_trait]
impl pb::signing_key_admin_service_server::SigningKeyAdminService for SigningKeyAdminApi {
    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Result<Response<pb::RotateSigningKeyResponse>, Status> {
        let key = self.0.rotate(&Act::of(request.metadata())?).await?;
        Ok(Response::new(pb::RotateSigningKeyResponse { key: Some(key_proto(key)) }))
    }

    async fn retire_signing_key(
        &self,
        request: Request<pb::RetireSigningKeyRequest>,
    ) -> Result<Response<pb::RetireSigningKeyResponse>, Status> {
        let key = self.0.retire(&request.get_ref().kid, &Act::of(request.metadata())?).await?;
        Ok(Response::new(pb::RetireSigningKeyResponse { key: Some(key_proto(key)) }))
    }

    async fn list_signing_keys(
        &self,
        _request: Request<pb::ListSigningKeysRequest>,
    ) -> Result<Response<pb::ListSigningKeysResponse>, Status> {
        let keys = self.0.list().await?.into_iter().map(key_proto).collect();
        Ok(Response::new(pb::ListSigningKeysResponse { keys }))
    }

    async fn reseal_signing_keys(
        &self,
        request: Request<pb::ResealSigningKeysRequest>,
    ) -> Result<Response<pb::ResealSigningKeysResponse>, Status> {
        let resealed = self.0.reseal(&Act::of(request.metadata())?).await?;
        Ok(Response::new(pb::ResealSigningKeysResponse { resealed: i32::try_from(resealed).unwrap_or(i32::MAX) }))
    }
}
