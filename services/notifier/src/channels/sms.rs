//! SMS through an HTTP provider: a JSON POST of sender, recipient and text.

use std::time::Duration;

use async_trait::async_trait;
use offers_proto::auth::v1::User;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

use super::{Channel, ChannelError, SendError, Text, non_empty};

pub struct Sms {
    client: reqwest::Client,
    url: String,
    key: Option<SecretString>,
    sender: String,
}

impl Sms {
    pub fn new(url: &str, key: Option<SecretString>, sender: &str, timeout: Duration) -> Result<Self, ChannelError> {
        let client = reqwest::Client::builder().timeout(timeout).build()?;
        Ok(Self { client, url: url.into(), key, sender: sender.into() })
    }
}

#[async_trait]
impl Channel for Sms {
    fn name(&self) -> &'static str {
        "sms"
    }

    fn address(&self, user: &User) -> Option<String> {
        non_empty(&user.phone_number)
    }

    async fn send(&self, to: &str, text: &Text) -> Result<(), SendError> {
        let mut request =
            self.client.post(&self.url).json(&json!({ "from": self.sender, "to": to, "text": text.short }));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response =
            request.send().await.map_err(|e| SendError::transient(format!("SMS provider unreachable: {e}")))?;
        let status = response.status();
        match status.as_u16() {
            200..=299 => Ok(()),
            408 | 429 | 500..=599 => Err(SendError::transient(format!("SMS provider answered {status}"))),
            _ => Err(SendError::permanent(format!("SMS provider refused: {status}"))),
        }
    }
}
