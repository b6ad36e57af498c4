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
    #[serde(with = "humantime_serde")]
    pub access_ttl: Duration,
    #[serde(with = "humantime_serde")]
    pub refresh_ttl: Duration,
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
    #[serde(with = "humantime_serde")]
    pub jwks_refresh: Duration,
    /// Beyond one `jwks_refresh`, how long a rotated-in key is
    /// published before it signs (for a reload that was slow or failed).
    #[serde(with = "humantime_serde")]
    pub key_publish_margin: Duration,
    /// How much longer than the access-token lifetime a rotated-out key
    /// keeps verifying: replicas go on signing with it until they re-read
    /// the keys (5 s), and clocks differ.
    #[serde(with = "humantime_serde")]
    pub key_retire_margin: Duration,
    /// Login attempts allowed per username from one client address per window.
    pub login_per_username: u64,
    /// Login attempts allowed per username from all addresses together per
    /// window: higher, so one address cannot lock a user out everywhere.
    pub login_per_username_global: u64,
    /// Login attempts allowed per client address (IPv6: per /64) per window.
    pub login_per_address: u64,
    #[serde(with = "humantime_serde")]
    pub login_window: Duration,
    /// Password hashes at once; 0 picks one per core, within the memory budget.
    pub password_hash_concurrency: u32,
    /// Memory password hashing may take, in MiB (12 MiB per hash at once).
    pub password_hash_memory_mib: u64,
    /// How long a login waits for a hashing slot before it is refused as busy.
    #[serde(with = "humantime_serde")]
    pub password_hash_wait: Duration,
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            issuer: "offers-auth".into(),
            audience: "offers-api".into(),
            access_ttl: Duration::from_mins(15),
            refresh_ttl: Duration::from_hours(30 * 24),
            private_key_pem: None,
            private_key_file: None,
            key_encryption_key: None,
            jwks_refresh: Duration::from_secs(30),
            key_publish_margin: Duration::from_secs(10),
            key_retire_margin: Duration::from_mins(2),
            login_per_username: 5,
            login_per_username_global: 100,
            login_per_address: 20,
            login_window: Duration::from_mins(1),
            password_hash_concurrency: 0,
            password_hash_memory_mib: 128,
            password_hash_wait: Duration::from_millis(300),
        }
    }
}

impl Validate for AuthSettings {
    fn validate(&self, p: &mut Problems) {
        const SECOND: Duration = Duration::from_secs(1);
        const DAY: Duration = Duration::from_hours(24);
        // Access tokens are short-lived.
        p.within("access_ttl", self.access_ttl, SECOND..=Duration::from_hours(1));
        // At least the keys' re-read period.
        p.within("key_retire_margin", self.key_retire_margin, Duration::from_secs(5)..=DAY);
        p.within("refresh_ttl", self.refresh_ttl, self.access_ttl..=365 * DAY);
        p.check(self.login_per_username > 0, "login_per_username", "must be at least 1");
        p.check(
            self.login_per_username_global >= self.login_per_username,
            "login_per_username_global",
            "must be at least login_per_username",
        );
        p.check(self.login_per_address > 0, "login_per_address", "must be at least 1");
        p.within("login_window", self.login_window, SECOND..=DAY);
        p.check(self.password_hash_memory_mib >= 12, "password_hash_memory_mib", "at least 12 (one hash)");
        p.check(self.password_hash_concurrency <= 256, "password_hash_concurrency", "at most 256");
        p.within("password_hash_wait", self.password_hash_wait, Duration::from_millis(1)..=Duration::from_secs(10));
        if let Some(kek) = &self.key_encryption_key {
            let keys = parse_keks(kek.expose_secret());
            p.check(
                keys.is_some(),
                "key_encryption_key",
                "must be one or more keys of 32 bytes, base64, comma-separated",
            );
        }
        p.within("jwks_refresh", self.jwks_refresh, SECOND..=Duration::from_hours(1));
        p.within("key_publish_margin", self.key_publish_margin, Duration::ZERO..=Duration::from_hours(1));
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
            token: self.access_ttl,
            retire_margin: self.key_retire_margin,
            publish_delay: self.key_publish_delay(),
        };
        KeyStore::new(db, &keks, (&self.issuer, &self.audience), lifetimes, initial)
    }

    /// How long a rotated-in key is published before it signs: one key-set
    /// refresh period of every verifier, and a margin.
    pub fn key_publish_delay(&self) -> Duration {
        self.jwks_refresh + self.key_publish_margin
    }
}
