//! Customers: found by username or id, with their balance, subscriptions
//! and transactions, and a top-up with a reason (once per form: the form
//! carries its own idempotency key, so sending it twice credits once).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use offers_proto::account::v1 as account_pb;
use serde::Deserialize;

use super::page::{self, Done, Flash, Refusal};
use super::session::{Posted, Signed};
use super::{Console, State as Shared};

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    q: String,
}

pub async fn find(State(console): State<Shared>, by: Signed, Query(search): Query<Search>) -> Response {
    let q = search.q.trim();
    let mut flash = by.flash.clone();
    let mut status = StatusCode::OK;
    if !q.is_empty() {
        match console.admin().user(q).await {
            Ok(user) => return Redirect::to(&format!("/console/customers/{}", user.id)).into_response(),
            Err(error) => {
                let (code, message) = page::explain(&error);
                (status, flash) = (code, Some(Flash::Refused(message)));
            }
        }
    }
    let body = html! {
        form.search method="get" action="/console/customers" {
            label { "Username or user id" input name="q" value=(q) required; }
            button type="submit" { "Find" }
        }
    };
    page::answer(status, page::layout("Customers", &by, flash.as_ref(), body))
}

#[derive(Deserialize, Default)]
pub struct Paging {
    #[serde(default)]
    after: String,
}

pub async fn show(
    State(console): State<Shared>,
    by: Signed,
    Path(id): Path<String>,
    Query(paging): Query<Paging>,
) -> Response {
    let flash = by.flash.clone();
    render(&console, &by, &id, &paging, flash, StatusCode::OK).await
}

async fn render(
    console: &Console,
    by: &Signed,
    id: &str,
    paging: &Paging,
    flash: Option<Flash>,
    status: StatusCode,
) -> Response {
    let mut admin = console.admin();
    let user = match admin.user(id).await {
        Ok(user) => user,
        Err(error) => return page::failure(error),
    };
    let ledger = &mut console.clients.ledger.clone();
    let owner = account_pb::GetAccountRequest { owner_id: user.id.clone(), kind: account_pb::AccountKind::User.into() };
    let subscriptions =
        account_pb::ListUserSubscriptionsRequest { user_id: user.id.clone(), page_size: 50, page_token: String::new() };
    let transactions = account_pb::ListUserTransactionsRequest {
        user_id: user.id.clone(),
        page_size: 50,
        page_token: paging.after.clone(),
    };
    let fetched = async {
        let account = ledger.get_account(owner).await?.into_inner().account.unwrap_or_default();
        let subscriptions = ledger.list_user_subscriptions(subscriptions).await?.into_inner();
        let transactions = ledger.list_user_transactions(transactions).await?.into_inner();
        Ok::<_, tonic::Status>((account, subscriptions, transactions))
    };
    let (account, subscriptions, transactions) = match fetched.await {
        Ok(fetched) => fetched,
        Err(status) => return page::call_failed(status),
    };
    let title = format!("Customer {}", user.username);
    let body = html! {
        dl.summary {
            dt { "User id" } dd { code { (user.id) } }
            dt { "Name" } dd { (user.first_name) " " (user.last_name) }
            dt { "Email" } dd { (user.email) }
            dt { "Active" } dd { (if user.is_active { "yes" } else { "no" }) }
            dt { "Balance" } dd.balance { (page::money(account.balance, &account.currency_code)) }
        }
        @if by.access == super::session::Access::Operator {
            form.top-up method="post" action={ "/console/customers/" (user.id) "/top-up" } {
                h2 { "Top up or adjust" }
                input type="hidden" name="csrf" value=(by.csrf);
                input type="hidden" name="key" value=(uuid::Uuid::now_v7());
                label { "Amount (minor units of " (account.currency_code) ")" input name="amount" inputmode="numeric" required; }
                label { "Reason (recorded in the audit trail)" textarea name="reason" required maxlength="1000" {} }
                button type="submit" { "Credit" }
            }
        }
        h2 { "Subscriptions" }
        table {
            thead { tr { th { "Offer" } th { "Status" } th { "Expires" } th { "Auto-renewal" } th { "Last renewal" } } }
            tbody {
                @for s in &subscriptions.subscriptions {
                    tr {
                        td { (s.offer_name) }
                        td { (page::subscription_status(s.status)) }
                        td { (page::time(s.expire_time)) }
                        td { (if s.auto_renew { format!("on, next {}", page::time(s.next_renewal_time)) } else { "off".into() }) }
                        td { @if let Some(r) = &s.last_renewal { (page::transaction_status(r.status)) " " (page::time(r.time)) " " (r.reason) } }
                    }
                }
            }
        }
        h2 { "Transactions" }
        table {
            thead { tr { th { "When" } th { "Kind" } th { "Offer" } th { "Amount" } th { "Status" } th { "Attempts" } th { "Id" } } }
            tbody {
                @for t in &transactions.transactions {
                    tr {
                        td { (page::time(t.create_time)) }
                        td { (page::transaction_kind(t.kind)) }
                        td { (t.offer_name) }
                        td { (page::money(t.amount, &t.currency_code)) }
                        td.status {
                            (page::transaction_status(t.status))
                            @if t.needs_review { " (waits for review)" }
                            @if !t.failure_reason.is_empty() { ": " (t.failure_reason) }
                        }
                        td { (t.attempts) }
                        td { a href={ "/console/transactions/" (t.id) } { code { (t.id) } } }
                    }
                }
            }
        }
        @if !transactions.next_page_token.is_empty() {
            p { a href={ "/console/customers/" (user.id) "?after=" (transactions.next_page_token) } { "Older transactions" } }
        }
    };
    page::answer(status, page::layout(&title, by, flash.as_ref(), body))
}

#[derive(Deserialize)]
pub struct TopUp {
    #[serde(default)]
    amount: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    key: String,
}

pub async fn top_up(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted { by, form }: Posted<TopUp>,
) -> Response {
    let outcome = async {
        let amount = page::number("The amount", &form.amount)?;
        if amount <= 0 {
            return Err(Refusal::Form("The amount must be above zero.".into()));
        }
        let reason = page::reason(&form.reason)?;
        let mut admin = console.admin();
        let user = admin.user(&id).await?;
        let owner =
            account_pb::GetAccountRequest { owner_id: user.id.clone(), kind: account_pb::AccountKind::User.into() };
        let account = console.clients.ledger.clone().get_account(owner).await?.into_inner().account;
        let currency = account.unwrap_or_default().currency_code;
        // The form's key scoped to the console, so it cannot meet a CLI's key.
        let key = format!("console:{}", form.key.trim());
        admin.act_as(&by.username, reason);
        let (applied, account) = admin.credit(&user.id, amount, &currency, &key, reason).await?;
        let said = if applied {
            let (credited, balance) = (page::money(amount, &currency), page::money(account.balance, &currency));
            format!("Credited {credited}; the balance is now {balance}.")
        } else {
            "This top-up was made already (the same form sent again): nothing more was credited.".into()
        };
        Ok(Done { said, then: format!("/console/customers/{}", user.id) })
    };
    let again = async |flash, status| render(&console, &by, &id, &Paging::default(), Some(flash), status).await;
    by.conclude(&console, outcome.await, again).await
}
