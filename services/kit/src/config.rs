//! Configuration plumbing shared by every crate: layered loading (defaults →
//! optional TOML file → `OFFERS_*` environment, `__` between levels), a
//! collector that gathers every bad key before reporting, the settings of
//! the shared backends, and redaction of secrets for display.
//!
//! Each service crate owns its settings struct and its validation; the
//! binary composes them into one document.
//!
//! Durations are `Duration`s, written as humantime strings (`"250ms"`,
//! `"5s"`, `"30d"`). Their former integer keys (`x_ms = 250`, `x_secs = 5`)
//! are still read for one release: [`load`] rewrites each, in the layer
//! that spelt it, to its new key (`x = "250ms"`) and says so in
//! [`Loaded::deprecated`]; keys that moved elsewhere are listed by the caller.

use std::cell::Cell;
use std::fmt::Display;
use std::ops::RangeInclusive;
use std::path::Path;
use std::time::Duration;

use figment::providers::{Env, Format, Json, Serialized, Toml};
use figment::value::{Dict, Value};
use figment::{Figment, Provider};
use secrecy::ExposeSecret;
use secrecy::SecretString;
use serde::{Deserialize, Serialize, Serializer};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration could not be read: {0}")]
    Load(String),
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<String>),
}

/// Settings that can check themselves, naming each bad key.
pub trait Validate {
    fn validate(&self, problems: &mut Problems);
}

/// Every problem found in a configuration, each prefixed with its key.
#[derive(Debug, Default)]
pub struct Problems(Vec<String>);

impl Problems {
    /// Records `message` against `key` unless `ok`.
    pub fn check(&mut self, ok: bool, key: &str, message: impl Display) {
        if !ok {
            self.0.push(format!("{key}: {message}"));
        }
    }

    /// Validates a section, prefixing its keys with `name.`.
    pub fn section(&mut self, name: &str, settings: &impl Validate) {
        let mut inner = Problems::default();
        settings.validate(&mut inner);
        self.0.extend(inner.0.into_iter().map(|p| format!("{name}.{p}")));
    }

    /// Records against `key` a duration outside `range`.
    pub fn within(&mut self, key: &str, value: Duration, range: RangeInclusive<Duration>) {
        let (low, high) = (humantime::format_duration(*range.start()), humantime::format_duration(*range.end()));
        self.check(
            range.contains(&value),
            key,
            format!("between {low} and {high}, got {}", humantime::format_duration(value)),
        );
    }

    pub fn into_result(self) -> Result<(), ConfigError> {
        if self.0.is_empty() { Ok(()) } else { Err(ConfigError::Invalid(self.0)) }
    }
}

/// Whether `url` parses as an absolute URI with a scheme.
pub fn is_url(url: &str) -> bool {
    url.parse::<http::Uri>().is_ok_and(|u| u.scheme().is_some())
}

/// Settings as loaded, and what in their sources is spelt the old way.
pub struct Loaded<T> {
    pub settings: T,
    /// One line per deprecated key found, naming its replacement.
    pub deprecated: Vec<String>,
}

/// The `T` described by defaults, then `file` if given (TOML, or JSON when
/// its name ends in `.json`), then the `OFFERS_*` environment. `moved` maps
/// former keys (dotted, a unit suffix included) to where they live now
/// (`("provisioning.retry_base_ms", "provisioning.retry.base")`); any other
/// `x_ms`/`x_secs` integer becomes `x`.
pub fn load<T: Serialize + for<'de> Deserialize<'de> + Default>(
    file: Option<&Path>,
    moved: &[(&str, &str)],
) -> Result<Loaded<T>, ConfigError> {
    let mut deprecated = Vec::new();
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    match file {
        Some(file) if file.extension().is_some_and(|e| e == "json") => {
            figment = figment.merge(modernised(Json::file_exact(file), moved, &mut deprecated)?);
        }
        Some(file) => figment = figment.merge(modernised(Toml::file_exact(file), moved, &mut deprecated)?),
        None => {}
    }
    // OFFERS_CONFIG (the file itself) and OFFERS_NEW_PASSWORD (an admin
    // command's input) are command-line settings, not configuration keys.
    let env = Env::prefixed("OFFERS_")
        .filter(|key| !["config", "new_password"].iter().any(|k| key.as_str().eq_ignore_ascii_case(k)))
        .split("__");
    figment = figment.merge(modernised(env, moved, &mut deprecated)?);
    let settings = figment.extract().map_err(|e| ConfigError::Load(e.to_string()))?;
    Ok(Loaded { settings, deprecated })
}

