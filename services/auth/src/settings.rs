//! The auth service's settings: token lifetimes and keys, login limits.
//! Every process reads the public half (to verify tokens); only the auth
//! role holds the private key.

use std::path::PathBuf;

use offers_kit::config::{Problems, Validate, redact};
use offers_kit::token::{KeyError, TokenSigner, TokenVerifier, read_key};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// PEM (PKCS#8) Ed25519 private key; only the auth service needs it.
    #[serde(serialize_with = "redact")]
    pub private_key_pem: Option<SecretString>,
    pub private_key_file: Option<PathBuf>,
    /// PEM (SPKI) Ed25519 public key; every service that checks tokens needs it.
    pub public_key_pem: Option<String>,
    pub public_key_file: Option<PathBuf>,
    /// Failed-or-not login attempts allowed per username per window.
    pub login_per_username: u64,
    /// Login attempts allowed per client address per window.
    pub login_per_address: u64,
    pub login_window_secs: u64,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "offers-auth".into(),
            audience: "offers-api".into(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            private_key_pem: None,
            private_key_file: None,
            public_key_pem: None,
            public_key_file: None,
            login_per_username: 5,
            login_per_address: 20,
            login_window_secs: 60,
        }
    }
}

impl Validate for AuthSettings {
    fn validate(&self, p: &mut Problems) {
        let access = self.access_ttl_secs;
        p.check(
            (1..=3600).contains(&access),
            "access_ttl_secs",
            "must be between 1 and 3600 (access tokens are short-lived)",
        );
        p.check(self.refresh_ttl_secs >= access, "refresh_ttl_secs", "must not be shorter than auth.access_ttl_secs");
        p.check(self.refresh_ttl_secs <= 365 * 24 * 3600, "refresh_ttl_secs", "at most a year");
        p.check(self.login_per_username > 0, "login_per_username", "must be at least 1");
        p.check(self.login_per_address > 0, "login_per_address", "must be at least 1");
        p.check(self.login_window_secs > 0, "login_window_secs", "must be at least 1");
        p.check(!self.issuer.is_empty(), "issuer", "must not be empty");
        p.check(!self.audience.is_empty(), "audience", "must not be empty");
    }
}

impl AuthSettings {
    /// What every process checks access tokens with.
    pub fn verifier(&self) -> Result<TokenVerifier, KeyError> {
        let pem = read_key(self.public_key_pem.as_deref(), self.public_key_file.as_deref(), "public")?;
        TokenVerifier::from_pem(&pem, &self.issuer, &self.audience)
    }

    /// What the auth service signs access tokens with.
    pub(crate) fn signer(&self) -> Result<TokenSigner, KeyError> {
        let inline = self.private_key_pem.as_ref().map(|s| s.expose_secret());
        let pem = read_key(inline, self.private_key_file.as_deref(), "private")?;
        TokenSigner::from_pem(&pem, &self.issuer, &self.audience, self.access_ttl_secs)
    }
}
