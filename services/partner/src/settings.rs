//! Partner access and completion callbacks.

use std::time::Duration;

use offers_kit::config::{Problems, Validate};
use offers_kit::retry::RetryPolicy;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct PartnerSettings {
    /// Requests a partner may make per second (all its keys together).
    pub requests_per_second: u64,
    /// How long one callback delivery may take.
    #[serde(with = "humantime_serde")]
    pub callback_timeout: Duration,
    pub callback_retry: RetryPolicy,
    /// How often the reconciler looks for callbacks whose job was lost.
    #[serde(with = "humantime_serde")]
    pub callback_reconcile_interval: Duration,
    /// How long past its due time (and past any lease) a callback's job may
    /// still be on its way before the reconciler publishes it again; at
    /// least `callback_retry.max`, as long as a delay queue may hold a
    /// retry back.
    #[serde(with = "humantime_serde")]
    pub callback_redrive_grace: Duration,
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
            callback_timeout: Duration::from_secs(5),
            callback_retry: RetryPolicy { base: Duration::from_secs(1), max: Duration::from_mins(5), attempts: 10 },
            callback_reconcile_interval: Duration::from_secs(30),
            callback_redrive_grace: Duration::from_mins(10),
            allow_preset_keys: false,
            allow_private_callbacks: false,
        }
    }
}

impl Validate for PartnerSettings {
    fn validate(&self, p: &mut Problems) {
        p.check(self.requests_per_second > 0, "requests_per_second", "must be positive");
        p.within("callback_timeout", self.callback_timeout, Duration::from_millis(1)..=Duration::from_mins(1));
        self.callback_retry.check(p, "callback_retry", 100);
        let reconcile = Duration::from_millis(100)..=Duration::from_hours(1);
        p.within("callback_reconcile_interval", self.callback_reconcile_interval, reconcile);
        // It must cover the longest wait between two attempts.
        let grace = self.callback_retry.max..=Duration::from_hours(24);
        p.within("callback_redrive_grace", self.callback_redrive_grace, grace);
    }
}
