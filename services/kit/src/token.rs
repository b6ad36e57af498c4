//! Access tokens: Ed25519-signed JWTs. The algorithm is pinned on
//! verification, and `iss`, `aud`, `exp` are always checked.

use std::sync::Arc;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey, spki::der::pem::LineEnding};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("auth key is not a valid Ed25519 PEM key: {0}")]
    Pem(String),
    #[error("auth key could not be read from {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("no auth {0} key is configured (auth.{0}_key_pem or auth.{0}_key_file)")]
    Missing(&'static str),
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
    issuer: String,
    audience: String,
    ttl_secs: i64,
}

impl TokenSigner {
    pub fn from_pem(pem: &str, issuer: &str, audience: &str, ttl_secs: u64) -> Result<Self, KeyError> {
        let key = EncodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(Self {
            key: Arc::new(key),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_secs: i64::try_from(ttl_secs).unwrap_or(i64::MAX),
        })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
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
        jsonwebtoken::encode(&Header::new(Algorithm::EdDSA), &claims, &self.key)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid access token: {0}")]
pub struct InvalidToken(pub String);

#[derive(Clone)]
pub struct TokenVerifier {
    key: Arc<DecodingKey>,
    validation: Arc<Validation>,
}

impl TokenVerifier {
    pub fn from_pem(pem: &str, issuer: &str, audience: &str) -> Result<Self, KeyError> {
        let key = DecodingKey::from_ed_pem(pem.as_bytes()).map_err(|e| KeyError::Pem(e.to_string()))?;
        // Only EdDSA is accepted: a token naming another algorithm (`none`,
        // HS256 with the public key as secret, …) fails before its signature is read.
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 5;
        Ok(Self { key: Arc::new(key), validation: Arc::new(validation) })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| InvalidToken(e.kind().to_string_lossy()))?;
        let user_id = Uuid::parse_str(&data.claims.sub).map_err(|_| InvalidToken("subject is not a user id".into()))?;
        Ok(Principal { user_id, token_id: data.claims.jti, is_admin: data.claims.adm })
    }
}

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

/// Reads a key given inline or as a file.
pub fn read_key(inline: Option<&str>, file: Option<&std::path::Path>, which: &'static str) -> Result<String, KeyError> {
    if let Some(pem) = inline {
        return Ok(pem.to_string());
    }
    let path = file.ok_or(KeyError::Missing(which))?;
    std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })
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
        assert_eq!(other.verify(&token), Err(InvalidToken("bad signature".into())));
        let (private, public) = generate_keypair().expect("keys");
        let signer = TokenSigner::from_pem(&private, "iss", "someone-else", 60).expect("signer");
        let verifier = TokenVerifier::from_pem(&public, "iss", "aud").expect("verifier");
        let token = signer.sign(Uuid::new_v4(), false).expect("sign");
        assert_eq!(verifier.verify(&token), Err(InvalidToken("wrong audience".into())));
    }
}
