//! The catalog: every offer (withdrawn ones too), a new offer, and edits;
//! withdrawing an offer is an edit that takes it off sale.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use offers_proto::catalog::v1 as catalog_pb;
use serde::Deserialize;

use super::page::{self, Done, Flash, Refusal};
use super::session::{Access, Posted, Signed};
use super::{Console, State as Shared};
use crate::admin::Created;

#[derive(Deserialize, Default)]
pub struct Paging {
    #[serde(default)]
    after: String,
}

pub async fn list(State(console): State<Shared>, by: Signed, Query(paging): Query<Paging>) -> Response {
    let request = catalog_pb::ListAllOffersRequest { page_size: 50, page_token: paging.after };
    let page = match console.clients.catalog.clone().list_all_offers(request).await {
        Ok(page) => page.into_inner(),
        Err(status) => return page::call_failed(status),
    };
    let body = html! {
        @if by.access == Access::Operator { p { a.button href="/console/offers/new" { "New offer" } } }
        table {
            thead { tr { th { "Code" } th { "Name" } th { "Price" } th { "Days" } th { "Data MB" } th { "Minutes" } th { "SMS" } th { "On sale" } } }
            tbody {
                @for o in &page.offers {
                    tr {
                        td { a href={ "/console/offers/" (o.id) } { (o.code) } }
                        td { (o.name) }
                        td { (page::money(o.price, &o.currency_code)) }
                        td { (o.duration_days) } td { (o.data_mb) } td { (o.voice_minutes) } td { (o.sms) }
                        td { (if o.is_active { "yes" } else { "withdrawn" }) }
                    }
                }
            }
        }
        @if !page.next_page_token.is_empty() {
            p { a href={ "/console/offers?after=" (page.next_page_token) } { "Next page" } }
        }
    };
    page::answer(StatusCode::OK, page::layout("Offers", &by, by.flash.as_ref(), body))
}

/// What the offer form holds, as typed (so a mistake is shown in it).
#[derive(Deserialize, Default, Clone)]
pub struct OfferForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    price: String,
    #[serde(default)]
    duration_days: String,
    #[serde(default)]
    data_mb: String,
    #[serde(default)]
    voice_minutes: String,
    #[serde(default)]
    sms: String,
    #[serde(default)]
    on_sale: String,
    #[serde(default)]
    note: String,
}

impl OfferForm {
    fn of(offer: &catalog_pb::Offer) -> Self {
        OfferForm {
            code: offer.code.clone(),
            name: offer.name.clone(),
            description: offer.description.clone(),
            price: offer.price.to_string(),
            duration_days: offer.duration_days.to_string(),
            data_mb: offer.data_mb.to_string(),
            voice_minutes: offer.voice_minutes.to_string(),
            sms: offer.sms.to_string(),
            on_sale: if offer.is_active { "yes" } else { "no" }.into(),
            note: String::new(),
        }
    }

    /// The offer it describes, or what is wrong with it.
    fn offer(&self, currency: &str) -> Result<catalog_pb::Offer, Refusal> {
        let duration = page::number("The duration", &self.duration_days)?;
        Ok(catalog_pb::Offer {
            code: self.code.trim().into(),
            name: self.name.trim().into(),
            description: self.description.trim().into(),
            price: page::number("The price", &self.price)?,
            currency_code: currency.into(),
            duration_days: i32::try_from(duration).map_err(|_| Refusal::Form("The duration is too long.".into()))?,
            data_mb: page::number("Data", &self.data_mb)?,
            voice_minutes: page::number("Minutes", &self.voice_minutes)?,
            sms: page::number("SMS", &self.sms)?,
            is_active: self.on_sale != "no",
            ..Default::default()
        })
    }
}

fn form(by: &Signed, action: &str, values: &OfferForm, new: bool) -> Markup {
    let field = |label: &str, name: &str, value: &str| {
        html! { label { (label) input name=(name) value=(value) required; } }
    };
    html! {
        form.offer method="post" action=(action) {
            input type="hidden" name="csrf" value=(by.csrf);
            @if new { (field("Code (unique, never changes)", "code", &values.code)) }
            @else { p { "Code " code { (values.code) } } }
            (field("Name", "name", &values.name))
            label { "Description" textarea name="description" { (values.description) } }
            (field("Price (minor units)", "price", &values.price))
            (field("Duration (days)", "duration_days", &values.duration_days))
            (field("Data (MB)", "data_mb", &values.data_mb))
            (field("Voice (minutes)", "voice_minutes", &values.voice_minutes))
            (field("SMS", "sms", &values.sms))
            label { "On sale"
                select name="on_sale" {
                    option value="yes" selected[values.on_sale != "no"] { "yes" }
                    option value="no" selected[values.on_sale == "no"] { "no: withdrawn" }
                }
            }
            label { "Why (recorded in the audit trail)" textarea name="note" required maxlength="1000" { (values.note) } }
            button type="submit" { (if new { "Create the offer" } else { "Save" }) }
        }
    }
}

