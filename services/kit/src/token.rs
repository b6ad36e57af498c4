//! Access tokens: Ed25519-signed JWTs naming their key (`kid`). The auth
//! service signs with its current key and publishes the public half of
//! every key still in service (a JWKS); verifiers hold that set, so keys
//! rotate without anyone sharing files. The algorithm is pinned on
//! verification, and `iss`, `aud`, `exp` and `sub` are always checked.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use hashlink::LruCache;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth key is not a valid Ed25519 PEM key: {0}")]
    Pem(String),
    #[error("auth key could not be read from {path}: {source}")]
    Read { path: String, source: std::io::Error },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    /// Administrator: may see inactive offers.
    #[serde(default)]
    pub adm: bool,
}

/// Who an access token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: Uuid,
    pub token_id: String,
    pub is_admin: bool,
}

/// The public half of a signing key, as a JWK (RFC 8037: an `OKP` key on
/// `Ed25519`); its `kid` is its RFC 7638 thumbprint.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

impl Jwk {
    fn ed25519(public: &[u8; 32]) -> Self {
        let x = URL_SAFE_NO_PAD.encode(public);
        // The thumbprint hashes the required members in lexical order, no spaces.
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()));
        Jwk { kty: "OKP".into(), crv: "Ed25519".into(), x, kid, alg: "EdDSA".into(), use_: "sig".into() }
    }

    /// The JWK of a key known by its id and public key (base64url).
    pub fn from_parts(kid: &str, x: &str) -> Self {
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: x.into(),
            kid: kid.into(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }

    /// The JWK of an SPKI PEM public key.
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(Self::ed25519(key.as_bytes()))
    }
}

/// A fresh Ed25519 key pair as (private PKCS#8 PEM, public SPKI PEM).
pub fn generate_keypair() -> Result<(String, String), KeyError> {
    let seed: [u8; 32] = rand::random();
    let key = SigningKey::from_bytes(&seed);
    let private = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| KeyError::Pem(e.to_string()))?;
    let public = key.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| KeyError::Pem(e.to_string()))?;
    Ok((private.to_string(), public))
}

