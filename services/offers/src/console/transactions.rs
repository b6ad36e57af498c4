//! One transaction with what each provisioning attempt met; the pieces
//! the review queue draws too.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use offers_proto::account::v1 as account_pb;

use super::page;
use super::session::{Access, Signed};
use super::{Console, State as Shared};

/// What each attempt of `transaction_id` met, oldest first.
pub async fn attempts(
    console: &Console,
    transaction_id: &str,
) -> Result<Vec<account_pb::TransactionAttempt>, Response> {
    let request = account_pb::ListTransactionAttemptsRequest { transaction_id: transaction_id.into() };
    match console.clients.ledger.clone().list_transaction_attempts(request).await {
        Ok(answer) => Ok(answer.into_inner().attempts),
        Err(status) => Err(page::call_failed(status)),
    }
}

pub fn attempts_table(attempts: &[account_pb::TransactionAttempt]) -> Markup {
    html! {
        table.attempts {
            thead { tr { th { "Attempt" } th { "When" } th { "Outcome" } th { "What the provider answered" } } }
            tbody {
                @for a in attempts {
                    tr { td { (a.attempt) } td { (page::time(a.time)) } td { (a.outcome) } td { (a.answer) } }
                }
            }
        }
    }
}

/// The resolve form of a transaction waiting for review (operators only).
pub fn resolve_form(by: &Signed, transaction_id: &str) -> Markup {
    html! {
        @if by.access == Access::Operator {
            form.resolve method="post" action={ "/console/reviews/" (transaction_id) "/resolve" } {
                input type="hidden" name="csrf" value=(by.csrf);
                fieldset {
                    legend { "Resolve" }
                    label { input type="radio" name="outcome" value="succeeded" required; " Provisioned: keep the payment" }
                    label { input type="radio" name="outcome" value="failed"; " Not provisioned: refund it" }
                }
                label { "Why (recorded in the audit trail)" textarea name="note" required maxlength="1000" {} }
                button type="submit" { "Resolve" }
            }
        }
    }
}

pub async fn show(State(console): State<Shared>, by: Signed, Path(id): Path<String>) -> Response {
    let request = account_pb::LookupTransactionRequest { id: id.clone() };
    let tx = match console.clients.ledger.clone().lookup_transaction(request).await {
        Ok(answer) => answer.into_inner().transaction.unwrap_or_default(),
        Err(status) => return page::call_failed(status),
    };
    let attempts = match attempts(&console, &tx.id).await {
        Ok(attempts) => attempts,
        Err(refused) => return refused,
    };
    let body = html! {
        dl.summary {
            dt { "Transaction" } dd { code { (tx.id) } }
            dt { "Customer" } dd { a href={ "/console/customers/" (tx.user_id) } { (tx.user_id) } }
            @if !tx.recipient_id.is_empty() {
                dt { "Gift to" } dd { a href={ "/console/customers/" (tx.recipient_id) } { (tx.recipient_id) } }
            }
            dt { "Kind" } dd { (page::transaction_kind(tx.kind)) }
            dt { "Offer" } dd { (tx.offer_name) " (" (tx.offer_code) ")" }
            dt { "Amount" } dd { (page::money(tx.amount, &tx.currency_code)) }
            dt { "Status" } dd.status {
                (page::transaction_status(tx.status))
                @if tx.needs_review { " — waits for an operator's review" }
                @if !tx.failure_reason.is_empty() { ": " (tx.failure_reason) }
            }
            @if !tx.reference.is_empty() { dt { "Partner reference" } dd { (tx.reference) } }
            dt { "Accepted" } dd { (page::time(tx.create_time)) }
            dt { "Last change" } dd { (page::time(tx.update_time)) }
        }
        h2 { "Attempts" }
        (attempts_table(&attempts))
        @if tx.needs_review { (resolve_form(&by, &tx.id)) }
    };
    page::answer(StatusCode::OK, page::layout("Transaction", &by, by.flash.as_ref(), body))
}
