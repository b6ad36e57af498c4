//! The whole configuration of a process: each crate's own settings under
//! its section, composed here, plus what only the binary uses (listeners,
//! upstreams, the internal credential). `offers config` prints it.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use offers_account::{GiftingSettings, LedgerSettings};
use offers_activation::{ProvisioningSettings, RenewalSettings};
use offers_auth::AuthSettings;
use offers_catalog::CatalogSettings;
use offers_gateway::GatewaySettings;
use offers_kit::config::{
    self, BusSettings, CacheSettings, ConfigError, DatabaseSettings, Loaded, Problems, Validate, redact, redact_url,
};
use offers_kit::cors::CorsSettings;
use offers_kit::grpc::parse_upstream;
use offers_kit::telemetry::TelemetrySettings;
use offers_notifier::NotifierSettings;
use offers_partner::PartnerSettings;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::console::ConsoleSettings;
use crate::tls::TlsSettings;

/// The range of every gRPC deadline.
const CALL_TIMEOUTS: std::ops::RangeInclusive<Duration> = Duration::from_millis(100)..=Duration::from_mins(5);

/// The keys of the last release that moved, not only lost their unit
/// (those, `x_ms`/`x_secs` → `x`, are found by the suffix), read until the
/// next one with a warning.
const MOVED: &[(&str, &str)] = &[
    ("provisioning.max_attempts", "provisioning.retry.attempts"),
    ("provisioning.retry_base_ms", "provisioning.retry.base"),
    ("provisioning.retry_max_ms", "provisioning.retry.max"),
    ("notifier.max_attempts", "notifier.retry.attempts"),
    ("notifier.retry_base_ms", "notifier.retry.base"),
    ("notifier.retry_max_ms", "notifier.retry.max"),
    ("partner.callback_max_attempts", "partner.callback_retry.attempts"),
    ("partner.callback_retry_base_ms", "partner.callback_retry.base"),
    ("partner.callback_retry_max_ms", "partner.callback_retry.max"),
];

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
    /// TLS for the gRPC listeners and the calls between processes.
    pub tls: TlsSettings,
    pub telemetry: TelemetrySettings,
    pub gateway: GatewaySettings,
    /// The operator console (the `console` role).
    pub console: ConsoleSettings,
    pub catalog: CatalogSettings,
    pub ledger: LedgerSettings,
    pub gifting: GiftingSettings,
    pub provisioning: ProvisioningSettings,
    pub renewal: RenewalSettings,
    pub partner: PartnerSettings,
    pub notifier: NotifierSettings,
    /// Currency of balances and offers (ISO 4217).
    pub currency: String,
    /// How long in-flight work is given after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How long a gRPC call may run before it is answered
    /// `service_unavailable` (a stalled dependency must not hold callers).
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// gRPC connections are closed (gracefully) after this long, so that
    /// clients connect again and spread over replicas added since.
    #[serde(with = "humantime_serde")]
    pub max_connection_age: Duration,
    /// Browsers on other origins allowed to call both gRPC listeners with
    /// gRPC-Web (off by default).
    pub grpc_web_cors: CorsSettings,
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
            tls: TlsSettings::default(),
            telemetry: TelemetrySettings::default(),
            gateway: GatewaySettings::default(),
            console: ConsoleSettings::default(),
            catalog: CatalogSettings::default(),
            ledger: LedgerSettings::default(),
            gifting: GiftingSettings::default(),
            provisioning: ProvisioningSettings::default(),
            renewal: RenewalSettings::default(),
            partner: PartnerSettings::default(),
            notifier: NotifierSettings::default(),
            currency: "EUR".into(),
            shutdown_grace: Duration::from_secs(10),
            call_timeout: Duration::from_secs(8),
            max_connection_age: Duration::from_mins(5),
            grpc_web_cors: CorsSettings::default(),
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

impl Validate for InternalSettings {
    fn validate(&self, p: &mut Problems) {
        if let Some(token) = &self.token {
            let ok = token.expose_secret().len() >= 16;
            p.check(ok, "token", "must be at least 16 characters (it guards the internal listener)");
        }
    }
}

/// A service other roles call, by where it is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    Auth,
    Catalog,
    Account,
    Activation,
    Partner,
}