#[derive(Clone)]
pub struct TokenSigner {
    key: Arc<EncodingKey>,
    jwk: Jwk,
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl TokenSigner {
    pub fn from_pem(pem: &str, issuer: &str, audience: &str, ttl_secs: u64) -> Result<Self, KeyError> {
        crate::jwt_crypto::install();
        let bad = |e: String| KeyError::Pem(e);
        let private = SigningKey::from_pkcs8_pem(pem).map_err(|e| bad(e.to_string()))?;
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
        Ok(Self {
            key: Arc::new(key),
            jwk: Jwk::ed25519(private.verifying_key().as_bytes()),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    /// The public half, for the key set verifiers hold.
    pub fn jwk(&self) -> &Jwk {
        &self.jwk
    }

    pub fn sign(&self, user_id: Uuid, is_admin: bool) -> Result<String, jsonwebtoken::errors::Error> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id.to_string(),
            exp: now + self.ttl_secs,
            iat: now,
            jti: Uuid::new_v4().to_string(),
            adm: is_admin,
        };
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.jwk.kid.clone());
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    #[error("invalid access token: {0}")]
    Invalid(String),
    /// Its `kid` is in none of the keys held, even after loading them again.
    #[error("invalid access token: signed with a key not in service")]
    UnknownKey,
    /// No key set is held yet (the process has just started): the token
    /// may well be good, so this is the server's state, not the caller's
    /// mistake.
    #[error("the access-token keys are not loaded yet; try again")]
    KeysNotLoaded,
}

impl From<TokenError> for crate::Error {
    fn from(e: TokenError) -> Self {
        let code = match e {
            TokenError::Invalid(_) | TokenError::UnknownKey => crate::ErrorCode::InvalidToken,
            TokenError::KeysNotLoaded => crate::ErrorCode::Unavailable,
        };
        crate::Error::new(code, e.to_string())
    }
}

/// Fetches the key set from where it is published (the auth service).
pub type KeySource = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<Jwk>, String>> + Send>> + Send + Sync>;

/// Checks access tokens against the keys in service, by their `kid`. Clones
/// share the key set, so one refresh serves every clone.
///
/// A token naming a key the set does not hold makes the verifier load the
/// set again before it answers ([`TokenVerifier::verify_fresh`]): a key is
/// published before it signs, but a process that started or refreshed a
/// moment too early must not refuse a good token. Reloads are one at a
/// time per process and at most one per [`MIN_RELOAD_GAP`], and a caller
/// that waited for one started after it arrived uses its result, so a flood
/// of made-up key ids costs the auth service one call a second.
///
/// A token that verified once is remembered until it expires (a bounded
/// least-recently-used set): the same token comes with every request of
/// its holder, and checking its signature again costs more than the rest
/// of a cached read. Only verified tokens are kept, so forged ones cannot
/// crowd out real ones; a key set that changes forgets them all, so a
/// retired key stops a remembered token at once.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<RwLock<KeySet>>,
    validation: Arc<Validation>,
    verified: Arc<Mutex<LruCache<String, Verified>>>,
    reloads: Arc<Reloads>,
}

/// The shortest time between two loads of the key set by one process.
pub const MIN_RELOAD_GAP: Duration = Duration::from_secs(1);
/// The longest a load of the key set may take.
const RELOAD_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Reloads {
    source: OnceLock<KeySource>,
    /// Held while a reload runs.
    gate: tokio::sync::Mutex<LastReload>,
    /// Reloads begun, to tell whether one began after a caller arrived.
    started: AtomicU64,
    /// Callers waiting for a reload now.
    waiting: AtomicUsize,
}

/// How many callers may wait for a reload at once; more are told to try
/// again, so a flood of made-up key ids cannot hold requests without bound.
const MAX_WAITING: usize = 1_000;

/// The last reload that ran to its end: which one it was (of `started`),
/// when it ended and how, for callers that waited for it. A reload whose
/// caller went away midway leaves nothing here, so no one mistakes an older
/// outcome for its own.
struct LastReload {
    began: u64,
    ended: Option<Instant>,
    outcome: Result<(), String>,
}

impl Default for LastReload {
    fn default() -> Self {
        // `began` 0 is no reload: its outcome is never read.
        Self { began: 0, ended: None, outcome: Ok(()) }
    }
}

#[derive(Default)]
struct KeySet {
    by_kid: HashMap<String, DecodingKey>,
    /// What the set was made from, to tell a change from a refresh.
    jwks: Vec<(String, String)>,
}

#[derive(Clone)]
struct Verified {
    principal: Principal,
    expires: i64,
}

/// How many verified tokens a process remembers (each a few hundred bytes).
const REMEMBERED_TOKENS: usize = 20_000;

impl TokenVerifier {
    /// A verifier with no keys yet (see [`TokenVerifier::set_keys`]).
    pub fn new(issuer: &str, audience: &str) -> Self {
        crate::jwt_crypto::install();
        // Only EdDSA is accepted: a token naming another algorithm (`none`,
        // HS256 with the public key as secret, …) fails before its signature is read.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        Self {
            keys: Arc::default(),
            validation: Arc::new(validation),
            verified: Arc::new(Mutex::new(LruCache::new(REMEMBERED_TOKENS))),
            reloads: Arc::default(),
        }
    }

    /// Where [`TokenVerifier::reload`] fetches the key set from (set once;
    /// a verifier without a source only holds what it is given).
    pub fn set_source(&self, source: KeySource) {
        if self.reloads.source.set(source).is_err() {
            tracing::debug!("the key source was set already");
        }
    }

    /// Loads the key set from its source now (or waits for a load that
    /// began after this call): how many keys it holds then.
    pub async fn reload(&self) -> Result<usize, String> {
        self.reload_since(self.reloads.started.load(Ordering::SeqCst)).await?;
        Ok(self.keys.read().map_or(0, |k| k.by_kid.len()))
    }

