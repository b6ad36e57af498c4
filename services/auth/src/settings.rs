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
    /// Login attempts allowed per username from one client address per window.
    pub login_per_username: u64,
    /// Login attempts allowed per username from all addresses together per
    /// window: higher, so one address cannot lock a user out everywhere.
    pub login_per_username_global: u64,
    /// Login attempts allowed per client address (IPv6: per /64) per window.
    pub login_per_address: u64,
    pub login_window_secs: u64,
    /// Password hashes at once; 0 picks one per core, within the memory budget.
    pub password_hash_concurrency: u32,
    /// Memory password hashing may take, in MiB (19 MiB per hash at once).
    pub password_hash_memory_mib: u64,
    /// How long a login waits for a hashing slot before it is refused as busy.
    pub password_hash_wait_ms: u64,
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
            login_per_username_global: 100,
            login_per_address: 20,
            login_window_secs: 60,
            password_hash_concurrency: 0,
            password_hash_memory_mib: 128,
            password_hash_wait_ms: 300,
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
        p.check(
            self.login_per_username_global >= self.login_per_username,
            "login_per_username_global",
            "must be at least login_per_username",
        );
        p.check(self.login_per_address > 0, "login_per_address", "must be at least 1");
        p.check(self.login_window_secs > 0, "login_window_secs", "must be at least 1");
        p.check(self.password_hash_memory_mib >= 19, "password_hash_memory_mib", "at least 19 (one hash)");
        p.check(self.password_hash_concurrency <= 256, "password_hash_concurrency", "at most 256");
        p.check((1..=10_000).contains(&self.password_hash_wait_ms), "password_hash_wait_ms", "between 1 and 10000");
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
