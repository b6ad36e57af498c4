//! Where reminders go: email over SMTP, SMS through an HTTP provider, or
//! (embedded mode) a local sink — the log and a file in the data directory.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use offers_kit::config::NotifierSettings;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use tokio::io::AsyncWriteExt;

/// A reminder, rendered.
pub struct Text {
    pub subject: String,
    pub body: String,
    pub short: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn name(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    /// Worth retrying (timeouts, 5xx, connection failures).
    pub transient: bool,
    pub message: String,
}

fn transient(message: String) -> SendError {
    SendError { transient: true, message }
}

fn permanent(message: String) -> SendError {
    SendError { transient: false, message }
}

pub struct Channels {
    smtp: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    sms: Option<(reqwest::Client, String, Option<SecretString>, String)>,
    sink: Option<PathBuf>,
}

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

impl Channels {
    pub fn from_settings(settings: &NotifierSettings) -> Result<Self, ChannelError> {
        if !settings.has_channel() {
            return Err(ChannelError::NoChannel);
        }
        let timeout = Duration::from_millis(settings.send_timeout_ms);
        let smtp = match &settings.smtp_url {
            Some(url) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                    .map_err(|e| ChannelError::Smtp(e.to_string()))?
                    .timeout(Some(timeout))
                    .build();
                let from: Mailbox = settings
                    .smtp_from
                    .parse()
                    .map_err(|e: lettre::address::AddressError| ChannelError::From(e.to_string()))?;
                Some((transport, from))
            }
            None => None,
        };
        let sms = match &settings.sms_url {
            Some(url) => {
                let client = reqwest::Client::builder().timeout(timeout).build()?;
                Some((client, url.clone(), settings.sms_api_key.clone(), settings.sms_sender.clone()))
            }
            None => None,
        };
        Ok(Self { smtp, sms, sink: settings.sink_file.clone() })
    }

    /// The channels that can reach someone with this email and phone number.
    pub fn reaching(&self, email: &str, phone: &str) -> Vec<(Channel, String)> {
        let mut out = Vec::new();
        if !email.is_empty() && (self.smtp.is_some() || self.sink.is_some()) {
            out.push((Channel::Email, email.to_string()));
        }
        if !phone.is_empty() && (self.sms.is_some() || self.sink.is_some()) {
            out.push((Channel::Sms, phone.to_string()));
        }
        out
    }

    pub async fn send(&self, channel: Channel, to: &str, text: &Text) -> Result<(), SendError> {
        match channel {
            Channel::Email => match &self.smtp {
                Some((transport, from)) => email(transport, from, to, text).await,
                None => self.to_sink(channel, to, &format!("{}\n\n{}", text.subject, text.body)).await,
            },
            Channel::Sms => match &self.sms {
                Some((client, url, key, sender)) => sms(client, url, key.as_ref(), sender, to, &text.short).await,
                None => self.to_sink(channel, to, &text.short).await,
            },
        }
    }

    async fn to_sink(&self, channel: Channel, to: &str, content: &str) -> Result<(), SendError> {
        let Some(path) = &self.sink else {
            return Err(permanent(format!("no {} channel is configured", channel.name())));
        };
        tracing::info!(channel = channel.name(), to, "reminder (local sink):\n{content}");
        let entry = format!("--- {} to {to} at {}\n{content}\n", channel.name(), chrono::Utc::now().to_rfc3339());
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(|e| transient(format!("sink file: {e}")))?;
        file.write_all(entry.as_bytes()).await.map_err(|e| transient(format!("sink file: {e}")))
    }
}

async fn email(
    transport: &AsyncSmtpTransport<Tokio1Executor>,
    from: &Mailbox,
    to: &str,
    text: &Text,
) -> Result<(), SendError> {
    let to: Mailbox = to.parse().map_err(|e| permanent(format!("bad recipient address: {e}")))?;
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(text.subject.clone())
        .body(text.body.clone())
        .map_err(|e| permanent(format!("cannot build the email: {e}")))?;
    transport.send(message).await.map(drop).map_err(|e| {
        if e.is_permanent() { permanent(format!("SMTP refused: {e}")) } else { transient(format!("SMTP failed: {e}")) }
    })
}

async fn sms(
    client: &reqwest::Client,
    url: &str,
    key: Option<&SecretString>,
    sender: &str,
    to: &str,
    text: &str,
) -> Result<(), SendError> {
    let mut request = client.post(url).json(&json!({ "from": sender, "to": to, "text": text }));
    if let Some(key) = key {
        request = request.bearer_auth(key.expose_secret());
    }
    let response = request.send().await.map_err(|e| transient(format!("SMS provider unreachable: {e}")))?;
    let status = response.status();
    match status.as_u16() {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(transient(format!("SMS provider answered {status}"))),
        _ => Err(permanent(format!("SMS provider refused: {status}"))),
    }
}