    /// Loads the key set unless a load that began after the `seen`-th has
    /// ended meanwhile; one at a time, at most one per [`MIN_RELOAD_GAP`].
    async fn reload_since(&self, seen: u64) -> Result<(), String> {
        let source = self.reloads.source.get().ok_or("the verifier has no key source")?.clone();
        let mut last = self.reloads.gate.lock().await;
        if last.began > seen {
            return last.outcome.clone();
        }
        if let Some(at) = last.ended {
            tokio::time::sleep(MIN_RELOAD_GAP.saturating_sub(at.elapsed())).await;
        }
        let began = self.reloads.started.fetch_add(1, Ordering::SeqCst) + 1;
        // A caller waits for this; an auth service that does not answer
        // soon is as good as down (the caller hears "try again").
        let fetched = match tokio::time::timeout(RELOAD_TIMEOUT, source()).await {
            Ok(fetched) => fetched,
            Err(_) => Err("the key set took too long to load".to_string()),
        };
        let outcome = fetched.map(|keys| self.set_keys(&keys));
        *last = LastReload { began, ended: Some(Instant::now()), outcome: outcome.clone() };
        outcome
    }

    /// [`TokenVerifier::verify`], loading the key set again first when the
    /// token names a key it does not hold (or it holds none yet). When the
    /// set cannot be loaded, an unknown key is "try again", not "invalid":
    /// the token may well be good.
    pub async fn verify_fresh(&self, token: &str) -> Result<Principal, TokenError> {
        let seen = self.reloads.started.load(Ordering::SeqCst);
        match self.verify(token) {
            Err(TokenError::UnknownKey | TokenError::KeysNotLoaded) if self.reloads.source.get().is_some() => {
                // What no key can make good is refused without a reload.
                self.check_unsigned_claims(token)?;
                let waiting = WaitingGuard::enter(&self.reloads.waiting).ok_or(TokenError::KeysNotLoaded)?;
                let reloaded = self.reload_since(seen).await;
                drop(waiting);
                match (self.verify(token), reloaded) {
                    (Err(TokenError::UnknownKey), Err(e)) => {
                        tracing::warn!(error = %e, "could not reload the access-token keys");
                        Err(TokenError::KeysNotLoaded)
                    }
                    (checked, _) => checked,
                }
            }
            checked => checked,
        }
    }

    /// A verifier of tokens signed with this one SPKI PEM public key.
    pub fn from_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let verifier = Self::new(issuer, audience);
        verifier.set_keys(&[Jwk::from_public_pem(pem)?]);
        Ok(verifier)
    }

    /// Replaces the key set: keys no longer listed no longer verify.
    pub fn set_keys(&self, jwks: &[Jwk]) {
        let usable: Vec<&Jwk> = jwks.iter().filter(|k| k.kty == "OKP" && k.crv == "Ed25519").collect();
        let mut made: Vec<(String, String)> = usable.iter().map(|k| (k.kid.clone(), k.x.clone())).collect();
        made.sort();
        let Ok(mut held) = self.keys.write() else { return };
        if held.jwks == made {
            return;
        }
        held.by_kid =
            usable.iter().filter_map(|k| Some((k.kid.clone(), DecodingKey::from_ed_components(&k.x).ok()?))).collect();
        held.jwks = made;
        // Under the key set's lock: no verification against the old set
        // can remember its token after this.
        if let Ok(mut verified) = self.verified.lock() {
            verified.clear();
        }
    }

    /// Whether any key is held (a verifier is ready only then).
    pub fn has_keys(&self) -> bool {
        self.keys.read().is_ok_and(|k| !k.by_kid.is_empty())
    }

    pub fn verify(&self, token: &str) -> Result<Principal, TokenError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(known) = self.remembered(token, now) {
            return Ok(known);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid("malformed".into()))?;
        let kid = header.kid.ok_or_else(|| TokenError::Invalid("no key id".into()))?;
        let keys = self.keys.read().map_err(|_| TokenError::KeysNotLoaded)?;
        if keys.by_kid.is_empty() {
            return Err(TokenError::KeysNotLoaded);
        }
        let key = keys.by_kid.get(&kid).ok_or(TokenError::UnknownKey)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, &self.validation)
            .map_err(|e| TokenError::Invalid(e.kind().to_string_lossy()))?;
        let user_id =
            Uuid::parse_str(&data.claims.sub).map_err(|_| TokenError::Invalid("subject is not a user id".into()))?;
        let principal = Principal { user_id, token_id: data.claims.jti, is_admin: data.claims.adm };
        if let Ok(mut verified) = self.verified.lock() {
            let known = Verified { principal: principal.clone(), expires: data.claims.exp };
            verified.insert(token.to_string(), known);
        }
        Ok(principal)
    }

    /// The claims checks of a verification, before its signature is known
    /// good: an expired token, or one for another issuer or audience, is
    /// refused whichever key signed it.
    fn check_unsigned_claims(&self, token: &str) -> Result<(), TokenError> {
        let claims = jsonwebtoken::dangerous::insecure_decode::<Claims>(token)
            .map_err(|e| TokenError::Invalid(e.kind().to_string_lossy()))?
            .claims;
        let now = chrono::Utc::now().timestamp();
        if now > claims.exp.saturating_add(LEEWAY_SECS as i64) {
            return Err(TokenError::Invalid("expired".into()));
        }
        let issuer = self.validation.iss.as_ref().is_none_or(|allowed| allowed.contains(&claims.iss));
        let audience = self.validation.aud.as_ref().is_none_or(|allowed| allowed.contains(&claims.aud));
        match (issuer, audience) {
            (false, _) => Err(TokenError::Invalid("wrong issuer".into())),
            (_, false) => Err(TokenError::Invalid("wrong audience".into())),
            _ => Ok(()),
        }
    }

    /// The holder of `token` if it verified before and has not expired
    /// since (with the same leeway a first check allows).
    fn remembered(&self, token: &str, now: i64) -> Option<Principal> {
        let mut verified = self.verified.lock().ok()?;
        let known = verified.get(token)?;
        if now > known.expires + LEEWAY_SECS as i64 {
            verified.remove(token);
            return None;
        }
        Some(known.principal.clone())
    }
}

