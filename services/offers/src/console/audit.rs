//! The audit trail of every administrative act, from the console, the CLI
//! or any internal caller, newest first, filtered by actor, action or
//! target.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use offers_proto::audit::v1 as audit_pb;
use serde::Deserialize;

use super::State as Shared;
use super::page;
use super::session::Signed;

#[derive(Deserialize, Default)]
pub struct Filter {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    limit: Option<usize>,
}

const PAGE: usize = 50;
const MOST: usize = 1000;

pub async fn list(State(console): State<Shared>, by: Signed, Query(filter): Query<Filter>) -> Response {
    let limit = filter.limit.unwrap_or(PAGE).clamp(1, MOST);
    let request = audit_pb::ListAuditEntriesRequest {
        actor: filter.actor.trim().into(),
        action: filter.action.trim().into(),
        target: filter.target.trim().into(),
        ..Default::default()
    };
    // One more than shown tells whether there are more.
    let entries = match console.admin().audit_entries(&request, limit + 1).await {
        Ok(entries) => entries,
        Err(error) => return page::failure(error),
    };
    let more = entries.len() > limit;
    let body = html! {
        form.search method="get" action="/console/audit" {
            label { "Actor" input name="actor" value=(request.actor); }
            label { "Action" input name="action" value=(request.action) placeholder="e.g. transaction.resolve"; }
            label { "Target" input name="target" value=(request.target); }
            button type="submit" { "Filter" }
        }
        table.audit {
            thead { tr { th { "When" } th { "Who" } th { "Action" } th { "Target" } th { "Why" } th { "Detail" } th { "Request id" } } }
            tbody {
                @for e in entries.iter().take(limit) {
                    tr {
                        td { (page::time(e.time)) }
                        td.actor { (e.actor) }
                        td.action { (e.action) }
                        td { code { (e.target) } }
                        td.note { (e.note) }
                        td { (e.detail) }
                        td { code { (e.request_id) } }
                    }
                }
            }
        }
        @if more && limit < MOST {
            p { a href={ "/console/audit?actor=" (page::escape(&request.actor)) "&action=" (page::escape(&request.action)) "&target=" (page::escape(&request.target)) "&limit=" (limit.saturating_mul(2).min(MOST)) } { "Show more" } }
        }
    };
    page::answer(StatusCode::OK, page::layout("Audit", &by, by.flash.as_ref(), body))
}
