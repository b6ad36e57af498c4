//! Partners: their float and credit limit, their API keys (a new key's
//! secret is shown once, on the page that made it; revoke), status and
//! callback address.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use offers_proto::account::v1 as account_pb;
use offers_proto::partner::v1 as partner_pb;
use serde::Deserialize;

use super::page::{self, Done, Flash, Refusal};
use super::session::{Access, Posted, Signed};
use super::{Console, State as Shared};

#[derive(Deserialize, Default)]
pub struct Search {
    #[serde(default)]
    q: String,
    #[serde(default)]
    after: String,
}

pub async fn list(State(console): State<Shared>, by: Signed, Query(search): Query<Search>) -> Response {
    let request = partner_pb::ListPartnersRequest {
        name_contains: search.q.trim().into(),
        page_size: 50,
        page_token: search.after.clone(),
    };
    let page = match console.clients.partners.clone().list_partners(request).await {
        Ok(page) => page.into_inner(),
        Err(status) => return page::call_failed(status),
    };
    let body = html! {
        form.search method="get" action="/console/partners" {
            label { "Name contains" input name="q" value=(search.q.trim()); }
            button type="submit" { "Search" }
        }
        table {
            thead { tr { th { "Name" } th { "Status" } th { "Callback" } th { "Created" } } }
            tbody {
                @for p in &page.partners {
                    tr {
                        td { a href={ "/console/partners/" (page::escape(&p.name)) } { (p.name) } }
                        td { (status_label(p.status)) }
                        td { (p.callback_url) }
                        td { (page::time(p.create_time)) }
                    }
                }
            }
        }
        @if !page.next_page_token.is_empty() {
            p { a href={ "/console/partners?q=" (page::escape(search.q.trim())) "&after=" (page.next_page_token) } { "Next page" } }
        }
    };
    page::answer(StatusCode::OK, page::layout("Partners", &by, by.flash.as_ref(), body))
}

fn status_label(status: i32) -> &'static str {
    match partner_pb::PartnerStatus::try_from(status) {
        Ok(partner_pb::PartnerStatus::Active) => "active",
        Ok(partner_pb::PartnerStatus::Suspended) => "suspended",
        _ => "unknown",
    }
}

pub async fn show(State(console): State<Shared>, by: Signed, Path(name): Path<String>) -> Response {
    let flash = by.flash.clone();
    render(&console, &by, &name, flash, StatusCode::OK).await
}

