//! Expiry reminders: when to look, and how to reach people.

use std::path::PathBuf;
use std::time::Duration;

use offers_kit::config::{Problems, Validate, is_url, redact, redact_optional_url};
use offers_kit::retry::RetryPolicy;
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
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
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
    /// How long sending one message on one channel may take.
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    pub retry: RetryPolicy,
    /// How often the scheduler's outbox relay looks for reminders to publish
    /// (a pass also wakes it at once).
    #[serde(with = "humantime_serde")]
    pub relay_interval: Duration,
    /// How often the reconciler looks for reminders whose job was lost.
    #[serde(with = "humantime_serde")]
    pub reconcile_interval: Duration,
    /// How long past its due time (and past any lease) a reminder's job may
    /// still be on its way before the reconciler publishes it again; at
    /// least `retry.max`, as long as a delay queue may hold a retry back.
    #[serde(with = "humantime_serde")]
    pub redrive_grace: Duration,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            windows_hours: vec![72],
            run_at_utc: "08:00".into(),
            check_interval: Duration::from_mins(1),
            smtp_url: None,
            smtp_from: "Offers <no-reply@offers.invalid>".into(),
            sms_url: None,
            sms_api_key: None,
            sms_sender: "Offers".into(),
            sink_file: None,
            send_timeout: Duration::from_secs(10),
            retry: RetryPolicy { base: Duration::from_secs(2), max: Duration::from_mins(10), attempts: 5 },
            relay_interval: Duration::from_secs(1),
            reconcile_interval: Duration::from_secs(30),
            redrive_grace: Duration::from_mins(15),
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
        const MS: Duration = Duration::from_millis(1);
        p.within("send_timeout", self.send_timeout, MS..=Duration::from_mins(1));
        p.within("relay_interval", self.relay_interval, MS..=Duration::from_mins(1));
        p.within("check_interval", self.check_interval, Duration::from_secs(1)..=Duration::from_hours(1));
        self.retry.check(p, "retry", 100);
        p.within("reconcile_interval", self.reconcile_interval, 100 * MS..=Duration::from_hours(1));
        // It must cover the longest wait between two attempts.
        p.within("redrive_grace", self.redrive_grace, self.retry.max..=Duration::from_hours(24));
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
