//! The client of the external provisioning system, and the one place that
//! says what its answers mean (docs/ARCHITECTURE.md, "The provisioning
//! contract"). The transaction id is the idempotency key, so asking twice
//! provisions once; an answer that is not definitive is *unknown*, never a
//! failure: the worker retries, and before giving up asks the provider what
//! became of the key.

use std::time::{Duration, Instant};

use offers_proto::account::v1::Transaction;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;
use tracing::Instrument;

/// What a provisioning request achieved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A 2xx to the POST itself (redirects are not followed).
    Provisioned,
    /// The provider refused this request for good (400, 410 or 422 with its
    /// error body): a sentence fit to show the customer.
    Rejected(String),
    /// Anything else — timeouts, connection failures, 3xx, 401, 403, 404,
    /// 408, 409, 425, 429, 5xx, a refusal without its body: the request
    /// may or may not have been provisioned. The detail is for operators.
    Unknown(String),
}

/// What the provider says became of an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inquiry {
    Provisioned,
    /// Refused for good, with the provider's reason when it gave one.
    Rejected(Option<String>),
    /// Never received. The inquiry fences the key — the provider refuses
    /// every later request with it — but the answer is final only once the
    /// settle window has passed since our last request was sent.
    NotFound,
    /// It could not say (unreachable, an answer outside the contract).
    Unknown(String),
}

/// The provider's error body.
#[derive(Deserialize)]
struct Refusal {
    error: String,
}

/// The provider's answer to an inquiry.
#[derive(Deserialize)]
struct Status {
    status: String,
    #[serde(default)]
    error: Option<String>,
}

/// A reason for customers and partners: the provider's own sentence when it
/// is plain text, our words when it looks like anything else (a URL, a host,
/// markup, an address) — what reaches `failure_reason` is never a system's
/// internals.
pub fn clean_reason(text: &str) -> String {
    let text = text.trim();
    let plain = !text.is_empty()
        && text.len() <= 200
        && !text.contains("://")
        && !text.contains('@')
        && !text.contains('<')
        && text.chars().all(|c| !c.is_control())
        && !text.split_whitespace().any(|w| w.contains('.') && w.len() > 3 && !w.ends_with('.'));
    if plain { text.to_string() } else { "the offer cannot be provisioned".to_string() }
}

/// An HTTP client error without the URL (it names our provider's host).
fn detail(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "sent an unreadable answer"
    } else {
        "failed"
    };
    format!("the request {kind}")
}

/// One call to the provisioning system, by what it was and what came of
/// it: seconds, up to a call that waits out its timeout.
pub const PROVIDER_CALL_HISTOGRAM: (&str, &[f64]) =
    ("offers_provider_call_duration_seconds", &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0]);

fn observe(call: &'static str, outcome: &'static str, started: Instant) {
    metrics::histogram!(PROVIDER_CALL_HISTOGRAM.0, "call" => call, "outcome" => outcome)
        .record(started.elapsed().as_secs_f64());
}

#[derive(Clone)]
pub struct Provider {
    http: reqwest::Client,
    activations: String,
    api_key: Option<SecretString>,
}

impl Provider {
    pub fn new(base_url: &str, api_key: Option<SecretString>, timeout: Duration) -> Result<Self, reqwest::Error> {
        // A redirect would turn the POST into a body-less GET whose 2xx
        // proves nothing: every 3xx is an unknown outcome instead.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let activations = format!("{}/v1/activations", base_url.trim_end_matches('/'));
        Ok(Self { http, activations, api_key })
    }

    /// With our credential, and the trace this call belongs to.
    fn prepared(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        let mut trace = http::HeaderMap::new();
        offers_kit::trace::inject_headers(&mut trace);
        let request = request.headers(trace);
        match &self.api_key {
            Some(key) => request.bearer_auth(key.expose_secret()),
            None => request,
        }
    }

