//! Layered configuration: defaults → optional TOML file → `OFFERS_*` environment
//! (`__` separates nesting levels) → command-line overrides. Every value is
//! checked at start and every bad key is reported at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Public HTTP listener: the REST edge, or only /healthz, /readyz and /metrics.
    pub http_addr: SocketAddr,
    /// Public gRPC listener (user token or partner key).
    pub grpc_addr: SocketAddr,
    /// Internal gRPC listener (service credential only).
    pub internal_grpc_addr: SocketAddr,
    pub database: DatabaseSettings,
    pub cache: CacheSettings,
    pub bus: BusSettings,
    pub auth: AuthSettings,
    pub internal: InternalSettings,
    pub upstream: UpstreamSettings,
    pub telemetry: TelemetrySettings,
    pub gateway: GatewaySettings,
    pub ledger: LedgerSettings,
    pub provisioning: ProvisioningSettings,
    pub partner: PartnerSettings,
    pub notifier: NotifierSettings,
    /// Currency of balances and offers (ISO 4217).
    pub currency: String,
    /// Seconds given to in-flight work after a shutdown signal.
    pub shutdown_grace_secs: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: ([127, 0, 0, 1], 8080).into(),
            grpc_addr: ([127, 0, 0, 1], 50051).into(),
            internal_grpc_addr: ([127, 0, 0, 1], 50052).into(),
            database: DatabaseSettings::default(),
            cache: CacheSettings::default(),
            bus: BusSettings::default(),
            auth: AuthSettings::default(),
            internal: InternalSettings::default(),
            upstream: UpstreamSettings::default(),
            telemetry: TelemetrySettings::default(),
            gateway: GatewaySettings::default(),
            ledger: LedgerSettings::default(),
            provisioning: ProvisioningSettings::default(),
            partner: PartnerSettings::default(),
            notifier: NotifierSettings::default(),
            currency: "EUR".into(),
            shutdown_grace_secs: 10,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `postgres://…` or `sqlite://path?mode=rwc`.
    #[serde(serialize_with = "redact_url")]
    pub url: String,
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self { url: "sqlite://.offers/offers.db?mode=rwc".into(), max_connections: 10 }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// `memory://` or `redis://host:port/db`.
    #[serde(serialize_with = "redact_url")]
    pub url: String,
    /// Prepended to every key, so several deployments can share one Redis.
    pub prefix: String,
}

impl Default for CacheSettings {
    fn default() -> Self {
        Self { url: "memory://".into(), prefix: "offers:".into() }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusSettings {
    /// `memory://` or `amqp://user:pass@host:port/vhost`.
    #[serde(serialize_with = "redact_url")]
    pub url: String,
    /// Prefix of every exchange and queue name.
    pub prefix: String,
    /// Unacknowledged deliveries a consumer holds at once.
    pub prefetch: u16,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self { url: "memory://".into(), prefix: "offers".into(), prefetch: 16 }
    }
}

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

#[derive(Debug, Clone, Deserialize, Serialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct InternalSettings {
    /// Shared service credential for the internal gRPC listener.
    #[serde(serialize_with = "redact")]
    pub token: Option<SecretString>,
}

/// Where the gRPC services are reached; in one process they all point home.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    pub auth: String,
    pub auth_internal: String,
    pub catalog: String,
    pub catalog_internal: String,
    pub account: String,
    pub account_internal: String,
    pub activation: String,
    pub partner: String,
    pub partner_internal: String,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        let public = "http://127.0.0.1:50051".to_string();
        let internal = "http://127.0.0.1:50052".to_string();
        Self {
            auth: public.clone(),
            auth_internal: internal.clone(),
            catalog: public.clone(),
            catalog_internal: internal.clone(),
            account: public.clone(),
            account_internal: internal.clone(),
            activation: public.clone(),
            partner: public,
            partner_internal: internal,
        }
    }
}

