//! Who is calling a gRPC server: a user with an access token on the public
//! listener, or another Offers service with the shared credential on the
//! internal one.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{Error, ErrorCode};
use crate::token::{Principal, TokenVerifier};

/// The outcome of checking a request's access token, left in its extensions
/// for handlers to read with [`user`].
#[derive(Debug, Clone)]
enum TokenCheck {
    Valid(Principal),
    Invalid(String),
}

/// The bearer value of the `authorization` metadata entry, if any.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Checks access tokens on the public listener. Requests without one pass
/// through untouched (login, partner calls with API keys); handlers that need
/// a user ask for it with [`user`].
#[derive(Clone)]
pub struct AccessTokenInterceptor {
    verifier: TokenVerifier,
}

impl AccessTokenInterceptor {
    pub fn new(verifier: TokenVerifier) -> Self {
        Self { verifier }
    }
}

impl Interceptor for AccessTokenInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        // Partner API keys are not JWTs: only three-part tokens are checked here.
        let check = match bearer(request.metadata()) {
            Some(token) if token.split('.').count() == 3 => Some(match self.verifier.verify(token) {
                Ok(principal) => TokenCheck::Valid(principal),
                Err(e) => TokenCheck::Invalid(e.0),
            }),
            _ => None,
        };
        if let Some(check) = check {
            request.extensions_mut().insert(check);
        }
        Ok(request)
    }
}

/// The authenticated user of a public request, or 401.
pub fn user<T>(request: &Request<T>) -> Result<Principal, Error> {
    match request.extensions().get::<TokenCheck>() {
        Some(TokenCheck::Valid(principal)) => Ok(principal.clone()),
        Some(TokenCheck::Invalid(reason)) => {
            Err(Error::new(ErrorCode::InvalidToken, format!("invalid access token: {reason}")))
        }
        None => Err(Error::new(ErrorCode::Unauthenticated, "an access token is required")),
    }
}

/// Guards the internal listener: only callers presenting the shared service
/// credential get through; user tokens are refused.
#[derive(Clone)]
pub struct ServiceCredentialCheck {
    digest: Arc<[u8; 32]>,
}

impl ServiceCredentialCheck {
    pub fn new(token: &str) -> Self {
        Self { digest: Arc::new(Sha256::digest(token.as_bytes()).into()) }
    }
}

impl Interceptor for ServiceCredentialCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(presented) = bearer(request.metadata()).filter(|t| !t.is_empty()) else {
            return Err(Error::new(ErrorCode::Unauthenticated, "a service credential is required").into());
        };
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare digests without an early exit, so timing says nothing.
        let diff = presented.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff == 0 {
            Ok(request)
        } else {
            Err(Error::new(ErrorCode::Unauthenticated, "a service credential is required").into())
        }
    }
}

/// Adds the service credential to outgoing internal calls.
#[derive(Clone)]
pub struct ServiceCredential {
    header: AsciiMetadataValue,
}

impl ServiceCredential {
    pub fn new(token: &str) -> Result<Self, Error> {
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Error::invalid_request("internal.token must be printable ASCII"))?;
        Ok(Self { header })
    }
}

impl Interceptor for ServiceCredential {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.header.clone());
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_check_accepts_only_the_credential() {
        let mut check = ServiceCredentialCheck::new("s3cret");
        let outgoing = ServiceCredential::new("s3cret").expect("cred").call(Request::new(())).expect("call");
        assert!(check.call(outgoing).is_ok());
        assert!(check.call(with_bearer("s3cres")).is_err());
        assert!(check.call(Request::new(())).is_err());
    }

    fn with_bearer(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    }
}
