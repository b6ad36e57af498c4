use axum::extract::State;
use offers_proto::auth::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::Upstreams;
use crate::context::{Caller, UserCaller};
use crate::error::{ApiError, Json, Problem};

#[derive(Deserialize, ToSchema)]
pub struct LoginBody {
    pub username: String,
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
pub struct RefreshBody {
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
pub struct Tokens {
    pub access_token: String,
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Serialize, ToSchema)]
pub struct Profile {
    pub id: String,
    pub username: String,
    pub email: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub date_joined: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Detail {
    pub detail: String,
}

fn tokens(pair: Option<pb::TokenPair>) -> Json<Tokens> {
    let pair = pair.unwrap_or_default();
    Json(Tokens {
        access_token: pair.access_token,
        refresh_token: pair.refresh_token,
        token_type: pair.token_type,
        expires_in: pair.expires_in,
    })
}

/// Log in with a username and password.
#[utoipa::path(post, path = "/api/v1/auth/login/", tag = "auth", request_body = LoginBody,
    responses((status = 200, body = Tokens), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 429, body = Problem, description = "Too many attempts; see Retry-After")))]
pub async fn login(
    State(up): State<Upstreams>,
    caller: Caller,
    Json(body): Json<LoginBody>,
) -> Result<Json<Tokens>, ApiError> {
    let request = caller.grpc(pb::LoginRequest { username: body.username, password: body.password });
    let answer = up.auth.clone().login(request).await?.into_inner();
    Ok(tokens(answer.tokens))
}

/// Spend a refresh token for a new pair.
#[utoipa::path(post, path = "/api/v1/auth/refresh/", tag = "auth", request_body = RefreshBody,
    responses((status = 200, body = Tokens), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn refresh(
    State(up): State<Upstreams>,
    caller: Caller,
    Json(body): Json<RefreshBody>,
) -> Result<Json<Tokens>, ApiError> {
    let request = caller.grpc(pb::RefreshTokenRequest { refresh_token: body.refresh_token });
    let answer = up.auth.clone().refresh_token(request).await?.into_inner();
    Ok(tokens(answer.tokens))
}

/// Revoke a refresh token and its family.
#[utoipa::path(post, path = "/api/v1/auth/logout/", tag = "auth", request_body = RefreshBody,
    security(("bearer" = [])),
    responses((status = 200, body = Detail), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn logout(
    State(up): State<Upstreams>,
    user: UserCaller,
    Json(body): Json<RefreshBody>,
) -> Result<Json<Detail>, ApiError> {
    let request = user.grpc(pb::LogoutRequest { refresh_token: body.refresh_token })?;
    up.auth.clone().logout(request).await?;
    Ok(Json(Detail { detail: "logged out".into() }))
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/auth/profile/", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = Profile), (status = 401, body = Problem)))]
pub async fn profile(State(up): State<Upstreams>, user: UserCaller) -> Result<Json<Profile>, ApiError> {
    let answer = up.auth.clone().get_profile(user.grpc(pb::GetProfileRequest {})?).await?.into_inner();
    let u = answer.user.unwrap_or_default();
    Ok(Json(Profile {
        date_joined: rfc3339(u.date_joined.as_ref()),
        id: u.id,
        username: u.username,
        email: u.email,
        phone_number: u.phone_number,
        first_name: u.first_name,
        last_name: u.last_name,
    }))
}

#[derive(Serialize, ToSchema)]
pub struct KeySet {
    pub keys: Vec<pb::Jwk>,
}

/// The public keys that verify access tokens (keys rotate: match a token's
/// `kid`, and reload the set when it names one you do not know).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, body = KeySet), (status = 503, body = Problem)))]
pub async fn jwks(State(up): State<Upstreams>, caller: Caller) -> Result<Json<KeySet>, ApiError> {
    let answer = up.auth.clone().get_jwks(caller.grpc(pb::GetJwksRequest {})).await?.into_inner();
    Ok(Json(KeySet { keys: answer.keys }))
}