impl UpstreamSettings {
    fn all(&self) -> [(&'static str, &String); 9] {
        [
            ("upstream.auth", &self.auth),
            ("upstream.auth_internal", &self.auth_internal),
            ("upstream.catalog", &self.catalog),
            ("upstream.catalog_internal", &self.catalog_internal),
            ("upstream.account", &self.account),
            ("upstream.account_internal", &self.account_internal),
            ("upstream.activation", &self.activation),
            ("upstream.partner", &self.partner),
            ("upstream.partner_internal", &self.partner_internal),
        ]
    }
}

/// How the account service keeps transactions moving.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// A PENDING transaction with no job in flight for this long is re-driven.
    pub pending_deadline_secs: u64,
    /// How long a worker's claim on an attempt keeps the reconciler away.
    pub attempt_lease_secs: u64,
    /// How often the reconciler looks for stuck transactions.
    pub reconcile_interval_ms: u64,
    /// How often the outbox relay polls when nothing wakes it.
    pub relay_interval_ms: u64,
    /// Idempotency keys are kept at least this long (≥ 24).
    pub idempotency_retention_hours: u64,
    /// Time to live of a settled transaction's cached status.
    pub status_cache_ttl_secs: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            pending_deadline_secs: 120,
            attempt_lease_secs: 60,
            reconcile_interval_ms: 5_000,
            relay_interval_ms: 1_000,
            idempotency_retention_hours: 48,
            status_cache_ttl_secs: 86_400,
        }
    }
}

/// The external provisioning system and how hard to try it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningSettings {
    /// Base URL of the provisioning system; required by the worker.
    pub url: Option<String>,
    #[serde(serialize_with = "redact")]
    pub api_key: Option<SecretString>,
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Simulator only: added latency and percentage of random transient failures.
    pub simulator_latency_ms: u64,
    pub simulator_failure_percent: u8,
}

impl Default for ProvisioningSettings {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            timeout_ms: 5_000,
            max_attempts: 5,
            retry_base_ms: 1_000,
            retry_max_ms: 60_000,
            simulator_latency_ms: 0,
            simulator_failure_percent: 0,
        }
    }
}

/// Partner access and completion callbacks.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartnerSettings {
    /// Requests a partner may make per second (all its keys together).
    pub requests_per_second: u64,
    pub callback_timeout_ms: u64,
    pub callback_max_attempts: u32,
    pub callback_retry_base_ms: u64,
    pub callback_retry_max_ms: u64,
    /// Lets `CreateApiKey` take a preset secret: the embedded mode's demo
    /// key. Never in production.
    pub allow_preset_keys: bool,
    /// Lets callback URLs be plain http or point at loopback and private
    /// addresses (the embedded mode and tests). Off, callbacks go only to
    /// public https endpoints, so a partner cannot aim them inside our network.
    pub allow_private_callbacks: bool,
}

impl Default for PartnerSettings {
    fn default() -> Self {
        Self {
            requests_per_second: 20,
            callback_timeout_ms: 5_000,
            callback_max_attempts: 10,
            callback_retry_base_ms: 1_000,
            callback_retry_max_ms: 300_000,
            allow_preset_keys: false,
            allow_private_callbacks: false,
        }
    }
}

/// Expiry reminders: when to look, and how to reach people.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// Remind this many hours before expiry; each subscription is reminded
    /// once per window, by the smallest window it falls in.
    pub windows_hours: Vec<u32>,
    /// When the daily run happens, `HH:MM` UTC.
    pub run_at_utc: String,
    /// How often the in-process scheduler checks whether today's run is due.
    pub check_interval_secs: u64,
    /// `smtp://host:port` (or `smtps://user:pass@host`); email is sent only when set.
    #[serde(serialize_with = "redact_optional_url")]
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// The SMS provider's HTTP endpoint; SMS is sent only when set.
    pub sms_url: Option<String>,
    #[serde(serialize_with = "redact")]
    pub sms_api_key: Option<SecretString>,
    pub sms_sender: String,
    /// Messages are appended here instead (the embedded mode's sink).
    pub sink_file: Option<PathBuf>,
    pub send_timeout_ms: u64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            windows_hours: vec![72],
            run_at_utc: "08:00".into(),
            check_interval_secs: 60,
            smtp_url: None,
            smtp_from: "Offers <no-reply@offers.invalid>".into(),
            sms_url: None,
            sms_api_key: None,
            sms_sender: "Offers".into(),
            sink_file: None,
            send_timeout_ms: 10_000,
            max_attempts: 5,
            retry_base_ms: 2_000,
            retry_max_ms: 600_000,
        }
    }
}

