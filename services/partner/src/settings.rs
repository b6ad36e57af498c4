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
    /// How often the reconciler looks for callbacks whose job was lost.
    pub callback_reconcile_interval_ms: u64,
    /// How long past its due time (and past any lease) a callback's job may
    /// still be on its way before the reconciler publishes it again; at
    /// least `callback_retry_max_ms`, as long as a delay queue may hold a
    /// retry back.
    pub callback_redrive_grace_secs: u64,
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
            callback_reconcile_interval_ms: 30_000,
            callback_redrive_grace_secs: 600,
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
        p.check(
            (100..=3_600_000).contains(&self.callback_reconcile_interval_ms),
            "callback_reconcile_interval_ms",
            "must be between 100 and 3600000",
        );
        p.check(
            self.callback_redrive_grace_secs.saturating_mul(1000) >= self.callback_retry_max_ms
                && self.callback_redrive_grace_secs <= 86_400,
            "callback_redrive_grace_secs",
            "must cover callback_retry_max_ms and be at most a day",
        );
    }
}
