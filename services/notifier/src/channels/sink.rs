//! The embedded mode's stand-in for a channel: the reminder goes to the log
//! and is appended to a file a newcomer can read.

use std::path::PathBuf;

use async_trait::async_trait;
use offers_proto::auth::v1::User;
use tokio::io::AsyncWriteExt;

use super::{Channel, SendError, Text, non_empty};

pub struct Sink {
    name: &'static str,
    path: PathBuf,
    /// The user's address this sink stands in for, and what it writes.
    address: fn(&User) -> &str,
    content: fn(&Text) -> String,
}

impl Sink {
    pub fn email(path: PathBuf) -> Self {
        Self {
            name: "email",
            path,
            address: |user| &user.email,
            content: |text| format!("{}\n\n{}", text.subject, text.body),
        }
    }

    pub fn sms(path: PathBuf) -> Self {
        Self { name: "sms", path, address: |user| &user.phone_number, content: |text| text.short.clone() }
    }
}

#[async_trait]
impl Channel for Sink {
    fn name(&self) -> &'static str {
        self.name
    }

    fn address(&self, user: &User) -> Option<String> {
        non_empty((self.address)(user))
    }

    async fn send(&self, to: &str, text: &Text) -> Result<(), SendError> {
        let content = (self.content)(text);
        tracing::info!(channel = self.name, to, "reminder (local sink):\n{content}");
        let entry = format!("--- {} to {to} at {}\n{content}\n", self.name, chrono::Utc::now().to_rfc3339());
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .await
            .map_err(|e| SendError::transient(format!("sink file: {e}")))?;
        file.write_all(entry.as_bytes()).await.map_err(|e| SendError::transient(format!("sink file: {e}")))
    }
}
