//! The review queue: transactions whose outcome the provider could not
//! tell, each resolved by an operator with a note (the ledger's resolve
//! path: a success keeps the money, a failure refunds whoever paid).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use offers_proto::account::v1 as account_pb;
use serde::Deserialize;

use super::page::{self, Done, Flash, Refusal};
use super::session::{Posted, Signed};
use super::transactions;
use super::{Console, State as Shared};

/// Each card asks for its attempts: a page stays short.
const PAGE: i32 = 20;

#[derive(Deserialize, Default)]
pub struct Paging {
    #[serde(default)]
    after: String,
}

pub async fn list(State(console): State<Shared>, by: Signed, Query(paging): Query<Paging>) -> Response {
    let flash = by.flash.clone();
    render(&console, &by, &paging, flash, StatusCode::OK).await
}

async fn render(console: &Console, by: &Signed, paging: &Paging, flash: Option<Flash>, status: StatusCode) -> Response {
    let request = account_pb::ListReviewsRequest { page_size: PAGE, page_token: paging.after.clone() };
    let page = match console.clients.ledger.clone().list_reviews(request).await {
        Ok(page) => page.into_inner(),
        Err(status) => return page::call_failed(status),
    };
    let mut attempts = std::collections::HashMap::new();
    for tx in &page.transactions {
        match transactions::attempts(console, &tx.id).await {
            Ok(found) => attempts.insert(tx.id.clone(), found),
            Err(refused) => return refused,
        };
    }
    let body = html! {
        p { "Transactions whose outcome the provider could not tell wait here; nothing is refunded or kept until an operator decides. Oldest first." }
        @if page.transactions.is_empty() {
            p.empty { "Nothing waits for review." }
        }
        @for (tx, why) in page.transactions.iter().zip(&page.reasons) {
            section.card id={ "review-" (tx.id) } {
                h2 { (tx.offer_name) " · " (page::money(tx.amount, &tx.currency_code)) }
                dl {
                    dt { "Transaction" } dd { a href={ "/console/transactions/" (tx.id) } { code { (tx.id) } } }
                    dt { "Customer" } dd { a href={ "/console/customers/" (tx.user_id) } { (tx.user_id) } }
                    dt { "Accepted" } dd { (page::time(tx.create_time)) " (" (page::age(tx.create_time)) " ago)" }
                    dt { "Attempts" } dd { (tx.attempts) }
                    dt { "Why it waits" } dd { (why) }
                    @if !tx.reference.is_empty() { dt { "Partner reference" } dd { (tx.reference) } }
                }
                h3 { "Attempts" }
                (transactions::attempts_table(attempts.get(&tx.id).map_or(&[][..], Vec::as_slice)))
                (transactions::resolve_form(by, &tx.id))
            }
        }
        @if !page.next_page_token.is_empty() {
            p { a href={ "/console/reviews?after=" (page.next_page_token) } { "Next page" } }
        }
    };
    page::answer(status, page::layout("Reviews", by, flash.as_ref(), body))
}

#[derive(Deserialize)]
pub struct Resolve {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    note: String,
}

pub async fn resolve(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted { by, form }: Posted<Resolve>,
) -> Response {
    let outcome = async {
        let outcome = match form.outcome.as_str() {
            "succeeded" => account_pb::TransactionStatus::Success,
            "failed" => account_pb::TransactionStatus::Failed,
            _ => return Err(Refusal::Form("Choose whether it was provisioned or not.".into())),
        };
        let note = page::reason(&form.note)?;
        let mut admin = console.admin();
        admin.act_as(&by.username, note);
        let tx = admin.resolve(&id, outcome, note).await?;
        let said = match account_pb::TransactionStatus::try_from(tx.status) {
            Ok(account_pb::TransactionStatus::Success) => "resolved as provisioned: the payment is kept",
            _ => "resolved as not provisioned: the payment went back to whoever paid",
        };
        Ok(Done { said: format!("Transaction {} {said}.", tx.id), then: "/console/reviews".into() })
    };
    let again = async |flash, status| render(&console, &by, &Paging::default(), Some(flash), status).await;
    by.conclude(&console, outcome.await, again).await
}
