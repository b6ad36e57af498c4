//! The page every screen is drawn in, what a refused or failed action
//! shows, and how values are written on a page.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};
use offers_proto::account::v1 as account_pb;
use serde::{Deserialize, Serialize};

use super::session::Signed;

/// A line shown once on the next page: what an action did, or why not.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Flash {
    Done(String),
    Refused(String),
}

const SECTIONS: [(&str, &str); 7] = [
    ("/console/", "Overview"),
    ("/console/reviews", "Reviews"),
    ("/console/customers", "Customers"),
    ("/console/partners", "Partners"),
    ("/console/offers", "Offers"),
    ("/console/jobs", "Jobs"),
    ("/console/audit", "Audit"),
];

/// A page's head: its title and the console's stylesheet.
pub fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · Offers console" }
            link rel="stylesheet" href="/console/console.css";
        }
    }
}

/// A console page: the navigation, who is signed in (with the sign-out
/// form), the flash, then `body`.
pub fn layout(title: &str, by: &Signed, flash: Option<&Flash>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header {
                    nav {
                        strong { "Offers console" }
                        @for (href, name) in SECTIONS {
                            a href=(href) aria-current=[(name == title).then_some("page")] { (name) }
                        }
                    }
                    form.signout method="post" action="/console/sign-out" {
                        input type="hidden" name="csrf" value=(by.csrf);
                        span { (by.username) " (" (access_name(by)) ")" }
                        button type="submit" { "Sign out" }
                    }
                }
                main {
                    h1 { (title) }
                    (flash_line(flash))
                    (body)
                }
            }
        }
    }
}

fn access_name(by: &Signed) -> &'static str {
    match by.access {
        super::session::Access::Viewer => "viewer",
        super::session::Access::Operator => "operator",
    }
}

pub fn flash_line(flash: Option<&Flash>) -> Markup {
    html! {
        @match flash {
            Some(Flash::Done(text)) => p.flash.done role="status" { (text) },
            Some(Flash::Refused(text)) => p.flash.refused role="alert" { (text) },
            None => {},
        }
    }
}

/// A page of its own for what is refused before any screen can be drawn.
pub fn refusal(status: StatusCode, message: &str) -> (StatusCode, Html<String>) {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head("Refused"))
            body { main {
                h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or_default()) }
                p.flash.refused role="alert" { (message) }
                p { a href="/console/" { "Back to the console" } }
            } }
        }
    };
    (status, Html(markup.into_string()))
}

/// A refusal known before any call: its status and sentence.
pub struct Refused(pub StatusCode, pub &'static str);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        refusal(self.0, self.1).into_response()
    }
}

pub fn unavailable(reason: &str) -> Response {
    tracing::warn!(reason, "the console cannot answer");
    refusal(StatusCode::SERVICE_UNAVAILABLE, "The console cannot reach what it needs just now; try again shortly.")
        .into_response()
}

/// The status and the sentence for a failed call: the service's own
/// words for a caller's mistake, a plain 502/503 for a fault.
pub fn explain(error: &anyhow::Error) -> (StatusCode, String) {
    match error.downcast_ref::<offers_kit::Error>() {
        Some(e) if e.code.http_status() < 500 => {
            (StatusCode::from_u16(e.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST), e.message.clone())
        }
        Some(e) if matches!(e.code.grpc(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded) => {
            (StatusCode::SERVICE_UNAVAILABLE, "A service did not answer in time; try again shortly.".into())
        }
        _ => {
            tracing::warn!(error = format!("{error:#}"), "a console call failed");
            (StatusCode::BAD_GATEWAY, "A service failed to answer; the failure is logged.".into())
        }
    }
}

/// Why an act was not done: what the form got wrong (422, before any
/// call), or what the call answered.
pub enum Refusal {
    Form(String),
    Call(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(error: anyhow::Error) -> Self {
        Refusal::Call(error)
    }
}

impl From<tonic::Status> for Refusal {
    fn from(status: tonic::Status) -> Self {
        Refusal::Call(offers_kit::Error::from_status(status).into())
    }
}

impl Refusal {
    /// The status it answers, and the line the form shows.
    pub fn shown(self) -> (StatusCode, Flash) {
        let (status, message) = match self {
            Refusal::Form(message) => (StatusCode::UNPROCESSABLE_ENTITY, message),
            Refusal::Call(error) => explain(&error),
        };
        (status, Flash::Refused(message))
    }
}

/// An act done: the sentence the next page shows, and that page.
pub struct Done {
    pub said: String,
    pub then: String,
}

/// A failed call, as a page of its own.
pub fn failure(error: anyhow::Error) -> Response {
    let (status, message) = explain(&error);
    refusal(status, &message).into_response()
}

pub async fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "There is no such page in the console.").into_response()
}

/// A page drawn in full, with the status it answers.
pub fn answer(status: StatusCode, markup: Markup) -> Response {
    (status, Html(markup.into_string())).into_response()
}

pub fn time(at: Option<prost_types::Timestamp>) -> String {
    at.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, u32::try_from(t.nanos).unwrap_or(0)))
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// How long ago `at` was, roughly.
pub fn age(at: Option<prost_types::Timestamp>) -> String {
    let Some(at) = at.and_then(|t| DateTime::<Utc>::from_timestamp(t.seconds, 0)) else {
        return "—".into();
    };
    let secs = (Utc::now() - at).num_seconds().max(0);
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

/// An amount in minor units with its currency, as the API gives it.
pub fn money(amount: i64, currency: &str) -> String {
    format!("{amount} {currency}")
}

/// A required reason, trimmed; the form says so when it is empty.
pub fn reason(note: &str) -> Result<&str, Refusal> {
    match note.trim() {
        "" => Err(Refusal::Form("Say why: the reason is recorded in the audit trail.".into())),
        note if !offers_proto::wire::is_text(note, 1000) => {
            Err(Refusal::Form("The reason must be at most 1,000 characters of plain text.".into()))
        }
        note => Ok(note),
    }
}

/// A whole number from a form field.
pub fn number(field: &str, value: &str) -> Result<i64, Refusal> {
    let value = value.trim();
    value.parse().map_err(|_| Refusal::Form(format!("{field} must be a whole number, not {value:?}.")))
}

/// A failed call, as a page of its own.
pub fn call_failed(status: tonic::Status) -> Response {
    failure(offers_kit::Error::from_status(status).into())
}

/// An enum's wire name without its type's prefix: `SUCCESS`, `AUTO_RENEWAL`.
fn label(name: Option<&'static str>, prefix: &str) -> &'static str {
    name.map_or("UNKNOWN", |n| n.strip_prefix(prefix).unwrap_or(n))
}

pub fn transaction_status(status: i32) -> &'static str {
    let name = account_pb::TransactionStatus::try_from(status).ok().map(|s| s.as_str_name());
    label(name, "TRANSACTION_STATUS_")
}

pub fn transaction_kind(kind: i32) -> &'static str {
    label(account_pb::TransactionKind::try_from(kind).ok().map(|k| k.as_str_name()), "TRANSACTION_KIND_")
}

pub fn subscription_status(status: i32) -> &'static str {
    let name = account_pb::SubscriptionStatus::try_from(status).ok().map(|s| s.as_str_name());
    label(name, "SUBSCRIPTION_STATUS_")
}

/// Text for a URL's path segment or query value: everything but letters,
/// digits and `-_.~` percent-escaped.
pub fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => char::from(b).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}