    pub async fn activate(&self, tx: &Transaction, attempt: i32) -> Outcome {
        let span = tracing::info_span!("provider", otel.name = "provider activate", otel.kind = "client", attempt);
        let started = Instant::now();
        let outcome = self.post(tx, attempt).instrument(span).await;
        let label = match &outcome {
            Outcome::Provisioned => "provisioned",
            Outcome::Rejected(_) => "rejected",
            Outcome::Unknown(_) => "unknown",
        };
        observe("activate", label, started);
        outcome
    }

    async fn post(&self, tx: &Transaction, attempt: i32) -> Outcome {
        let body = json!({
            "transaction_id": tx.id,
            "user_id": tx.user_id,
            "offer_id": tx.offer_id,
            "offer_code": tx.offer_code,
            "amount": tx.amount,
            "currency": tx.currency_code,
            "attempt": attempt,
        });
        let request = self.http.post(&self.activations).header("Idempotency-Key", &tx.id).json(&body);
        let response = match self.prepared(request).send().await {
            Ok(response) => response,
            Err(e) => return Outcome::Unknown(detail(&e)),
        };
        let status = response.status();
        if status.is_success() {
            return Outcome::Provisioned;
        }
        let definitive =
            matches!(status, StatusCode::BAD_REQUEST | StatusCode::GONE | StatusCode::UNPROCESSABLE_ENTITY);
        match response.json::<Refusal>().await {
            Ok(refusal) if definitive => Outcome::Rejected(clean_reason(&refusal.error)),
            _ => Outcome::Unknown(format!("the provisioning system answered {status}")),
        }
    }

    /// Asks what became of the request with this idempotency key.
    pub async fn inquire(&self, key: &str) -> Inquiry {
        let span = tracing::info_span!("provider", otel.name = "provider inquiry", otel.kind = "client");
        let started = Instant::now();
        let inquiry = self.ask(key).instrument(span).await;
        let label = match &inquiry {
            Inquiry::Provisioned => "provisioned",
            Inquiry::Rejected(_) => "rejected",
            Inquiry::NotFound => "not_found",
            Inquiry::Unknown(_) => "unknown",
        };
        observe("inquiry", label, started);
        inquiry
    }

    async fn ask(&self, key: &str) -> Inquiry {
        let request = self.http.get(format!("{}/{key}", self.activations));
        let response = match self.prepared(request).send().await {
            Ok(response) => response,
            Err(e) => return Inquiry::Unknown(format!("inquiry: {}", detail(&e))),
        };
        let code = response.status();
        if !(code.is_success() || code == StatusCode::NOT_FOUND) {
            return Inquiry::Unknown(format!("inquiry: the provisioning system answered {code}"));
        }
        // A bare 404 might be a misrouted request: only the contract's body
        // says "not found" for sure.
        match response.json::<Status>().await {
            Ok(Status { status, .. }) if status == "provisioned" && code.is_success() => Inquiry::Provisioned,
            Ok(Status { status, error }) if status == "rejected" && code.is_success() => {
                Inquiry::Rejected(error.as_deref().map(clean_reason))
            }
            Ok(Status { status, .. }) if status == "not_found" => Inquiry::NotFound,
            _ => Inquiry::Unknown(format!("inquiry: an answer outside the contract ({code})")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::clean_reason;

    #[test]
    fn reasons_are_plain_sentences_or_ours() {
        assert_eq!(clean_reason("the line is barred"), "the line is barred");
        assert_eq!(clean_reason(" no data plan on this SIM. "), "no data plan on this SIM.");
        let ours = "the offer cannot be provisioned";
        for leaky in [
            "error sending request for url (http://10.0.0.7:8080/v1/activations)",
            "see https://provider.example/errors/42",
            "contact ops@provider.example",
            "upstream provider-internal.svc.cluster.local refused",
            "<html><body>Bad Gateway</body></html>",
            "line\nbreak",
            "",
        ] {
            assert_eq!(clean_reason(leaky), ours, "{leaky:?}");
        }
        assert_eq!(clean_reason(&"x".repeat(201)), ours);
    }
}
