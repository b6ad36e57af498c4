//! The client of the external provisioning system. It sends the
//! transaction id as the idempotency key, so asking twice provisions once,
//! and sorts every failure into transient (worth retrying) or permanent.

use std::time::Duration;

use offers_proto::account::v1::Transaction;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Provisioned,
    /// The provider refused this request for good (400, 410, 422):
    /// retrying will not help.
    Rejected(String),
    /// Anything else that is not a success — timeouts, connection failures,
    /// 5xx, 408, 429, and 401/403/404/409, which say more about our set-up
    /// or a request in flight than about the transaction: worth another try.
    Transient(String),
}

#[derive(Clone)]
pub struct Provider {
    http: reqwest::Client,
    url: String,
    api_key: Option<SecretString>,
}

impl Provider {
    pub fn new(base_url: &str, api_key: Option<SecretString>, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http =
            reqwest::Client::builder().timeout(timeout).connect_timeout(timeout.min(Duration::from_secs(3))).build()?;
        Ok(Self { http, url: format!("{}/v1/activations", base_url.trim_end_matches('/')), api_key })
    }

    pub async fn activate(&self, tx: &Transaction, attempt: i32) -> Outcome {
        let body = json!({
            "transaction_id": tx.id,
            "user_id": tx.user_id,
            "offer_id": tx.offer_id,
            "offer_code": tx.offer_code,
            "amount": tx.amount,
            "currency": tx.currency_code,
            "attempt": attempt,
        });
        let mut request = self.http.post(&self.url).header("Idempotency-Key", &tx.id).json(&body);
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose_secret());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) if e.is_timeout() => return Outcome::Transient("the provisioning system timed out".into()),
            Err(e) => return Outcome::Transient(format!("the provisioning system is unreachable: {e}")),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Provisioned;
        }
        let detail = response
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| status.to_string());
        match status.as_u16() {
            408 | 425 | 429 | 500..=599 => {
                Outcome::Transient(format!("provisioning system answered {status}: {detail}"))
            }
            _ => Outcome::Rejected(format!("rejected by the provisioning system: {detail}")),
        }
    }
}
