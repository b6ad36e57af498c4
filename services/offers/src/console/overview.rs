//! The last day at a glance: purchases per hour by final state, the
//! review queue, parked jobs, the outbox, and the ledger check.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use offers_kit::cache;
use offers_proto::account::v1 as account_pb;
use serde::{Deserialize, Serialize};

use super::session::Signed;
use super::{Console, State as Shared, chart, page};

/// The ledger check walks every account: it runs at most this often for
/// the overview, which shows its last result.
const LEDGER_CHECK_EVERY: Duration = Duration::from_mins(10);

#[derive(Serialize, Deserialize)]
struct LedgerCheck {
    at: chrono::DateTime<chrono::Utc>,
    accounts: usize,
    sum: i64,
    violations: Vec<String>,
}

async fn ledger_check(console: &Console) -> anyhow::Result<LedgerCheck> {
    let key = cache::key(&["console", "ledger-check"]);
    if let Ok(Some(json)) = console.cache.get(&key).await
        && let Ok(last) = serde_json::from_str(&json)
    {
        return Ok(last);
    }
    let books = console.admin().check_ledger().await?;
    let check = LedgerCheck {
        at: chrono::Utc::now(),
        accounts: books.totals.len(),
        sum: books.sum,
        violations: books.violations,
    };
    if let Ok(json) = serde_json::to_string(&check) {
        console.cache.set(&key, &json, LEDGER_CHECK_EVERY).await.ok();
    }
    Ok(check)
}

pub async fn show(State(console): State<Shared>, by: Signed) -> Response {
    let request = account_pb::GetOperationsOverviewRequest { hours: 24 };
    let overview = match console.clients.ledger.clone().get_operations_overview(request).await {
        Ok(answer) => answer.into_inner(),
        Err(status) => return page::call_failed(status),
    };
    let parked = match console.admin().parked_jobs(None, 1).await {
        Ok(topics) => topics,
        Err(error) => return page::failure(error),
    };
    let check = match ledger_check(&console).await {
        Ok(check) => check,
        Err(error) => return page::failure(error),
    };
    let body = html! {
        section.card {
            h2 { "Purchases, last 24 hours" }
            (chart::purchases(&overview.hours))
        }
        div.tiles {
            section.tile {
                h2 { "Review queue" }
                p.figure { (overview.reviews_waiting) }
                p { @if overview.reviews_waiting > 0 { "oldest waits " (page::age(overview.oldest_review_time)) } @else { "nothing waits" } }
                a href="/console/reviews" { "Open the queue" }
            }
            section.tile {
                h2 { "Parked jobs" }
                p.figure { (parked.iter().map(|t| t.total).sum::<i64>()) }
                p { @for t in &parked { (t.topic) ": " (t.total) " " } }
                a href="/console/jobs" { "See them" }
            }
            section.tile {
                h2 { "Outbox" }
                p.figure { @if overview.oldest_outbox_time.is_some() { (page::age(overview.oldest_outbox_time)) } @else { "0" } }
                p { @if overview.oldest_outbox_time.is_some() { "the oldest due job has waited this long" } @else { "nothing waits to be published" } }
            }
            section.tile {
                h2 { "Ledger check" }
                p.figure { @if check.violations.is_empty() && check.sum == 0 { "balanced" } @else { (check.violations.len()) " problems" } }
                p { (check.accounts) " accounts, sum " (check.sum) "; checked " (check.at.format("%H:%M:%S UTC")) }
                @for v in &check.violations { p.flash.refused { (v) } }
            }
        }
    };
    page::answer(StatusCode::OK, page::layout("Overview", &by, by.flash.as_ref(), body))
}
