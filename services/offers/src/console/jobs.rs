//! Parked jobs: what the workers gave up on, by topic, and a replay that
//! moves them back to their queue.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde::Deserialize;

use super::page::{self, Done, Flash, Refusal};
use super::session::{Access, Posted, Signed};
use super::{Console, State as Shared};

pub async fn list(State(console): State<Shared>, by: Signed) -> Response {
    let flash = by.flash.clone();
    render(&console, &by, flash, StatusCode::OK).await
}

async fn render(console: &Console, by: &Signed, flash: Option<Flash>, status: StatusCode) -> Response {
    let topics = match console.admin().parked_jobs(None, 20).await {
        Ok(topics) => topics,
        Err(error) => return page::failure(error),
    };
    let body = html! {
        @for topic in &topics {
            section.card {
                h2 { (topic.topic) " · " (topic.total) " parked" }
                @if !topic.jobs.is_empty() {
                    table {
                        thead { tr { th { "Parked" } th { "Deliveries" } th { "Why" } th { "Job" } } }
                        tbody {
                            @for job in &topic.jobs {
                                tr {
                                    td { (page::time(job.park_time)) }
                                    td { (job.delivery_count) }
                                    td { (job.reason) }
                                    td { code.payload { (String::from_utf8_lossy(&job.payload)) } }
                                }
                            }
                        }
                    }
                }
                @if by.access == Access::Operator && topic.total > 0 {
                    form method="post" action={ "/console/jobs/" (topic.topic) "/replay" } {
                        input type="hidden" name="csrf" value=(by.csrf);
                        label { "How many (empty for all)" input name="max" inputmode="numeric"; }
                        label { "Why" input name="note" required maxlength="1000"; }
                        button type="submit" { "Replay" }
                    }
                }
            }
        }
    };
    page::answer(status, page::layout("Jobs", by, flash.as_ref(), body))
}

#[derive(Deserialize)]
pub struct Replay {
    #[serde(default)]
    max: String,
    #[serde(default)]
    note: String,
}

pub async fn replay(
    State(console): State<Shared>,
    Path(topic): Path<String>,
    Posted { by, form }: Posted<Replay>,
) -> Response {
    let outcome = async {
        let max = match form.max.trim() {
            "" => None,
            text => match u32::try_from(page::number("How many", text)?) {
                Ok(n) if n > 0 => Some(n),
                _ => return Err(Refusal::Form("How many must be above zero.".into())),
            },
        };
        let note = page::reason(&form.note)?;
        let mut admin = console.admin();
        admin.act_as(&by.username, note);
        let moved = admin.replay_parked_jobs(&topic, max).await?;
        Ok(Done { said: format!("{moved} {topic} jobs back in their queue."), then: "/console/jobs".into() })
    };
    let again = async |flash, status| render(&console, &by, Some(flash), status).await;
    by.conclude(&console, outcome.await, again).await
}