async fn render(console: &Console, by: &Signed, name: &str, flash: Option<Flash>, status: StatusCode) -> Response {
    let partners = &mut console.clients.partners.clone();
    let fetched = async {
        let partner = partners
            .get_partner(partner_pb::GetPartnerRequest { name: name.into() })
            .await?
            .into_inner()
            .partner
            .unwrap_or_default();
        let keys = partners.list_api_keys(partner_pb::ListApiKeysRequest { partner_id: partner.id.clone() }).await?;
        let owner = account_pb::GetAccountRequest {
            owner_id: partner.id.clone(),
            kind: account_pb::AccountKind::Partner.into(),
        };
        let account = console.clients.ledger.clone().get_account(owner).await?.into_inner().account.unwrap_or_default();
        let deliveries = partner_pb::ListCallbackDeliveriesRequest {
            partner_id: partner.id.clone(),
            page_size: 20,
            page_token: String::new(),
        };
        let deliveries = partners.list_callback_deliveries(deliveries).await?.into_inner().deliveries;
        Ok::<_, tonic::Status>((partner, keys.into_inner().api_keys, account, deliveries))
    };
    let (partner, keys, account, deliveries) = match fetched.await {
        Ok(fetched) => fetched,
        Err(status) => return page::call_failed(status),
    };
    let base = format!("/console/partners/{}", page::escape(&partner.name));
    let acts = by.access == Access::Operator;
    let body = html! {
        dl.summary {
            dt { "Partner id" } dd { code { (partner.id) } }
            dt { "Status" } dd { (status_label(partner.status)) }
            dt { "Float" } dd.balance { (page::money(account.balance, &account.currency_code)) }
            dt { "Credit limit" } dd { (page::money(account.credit_limit, &account.currency_code)) }
            dt { "Callback" } dd { @if partner.callback_url.is_empty() { "none" } @else { code { (partner.callback_url) } } }
        }
        h2 { "API keys" }
        table {
            thead { tr { th { "Prefix" } th { "Created" } th { "Revoked" } th {} } }
            tbody {
                @for key in &keys {
                    tr id={ "key-" (key.id) } {
                        td { code { (key.prefix) } }
                        td { (page::time(key.create_time)) }
                        td { (page::time(key.revoke_time)) }
                        td {
                            @if acts && key.revoke_time.is_none() {
                                form.inline method="post" action={ (base) "/keys/" (key.id) "/revoke" } {
                                    input type="hidden" name="csrf" value=(by.csrf);
                                    input name="note" placeholder="Why revoke it" required maxlength="1000" aria-label="Why revoke it";
                                    button type="submit" { "Revoke" }
                                }
                            }
                        }
                    }
                }
            }
        }
        h2 { "Completion callbacks (newest 20)" }
        table.deliveries {
            thead { tr { th { "Queued" } th { "Reference" } th { "Status told" } th { "Attempts" } th { "Delivery" } th {} } }
            tbody {
                @for d in &deliveries {
                    tr id={ "callback-" (d.event_id) } {
                        td { (page::time(d.create_time)) }
                        td { (d.reference) }
                        td { (d.status) }
                        td { (d.attempts) }
                        td {
                            @if d.deliver_time.is_some() { "delivered " (page::time(d.deliver_time)) }
                            @else if d.abandon_time.is_some() { "abandoned: " (d.last_error) }
                            @else { "retrying" @if !d.last_error.is_empty() { ": " (d.last_error) } }
                        }
                        td {
                            @if acts && d.deliver_time.is_none() && d.abandon_time.is_some() {
                                form.inline method="post" action={ (base) "/callbacks/" (d.event_id) "/redeliver" } {
                                    input type="hidden" name="csrf" value=(by.csrf);
                                    input name="note" placeholder="Why send it again" required maxlength="1000" aria-label="Why send it again";
                                    button type="submit" { "Redeliver" }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if acts {
            form method="post" action={ (base) "/keys" } {
                input type="hidden" name="csrf" value=(by.csrf);
                label { "Why a new key" input name="note" required maxlength="1000"; }
                button type="submit" { "Create a key" }
            }
            form method="post" action={ (base) "/credit-limit" } {
                h2 { "Credit limit" }
                input type="hidden" name="csrf" value=(by.csrf);
                label { "Limit (minor units)" input name="limit" inputmode="numeric" value=(account.credit_limit) required; }
                label { "Why" input name="note" required maxlength="1000"; }
                button type="submit" { "Set the limit" }
            }
            form method="post" action={ (base) "/status" } {
                h2 { "Status" }
                input type="hidden" name="csrf" value=(by.csrf);
                @let suspended = partner.status == i32::from(partner_pb::PartnerStatus::Suspended);
                input type="hidden" name="status" value=(if suspended { "active" } else { "suspended" });
                label { "Why" input name="note" required maxlength="1000"; }
                button type="submit" { (if suspended { "Reactivate" } else { "Suspend (its keys are refused)" }) }
            }
        }
    };
    page::answer(status, page::layout(&format!("Partner {}", partner.name), by, flash.as_ref(), body))
}

#[derive(Deserialize)]
pub struct Note {
    #[serde(default)]
    note: String,
}

/// Runs `act` as the operator with the form's reason and its `value`, once
/// that was read without fault; success leaves `act`'s sentence and goes
/// back to the partner's page, a refusal shows it there.
async fn acting<V, T, F>(
    console: &Console,
    by: &Signed,
    name: &str,
    value: Result<V, Refusal>,
    note: &str,
    act: F,
) -> Response
where
    F: AsyncFnOnce(&mut crate::admin::AdminClient, String, V) -> anyhow::Result<T>,
    T: Into<String>,
{
    let outcome = async {
        let value = value?;
        let note = page::reason(note)?;
        let mut admin = console.admin();
        admin.act_as(&by.username, note);
        let partner = admin.partner(name).await?;
        let said = act(&mut admin, partner.id, value).await?.into();
        Ok(Done { said, then: format!("/console/partners/{}", page::escape(name)) })
    };
    let again = async |flash, status| render(console, by, name, Some(flash), status).await;
    by.conclude(console, outcome.await, again).await
}

pub async fn redeliver(
    State(console): State<Shared>,
    Path((name, event)): Path<(String, String)>,
    Posted { by, form }: Posted<Note>,
) -> Response {
    acting(&console, &by, &name, Ok(()), &form.note, async |admin, _, ()| {
        let queued = admin.redeliver_callback(&event).await?;
        Ok(format!("The callback {} is queued again.", queued.event_id))
    })
    .await
}

pub async fn revoke_key(
    State(console): State<Shared>,
    Path((name, key)): Path<(String, String)>,
    Posted { by, form }: Posted<Note>,
) -> Response {
    acting(&console, &by, &name, Ok(()), &form.note, async |admin, _, ()| {
        let revoked = admin.revoke_key(&key).await?;
        Ok(format!("Key {} revoked: calls with it are refused from now on.", revoked.prefix))
    })
    .await
}

#[derive(Deserialize)]
pub struct Limit {
    #[serde(default)]
    limit: String,
    #[serde(default)]
    note: String,
}

pub async fn set_credit_limit(
    State(console): State<Shared>,
    Path(name): Path<String>,
    Posted { by, form }: Posted<Limit>,
) -> Response {
    let limit = page::number("The limit", &form.limit);
    acting(&console, &by, &name, limit, &form.note, async |admin, id, limit| {
        let account = admin.set_credit_limit(&id, limit).await?;
        Ok(format!("The credit limit is now {}.", page::money(account.credit_limit, &account.currency_code)))
    })
    .await
}

#[derive(Deserialize)]
pub struct SetStatus {
    #[serde(default)]
    status: String,
    #[serde(default)]
    note: String,
}

pub async fn set_status(
    State(console): State<Shared>,
    Path(name): Path<String>,
    Posted { by, form }: Posted<SetStatus>,
) -> Response {
    let status = match form.status.as_str() {
        "active" => Ok(partner_pb::PartnerStatus::Active),
        "suspended" => Ok(partner_pb::PartnerStatus::Suspended),
        _ => Err(Refusal::Form("The status is active or suspended.".into())),
    };
    acting(&console, &by, &name, status, &form.note, async |admin, id, status| {
        let partner = admin.set_partner_status(&id, status).await?;
        Ok(format!("The partner is now {}.", status_label(partner.status)))
    })
    .await
}

/// Makes a key and shows its secret on this answer only: it is never
/// stored, so it cannot be shown again.
pub async fn create_key(
    State(console): State<Shared>,
    Path(name): Path<String>,
    Posted { by, form }: Posted<Note>,
) -> Response {
    let made = async {
        let note = page::reason(&form.note)?;
        let mut admin = console.admin();
        admin.act_as(&by.username, note);
        let partner = admin.partner(&name).await?;
        Ok::<_, Refusal>(admin.create_key(&partner.id, None).await?)
    };
    let (flash, status) = match made.await {
        Ok(made) => {
            let prefix = made.api_key.map(|k| k.prefix).unwrap_or_default();
            let said = format!("New key {prefix}: {} — copy it now; it is not shown again.", made.secret);
            (Flash::Done(said), StatusCode::CREATED)
        }
        Err(refusal) => {
            let (status, flash) = refusal.shown();
            (flash, status)
        }
    };
    render(&console, &by, &name, Some(flash), status).await
}
