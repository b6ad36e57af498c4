//! The external provisioning system and how hard to try it.

use std::time::Duration;

use offers_kit::config::{Problems, Validate, is_url, redact, redact_optional_url};
use offers_kit::retry::RetryPolicy;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvisioningSettings {
    /// Base URL of the provisioning system; required by the worker.
    #[serde(serialize_with = "redact_optional_url")]
    pub url: Option<String>,
    #[serde(serialize_with = "redact")]
    pub api_key: Option<SecretString>,
    /// How long one call to the provisioning system may take.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// How long after our last request was sent a `not_found` from the
    /// provider becomes final: one that comes sooner is asked again then,
    /// so a request still queued at a provider that broke the contract
    /// (provisioned it after fencing the key) is caught before any refund.
    #[serde(with = "humantime_serde")]
    pub settle_window: Duration,
    /// Simulator only: added latency and percentage of random transient failures.
    #[serde(with = "humantime_serde")]
    pub simulator_latency: Duration,
    pub simulator_failure_percent: u8,
    /// Simulator only: how long `SIM-HELD` keeps each request queued
    /// before it reaches the books.
    #[serde(with = "humantime_serde")]
    pub simulator_hold: Duration,
}

impl Default for ProvisioningSettings {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            timeout: Duration::from_secs(5),
            retry: RetryPolicy { base: Duration::from_secs(1), max: Duration::from_mins(1), attempts: 5 },
            settle_window: Duration::from_mins(5),
            simulator_latency: Duration::ZERO,
            simulator_failure_percent: 0,
            simulator_hold: Duration::from_mins(2),
        }
    }
}

impl Validate for ProvisioningSettings {
    fn validate(&self, p: &mut Problems) {
        if let Some(url) = &self.url {
            p.check(is_url(url), "url", format!("expected an http(s):// URL, got {url:?}"));
        }
        self.retry.check(p, "retry", 50);
        p.within("timeout", self.timeout, Duration::from_millis(1)..=Duration::from_mins(10));
        p.within("settle_window", self.settle_window, Duration::ZERO..=Duration::from_hours(24));
        p.check(self.simulator_failure_percent <= 100, "simulator_failure_percent", "must be 0 to 100");
    }
}

/// The renewal pass (run by the scheduler role).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RenewalSettings {
    /// How long before its end a subscription asking for it is renewed.
    #[serde(with = "humantime_serde")]
    pub lead: Duration,
    /// How often the pass runs (it also retries what charged nothing, until
    /// the subscription ends).
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// How many days before a renewal that charges a new price (not the
    /// one last paid) its subscriber must have been told of it; told
    /// later, that renewal is skipped with a notice.
    pub price_notice_days: u32,
}

impl RenewalSettings {
    pub fn price_notice(&self) -> Duration {
        Duration::from_hours(24 * u64::from(self.price_notice_days))
    }
}

impl Default for RenewalSettings {
    fn default() -> Self {
        Self { lead: Duration::from_hours(24), interval: Duration::from_mins(10), price_notice_days: 7 }
    }
}

impl Validate for RenewalSettings {
    fn validate(&self, p: &mut Problems) {
        p.within("lead", self.lead, Duration::from_mins(1)..=Duration::from_hours(30 * 24));
        p.within("interval", self.interval, Duration::from_secs(1)..=Duration::from_hours(24));
        p.check(self.interval < self.lead, "interval", "must be below lead (a pass must come before the end)");
        p.check(self.price_notice_days <= 90, "price_notice_days", "must be 0 to 90");
    }
}