impl NotifierSettings {
    /// The daily run time as (hour, minute), if well formed.
    pub fn run_at(&self) -> Option<(u32, u32)> {
        let (h, m) = self.run_at_utc.split_once(':')?;
        let (h, m) = (h.parse().ok()?, m.parse().ok()?);
        (h < 24 && m < 60).then_some((h, m))
    }

    pub fn has_channel(&self) -> bool {
        self.smtp_url.is_some() || self.sms_url.is_some() || self.sink_file.is_some()
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `text` or `json`.
    pub log_format: String,
    /// `tracing` filter directives, e.g. `info,offers_auth=debug`.
    pub log_filter: String,
    /// OTLP/gRPC collector; traces are exported only when set.
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            log_filter: "info".into(),
            otlp_endpoint: None,
            service_name: "offers".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Deadline for one upstream gRPC call, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Trust the first `X-Forwarded-For` hop as the client address (behind a
    /// known proxy only).
    pub trust_forwarded_for: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self { body_limit_bytes: 64 * 1024, upstream_timeout_ms: 10_000, trust_forwarded_for: false }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

impl Settings {
    /// Reads defaults, then `file` if given, then the `OFFERS_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        Self::figment(file).extract().map_err(|e| ConfigError::Load(e.to_string()))
    }

    pub fn figment(file: Option<&Path>) -> Figment {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            figment = figment.merge(Toml::file_exact(file));
        }
        // OFFERS_CONFIG (the file itself) and OFFERS_NEW_PASSWORD (an admin
        // command's input) are command-line settings, not configuration keys.
        let env = Env::prefixed("OFFERS_")
            .filter(|key| !["config", "new_password"].iter().any(|k| key.as_str().eq_ignore_ascii_case(k)))
            .split("__");
        figment.merge(env)
    }

    /// Checks every value and reports all problems together, naming each key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut bad = Vec::new();
        let db = &self.database.url;
        if !(db.starts_with("postgres://") || db.starts_with("postgresql://") || db.starts_with("sqlite:")) {
            bad.push(format!("database.url: expected postgres://… or sqlite:…, got {:?}", scheme(db)));
        }
        if self.database.max_connections == 0 {
            bad.push("database.max_connections: must be at least 1".into());
        }
        let cache = &self.cache.url;
        if !(cache == "memory://" || cache.starts_with("redis://") || cache.starts_with("rediss://")) {
            bad.push(format!("cache.url: expected memory:// or redis://…, got {:?}", scheme(cache)));
        }
        let bus = &self.bus.url;
        if !(bus == "memory://" || bus.starts_with("amqp://") || bus.starts_with("amqps://")) {
            bad.push(format!("bus.url: expected memory:// or amqp://…, got {:?}", scheme(bus)));
        }
        if self.bus.prefetch == 0 {
            bad.push("bus.prefetch: must be at least 1".into());
        }
        if self.auth.access_ttl_secs == 0 || self.auth.access_ttl_secs > 3600 {
            bad.push("auth.access_ttl_secs: must be between 1 and 3600 (access tokens are short-lived)".into());
        }
        if self.auth.refresh_ttl_secs < self.auth.access_ttl_secs {
            bad.push("auth.refresh_ttl_secs: must not be shorter than auth.access_ttl_secs".into());
        }
        if let Some(token) = self.internal_token()
            && token.len() < 16
        {
            bad.push("internal.token: must be at least 16 characters (it guards the internal listener)".into());
        }
        if self.auth.refresh_ttl_secs > 365 * 24 * 3600 {
            bad.push("auth.refresh_ttl_secs: at most a year".into());
        }
        if self.auth.login_per_username == 0 || self.auth.login_per_address == 0 {
            bad.push("auth.login_per_username and auth.login_per_address: at least 1".into());
        }
        if !(100..=300_000).contains(&self.gateway.upstream_timeout_ms) {
            bad.push("gateway.upstream_timeout_ms: between 100 and 300000".into());
        }
        if self.auth.login_window_secs == 0 {
            bad.push("auth.login_window_secs: must be at least 1".into());
        }
        if self.auth.issuer.is_empty() {
            bad.push("auth.issuer: must not be empty".into());
        }
        if self.auth.audience.is_empty() {
            bad.push("auth.audience: must not be empty".into());
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_uppercase()) {
            bad.push(format!("currency: expected a three-letter ISO 4217 code, got {:?}", self.currency));
        }
        if !matches!(self.telemetry.log_format.as_str(), "text" | "json") {
            bad.push(format!("telemetry.log_format: expected text or json, got {:?}", self.telemetry.log_format));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.log_filter) {
            bad.push(format!("telemetry.log_filter: {e}"));
        }
        if self.gateway.body_limit_bytes < 1024 {
            bad.push("gateway.body_limit_bytes: must be at least 1024".into());
        }
        for (key, url) in self.upstream.all() {
            if url.parse::<http::Uri>().map(|u| u.scheme().is_none()).unwrap_or(true) {
                bad.push(format!("{key}: expected an http(s):// URL, got {url:?}"));
            }
        }
        if let Some(url) = &self.provisioning.url
            && url.parse::<http::Uri>().map(|u| u.scheme().is_none()).unwrap_or(true)
        {
            bad.push(format!("provisioning.url: expected an http(s):// URL, got {url:?}"));
        }
        let p = &self.provisioning;
        if p.max_attempts == 0 || p.max_attempts > 50 {
            bad.push("provisioning.max_attempts: must be between 1 and 50".into());
        }
        if p.timeout_ms == 0 || p.timeout_ms > 600_000 || p.retry_max_ms > 86_400_000 {
            bad.push("provisioning: timeout_ms between 1 and 600000, retry_max_ms at most a day".into());
        }
        if p.timeout_ms == 0 || p.retry_base_ms == 0 || p.retry_max_ms < p.retry_base_ms {
            bad.push(
                "provisioning: timeout_ms and retry_base_ms must be positive, retry_max_ms ≥ retry_base_ms".into(),
            );
        }
        if p.simulator_failure_percent > 100 {
            bad.push("provisioning.simulator_failure_percent: must be 0 to 100".into());
        }
        let pa = &self.partner;
        if pa.requests_per_second == 0 || pa.callback_max_attempts == 0 || pa.callback_timeout_ms == 0 {
            bad.push(
                "partner: requests_per_second, callback_max_attempts and callback_timeout_ms must be positive".into(),
            );
        }
        if pa.callback_timeout_ms > 60_000 || pa.callback_retry_max_ms > 86_400_000 || pa.callback_max_attempts > 100 {
            bad.push("partner: callback_timeout_ms at most 60000, callback_retry_max_ms at most a day, callback_max_attempts at most 100".into());
        }
        if pa.callback_retry_base_ms == 0 || pa.callback_retry_max_ms < pa.callback_retry_base_ms {
            bad.push("partner: callback_retry_base_ms must be positive and at most callback_retry_max_ms".into());
        }
        let n = &self.notifier;
        if n.windows_hours.is_empty() || n.windows_hours.iter().any(|w| !(1..=720).contains(w)) {
            bad.push("notifier.windows_hours: one or more windows of 1 to 720 hours".into());
        }
        if n.run_at().is_none() {
            bad.push(format!("notifier.run_at_utc: expected HH:MM, got {:?}", n.run_at_utc));
        }
        if n.send_timeout_ms > 60_000
            || n.retry_max_ms > 86_400_000
            || n.check_interval_secs > 3600
            || n.max_attempts > 100
        {
            bad.push("notifier: send_timeout_ms at most 60000, retry_max_ms at most a day, check_interval_secs at most 3600, max_attempts at most 100".into());
        }
        if let Some(url) = &n.sms_url
            && url.parse::<http::Uri>().map(|u| u.scheme().is_none()).unwrap_or(true)
        {
            bad.push(format!("notifier.sms_url: expected an http(s):// URL, got {url:?}"));
        }
        if n.max_attempts == 0 || n.send_timeout_ms == 0 || n.check_interval_secs == 0 {
            bad.push("notifier: max_attempts, send_timeout_ms and check_interval_secs must be positive".into());
        }
        if n.retry_base_ms == 0 || n.retry_max_ms < n.retry_base_ms {
            bad.push("notifier: retry_base_ms must be positive and at most retry_max_ms".into());
        }
        if let Some(url) = &n.smtp_url
            && !(url.starts_with("smtp://") || url.starts_with("smtps://"))
        {
            bad.push("notifier.smtp_url: expected smtp://… or smtps://…".into());
        }
        let l = &self.ledger;
        if l.idempotency_retention_hours < 24 {
            bad.push("ledger.idempotency_retention_hours: must be at least 24".into());
        }
        if l.pending_deadline_secs == 0
            || l.attempt_lease_secs == 0
            || l.reconcile_interval_ms == 0
            || l.relay_interval_ms == 0
        {
            bad.push("ledger: deadlines, leases and intervals must be positive".into());
        }
        if l.pending_deadline_secs > 86_400 || l.attempt_lease_secs > 3_600 || l.idempotency_retention_hours > 2_160 {
            bad.push("ledger: pending_deadline_secs at most a day, attempt_lease_secs at most an hour, idempotency_retention_hours at most 90 days".into());
        }
        if l.reconcile_interval_ms > 3_600_000 || l.relay_interval_ms > 60_000 || l.status_cache_ttl_secs > 30 * 86_400
        {
            bad.push("ledger: reconcile_interval_ms at most an hour, relay_interval_ms at most a minute, status_cache_ttl_secs at most 30 days".into());
        }
        if l.attempt_lease_secs.saturating_mul(1000) <= p.timeout_ms {
            bad.push("ledger.attempt_lease_secs: must outlast one provisioning call (provisioning.timeout_ms)".into());
        }
        if bad.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(bad)) }
    }

    /// The effective settings as JSON, secrets and URL passwords redacted.
    pub fn dump(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn internal_token(&self) -> Option<&str> {
        self.internal.token.as_ref().map(|t| t.expose_secret())
    }
}

