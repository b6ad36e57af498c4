//! Who is calling a gRPC server: a user with an access token on the public
//! listener, or another Offers service with the shared credential on the
//! internal one — and from which address, for rate limits: the connection's,
//! unless the edge, proving itself with the service credential, says which
//! client it is forwarding.

use std::net::IpAddr;
use std::sync::Arc;

use sha2::{Digest, Sha256};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{Error, ErrorCode};
use crate::token::{Principal, TokenError, TokenVerifier};

/// The outcome of checking a request's access token, left in its extensions
/// for handlers to read with [`user`].
#[derive(Debug, Clone)]
enum TokenCheck {
    Valid(Principal),
    Refused(TokenError),
}

/// The bearer value of the `authorization` metadata entry, if any.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Metadata in which the edge names the client it forwards a request for.
pub const CLIENT_ADDRESS: &str = "offers-client-address";
/// Metadata in which the edge presents the service credential, vouching
/// for [`CLIENT_ADDRESS`].
pub const FORWARDED_BY: &str = "offers-forwarded-by";

/// Where a public request came from, left in its extensions by [`PublicCheck`].
#[derive(Debug, Clone, Copy)]
struct ClientAddress(IpAddr);

/// The client's address of a public request: the one the edge forwarded
/// with the service credential, or else the connection's.
pub fn client_address<T>(request: &Request<T>) -> Option<IpAddr> {
    request.extensions().get::<ClientAddress>().map(|a| a.0)
}

/// Guards the public listener: checks the access token when there is one
/// (requests without one pass through: login, partner calls with API keys;
/// handlers that need a user ask with [`user`]), and settles the client's
/// address (a forwarded one only from a caller holding the service
/// credential: anyone else could pick their own rate-limit bucket).
#[derive(Clone)]
pub struct PublicCheck {
    verifier: TokenVerifier,
    credential: ServiceCredentialCheck,
}

impl PublicCheck {
    pub fn new(verifier: TokenVerifier, credential: ServiceCredentialCheck) -> Self {
        Self { verifier, credential }
    }
}

impl Interceptor for PublicCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let metadata = request.metadata();
        let vouched =
            metadata.get(FORWARDED_BY).and_then(|v| v.to_str().ok()).is_some_and(|c| self.credential.admits(c));
        let forwarded = metadata.get(CLIENT_ADDRESS).and_then(|v| v.to_str().ok()?.parse::<IpAddr>().ok());
        let address = forwarded.filter(|_| vouched).or_else(|| request.remote_addr().map(|a| a.ip()));
        if let Some(address) = address {
            request.extensions_mut().insert(ClientAddress(address));
        }
        // Partner API keys are not JWTs, so nothing is refused here: a bearer
        // that is not a three-part token is recorded as an invalid access
        // token, which only matters to handlers that ask for a user.
        let check = match bearer(request.metadata()).filter(|t| !t.is_empty()) {
            Some(token) if token.split('.').count() == 3 => Some(match self.verifier.verify(token) {
                Ok(principal) => TokenCheck::Valid(principal),
                Err(e) => TokenCheck::Refused(e),
            }),
            Some(_) => Some(TokenCheck::Refused(TokenError::Invalid("not a JWT (three dot-separated parts)".into()))),
            None => None,
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
        Some(TokenCheck::Refused(e)) => Err(e.clone().into()),
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

    /// Whether `presented` is the credential.
    pub fn admits(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        // Compare digests without an early exit, so timing says nothing.
        let diff = digest.iter().zip(self.digest.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        !presented.is_empty() && diff == 0
    }
}

impl Interceptor for ServiceCredentialCheck {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        match bearer(request.metadata()).filter(|t| !t.is_empty()) {
            Some(presented) if self.admits(presented) => Ok(request),
            _ => Err(Error::new(ErrorCode::Unauthenticated, "a service credential is required").into()),
        }
    }
}

/// Adds the service credential to outgoing internal calls.
#[derive(Clone)]
pub struct ServiceCredential {
    header: AsciiMetadataValue,
    token: AsciiMetadataValue,
}

impl ServiceCredential {
    pub fn new(token: &str) -> Result<Self, Error> {
        let invalid = |_| Error::invalid_request("internal.token must be printable ASCII");
        Ok(Self { header: format!("Bearer {token}").parse().map_err(invalid)?, token: token.parse().map_err(invalid)? })
    }

    /// Vouches for the client a public request is forwarded for.
    pub fn forward_client(&self, metadata: &mut MetadataMap, client: IpAddr) {
        if let Ok(address) = client.to_string().parse() {
            metadata.insert(CLIENT_ADDRESS, address);
            metadata.insert(FORWARDED_BY, self.token.clone());
        }
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
    fn only_the_credential_vouches_for_a_forwarded_address() {
        let verifier = {
            let (_, public) = crate::token::generate_keypair().expect("keys");
            TokenVerifier::from_pem(&public, "iss", "aud").expect("verifier")
        };
        let mut check = PublicCheck::new(verifier, ServiceCredentialCheck::new("s3cret-credential"));
        let client: IpAddr = "203.0.113.9".parse().expect("ip");
        let mut vouched = Request::new(());
        ServiceCredential::new("s3cret-credential").expect("cred").forward_client(vouched.metadata_mut(), client);
        assert_eq!(client_address(&check.call(vouched).expect("call")), Some(client));
        let mut forged = Request::new(());
        ServiceCredential::new("a-guess-at-it-99").expect("cred").forward_client(forged.metadata_mut(), client);
        assert_eq!(client_address(&check.call(forged).expect("call")), None, "no connection, no address");
    }

    #[test]
    fn internal_check_accepts_only_the_credential() {
        let mut check = ServiceCredentialCheck::new("s3cret");
        let outgoing = ServiceCredential::new("s3cret").expect("cred").call(Request::new(())).expect("call");
        assert!(check.call(outgoing).is_ok());
        assert!(check.call(with_bearer("s3cres")).is_err());
        assert!(check.call(Request::new(())).is_err());
    }

    #[test]
    fn a_bearer_that_is_no_jwt_is_an_invalid_token_not_a_missing_one() {
        let (_, public) = crate::token::generate_keypair().expect("keys");
        let verifier = TokenVerifier::from_pem(&public, "iss", "aud").expect("verifier");
        let mut check = PublicCheck::new(verifier, ServiceCredentialCheck::new("s3cret-credential"));
        let dotless = check.call(with_bearer("nodotsatall")).expect("passes the interceptor");
        assert_eq!(user(&dotless).expect_err("no user").code, ErrorCode::InvalidToken);
        let none = check.call(Request::new(())).expect("passes the interceptor");
        assert_eq!(user(&none).expect_err("no user").code, ErrorCode::Unauthenticated);
    }

    fn with_bearer(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    }
}