/// Where the gRPC services are reached; in one process they all point home.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamSettings {
    #[serde(serialize_with = "redact_url")]
    pub auth: String,
    #[serde(serialize_with = "redact_url")]
    pub auth_internal: String,
    #[serde(serialize_with = "redact_url")]
    pub catalog: String,
    #[serde(serialize_with = "redact_url")]
    pub catalog_internal: String,
    #[serde(serialize_with = "redact_url")]
    pub account: String,
    #[serde(serialize_with = "redact_url")]
    pub account_internal: String,
    #[serde(serialize_with = "redact_url")]
    pub activation: String,
    #[serde(serialize_with = "redact_url")]
    pub partner: String,
    #[serde(serialize_with = "redact_url")]
    pub partner_internal: String,
    /// Deadline of one call of this process's internal clients, per service
    /// called (the edge's own calls: `gateway.upstream_timeout`).
    #[serde(with = "humantime_serde")]
    pub auth_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub catalog_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub account_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub partner_timeout: Duration,
    /// Deadline of one call of `offers admin`, whatever the service:
    /// administrative calls may be slow (password hashing).
    #[serde(with = "humantime_serde")]
    pub admin_timeout: Duration,
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
            auth_timeout: Duration::from_secs(10),
            catalog_timeout: Duration::from_secs(10),
            account_timeout: Duration::from_secs(10),
            partner_timeout: Duration::from_secs(10),
            admin_timeout: Duration::from_secs(30),
        }
    }
}

impl UpstreamSettings {
    /// Each internal client's deadline, by the key that sets it.
    pub fn timeouts(&self) -> [(&'static str, Duration); 5] {
        [
            ("admin_timeout", self.admin_timeout),
            ("auth_timeout", self.auth_timeout),
            ("catalog_timeout", self.catalog_timeout),
            ("account_timeout", self.account_timeout),
            ("partner_timeout", self.partner_timeout),
        ]
    }

    /// Points `service` at these listeners (a role this process runs).
    pub fn serve_here(&mut self, service: Upstream, public: &str, internal: &str) {
        let (public_url, internal_url) = match service {
            Upstream::Auth => (&mut self.auth, Some(&mut self.auth_internal)),
            Upstream::Catalog => (&mut self.catalog, Some(&mut self.catalog_internal)),
            Upstream::Account => (&mut self.account, Some(&mut self.account_internal)),
            Upstream::Activation => (&mut self.activation, None),
            Upstream::Partner => (&mut self.partner, Some(&mut self.partner_internal)),
        };
        *public_url = public.to_string();
        if let Some(url) = internal_url {
            *url = internal.to_string();
        }
    }
}

impl Validate for UpstreamSettings {
    fn validate(&self, p: &mut Problems) {
        let all = [
            ("auth", &self.auth),
            ("auth_internal", &self.auth_internal),
            ("catalog", &self.catalog),
            ("catalog_internal", &self.catalog_internal),
            ("account", &self.account),
            ("account_internal", &self.account_internal),
            ("activation", &self.activation),
            ("partner", &self.partner),
            ("partner_internal", &self.partner_internal),
        ];
        for (key, urls) in all {
            if let Err(e) = parse_upstream(urls) {
                p.check(false, key, format!("expected http(s):// URLs separated by commas ({e})"));
            }
        }
        for (key, timeout) in self.timeouts() {
            p.within(key, timeout, CALL_TIMEOUTS);
        }
    }
}

impl Validate for Settings {
    fn validate(&self, p: &mut Problems) {
        p.section("database", &self.database);
        p.section("cache", &self.cache);
        p.section("bus", &self.bus);
        p.section("auth", &self.auth);
        p.section("internal", &self.internal);
        p.section("upstream", &self.upstream);
        p.section("tls", &self.tls);
        p.section("telemetry", &self.telemetry);
        p.section("gateway", &self.gateway);
        p.section("console", &self.console);
        p.section("catalog", &self.catalog);
        p.section("ledger", &self.ledger);
        p.section("gifting", &self.gifting);
        p.section("renewal", &self.renewal);
        p.section("provisioning", &self.provisioning);
        p.section("partner", &self.partner);
        p.section("notifier", &self.notifier);
        p.section("grpc_web_cors", &self.grpc_web_cors);
        let currency = &self.currency;
        let iso = currency.len() == 3 && currency.chars().all(|c| c.is_ascii_uppercase());
        p.check(iso, "currency", format!("expected a three-letter ISO 4217 code, got {currency:?}"));
        let call = self.call_timeout;
        p.within("call_timeout", call, CALL_TIMEOUTS);
        // A server answers before its caller gives up, so callers see why.
        p.check(call < self.gateway.upstream_timeout, "call_timeout", "must be below gateway.upstream_timeout");
        for (key, timeout) in self.upstream.timeouts() {
            p.check(call < timeout, "call_timeout", format!("must be below upstream.{key}"));
        }
        p.check(self.max_connection_age >= Duration::from_secs(10), "max_connection_age", "at least 10s");
        // A claimed attempt must keep the reconciler away while its call runs.
        let outlasts = self.ledger.attempt_lease > self.provisioning.timeout;
        p.check(outlasts, "ledger.attempt_lease", "must outlast one provisioning call (provisioning.timeout)");
    }
}

impl Settings {
    /// Defaults, then `file` if given, then the `OFFERS_*` environment,
    /// checked; and a line for each deprecated key they spell.
    pub fn load(file: Option<&Path>) -> Result<(Self, Vec<String>), ConfigError> {
        let Loaded { settings, deprecated } = config::load::<Settings>(file, MOVED)?;
        settings.check()?;
        Ok((settings, deprecated))
    }

