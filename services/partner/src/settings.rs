//! Partner access and completion callbacks.

use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

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

impl Validate for PartnerSettings {
    fn validate(&self, p: &mut Problems) {
        p.check(self.requests_per_second > 0, "requests_per_second", "must be positive");
        p.check((1..=60_000).contains(&self.callback_timeout_ms), "callback_timeout_ms", "must be between 1 and 60000");
        p.check((1..=100).contains(&self.callback_max_attempts), "callback_max_attempts", "must be between 1 and 100");
        p.check(self.callback_retry_base_ms > 0, "callback_retry_base_ms", "must be positive");
        p.check(
            (self.callback_retry_base_ms..=86_400_000).contains(&self.callback_retry_max_ms),
            "callback_retry_max_ms",
            "must be at least callback_retry_base_ms and at most a day",
        );
    }
}