/// Counts a caller among those waiting for a reload while it lives.
struct WaitingGuard<'a>(&'a AtomicUsize);

impl<'a> WaitingGuard<'a> {
    fn enter(waiting: &'a AtomicUsize) -> Option<Self> {
        if waiting.fetch_add(1, Ordering::SeqCst) >= MAX_WAITING {
            waiting.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self(waiting))
    }
}

impl Drop for WaitingGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How far past `exp` a token is still accepted (clocks differ a little).
const LEEWAY_SECS: u64 = 5;

trait KindText {
    fn to_string_lossy(&self) -> String;
}

impl KindText for jsonwebtoken::errors::ErrorKind {
    fn to_string_lossy(&self) -> String {
        use jsonwebtoken::errors::ErrorKind as K;
        match self {
            K::ExpiredSignature => "expired".into(),
            K::InvalidAudience => "wrong audience".into(),
            K::InvalidIssuer => "wrong issuer".into(),
            K::InvalidSignature => "bad signature".into(),
            K::InvalidAlgorithm => "algorithm not allowed".into(),
            K::MissingRequiredClaim(c) => format!("missing claim {c}"),
            _ => "malformed".into(),
        }
    }
}

/// Reads a key given inline or as a file, if either is.
pub fn read_key(inline: Option<&str>, file: Option<&std::path::Path>) -> Result<Option<String>, KeyError> {
    if let Some(pem) = inline {
        return Ok(Some(pem.to_string()));
    }
    let Some(path) = file else { return Ok(None) };
    std::fs::read_to_string(path)
        .map(Some)
        .map_err(|source| KeyError::Read { path: path.display().to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TokenSigner, TokenVerifier) {
        let (private, public) = generate_keypair().expect("keys");
        (
            TokenSigner::from_pem(&private, "iss", "aud", 60).expect("signer"),
            TokenVerifier::from_pem(&public, "iss", "aud").expect("verifier"),
        )
    }

    #[test]
    fn signed_tokens_verify() {
        let (signer, verifier) = pair();
        let user = Uuid::new_v4();
        let principal = verifier.verify(&signer.sign(user, true).expect("sign")).expect("verify");
        assert_eq!(principal.user_id, user);
        assert!(principal.is_admin);
    }

    #[test]
    fn another_key_or_audience_is_refused() {
        let (signer, _) = pair();
        let (_, other) = pair();
        let token = signer.sign(Uuid::new_v4(), false).expect("sign");
        assert_eq!(other.verify(&token), Err(TokenError::UnknownKey));
        let (private, public) = generate_keypair().expect("keys");
        let signer = TokenSigner::from_pem(&private, "iss", "someone-else", 60).expect("signer");
        let verifier = TokenVerifier::from_pem(&public, "iss", "aud").expect("verifier");
        let token = signer.sign(Uuid::new_v4(), false).expect("sign");
        assert_eq!(verifier.verify(&token), Err(TokenError::Invalid("wrong audience".into())));
    }

    #[test]
    fn keys_rotate_through_the_key_set() {
        let (old, verifier) = pair();
        let (private, _) = generate_keypair().expect("keys");
        let new = TokenSigner::from_pem(&private, "iss", "aud", 60).expect("signer");
        assert_ne!(old.jwk().kid, new.jwk().kid);
        let (before, after) =
            (old.sign(Uuid::new_v4(), false).expect("sign"), new.sign(Uuid::new_v4(), false).expect("sign"));
        verifier.set_keys(&[old.jwk().clone(), new.jwk().clone()]);
        assert!(verifier.verify(&before).is_ok() && verifier.verify(&after).is_ok());
        verifier.set_keys(&[new.jwk().clone()]);
        assert!(verifier.verify(&before).is_err(), "retired");
        assert!(verifier.verify(&after).is_ok());
    }

    #[test]
    fn a_remembered_token_stops_with_its_key() {
        let (old, verifier) = pair();
        let (private, _) = generate_keypair().expect("keys");
        let new = TokenSigner::from_pem(&private, "iss", "aud", 60).expect("signer");
        let token = old.sign(Uuid::new_v4(), false).expect("sign");
        verifier.set_keys(&[old.jwk().clone(), new.jwk().clone()]);
        assert!(verifier.verify(&token).is_ok() && verifier.verify(&token).is_ok(), "verified, then remembered");
        // A refresh with the same set keeps what it remembers; a set
        // without the key forgets the token at once.
        verifier.set_keys(&[new.jwk().clone(), old.jwk().clone()]);
        assert!(verifier.remembered(&token, chrono::Utc::now().timestamp()).is_some());
        verifier.set_keys(&[new.jwk().clone()]);
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn a_remembered_token_expires_when_its_claim_says() {
        let (signer, verifier) = pair();
        let token = signer.sign(Uuid::new_v4(), false).expect("sign");
        assert!(verifier.verify(&token).is_ok());
        let now = chrono::Utc::now().timestamp();
        assert!(verifier.remembered(&token, now).is_some());
        let past_expiry = now + signer.ttl_secs() + LEEWAY_SECS as i64 + 1;
        assert!(verifier.remembered(&token, past_expiry).is_none(), "expired");
        assert!(verifier.remembered(&token, now).is_none(), "and forgotten");
        let forged = format!("{token}x");
        assert!(verifier.verify(&forged).is_err());
        assert!(verifier.remembered(&forged, now).is_none(), "only verified tokens are remembered");
    }

    /// A source serving `keys` (as they are when asked), counting the asks.
    fn source(keys: Arc<Mutex<Vec<Jwk>>>, asks: Arc<AtomicU64>) -> KeySource {
        Arc::new(move || {
            asks.fetch_add(1, Ordering::SeqCst);
            let keys = keys.lock().expect("keys").clone();
            Box::pin(async move { Ok(keys) })
        })
    }

    #[tokio::test]
    async fn a_token_of_a_key_published_after_the_last_load_verifies_at_once() {
        let (old, verifier) = pair();
        let published = Arc::new(Mutex::new(vec![old.jwk().clone()]));
        let asks = Arc::new(AtomicU64::new(0));
        verifier.set_source(source(published.clone(), asks.clone()));
        assert_eq!(verifier.reload().await, Ok(1));
        let (private, _) = generate_keypair().expect("keys");
        let new = TokenSigner::from_pem(&private, "iss", "aud", 60).expect("signer");
        published.lock().expect("keys").push(new.jwk().clone());
        let token = new.sign(Uuid::new_v4(), false).expect("sign");
        assert_eq!(verifier.verify(&token), Err(TokenError::UnknownKey), "not held yet");
        assert!(verifier.verify_fresh(&token).await.is_ok(), "held after the reload it caused");
        assert_eq!(asks.load(Ordering::SeqCst), 2);
        assert!(verifier.verify_fresh(&token).await.is_ok());
        assert_eq!(asks.load(Ordering::SeqCst), 2, "a known key costs no reload");
    }

    fn unknown_key_token() -> String {
        let (private, _) = generate_keypair().expect("keys");
        TokenSigner::from_pem(&private, "iss", "aud", 60).expect("signer").sign(Uuid::new_v4(), false).expect("sign")
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_unknown_key_ids_shares_its_reloads() {
        let (signer, verifier) = pair();
        let asks = Arc::new(AtomicU64::new(0));
        verifier.set_source(source(Arc::new(Mutex::new(vec![signer.jwk().clone()])), asks.clone()));
        let forged = unknown_key_token();
        let checks: Vec<_> = (0..200)
            .map(|_| {
                let (verifier, forged) = (verifier.clone(), forged.clone());
                tokio::spawn(async move { verifier.verify_fresh(&forged).await })
            })
            .collect();
        for check in checks {
            assert_eq!(check.await.expect("task"), Err(TokenError::UnknownKey));
        }
        // The first caller's reload, and one more for those that came while
        // it ran (a second later): never one per caller.
        assert!(asks.load(Ordering::SeqCst) <= 2, "{} reloads for 200 forged tokens", asks.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_whose_caller_went_away_is_not_taken_for_done() {
        let (old, verifier) = pair();
        let published = Arc::new(Mutex::new(vec![old.jwk().clone()]));
        let asks = Arc::new(AtomicU64::new(0));
        let slow = {
            let (published, asks) = (published.clone(), asks.clone());
            Arc::new(move || {
                asks.fetch_add(1, Ordering::SeqCst);
                let keys = published.lock().expect("keys").clone();
                Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Ok(keys)
                }) as Pin<Box<dyn Future<Output = Result<Vec<Jwk>, String>> + Send>>
            })
        };
        verifier.set_source(slow);
        let (private, _) = generate_keypair().expect("keys");
        let new = TokenSigner::from_pem(&private, "iss", "aud", 60).expect("signer");
        published.lock().expect("keys").push(new.jwk().clone());
        let token = new.sign(Uuid::new_v4(), false).expect("sign");
        // A caller that gives up midway through its reload…
        let gone = tokio::time::timeout(Duration::from_millis(100), verifier.verify_fresh(&token)).await;
        assert!(gone.is_err(), "it timed out");
        // …leaves the next caller to reload for itself, not to take an older answer.
        assert!(verifier.verify_fresh(&token).await.is_ok());
        assert_eq!(asks.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn what_no_key_can_make_good_costs_no_reload() {
        let (_, verifier) = pair();
        let asks = Arc::new(AtomicU64::new(0));
        verifier.set_source(source(Arc::default(), asks.clone()));
        let (private, _) = generate_keypair().expect("keys");
        let elsewhere = TokenSigner::from_pem(&private, "iss", "someone-else", 60).expect("signer");
        let token = elsewhere.sign(Uuid::new_v4(), false).expect("sign");
        assert_eq!(verifier.verify_fresh(&token).await, Err(TokenError::Invalid("wrong audience".into())));
        assert_eq!(verifier.verify_fresh("a.b.c").await, Err(TokenError::Invalid("malformed".into())));
        assert_eq!(asks.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_key_set_that_cannot_be_loaded_means_try_again_not_invalid() {
        let (signer, verifier) = pair();
        verifier.set_source(Arc::new(|| Box::pin(async { Err("the auth service is away".to_string()) })));
        assert_eq!(verifier.verify_fresh(&unknown_key_token()).await, Err(TokenError::KeysNotLoaded));
        let known = signer.sign(Uuid::new_v4(), false).expect("sign");
        assert!(verifier.verify_fresh(&known).await.is_ok(), "a held key needs no reload");
    }

    #[test]
    fn kids_are_rfc7638_thumbprints() {
        // RFC 8037, appendix A.3: the thumbprint of its example key.
        let x = URL_SAFE_NO_PAD.decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo").expect("b64");
        let jwk = Jwk::ed25519(&x.try_into().expect("32 bytes"));
        assert_eq!(jwk.kid, "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }
}