    /// Every problem with these settings, reported together.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = Problems::default();
        self.validate(&mut problems);
        problems.into_result()
    }

    /// The embedded mode's settings in `dir`: SQLite, the in-memory cache
    /// and the in-process bus, the key encryption key and an internal
    /// credential made there on first use (so the signing keys, tokens and
    /// `offers admin` survive restarts),
    /// reminders written to a file, and what only the embedded mode allows
    /// (the demo partner's preset key, callbacks to local servers).
    pub fn embedded(mut self, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.database.url = format!("sqlite://{}?mode=rwc", dir.join("offers.db").display());
        self.cache.url = "memory://".into();
        self.bus.url = "memory://".into();
        let mut this = self.with_secrets_in(dir)?;
        this.notifier.sink_file = Some(dir.join("notifications.log"));
        this.partner.allow_preset_keys = true;
        this.partner.allow_private_callbacks = true;
        // Served over plain HTTP on loopback: a `Secure` cookie would never come back.
        this.console.secure_cookie = false;
        Ok(this)
    }

    /// The key encryption key and the internal credential kept in `dir`,
    /// made there on first use (the embedded mode and a local deployment).
    pub fn with_secrets_in(mut self, dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        self.auth.key_encryption_key = Some(SecretString::from(made_once(dir, "auth-kek", base64_key)?));
        self.internal.token = Some(SecretString::from(made_once(dir, "internal-token", hex_token)?));
        Ok(self)
    }

    pub fn internal_token(&self) -> Option<&str> {
        self.internal.token.as_ref().map(|t| t.expose_secret())
    }

    /// The effective settings as JSON, secrets and URL passwords redacted.
    pub fn dump(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// The embedded mode's internal credential in `dir`, if one was made.
pub fn embedded_token_if_present(dir: &Path) -> Option<String> {
    read_trimmed(&dir.join("internal-token"))
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok().map(|t| t.trim().to_string())
}

/// The secret in `dir/name`, made by `make` on first use (mode 0600).
fn made_once(dir: &Path, name: &str, make: fn() -> String) -> anyhow::Result<String> {
    let path = dir.join(name);
    if let Some(secret) = read_trimmed(&path) {
        return Ok(secret);
    }
    let secret = make();
    write_private(&path, &secret)?;
    Ok(secret)
}

fn hex_token() -> String {
    rand::random::<[u8; 32]>().iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}

/// Writes `contents` to `path` readable by its owner only (it holds secrets).
pub fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Settings::default().check().expect("defaults validate");
    }

    #[test]
    fn every_bad_key_is_reported_at_once() {
        let mut s = Settings::default();
        s.database.url = "mysql://x".into();
        s.currency = "euro".into();
        s.telemetry.log_format = "xml".into();
        s.internal.token = Some(SecretString::from(""));
        let Err(ConfigError::Invalid(errors)) = s.check() else {
            panic!("expected invalid");
        };
        let joined = errors.join("\n");
        assert_eq!(errors.len(), 4, "{joined}");
        for key in ["internal.token", "database.url", "currency", "telemetry.log_format"] {
            assert!(joined.contains(key), "{key} missing from {joined}");
        }
    }

