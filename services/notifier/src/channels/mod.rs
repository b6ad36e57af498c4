//! Where reminders go. Each channel is one file: it says which address of
//! a user it uses and how it sends there. The notifier holds a list of the
//! channels its settings configure.

mod email;
mod sink;
mod sms;

use async_trait::async_trait;
use offers_proto::auth::v1::User;

use crate::settings::NotifierSettings;

/// A reminder, rendered.
pub struct Text {
    pub subject: String,
    pub body: String,
    /// For channels that carry little text (SMS).
    pub short: String,
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Worth retrying (timeouts, 5xx, connection failures).
    pub transient: bool,
    pub message: String,
}

impl SendError {
    fn transient(message: String) -> Self {
        SendError { transient: true, message }
    }

    fn permanent(message: String) -> Self {
        SendError { transient: false, message }
    }
}

#[async_trait]
pub trait Channel: Send + Sync {
    /// Recorded with each reminder, so a retry skips what was sent.
    fn name(&self) -> &'static str;
    /// Where this channel reaches the user, if it can.
    fn address(&self, user: &User) -> Option<String>;
    async fn send(&self, to: &str, text: &Text) -> Result<(), SendError>;
}

pub type Channels = Vec<Box<dyn Channel>>;

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("the notifier needs a channel: set notifier.smtp_url or notifier.sms_url")]
    NoChannel,
    #[error("notifier.smtp_url: {0}")]
    Smtp(String),
    #[error("notifier.smtp_from: {0}")]
    From(String),
    #[error("SMS client: {0}")]
    Http(#[from] reqwest::Error),
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_string())
}

/// The channels the settings configure: email over SMTP and SMS over HTTP,
/// each replaced by the local sink where only that is configured.
pub fn from_settings(settings: &NotifierSettings) -> Result<Channels, ChannelError> {
    let timeout = settings.send_timeout;
    let mut channels: Channels = Vec::new();
    match (&settings.smtp_url, &settings.sink_file) {
        (Some(url), _) => channels.push(Box::new(email::Email::new(url, &settings.smtp_from, timeout)?)),
        (None, Some(path)) => channels.push(Box::new(sink::Sink::email(path.clone()))),
        (None, None) => {}
    }
    match (&settings.sms_url, &settings.sink_file) {
        (Some(url), _) => {
            let key = settings.sms_api_key.clone();
            channels.push(Box::new(sms::Sms::new(url, key, &settings.sms_sender, timeout)?));
        }
        (None, Some(path)) => channels.push(Box::new(sink::Sink::sms(path.clone()))),
        (None, None) => {}
    }
    if channels.is_empty() {
        return Err(ChannelError::NoChannel);
    }
    Ok(channels)
}
