//! What every handler knows about its caller: the request id, the client
//! address and, for user paths, the verified access token.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use offers_kit::token::TokenVerifier;
use offers_kit::{Error, ErrorCode};
use tonic::metadata::MetadataValue;

use crate::error::ApiError;

pub const REQUEST_ID: &str = "x-request-id";

/// Settings the extractors read from the router state.
#[derive(Clone)]
pub struct EdgeAuth {
    pub verifier: TokenVerifier,
    pub trust_forwarded_for: bool,
}

/// An anonymous caller (login, refresh).
pub struct Caller {
    pub request_id: String,
    pub client_address: String,
}

/// A caller presenting a partner API key (checked by the partner service).
pub struct PartnerCaller {
    pub caller: Caller,
    pub key: String,
}

/// A caller with a valid user access token.
pub struct UserCaller {
    pub caller: Caller,
    pub token: String,
}

fn bearer(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(axum::http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim().to_string()).filter(|t| !t.is_empty())
}

impl<S: Send + Sync> FromRequestParts<S> for Caller
where
    EdgeAuth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = EdgeAuth::from_ref(state);
        let request_id = parts.headers.get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let forwarded = auth
            .trust_forwarded_for
            // The last hop is the one our own proxy added; earlier ones are
            // whatever the client wrote.
            .then(|| {
                parts.headers.get("x-forwarded-for")?.to_str().ok()?.rsplit(',').next().map(|s| s.trim().to_string())
            })
            .flatten();
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        let client_address = forwarded.or(peer).unwrap_or_else(|| "unknown".into());
        Ok(Caller { request_id, client_address })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UserCaller
where
    EdgeAuth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let token =
            bearer(parts).ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "an access token is required"))?;
        let principal = EdgeAuth::from_ref(state)
            .verifier
            .verify(&token)
            .map_err(|e| Error::new(ErrorCode::InvalidToken, e.to_string()))?;
        tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
        Ok(UserCaller { caller, token })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PartnerCaller
where
    EdgeAuth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let key =
            bearer(parts).ok_or_else(|| Error::new(ErrorCode::Unauthenticated, "a partner API key is required"))?;
        Ok(PartnerCaller { caller, key })
    }
}

impl Caller {
    /// A gRPC request carrying the request id on to the services.
    pub fn grpc<T>(&self, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        if let Ok(id) = MetadataValue::try_from(self.request_id.as_str()) {
            request.metadata_mut().insert(REQUEST_ID, id);
        }
        request
    }
}

fn with_bearer<T>(mut request: tonic::Request<T>, token: &str) -> Result<tonic::Request<T>, ApiError> {
    let value = MetadataValue::try_from(format!("Bearer {token}"))
        .map_err(|_| Error::new(ErrorCode::InvalidToken, "the token is not printable ASCII"))?;
    request.metadata_mut().insert("authorization", value);
    Ok(request)
}

impl UserCaller {
    /// A gRPC request carrying the request id and the user's token.
    pub fn grpc<T>(&self, body: T) -> Result<tonic::Request<T>, ApiError> {
        with_bearer(self.caller.grpc(body), &self.token)
    }
}

impl PartnerCaller {
    /// A gRPC request carrying the request id and the partner's key.
    pub fn grpc<T>(&self, body: T) -> Result<tonic::Request<T>, ApiError> {
        with_bearer(self.caller.grpc(body), &self.key)
    }
}