fn editor(by: &Signed, title: &str, action: &str, values: &OfferForm, new: bool, flash: Option<Flash>) -> Markup {
    let body = if by.access == Access::Operator {
        form(by, action, values, new)
    } else {
        html! { p { "Viewers see offers; operators change them." } }
    };
    page::layout(title, by, flash.as_ref(), body)
}

pub async fn blank(by: Signed) -> Response {
    let values = OfferForm { duration_days: "30".into(), on_sale: "yes".into(), ..OfferForm::default() };
    let flash = by.flash.clone();
    page::answer(StatusCode::OK, editor(&by, "New offer", "/console/offers", &values, true, flash))
}

pub async fn create(State(console): State<Shared>, Posted { by, form }: Posted<OfferForm>) -> Response {
    let outcome = async {
        let offer = form.offer(&console.currency)?;
        let note = page::reason(&form.note)?;
        let mut admin = console.admin();
        admin.act_as(&by.username, note);
        match admin.create_offer(offer).await? {
            Created::New(offer) => Ok(Done {
                said: format!("Offer {} created.", offer.code),
                then: format!("/console/offers/{}", offer.id),
            }),
            Created::Existing => {
                let taken = offers_kit::Error::new(
                    offers_kit::ErrorCode::AlreadyExists,
                    "An offer with this code exists already.",
                );
                Err(Refusal::Call(taken.into()))
            }
        }
    };
    let again = async |flash, status| {
        page::answer(status, editor(&by, "New offer", "/console/offers", &form, true, Some(flash)))
    };
    by.conclude(&console, outcome.await, again).await
}

async fn lookup(console: &Console, id: &str) -> Result<catalog_pb::Offer, Response> {
    let request = catalog_pb::LookupOfferRequest { id: id.into() };
    match console.clients.catalog.clone().lookup_offer(request).await {
        Ok(answer) => Ok(answer.into_inner().offer.unwrap_or_default()),
        Err(status) => Err(page::call_failed(status)),
    }
}

pub async fn edit(State(console): State<Shared>, by: Signed, Path(id): Path<String>) -> Response {
    let offer = match lookup(&console, &id).await {
        Ok(offer) => offer,
        Err(refused) => return refused,
    };
    let (title, action) = (format!("Offer {}", offer.code), format!("/console/offers/{id}"));
    let flash = by.flash.clone();
    page::answer(StatusCode::OK, editor(&by, &title, &action, &OfferForm::of(&offer), false, flash))
}

/// Every field the form edits (the code never changes).
const EDITED: [&str; 8] =
    ["name", "description", "price", "duration_days", "data_mb", "voice_minutes", "sms", "is_active"];

pub async fn update(
    State(console): State<Shared>,
    Path(id): Path<String>,
    Posted { by, form }: Posted<OfferForm>,
) -> Response {
    let current = match lookup(&console, &id).await {
        Ok(offer) => offer,
        Err(refused) => return refused,
    };
    let (title, action) = (format!("Offer {}", current.code), format!("/console/offers/{id}"));
    let values = OfferForm { code: current.code.clone(), ..form };
    let outcome = async {
        let offer = catalog_pb::Offer { id: current.id.clone(), ..values.offer(&console.currency)? };
        let note = page::reason(&values.note)?;
        let mut admin = console.admin();
        admin.act_as(&by.username, note);
        let offer = admin.update_offer(offer, EDITED.map(String::from).to_vec()).await?;
        let said = format!("Offer {} saved{}.", offer.code, if offer.is_active { "" } else { " (withdrawn)" });
        Ok(Done { said, then: format!("/console/offers/{}", offer.id) })
    };
    let again = async |flash, status| page::answer(status, editor(&by, &title, &action, &values, false, Some(flash)));
    by.conclude(&console, outcome.await, again).await
}
