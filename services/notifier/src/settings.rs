//! Expiry reminders: when to look, and how to reach people.

use std::path::PathBuf;

use offers_kit::config::{Problems, Validate, is_url, redact, redact_optional_url};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// Remind this many hours before expiry; each subscription is reminded
    /// once per window, by the smallest window it falls in.
    pub windows_hours: Vec<u32>,
    /// When the daily run happens, `HH:MM` (or `HH:MM:SS`) UTC.
    pub run_at_utc: String,
    /// How often the in-process scheduler checks whether today's run is due.
    pub check_interval_secs: u64,
    /// `smtp://host:port` (or `smtps://user:pass@host`); email is sent only when set.
    #[serde(serialize_with = "redact_optional_url")]
    pub smtp_url: Option<String>,
    pub smtp_from: String,
    /// The SMS provider's HTTP endpoint; SMS is sent only when set.
    #[serde(serialize_with = "redact_optional_url")]
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
    /// How often the scheduler's outbox relay looks for reminders to publish
    /// (a pass also wakes it at once).
    pub relay_interval_ms: u64,
    /// How often the reconciler looks for reminders whose job was lost.
    pub reconcile_interval_ms: u64,
    /// How long past its due time (and past any lease) a reminder's job may
    /// still be on its way before the reconciler publishes it again; at
    /// least `retry_max_ms`, as long as a delay queue may hold a retry back.
    pub redrive_grace_secs: u64,
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
            relay_interval_ms: 1_000,
            reconcile_interval_ms: 30_000,
            redrive_grace_secs: 900,
        }
    }
}

impl NotifierSettings {
    /// The daily run time, if well formed.
    pub fn run_at(&self) -> Option<chrono::NaiveTime> {
        let at = &self.run_at_utc;
        chrono::NaiveTime::parse_from_str(at, "%H:%M:%S")
            .or_else(|_| chrono::NaiveTime::parse_from_str(at, "%H:%M"))
            .ok()
    }
}

impl Validate for NotifierSettings {
    fn validate(&self, p: &mut Problems) {
        let windows_ok = !self.windows_hours.is_empty() && self.windows_hours.iter().all(|w| (1..=720).contains(w));
        p.check(windows_ok, "windows_hours", "one or more windows of 1 to 720 hours");
        p.check(
            self.run_at().is_some(),
            "run_at_utc",
            format!("expected HH:MM or HH:MM:SS, got {:?}", self.run_at_utc),
        );
        p.check((1..=60_000).contains(&self.send_timeout_ms), "send_timeout_ms", "must be between 1 and 60000");
        p.check((1..=60_000).contains(&self.relay_interval_ms), "relay_interval_ms", "between 1 and 60000 (a minute)");
        p.check((1..=3600).contains(&self.check_interval_secs), "check_interval_secs", "must be between 1 and 3600");
        p.check((1..=100).contains(&self.max_attempts), "max_attempts", "must be between 1 and 100");
        p.check(self.retry_base_ms > 0, "retry_base_ms", "must be positive");
        p.check(
            (self.retry_base_ms..=86_400_000).contains(&self.retry_max_ms),
            "retry_max_ms",
            "must be at least retry_base_ms and at most a day",
        );
        p.check(
            (100..=3_600_000).contains(&self.reconcile_interval_ms),
            "reconcile_interval_ms",
            "must be between 100 and 3600000",
        );
        p.check(
            self.redrive_grace_secs.saturating_mul(1000) >= self.retry_max_ms && self.redrive_grace_secs <= 86_400,
            "redrive_grace_secs",
            "must cover retry_max_ms and be at most a day",
        );
        if let Some(url) = &self.sms_url {
            p.check(is_url(url), "sms_url", format!("expected an http(s):// URL, got {url:?}"));
        }
        if let Some(url) = &self.smtp_url {
            p.check(
                url.starts_with("smtp://") || url.starts_with("smtps://"),
                "smtp_url",
                "expected smtp://… or smtps://…",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_run_time_takes_minutes_or_seconds() {
        let at = |text: &str| NotifierSettings { run_at_utc: text.into(), ..Default::default() }.run_at();
        assert_eq!(at("08:00"), chrono::NaiveTime::from_hms_opt(8, 0, 0));
        assert_eq!(at("23:59:30"), chrono::NaiveTime::from_hms_opt(23, 59, 30));
        for bad in ["24:00", "8", "08:60", "08:00:61", "noon"] {
            assert_eq!(at(bad), None, "{bad}");
        }
    }
}