/// One layer of the configuration with its deprecated keys rewritten; the
/// layer itself (and so where its values came from, for errors) when it
/// has none.
fn modernised(
    layer: impl Provider,
    moved: &[(&str, &str)],
    deprecated: &mut Vec<String>,
) -> Result<Figment, ConfigError> {
    let layer = Figment::from(layer);
    let mut values: Dict = layer.extract().map_err(|e| ConfigError::Load(e.to_string()))?;
    let mut found = Vec::new();
    take_legacy(&mut values, "", moved, &mut found);
    if found.is_empty() {
        return Ok(layer);
    }
    for (old, new, value) in found {
        let shown = serde_json::to_string(&value).unwrap_or_default();
        deprecated.push(format!("{old} is deprecated and will not be read by the next release: write {new} = {shown}"));
        put(&mut values, &new, value);
    }
    Ok(Figment::from(Serialized::defaults(values)))
}

/// Removes from `dict` every deprecated key under `prefix`, collecting its
/// full name, its new one and its value in the new form.
fn take_legacy(dict: &mut Dict, prefix: &str, moved: &[(&str, &str)], found: &mut Vec<(String, String, Value)>) {
    let keys: Vec<String> = dict.keys().cloned().collect();
    for key in keys {
        let path = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
        if let Some(Value::Dict(_, inner)) = dict.get_mut(&key) {
            take_legacy(inner, &path, moved, found);
            continue;
        }
        let unit = [("_ms", "ms"), ("_secs", "s")].into_iter().find(|(suffix, _)| key.ends_with(suffix));
        let target = moved.iter().find(|(old, _)| *old == path).map(|(_, new)| new.to_string());
        // TOML integers are signed, the environment's unsigned.
        let amount = dict.get(&key).and_then(|v| v.to_u128().or_else(|| v.to_i128()?.try_into().ok()));
        let (new, value) = match (target, unit, amount) {
            (Some(new), Some((_, unit)), Some(n)) => (new, Value::from(format!("{n}{unit}"))),
            (Some(new), None, _) => (new, dict[&key].clone()),
            (None, Some((suffix, unit)), Some(n)) => {
                (path[..path.len() - suffix.len()].to_string(), Value::from(format!("{n}{unit}")))
            }
            _ => continue,
        };
        dict.remove(&key);
        found.push((path, new, value));
    }
}