fn scheme(url: &str) -> &str {
    url.split_once(':').map(|(s, _)| s).unwrap_or(url)
}

fn redact<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

/// Hides the password part of `scheme://user:password@host/...`.
fn redact_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&redacted_url(url))
}

fn redact_optional_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redacted_url(url)),
        None => s.serialize_none(),
    }
}

pub fn redacted_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:[redacted]@{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().validate().expect("defaults validate");
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let mut s = Settings::default();
        s.database.url = "mysql://x".into();
        s.currency = "euro".into();
        s.telemetry.log_format = "xml".into();
        s.internal.token = Some(SecretString::from(""));
        let Err(ConfigError::Invalid(errors)) = s.validate() else {
            panic!("expected invalid");
        };
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 4, "{joined}");
        assert!(joined.contains("internal.token"));
        assert!(joined.contains("database.url"));
        assert!(joined.contains("currency"));
        assert!(joined.contains("telemetry.log_format"));
    }

    #[test]
    fn passwords_in_urls_are_redacted() {
        assert_eq!(
            redacted_url("amqp://guest:secret@localhost:5672/%2f"),
            "amqp://guest:[redacted]@localhost:5672/%2f"
        );
        assert_eq!(redacted_url("memory://"), "memory://");
    }

    #[test]
    fn dump_hides_secrets() {
        let mut s = Settings::default();
        s.internal.token = Some(SecretString::from("hunter2"));
        s.database.url = "postgres://app:pw@db/offers".into();
        let dump = s.dump();
        assert!(!dump.contains("hunter2"));
        assert!(!dump.contains(":pw@"));
    }
}
