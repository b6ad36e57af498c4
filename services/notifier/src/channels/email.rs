//! Email over SMTP (lettre).

use std::time::Duration;

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use offers_proto::auth::v1::User;

use super::{Channel, ChannelError, SendError, Text, non_empty};

pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Email {
    pub fn new(url: &str, from: &str, timeout: Duration) -> Result<Self, ChannelError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| ChannelError::Smtp(e.to_string()))?
            .timeout(Some(timeout))
            .build();
        let from = from.parse().map_err(|e: lettre::address::AddressError| ChannelError::From(e.to_string()))?;
        Ok(Self { transport, from })
    }
}

#[async_trait]
impl Channel for Email {
    fn name(&self) -> &'static str {
        "email"
    }

    fn address(&self, user: &User) -> Option<String> {
        non_empty(&user.email)
    }

    async fn send(&self, to: &str, text: &Text) -> Result<(), SendError> {
        let to: Mailbox = to.parse().map_err(|e| SendError::permanent(format!("bad recipient address: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(text.subject.clone())
            .body(text.body.clone())
            .map_err(|e| SendError::permanent(format!("cannot build the email: {e}")))?;
        self.transport.send(message).await.map(drop).map_err(|e| {
            if e.is_permanent() {
                SendError::permanent(format!("SMTP refused: {e}"))
            } else {
                SendError::transient(format!("SMTP failed: {e}"))
            }
        })
    }
}