/// Sets the dotted `path` in `dict` unless the layer spelt it already (the
/// new name wins over the old one).
fn put(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.entry(path.to_string()).or_insert(value);
        }
        Some((head, rest)) => {
            if let Value::Dict(_, inner) = dict.entry(head.to_string()).or_insert_with(|| Value::from(Dict::new())) {
                put(inner, rest, value);
            }
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
    /// How long a request waits for a connection before it is answered
    /// `service_unavailable`: the bound on a database outage's latency.
    #[serde(with = "humantime_serde")]
    pub acquire_timeout: Duration,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://.offers/offers.db?mode=rwc".into(),
            max_connections: 10,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

impl Validate for DatabaseSettings {
    fn validate(&self, p: &mut Problems) {
        let url = &self.url;
        let known = url.starts_with("postgres://") || url.starts_with("postgresql://") || url.starts_with("sqlite:");
        p.check(known, "url", format!("expected postgres://… or sqlite:…, got {:?}", scheme(url)));
        p.check(self.max_connections > 0, "max_connections", "must be at least 1");
        p.within("acquire_timeout", self.acquire_timeout, Duration::from_millis(100)..=Duration::from_mins(1));
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

impl Validate for CacheSettings {
    fn validate(&self, p: &mut Problems) {
        let url = &self.url;
        let known = url == "memory://" || url.starts_with("redis://") || url.starts_with("rediss://");
        p.check(known, "url", format!("expected memory:// or redis://…, got {:?}", scheme(url)));
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
    /// How often a job may go back to its queue unsettled before it is
    /// parked instead (RabbitMQ's `x-delivery-limit`). RabbitMQ fixes it
    /// when it creates a queue: changing it means recreating the queues.
    pub delivery_limit: u32,
}

impl Default for BusSettings {
    fn default() -> Self {
        Self { url: "memory://".into(), prefix: "offers".into(), prefetch: 16, delivery_limit: 20 }
    }
}

impl Validate for BusSettings {
    fn validate(&self, p: &mut Problems) {
        let url = &self.url;
        let known = url == "memory://" || url.starts_with("amqp://") || url.starts_with("amqps://");
        p.check(known, "url", format!("expected memory:// or amqp://…, got {:?}", scheme(url)));
        p.check(self.prefetch > 0, "prefetch", "must be at least 1");
        p.check(self.delivery_limit > 0, "delivery_limit", "must be at least 1");
    }
}

fn scheme(url: &str) -> &str {
    url.split_once(':').map(|(s, _)| s).unwrap_or(url)
}

thread_local! {
    static REVEAL: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with secrets serialised as they are: for handing a complete
/// configuration to a child process through a private file, never for
/// display.
pub fn unredacted<R>(f: impl FnOnce() -> R) -> R {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEAL.set(false);
        }
    }
    REVEAL.set(true);
    let _reset = Reset;
    f()
}

fn revealed() -> bool {
    REVEAL.get()
}

/// Serialises a secret as `[redacted]` (or null when unset).
pub fn redact<S: Serializer>(secret: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(secret) if revealed() => s.serialize_some(secret.expose_secret()),
        Some(_) => s.serialize_some("[redacted]"),
        None => s.serialize_none(),
    }
}

/// Serialises a URL with its password hidden; a list of URLs separated by
/// commas, each so.
pub fn redact_url<S: Serializer>(url: &str, s: S) -> Result<S::Ok, S::Error> {
    if revealed() {
        return s.serialize_str(url);
    }
    let shown: Vec<String> = url.split(',').map(redacted_url).collect();
    s.serialize_str(&shown.join(","))
}

pub fn redact_optional_url<S: Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) if revealed() => s.serialize_some(url),
        Some(url) => s.serialize_some(&redacted_url(url)),
        None => s.serialize_none(),
    }
}

/// Query parameters whose values are secrets, whatever the URL is for.
const SENSITIVE_PARAMETERS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "client_secret",
    "token",
    "access_token",
    "refresh_token",
    "key",
    "apikey",
    "api_key",
    "api-key",
    "auth",
    "authorization",
    "signature",
    "sig",
    "credential",
    "credentials",
    "sslpassword",
    "sslkey",
];

const REDACTED: &str = "REDACTED";