    /// `offers config` shows no secret, in whatever form a URL carries it.
    #[test]
    fn dump_hides_secrets() {
        let mut s = Settings::default();
        s.internal.token = Some(SecretString::from("secret-0-internal"));
        s.auth.private_key_pem = Some(SecretString::from("secret-1-pem"));
        s.auth.key_encryption_key = Some(SecretString::from("secret-1b-kek"));
        s.database.url = "postgres://app:secret-2@db/offers?password=secret-3&sslmode=require".into();
        s.cache.url = "rediss://:secret-4@cache:6380/0".into();
        s.bus.url = "amqps://offers:secret-5@mq:5671/%2f".into();
        s.provisioning.url = Some("https://secret-6@provider.example/api?token=secret-7".into());
        s.provisioning.api_key = Some(SecretString::from("secret-8"));
        s.notifier.smtp_url = Some("smtps://mailer:p@ss-secret-9@mail.example:465".into());
        s.notifier.sms_url = Some("https://sms.example/send?api_key=secret-10".into());
        s.notifier.sms_api_key = Some(SecretString::from("secret-11"));
        s.telemetry.otlp_endpoint = Some("https://collector.example:4317?authorization=secret-12".into());
        s.upstream.account_internal = "https://svc:secret-13@account:50052".into();
        let dump = s.dump();
        assert!(!dump.contains("secret-"), "{dump}");
        assert!(dump.contains("REDACTED") && dump.contains("sslmode=require"), "{dump}");
    }

    #[test]
    fn a_zero_wait_is_refused_naming_its_key() {
        let mut s = Settings::default();
        s.ledger.attempt_lease = Duration::ZERO;
        s.provisioning.retry.base = Duration::ZERO;
        s.upstream.account_timeout = Duration::ZERO;
        let Err(ConfigError::Invalid(errors)) = s.check() else { panic!("expected invalid") };
        let joined = errors.join("\n");
        for key in ["ledger.attempt_lease:", "provisioning.retry.base:", "upstream.account_timeout:"] {
            assert!(joined.contains(key), "{key} missing from {joined}");
        }
    }

    #[test]
    fn the_last_releases_keys_load_with_a_warning() {
        let file = std::env::temp_dir().join(format!("offers-legacy-{}.toml", uuid::Uuid::new_v4()));
        let toml = "[provisioning]\nretry_base_ms = 250\nmax_attempts = 3\n[ledger]\nattempt_lease_secs = 90\n";
        std::fs::write(&file, toml).expect("write");
        let loaded = config::load::<Settings>(Some(&file), MOVED);
        std::fs::remove_file(&file).ok();
        let Loaded { settings, deprecated } = loaded.expect("loads");
        assert_eq!(settings.provisioning.retry.base, Duration::from_millis(250));
        assert_eq!(settings.provisioning.retry.attempts, 3);
        assert_eq!(settings.ledger.attempt_lease, Duration::from_secs(90));
        assert_eq!(deprecated.len(), 3, "{deprecated:?}");
        settings.check().expect("valid");
    }

    #[test]
    fn the_dump_shows_durations_as_written() {
        let dump: serde_json::Value = serde_json::from_str(&Settings::default().dump()).expect("json");
        assert_eq!((&dump["call_timeout"], &dump["auth"]["refresh_ttl"]), (&"8s".into(), &"30days".into()));
        assert_eq!(dump["notifier"]["retry"], serde_json::json!({"base": "2s", "max": "10m", "attempts": 5}));
    }

    #[test]
    fn embedded_settings_keep_their_keys_across_restarts() {
        let dir = std::env::temp_dir().join(format!("offers-settings-{}", uuid::Uuid::new_v4()));
        let first = Settings::default().embedded(&dir).expect("embedded");
        let again = Settings::default().embedded(&dir).expect("embedded");
        assert_eq!(first.internal_token(), again.internal_token());
        assert!(first.database.url.starts_with("sqlite://"));
        again.check().expect("valid");
        std::fs::remove_dir_all(dir).ok();
    }
}
