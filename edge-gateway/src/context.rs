//! What every handler knows about its caller: the request id, the client
//! address and, on user and partner paths, the bearer credential.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;
use offers_kit::credentials::{ServiceCredential, forwarded_client};
use offers_kit::token::TokenVerifier;
use offers_kit::{Error, ErrorCode};
use tonic::metadata::MetadataValue;

use crate::error::ApiError;

pub const REQUEST_ID: &str = "x-request-id";

/// What the extractors read from the router state.
#[derive(Clone)]
pub struct EdgeAuth {
    pub verifier: TokenVerifier,
    /// Vouches, to the services, for the client address the edge forwards
    /// (never sending the credential itself on a public call).
    pub credential: ServiceCredential,
    pub trusted_proxy_hops: u8,
}

/// An anonymous caller (login, refresh).
pub struct Caller {
    pub request_id: String,
    pub client_address: Option<IpAddr>,
    credential: ServiceCredential,
}

/// A caller presenting a bearer credential of kind `K`, checked as far as
/// the edge can (a user's token fully; a partner's key by the partner service).
pub struct Authorized<K> {
    pub caller: Caller,
    secret: String,
    kind: PhantomData<K>,
}

/// A kind of bearer credential.
pub trait Credential {
    /// What a request without one is told.
    const MISSING: &'static str;
    fn check(auth: &EdgeAuth, secret: &str) -> impl Future<Output = Result<(), Error>> + Send;
}

/// A user's access token, verified here before any upstream call (with
/// the key set loaded again first if it names a key the edge lacks).
pub struct AccessToken;

impl Credential for AccessToken {
    const MISSING: &'static str = "an access token is required";

    async fn check(auth: &EdgeAuth, token: &str) -> Result<(), Error> {
        let principal = auth.verifier.verify_fresh(token).await?;
        tracing::Span::current().record("user_id", tracing::field::display(principal.user_id));
        Ok(())
    }
}

/// A partner's API key; only the partner service can tell whether it is good.
pub struct PartnerKey;

impl Credential for PartnerKey {
    const MISSING: &'static str = "a partner API key is required";

    async fn check(_: &EdgeAuth, _: &str) -> Result<(), Error> {
        Ok(())
    }
}

pub type UserCaller = Authorized<AccessToken>;
pub type PartnerCaller = Authorized<PartnerKey>;

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
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let client_address = forwarded_client(&parts.headers, auth.trusted_proxy_hops).or(peer);
        Ok(Caller { request_id, client_address, credential: auth.credential })
    }
}

impl<S: Send + Sync, K: Credential> FromRequestParts<S> for Authorized<K>
where
    EdgeAuth: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        let secret = bearer(parts).ok_or_else(|| Error::new(ErrorCode::Unauthenticated, K::MISSING))?;
        K::check(&EdgeAuth::from_ref(state), &secret).await?;
        Ok(Authorized { caller, secret, kind: PhantomData })
    }
}

impl Caller {
    /// A gRPC request carrying the request id and the client's address on
    /// to the services.
    pub fn grpc<T>(&self, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        if let Ok(id) = MetadataValue::try_from(self.request_id.as_str()) {
            request.metadata_mut().insert(REQUEST_ID, id);
        }
        if let Some(client) = self.client_address {
            self.credential.forward_client(request.metadata_mut(), client, &self.request_id);
        }
        request
    }
}

impl<K> Authorized<K> {
    /// A gRPC request carrying the request id and the caller's credential.
    pub fn grpc<T>(&self, body: T) -> Result<tonic::Request<T>, ApiError> {
        let mut request = self.caller.grpc(body);
        let value = MetadataValue::try_from(format!("Bearer {}", self.secret))
            .map_err(|_| Error::new(ErrorCode::InvalidToken, "the credential is not printable ASCII"))?;
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}