/// A URL fit for logs and `offers config`: the password of its userinfo
/// (or, without one, the user name, which may itself be a token) and the
/// values of secret-looking query parameters replaced. Something that does
/// not parse as a URL is not shown at all.
pub fn redacted_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return format!("{REDACTED} (not a URL)");
    };
    if url.password().is_some() {
        let _ = url.set_password(Some(REDACTED));
    } else if !url.username().is_empty() {
        let _ = url.set_username(REDACTED);
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let secret = SENSITIVE_PARAMETERS.iter().any(|s| k.eq_ignore_ascii_case(s));
                (k.into_owned(), if secret { REDACTED.to_string() } else { v.into_owned() })
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;

    impl Validate for Two {
        fn validate(&self, p: &mut Problems) {
            p.check(false, "a", "bad");
            p.check(true, "b", "fine");
            p.check(false, "c", "worse");
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let mut p = Problems::default();
        p.section("outer", &Two);
        let Err(ConfigError::Invalid(errors)) = p.into_result() else { panic!("expected invalid") };
        assert_eq!(errors, ["outer.a: bad", "outer.c: worse"]);
    }

    #[test]
    fn secrets_in_urls_are_redacted() {
        let cases = [
            ("amqp://guest:s3cret@localhost:5672/%2f", "amqp://guest:REDACTED@localhost:5672/%2f"),
            ("redis://:s3cret@cache:6379/0", "redis://:REDACTED@cache:6379/0"),
            ("https://s3cret@hooks.example/sms", "https://REDACTED@hooks.example/sms"),
            // The last @ ends the userinfo, not the first.
            ("postgres://app:p@ss@db/offers", "postgres://app:REDACTED@db/offers"),
            (
                "postgres://db/offers?user=app&password=s3cret&sslmode=require",
                "postgres://db/offers?user=app&password=REDACTED&sslmode=require",
            ),
            ("https://sms.example/send?api_key=s3cret&to=x", "https://sms.example/send?api_key=REDACTED&to=x"),
            ("memory://", "memory://"),
            ("sqlite://.offers/offers.db?mode=rwc", "sqlite://.offers/offers.db?mode=rwc"),
        ];
        for (raw, shown) in cases {
            assert_eq!(redacted_url(raw), shown, "{raw}");
        }
        assert!(!redacted_url("not a url with s3cret").contains("s3cret"));
    }

    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct Timings {
        #[serde(with = "humantime_serde")]
        wait: Duration,
        later: Later,
    }

    #[derive(Debug, Default, Deserialize, Serialize)]
    #[serde(default, deny_unknown_fields)]
    struct Later {
        #[serde(with = "humantime_serde")]
        every: Duration,
        attempts: u32,
    }

    fn load_toml(toml: &str) -> Loaded<Timings> {
        let file = std::env::temp_dir().join(format!("offers-config-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&file, toml).expect("write");
        let loaded = load::<Timings>(Some(&file), &[("tries", "later.attempts")]);
        std::fs::remove_file(&file).ok();
        loaded.expect("loads")
    }

    #[test]
    fn former_integer_keys_are_read_with_a_warning() {
        let loaded = load_toml("wait_secs = 5\ntries = 3\n[later]\nevery_ms = 250\n");
        let Timings { wait, later } = &loaded.settings;
        assert_eq!((*wait, later.every, later.attempts), (Duration::from_secs(5), Duration::from_millis(250), 3));
        let warnings = loaded.deprecated.join("\n");
        assert_eq!(loaded.deprecated.len(), 3, "{warnings}");
        assert!(
            warnings.contains(
                r#"later.every_ms is deprecated and will not be read by the next release: write later.every = "250ms""#
            ),
            "{warnings}"
        );
        assert!(warnings.contains("tries is deprecated") && warnings.contains("later.attempts = 3"), "{warnings}");
    }

    #[test]
    fn durations_are_humantime_and_the_new_name_wins() {
        let loaded = load_toml("wait = \"1m 30s\"\nwait_secs = 5\n[later]\nevery = \"2h\"\n");
        assert_eq!(loaded.settings.wait, Duration::from_secs(90));
        assert_eq!(loaded.settings.later.every, Duration::from_secs(7200));
        assert_eq!(loaded.deprecated.len(), 1);
        let shown = serde_json::to_value(&loaded.settings).expect("json");
        assert_eq!(shown["wait"], "1m 30s");
    }

    #[derive(Serialize)]
    struct Secrets {
        #[serde(serialize_with = "redact")]
        token: Option<SecretString>,
        #[serde(serialize_with = "redact_url")]
        urls: String,
    }

    #[test]
    fn secrets_show_only_when_asked_to() {
        let secrets = Secrets {
            token: Some(SecretString::from("s3cret")),
            urls: "http://a:s3cret@x:1,http://b:s3cret@y:2".into(),
        };
        let shown = serde_json::to_string(&secrets).expect("json");
        assert!(!shown.contains("s3cret") && shown.contains("http://b:REDACTED@y:2"), "{shown}");
        let full = unredacted(|| serde_json::to_string(&secrets).expect("json"));
        assert_eq!(full.matches("s3cret").count(), 3, "{full}");
        assert!(!serde_json::to_string(&secrets).expect("json").contains("s3cret"), "revealing must not stick");
    }
}
