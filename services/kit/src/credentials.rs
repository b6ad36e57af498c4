//! Who is calling a gRPC server: a user with an access token on the public
//! listener, or another Offers service with the shared credential on the
//! internal one — and from which address, for rate limits: the connection's,
//! unless the edge vouches for the client it is forwarding.
//!
//! The service credential itself goes only to internal listeners. The edge
//! vouches with an HMAC over the address, the request id and the time,
//! under a key derived from the credential that grants nothing else: public
//! calls pass through proxies and logs, and what they carry must not open
//! the ledger.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

use crate::error::{Error, ErrorCode};
use crate::token::{Principal, TokenError, TokenVerifier};

/// The outcome of checking a request's access token, left in its extensions
/// for handlers to read with [`user`].
#[derive(Clone)]
enum TokenCheck {
    Valid(Principal),
    Refused(TokenError),
    /// Names a key the process does not hold (yet): an interceptor cannot
    /// wait for the key set to load again, the handler's [`user`] does.
    Unsettled {
        token: String,
        verifier: TokenVerifier,
    },
}

/// The bearer value of the `authorization` metadata entry, if any.
pub fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// Metadata in which the edge names the client it forwards a request for.
pub const CLIENT_ADDRESS: &str = "offers-client-address";
/// Metadata in which the edge vouches for [`CLIENT_ADDRESS`]:
/// `v1.<unix seconds>.<HMAC-SHA256, base64url>` (see [`ForwardingKey`]).
pub const FORWARDED_BY: &str = "offers-forwarded-by";
/// The request id metadata, which a vouch covers too.
const REQUEST_ID: &str = "x-request-id";

/// How far a vouch's time may be from the checker's clock.
const VOUCH_MAX_AGE_SECS: i64 = 60;

/// The key the edge vouches for client addresses with: an HMAC of a fixed
/// label under the service credential, so every process that holds the
/// credential has it without another secret to deploy, and holding it (or
/// any vouch made with it) gives nothing towards the credential.
#[derive(Clone)]
pub struct ForwardingKey(Arc<[u8; 32]>);

impl ForwardingKey {
    pub fn derive(credential: &str) -> Self {
        let mut mac = Self::hmac(credential.as_bytes());
        mac.update(b"offers forwarded client address v1");
        Self(Arc::new(mac.finalize().into_bytes().into()))
    }

    fn hmac(key: &[u8]) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length")
    }

    fn mac(&self, time: i64, address: &str, request_id: &str) -> Hmac<Sha256> {
        let mut mac = Self::hmac(self.0.as_slice());
        mac.update(format!("v1\n{time}\n{address}\n{request_id}").as_bytes());
        mac
    }

    fn vouch(&self, address: &str, request_id: &str, now: i64) -> String {
        let tag = self.mac(now, address, request_id).finalize().into_bytes();
        format!("v1.{now}.{}", URL_SAFE_NO_PAD.encode(tag))
    }

    /// Whether `vouch` was made with this key for `address` and
    /// `request_id`, recently.
    fn admits(&self, vouch: &str, address: &str, request_id: &str, now: i64) -> bool {
        let mut parts = vouch.split('.');
        let (Some("v1"), Some(time), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(time), Ok(tag)) = (time.parse::<i64>(), URL_SAFE_NO_PAD.decode(tag)) else { return false };
        // The time is the caller's to choose: no arithmetic on it may overflow.
        let recent = now.checked_sub(time).is_some_and(|age| age.abs() <= VOUCH_MAX_AGE_SECS);
        recent && self.mac(time, address, request_id).verify_slice(&tag).is_ok()
    }
}

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
/// address (a forwarded one only with the edge's vouch: anyone else could
/// pick their own rate-limit bucket).
#[derive(Clone)]
pub struct PublicCheck {
    verifier: TokenVerifier,
    forwarding: ForwardingKey,
}

impl PublicCheck {
    pub fn new(verifier: TokenVerifier, credential: &str) -> Self {
        Self { verifier, forwarding: ForwardingKey::derive(credential) }
    }

    /// The forwarded client address, if the edge vouched for it.
    fn forwarded(&self, metadata: &MetadataMap) -> Option<IpAddr> {
        let text = |name: &str| metadata.get(name).and_then(|v| v.to_str().ok());
        let (address, vouch) = (text(CLIENT_ADDRESS)?, text(FORWARDED_BY)?);
        let now = chrono::Utc::now().timestamp();
        let vouched = self.forwarding.admits(vouch, address, text(REQUEST_ID).unwrap_or_default(), now);
        vouched.then(|| address.parse().ok()).flatten()
    }
}

