use axum::extract::State;
use offers_kit::ErrorCode;
use offers_proto::auth::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::rfc3339;
use crate::Upstreams;
use crate::bodies::Object;
use crate::context::{Caller, UserCaller};
use crate::error::{ApiError, Json};
use crate::formats::RefreshToken;
use crate::problems::{BODY, CREDENTIALS, UPSTREAM, problems};

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"username": "demo", "password": "demo-password"})))]
pub struct LoginBody {
    /// A login for a name outside the rule registration applies is refused
    /// before it is counted (400).
    #[schema(pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    pub username: String,
    #[schema(min_length = 1)]
    pub password: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"refresh_token": "rt_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"})))]
pub struct RefreshBody {
    #[schema(value_type = RefreshToken)]
    pub refresh_token: String,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "access_token": "eyJhbGciOiJFZERTQSIsImtpZCI6Ii4uLiJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl",
    "refresh_token": "rt_AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8", "token_type": "Bearer", "expires_in": 900
})))]
pub struct Tokens {
    /// An EdDSA JWT; send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    #[schema(value_type = RefreshToken)]
    pub refresh_token: String,
    /// Always `Bearer`.
    #[schema(pattern = "^Bearer$")]
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "id": "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05", "username": "demo", "email": "demo@example.com",
    "phone_number": "+15550100", "first_name": "Demo", "last_name": "User", "date_joined": "2026-11-27T10:00:00.000000Z"
})))]
pub struct Profile {
    #[schema(format = Uuid)]
    pub id: String,
    pub username: String,
    pub email: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    #[schema(format = DateTime)]
    pub date_joined: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"detail": "logged out"})))]
pub struct Detail {
    pub detail: String,
}

problems!(LoginProblems = BODY, &[ErrorCode::InvalidCredentials, ErrorCode::RateLimited], UPSTREAM);
problems!(RefreshProblems = BODY, &[ErrorCode::InvalidToken], UPSTREAM);
problems!(LogoutProblems = BODY, CREDENTIALS, UPSTREAM);
problems!(ProfileProblems = CREDENTIALS, UPSTREAM);
problems!(JwksProblems = UPSTREAM);

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
#[utoipa::path(post, path = "/api/v1/auth/login/", tag = "auth", operation_id = "login", request_body = LoginBody,
    responses((status = 200, description = "A new token pair", body = Tokens), LoginProblems))]
pub async fn login(
    State(up): State<Upstreams>,
    caller: Caller,
    Json(Object(body)): Json<Object<LoginBody>>,
) -> Result<Json<Tokens>, ApiError> {
    let request = caller.grpc(pb::LoginRequest { username: body.username, password: body.password });
    let answer = up.auth.clone().login(request).await?.into_inner();
    Ok(tokens(answer.tokens))
}

/// Spend a refresh token for a new pair.
#[utoipa::path(post, path = "/api/v1/auth/refresh/", tag = "auth", operation_id = "refresh", request_body = RefreshBody,
    responses((status = 200, description = "The next pair; the presented token is spent", body = Tokens), RefreshProblems))]
pub async fn refresh(
    State(up): State<Upstreams>,
    caller: Caller,
    Json(Object(body)): Json<Object<RefreshBody>>,
) -> Result<Json<Tokens>, ApiError> {
    let request = caller.grpc(pb::RefreshTokenRequest { refresh_token: body.refresh_token });
    let answer = up.auth.clone().refresh_token(request).await?.into_inner();
    Ok(tokens(answer.tokens))
}

/// Revoke a refresh token and its family.
#[utoipa::path(post, path = "/api/v1/auth/logout/", tag = "auth", operation_id = "logout", request_body = RefreshBody,
    security(("bearer" = [])),
    responses((status = 200, description = "The token's family no longer refreshes", body = Detail), LogoutProblems))]
pub async fn logout(
    State(up): State<Upstreams>,
    user: UserCaller,
    Json(Object(body)): Json<Object<RefreshBody>>,
) -> Result<Json<Detail>, ApiError> {
    let request = user.grpc(pb::LogoutRequest { refresh_token: body.refresh_token })?;
    up.auth.clone().logout(request).await?;
    Ok(Json(Detail { detail: "logged out".into() }))
}

/// The caller's profile.
#[utoipa::path(get, path = "/api/v1/auth/profile/", tag = "auth", operation_id = "get_profile", security(("bearer" = [])),
    responses((status = 200, description = "The caller", body = Profile), ProfileProblems))]
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
#[schema(examples(json!({"keys": [{
    "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
    "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"
}]})))]
pub struct KeySet {
    pub keys: Vec<pb::Jwk>,
}

/// The public keys that verify access tokens (keys rotate: match a token's
/// `kid`, and reload the set when it names one you do not know).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", operation_id = "get_jwks",
    responses((status = 200, description = "Every key in service", body = KeySet), JwksProblems))]
pub async fn jwks(State(up): State<Upstreams>, caller: Caller) -> Result<Json<KeySet>, ApiError> {
    let answer = up.auth.clone().get_jwks(caller.grpc(pb::GetJwksRequest {})).await?.into_inner();
    Ok(Json(KeySet { keys: answer.keys }))
}
