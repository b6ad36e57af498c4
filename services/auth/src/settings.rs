//! The auth service's settings: token lifetimes and keys, login limits.
//! Every process reads the public half (to verify tokens); only the auth
//! role holds the private key.

use std::path::PathBuf;
use std::time::Duration;

use offers_kit::config::{Problems, Validate, redact};
use offers_kit::token::{TokenVerifier, read_key};
use sea_orm::DatabaseConnection;

use crate::error::AuthError;
use crate::keys::{KeyStore, Lifetimes, parse_keks};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthSettings {
    pub issuer: String,
    pub audience: String,
    pub access_ttl_secs: u64,
    pub refresh_ttl_secs: u64,
    /// PEM (PKCS#8) Ed25519 private key: the first signing key, imported
    /// when the auth service finds none stored (otherwise one is made).
    #[serde(serialize_with = "redact")]
    pub private_key_pem: Option<SecretString>,
    pub private_key_file: Option<PathBuf>,
    /// 32 bytes, base64: seals the signing keys' private halves in the
    /// database. The auth role needs it. A comma-separated list replaces
    /// one: the first seals, every one opens (see `offers admin keys reseal`).
    #[serde(serialize_with = "redact")]
    pub key_encryption_key: Option<SecretString>,
    /// How often every token-checking process reloads the key set (JWKS)
    /// from the auth service.
    pub jwks_refresh_secs: u64,
    /// Beyond one `jwks_refresh_secs`, how long a rotated-in key is
    /// published before it signs (for a reload that was slow or failed).
    pub key_publish_margin_secs: u64,
    /// How much longer than the access-token lifetime a rotated-out key
    /// keeps verifying: replicas go on signing with it until they re-read
    /// the keys (5 s), and clocks differ.
    pub key_retire_margin_secs: u64,
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
            key_encryption_key: None,
            jwks_refresh_secs: 30,
            key_publish_margin_secs: 10,
            key_retire_margin_secs: 120,
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
        p.check(
            (5..=86_400).contains(&self.key_retire_margin_secs),
            "key_retire_margin_secs",
            "must be between 5 (the keys' re-read period) and 86400",
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
        if let Some(kek) = &self.key_encryption_key {
            let keys = parse_keks(kek.expose_secret());
            p.check(
                keys.is_some(),
                "key_encryption_key",
                "must be one or more keys of 32 bytes, base64, comma-separated",
            );
        }
        p.check((1..=3600).contains(&self.jwks_refresh_secs), "jwks_refresh_secs", "between 1 and 3600");
        p.check(self.key_publish_margin_secs <= 3600, "key_publish_margin_secs", "at most 3600");
        p.check(!self.issuer.is_empty(), "issuer", "must not be empty");
        p.check(!self.audience.is_empty(), "audience", "must not be empty");
    }
}

impl AuthSettings {
    /// What every token-checking process verifies with (it holds no keys
    /// until it has loaded the auth service's key set).
    pub fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(&self.issuer, &self.audience)
    }

    /// The auth service's signing keys in `db`.
    pub(crate) fn key_store(&self, db: DatabaseConnection) -> Result<KeyStore, AuthError> {
        let keks = self.key_encryption_key.as_ref().and_then(|k| parse_keks(k.expose_secret()));
        let keks = keks.ok_or(AuthError::Config("auth.key_encryption_key (32 bytes, base64) is required"))?;
        let initial = self.private_key_pem.as_ref().map(|s| s.expose_secret());
        let initial = read_key(initial, self.private_key_file.as_deref())?;
        let lifetimes = Lifetimes {
            token: Duration::from_secs(self.access_ttl_secs),
            retire_margin: Duration::from_secs(self.key_retire_margin_secs),
            publish_delay: self.key_publish_delay(),
        };
        KeyStore::new(db, &keks, (&self.issuer, &self.audience), lifetimes, initial)
    }

    /// How long a rotated-in key is published before it signs: one key-set
    /// refresh period of every verifier, and a margin.
    pub fn key_publish_delay(&self) -> Duration {
        Duration::from_secs(self.jwks_refresh_secs + self.key_publish_margin_secs)
    }
}