impl Interceptor for PublicCheck {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let forwarded = self.forwarded(request.metadata());
        let address = forwarded.or_else(|| request.remote_addr().map(|a| a.ip()));
        if let Some(address) = address {
            request.extensions_mut().insert(ClientAddress(address));
        }
        // Partner API keys are not JWTs, so nothing is refused here: a bearer
        // that is not a three-part token is recorded as an invalid access
        // token, which only matters to handlers that ask for a user.
        let check = match bearer(request.metadata()).filter(|t| !t.is_empty()) {
            Some(token) if token.split('.').count() == 3 => Some(match self.verifier.verify(token) {
                Ok(principal) => TokenCheck::Valid(principal),
                Err(TokenError::UnknownKey | TokenError::KeysNotLoaded) => {
                    TokenCheck::Unsettled { token: token.to_string(), verifier: self.verifier.clone() }
                }
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
pub async fn user<T>(request: &Request<T>) -> Result<Principal, Error> {
    match request.extensions().get::<TokenCheck>().cloned() {
        Some(TokenCheck::Valid(principal)) => Ok(principal),
        Some(TokenCheck::Refused(e)) => Err(e.into()),
        Some(TokenCheck::Unsettled { token, verifier }) => Ok(verifier.verify_fresh(&token).await?),
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

/// Adds the service credential to outgoing internal calls, and vouches
/// for forwarded clients on public ones.
#[derive(Clone)]
pub struct ServiceCredential {
    header: AsciiMetadataValue,
    forwarding: ForwardingKey,
}

impl ServiceCredential {
    pub fn new(token: &str) -> Result<Self, Error> {
        let invalid = |_| Error::invalid_request("internal.token must be printable ASCII");
        Ok(Self {
            header: format!("Bearer {token}").parse().map_err(invalid)?,
            forwarding: ForwardingKey::derive(token),
        })
    }

    /// Vouches for the client a public request (with this request id) is
    /// forwarded for.
    pub fn forward_client(&self, metadata: &mut MetadataMap, client: IpAddr, request_id: &str) {
        let address = client.to_string();
        let vouch = self.forwarding.vouch(&address, request_id, chrono::Utc::now().timestamp());
        if let (Ok(address), Ok(vouch)) = (address.parse(), vouch.parse()) {
            metadata.insert(CLIENT_ADDRESS, address);
            metadata.insert(FORWARDED_BY, vouch);
        }
    }
}

impl Interceptor for ServiceCredential {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        request.metadata_mut().insert("authorization", self.header.clone());
        Ok(request)
    }
}

/// The client's address by `X-Forwarded-For` (every line of it, in order):
/// the entry `hops` from the right, which our own proxies wrote.
pub fn forwarded_client(headers: &http::HeaderMap, hops: u8) -> Option<IpAddr> {
    let hops = usize::from(hops);
    if hops == 0 {
        return None;
    }
    let entries: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .collect();
    let entry = entries.len().checked_sub(hops).map(|i| entries[i])?;
    entry.parse().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verifier() -> TokenVerifier {
        let (_, public) = crate::token::generate_keypair().expect("keys");
        TokenVerifier::from_pem(&public, "iss", "aud").expect("verifier")
    }

    fn forwarded(credential: &str, client: IpAddr, request_id: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert(REQUEST_ID, request_id.parse().expect("ascii"));
        ServiceCredential::new(credential).expect("cred").forward_client(request.metadata_mut(), client, request_id);
        request
    }

    #[test]
    fn only_the_edge_vouches_for_a_forwarded_address() {
        let mut check = PublicCheck::new(verifier(), "s3cret-credential");
        let client: IpAddr = "203.0.113.9".parse().expect("ip");
        let vouched = forwarded("s3cret-credential", client, "req-1");
        assert_eq!(client_address(&check.call(vouched).expect("call")), Some(client));
        let forged = forwarded("a-guess-at-it-99", client, "req-1");
        assert_eq!(client_address(&check.call(forged).expect("call")), None, "no connection, no address");
        // A vouch covers its address and request id: moved to another, it is worthless.
        let mut moved = forwarded("s3cret-credential", client, "req-1");
        moved.metadata_mut().insert(CLIENT_ADDRESS, "198.51.100.7".parse().expect("ascii"));
        assert_eq!(client_address(&check.call(moved).expect("call")), None);
        let mut reused = forwarded("s3cret-credential", client, "req-1");
        reused.metadata_mut().insert(REQUEST_ID, "req-2".parse().expect("ascii"));
        assert_eq!(client_address(&check.call(reused).expect("call")), None);
    }

    #[test]
    fn a_vouch_is_good_for_a_minute() {
        let key = ForwardingKey::derive("s3cret-credential");
        let now = chrono::Utc::now().timestamp();
        let vouch = key.vouch("203.0.113.9", "req-1", now - VOUCH_MAX_AGE_SECS - 1);
        assert!(!key.admits(&vouch, "203.0.113.9", "req-1", now));
        assert!(key.admits(&key.vouch("203.0.113.9", "req-1", now - 5), "203.0.113.9", "req-1", now));
        let extremes = [format!("v1.{}.AAAA", i64::MIN), format!("v1.{}.AAAA", i64::MAX)];
        for bad in ["", "v1", "v1.x.y", "v2.1.AAAA", "v1.1.!!", "v1.1.AA.AA"]
            .into_iter()
            .chain(extremes.iter().map(String::as_str))
        {
            assert!(!key.admits(bad, "203.0.113.9", "req-1", now), "{bad}");
        }
    }

    #[test]
    fn a_public_call_carries_nothing_the_internal_listener_takes() {
        let credential = "s3cret-credential";
        let forwarded = forwarded(credential, "203.0.113.9".parse().expect("ip"), "req-1");
        let mut internal = ServiceCredentialCheck::new(credential);
        for (name, value) in forwarded.metadata().iter().filter_map(|kv| match kv {
            tonic::metadata::KeyAndValueRef::Ascii(name, value) => Some((name.as_str(), value.to_str().ok()?)),
            tonic::metadata::KeyAndValueRef::Binary(..) => None,
        }) {
            assert!(!value.contains(credential), "{name} carries the credential");
            assert!(internal.call(with_bearer(value)).is_err(), "{name} replayed as a bearer is refused");
        }
        let mut replayed = Request::new(());
        *replayed.metadata_mut() = forwarded.metadata().clone();
        assert!(internal.call(replayed).is_err(), "the public metadata as it is");
    }

    #[test]
    fn internal_check_accepts_only_the_credential() {
        let mut check = ServiceCredentialCheck::new("s3cret");
        let outgoing = ServiceCredential::new("s3cret").expect("cred").call(Request::new(())).expect("call");
        assert!(check.call(outgoing).is_ok());
        assert!(check.call(with_bearer("s3cres")).is_err());
        assert!(check.call(Request::new(())).is_err());
    }

    #[tokio::test]
    async fn a_bearer_that_is_no_jwt_is_an_invalid_token_not_a_missing_one() {
        let mut check = PublicCheck::new(verifier(), "s3cret-credential");
        let dotless = check.call(with_bearer("nodotsatall")).expect("passes the interceptor");
        assert_eq!(user(&dotless).await.expect_err("no user").code, ErrorCode::InvalidToken);
        let none = check.call(Request::new(())).expect("passes the interceptor");
        assert_eq!(user(&none).await.expect_err("no user").code, ErrorCode::Unauthenticated);
    }

    fn with_bearer(token: &str) -> Request<()> {
        let mut request = Request::new(());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    }

    #[test]
    fn the_client_is_the_entry_our_proxies_wrote() {
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.1, 10.0.0.9".parse().expect("value"));
        headers.append("x-forwarded-for", "203.0.113.7".parse().expect("value"));
        assert_eq!(forwarded_client(&headers, 0), None, "not trusted");
        assert_eq!(forwarded_client(&headers, 1), Some("203.0.113.7".parse().expect("ip")));
        assert_eq!(forwarded_client(&headers, 2), Some("10.0.0.9".parse().expect("ip")));
        assert_eq!(forwarded_client(&headers, 4), None, "fewer entries than proxies");
        let mut ported = http::HeaderMap::new();
        ported.append("x-forwarded-for", "203.0.113.7:4711".parse().expect("value"));
        assert_eq!(forwarded_client(&ported, 1), Some("203.0.113.7".parse().expect("ip")));
    }
}
