//! The external provisioning system and how hard to try it.

use std::time::Duration;

use offers_kit::config::{Problems, Validate, is_url, redact, redact_optional_url};
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
    pub timeout_ms: u64,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// How long after our last request was sent a `not_found` from the
    /// provider becomes final: one that comes sooner is asked again then,
    /// so a request still queued at a provider that broke the contract
    /// (provisioned it after fencing the key) is caught before any refund.
    pub settle_window_secs: u64,
    /// Simulator only: added latency and percentage of random transient failures.
    pub simulator_latency_ms: u64,
    pub simulator_failure_percent: u8,
    /// Simulator only: how long `SIM-HELD` keeps each request queued
    /// before it reaches the books.
    pub simulator_hold_ms: u64,
}

impl ProvisioningSettings {
    pub fn settle_window(&self) -> Duration {
        Duration::from_secs(self.settle_window_secs)
    }
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
            settle_window_secs: 300,
            simulator_latency_ms: 0,
            simulator_failure_percent: 0,
            simulator_hold_ms: 120_000,
        }
    }
}

impl Validate for ProvisioningSettings {
    fn validate(&self, p: &mut Problems) {
        if let Some(url) = &self.url {
            p.check(is_url(url), "url", format!("expected an http(s):// URL, got {url:?}"));
        }
        p.check((1..=50).contains(&self.max_attempts), "max_attempts", "must be between 1 and 50");
        p.check((1..=600_000).contains(&self.timeout_ms), "timeout_ms", "must be between 1 and 600000");
        p.check(self.retry_base_ms > 0, "retry_base_ms", "must be positive");
        p.check(
            (self.retry_base_ms..=86_400_000).contains(&self.retry_max_ms),
            "retry_max_ms",
            "must be at least retry_base_ms and at most a day",
        );
        p.check(self.settle_window_secs <= 86_400, "settle_window_secs", "must be at most a day");
        p.check(self.simulator_failure_percent <= 100, "simulator_failure_percent", "must be 0 to 100");
    }
}
