//! The workloads, W1–W8: each measured closed-loop for its maximum, then
//! open-loop at half that rate for its latencies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{Method, StatusCode};
use offers_account::entity::transaction;
use offers_proto::catalog::v1 as catalog_pb;
use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use crate::driver::{self, Caller, Connect, Measured, Pace};
use crate::population::{self, Population};
use crate::report::{Latencies, Row};
use crate::target::Target;
use offers::roles::Role;

/// How long and how wide each measurement is.
#[derive(Debug, Clone, Copy)]
pub struct Phases {
    pub warmup: Duration,
    pub measure: Duration,
    pub connections: usize,
}

/// How long the backlog a workload left may take to settle.
const DRAIN: Duration = Duration::from_secs(300);

/// The closed-loop maximum and the open-loop latencies at half of it.
async fn max_then_half(connect: &Connect, phases: Phases) -> anyhow::Result<(Measured, Measured)> {
    let max = driver::run(connect, phases.connections, Pace::Closed, phases.warmup, phases.measure).await?;
    let rate = (max.per_second() / 2.0).max(1.0);
    let half = driver::run(connect, phases.connections, Pace::Rate(rate), phases.warmup, phases.measure).await?;
    Ok((max, half))
}

fn row(target: &Target, workload: &str, max: &Measured, half: &Measured) -> Row {
    Row::new(&target.backend.to_string(), workload, max, half.per_second(), Latencies::of(half))
        .peak_after(target.largest_peak_rss())
}

/// Requests made in turn by every user's token.
fn rotating<T: Send + Sync + 'static>(
    items: Vec<T>,
    make: impl Fn(&T, u64) -> http::Request<http_body_util::Full<Bytes>> + Send + Sync + 'static,
) -> Arc<driver::MakeRequest> {
    let next = AtomicU64::new(0);
    Arc::new(move || {
        let n = next.fetch_add(1, Ordering::Relaxed);
        make(&items[(n % items.len() as u64) as usize], n)
    })
}

/// The `ETag` the edge gives `path` now.
async fn etag_of(edge: std::net::SocketAddr, path: &str, auth: &str) -> anyhow::Result<String> {
    let mut connection = driver::http_connection(edge).await?;
    let answer =
        connection.send_request(driver::request(edge, Method::GET, path, &[("authorization", auth)], None)).await?;
    let tag = answer.headers().get(http::header::ETAG).and_then(|v| v.to_str().ok());
    Ok(tag.ok_or_else(|| anyhow::anyhow!("{path} answered without an ETag"))?.to_string())
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

pub async fn run_all(target: &Target, people: &Population, phases: Phases) -> anyhow::Result<Vec<Row>> {
    let edge = target.edge;
    let tokens: Vec<String> = people.users.iter().map(|(_, t)| bearer(t)).collect();
    let mut rows = Vec::new();

    let (max, half) = max_then_half(&list_offers(edge, &tokens), phases).await?;
    rows.push(row(target, "W1 GET /api/v1/offers/", &max, &half));

    // A client that keeps the list and revalidates it, as mobile apps do:
    // every answer a 304 with no body.
    let tag = etag_of(edge, "/api/v1/offers/", &tokens[0]).await?;
    let revalidate = rotating(tokens.clone(), move |auth, _| {
        let headers = [("authorization", auth.as_str()), ("if-none-match", tag.as_str())];
        driver::request(edge, Method::GET, "/api/v1/offers/", &headers, None)
    });
    let (max, half) = max_then_half(&driver::http(edge, StatusCode::NOT_MODIFIED, revalidate, None), phases).await?;
    rows.push(row(target, "W1r GET /api/v1/offers/ revalidated (304)", &max, &half));

    let (max, half) = max_then_half(&grpc_list(target.catalog_grpc, people), phases).await?;
    rows.push(row(target, "W2 gRPC ListOffers (catalog)", &max, &half));

    let (max, half) = max_then_half(&status_polls(edge, &tokens, people), phases).await?;
    rows.push(row(target, "W3 GET /api/v1/activation/status/{id}/", &max, &half));

    let (max, half) = max_then_half(&purchases(edge, &tokens, people, "w4"), phases).await?;
    let drain = population::drained(target, DRAIN).await?;
    rows.push(
        row(target, "W4 POST /api/v1/activation/ (accepted)", &max, &half)
            .note(format!("the backlog settled {:.1} s after the last", drain.as_secs_f64())),
    );

    // The accept path alone: with the workers stopped, nothing settles
    // while purchases come in, so the two stop sharing the two cores.
    // Only where the workers are processes of their own.
    if target.pause(Role::Worker, true)? {
        let measured = max_then_half(&purchases(edge, &tokens, people, "w4s"), phases).await;
        target.pause(Role::Worker, false)?;
        let (max, half) = measured?;
        let drain = population::drained(target, DRAIN).await?;
        rows.push(
            row(target, "W4s POST /api/v1/activation/ (accepted, workers stopped)", &max, &half)
                .note(format!("the workers settled the backlog {:.1} s after resuming", drain.as_secs_f64())),
        );
    }

    rows.push(end_to_end(target, &tokens, &people.offer_id, phases).await?);

    let (max, half) = max_then_half(&partner_activations(edge, people), phases).await?;
    population::drained(target, DRAIN).await?;
    rows.push(row(target, "W6 POST /api/v1/partner/activate/", &max, &half));

    let auth = bearer(&people.historian_token);
    let history = Arc::new(move || {
        driver::request(edge, Method::GET, "/api/v1/account/transactions/", &[("authorization", auth.as_str())], None)
    });
    let (max, half) = max_then_half(&driver::http(edge, StatusCode::OK, history, None), phases).await?;
    rows.push(row(target, "W7 GET /api/v1/account/transactions/ (long history)", &max, &half));

    let usernames: Vec<String> = people.members.iter().map(|(_, name)| name.clone()).collect();
    let login = rotating(usernames, move |username, _| {
        let json = serde_json::json!({ "username": username, "password": population::MEMBER_PASSWORD });
        driver::request(edge, Method::POST, "/api/v1/auth/login/", &[], Some(json_bytes(&json)))
    });
    let (max, half) = max_then_half(&driver::http(edge, StatusCode::OK, login, None), phases).await?;
    rows.push(row(target, "W8 POST /api/v1/auth/login/", &max, &half));
    Ok(rows)
}

/// The workloads the instruction counts take, each as its callers: W1,
/// W2, W3, W4 and W6 (the ones whose cost per request the profiles follow).
pub fn counted(target: &Target, people: &Population) -> Vec<(&'static str, Connect)> {
    let edge = target.edge;
    let tokens: Vec<String> = people.users.iter().map(|(_, t)| bearer(t)).collect();
    vec![
        ("W1 GET /api/v1/offers/", list_offers(edge, &tokens)),
        ("W2 gRPC ListOffers (catalog)", grpc_list(target.catalog_grpc, people)),
        ("W3 GET /api/v1/activation/status/{id}/", status_polls(edge, &tokens, people)),
        ("W4 POST /api/v1/activation/ (through its settlement)", purchases(edge, &tokens, people, "w4i")),
        ("W6 POST /api/v1/partner/activate/ (through its settlement)", partner_activations(edge, people)),
    ]
}

/// W1: the offer list through the edge, every user's token in turn.
fn list_offers(edge: SocketAddr, tokens: &[String]) -> Connect {
    let list = rotating(tokens.to_vec(), move |auth, _| {
        driver::request(edge, Method::GET, "/api/v1/offers/", &[("authorization", auth)], None)
    });
    driver::http(edge, StatusCode::OK, list, None)
}

/// W3: the status of seeded purchases, each polled by its owner.
fn status_polls(edge: SocketAddr, tokens: &[String], people: &Population) -> Connect {
    let polls: Vec<(String, String)> = people
        .statuses
        .iter()
        .map(|(user, id)| (tokens[*user].clone(), format!("/api/v1/activation/status/{id}/")))
        .collect();
    let status = rotating(polls, move |(auth, path), _| {
        driver::request(edge, Method::GET, path, &[("authorization", auth)], None)
    });
    driver::http(edge, StatusCode::OK, status, None)
}

/// W4: accepted purchases.
fn purchases(edge: SocketAddr, tokens: &[String], people: &Population, tag: &'static str) -> Connect {
    driver::http(edge, StatusCode::ACCEPTED, purchase(edge, tokens, &people.offer_id, tag), None)
}

/// W6: the demo partner activating the offer for each member in turn.
fn partner_activations(edge: SocketAddr, people: &Population) -> Connect {
    let (offer, price, key) = (people.offer_id.clone(), people.price, bearer(&people.partner_key));
    let members: Vec<String> = people.members.iter().map(|(id, _)| id.clone()).collect();
    let run = uuid::Uuid::new_v4().simple().to_string();
    let activate = rotating(members, move |user, n| {
        let idem = format!("bench-w6-{run}-{n}");
        let json = serde_json::json!({ "user_id": user, "offer_id": offer, "amount": price });
        let headers = [("authorization", key.as_str()), ("idempotency-key", idem.as_str())];
        driver::request(edge, Method::POST, "/api/v1/partner/activate/", &headers, Some(json_bytes(&json)))
    });
    driver::http(edge, StatusCode::ACCEPTED, activate, None)
}

fn json_bytes(value: &serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// Purchases of `offer` by every user in turn, each with its own key.
fn purchase(edge: SocketAddr, tokens: &[String], offer: &str, tag: &'static str) -> Arc<driver::MakeRequest> {
    let body = json_bytes(&serde_json::json!({ "offer_id": offer }));
    let run = uuid::Uuid::new_v4().simple().to_string();
    rotating(tokens.to_vec(), move |auth, n| {
        let key = format!("bench-{tag}-{run}-{n}");
        let headers = [("authorization", auth.as_str()), ("idempotency-key", key.as_str())];
        driver::request(edge, Method::POST, "/api/v1/activation/", &headers, Some(body.clone()))
    })
}

/// W5: how many activations per second go all the way to SUCCESS (a
/// closed-loop burst, timed until its last one settled), then at half that
/// rate how long each took from its POST to its settle.
async fn end_to_end(target: &Target, tokens: &[String], offer: &str, phases: Phases) -> anyhow::Result<Row> {
    let edge = target.edge;
    let since = chrono::Utc::now();
    let buy = purchase(edge, tokens, offer, "w5max");
    let burst = driver::http(edge, StatusCode::ACCEPTED, buy, None);
    let started = Instant::now();
    let max =
        driver::run(&burst, phases.connections, Pace::Closed, Duration::ZERO, phases.warmup + phases.measure).await?;
    population::drained(target, DRAIN).await?;
    let settled = settled_since(target, since).await?;
    let last = settled.values().map(|(_, at)| *at).max();
    let span = last.map_or(started.elapsed(), |at| (at - since).to_std().unwrap_or_default());
    let successes = settled.values().filter(|(status, _)| *status == transaction::Status::Success).count();
    let per_second = successes as f64 / span.as_secs_f64().max(0.001);

    let sent: Arc<Mutex<Vec<(String, SystemTime)>>> = Arc::default();
    let keep = sent.clone();
    let on_answer = Arc::new(move |body: &[u8], at: SystemTime| {
        if let Ok(reply) = serde_json::from_slice::<serde_json::Value>(body)
            && let Some(id) = reply["transaction_id"].as_str()
            && let Ok(mut sent) = keep.lock()
        {
            sent.push((id.to_string(), at));
        }
    });
    let since = chrono::Utc::now();
    let counted_from = SystemTime::now() + Duration::from_millis(50) + phases.warmup;
    let buy = purchase(edge, tokens, offer, "w5half");
    let steady = driver::http(edge, StatusCode::ACCEPTED, buy, Some(on_answer));
    let rate = (per_second / 2.0).max(1.0);
    let half = driver::run(&steady, phases.connections, Pace::Rate(rate), phases.warmup, phases.measure).await?;
    population::drained(target, DRAIN).await?;
    let settled = settled_since(target, since).await?;
    let mut through = Measured { seconds: half.seconds, ..Default::default() };
    for (id, at) in sent.lock().map(|s| s.clone()).unwrap_or_default() {
        if at < counted_from {
            continue;
        }
        match settled.get(&id) {
            Some((transaction::Status::Success, done)) => {
                let done = SystemTime::from(*done);
                through.latencies.push(done.duration_since(at).unwrap_or_default());
            }
            other => {
                through.errors += 1;
                through.first_error.get_or_insert(format!("{id} ended {other:?}"));
            }
        }
    }
    through.ok = through.latencies.len() as u64;
    through.latencies.sort_unstable();
    let max = Measured { ok: successes as u64, seconds: span.as_secs_f64(), errors: max.errors, ..max };
    Ok(Row::new(&target.backend.to_string(), "W5 activation POST → SUCCESS", &max, rate, Latencies::of(&through))
        .peak_after(target.largest_peak_rss())
        .note(format!("{} accepted in the burst settled within {:.1} s", successes, span.as_secs_f64())))
}

/// The status and last change of every transaction created since `since`.
async fn settled_since(
    target: &Target,
    since: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<HashMap<String, (transaction::Status, chrono::DateTime<chrono::Utc>)>> {
    let rows = transaction::Entity::find()
        .filter(transaction::Column::CreatedAt.gte(since))
        .filter(transaction::Column::Kind.eq(transaction::Kind::Activation))
        .all(&target.db)
        .await?;
    Ok(rows.into_iter().map(|t| (t.id.to_string(), (t.status, t.updated_at))).collect())
}

/// Callers of the public gRPC `ListOffers`, each on its own HTTP/2
/// connection, with every user's token in turn.
fn grpc_list(addr: SocketAddr, people: &Population) -> Connect {
    let tokens: Arc<Vec<String>> = Arc::new(people.users.iter().map(|(_, t)| t.clone()).collect());
    struct Grpc {
        client: CatalogServiceClient<tonic::transport::Channel>,
        tokens: Arc<Vec<String>>,
        next: usize,
    }
    impl Caller for Grpc {
        fn call(&mut self) -> driver::Call<'_> {
            Box::pin(async move {
                self.next = (self.next + 1) % self.tokens.len();
                let mut request = tonic::Request::new(catalog_pb::ListOffersRequest::default());
                let auth = bearer(&self.tokens[self.next]).parse().map_err(|_| "a token".to_string())?;
                request.metadata_mut().insert("authorization", auth);
                let answer =
                    self.client.list_offers(request).await.map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
                if answer.get_ref().offers.is_empty() {
                    return Err("no offers".into());
                }
                Ok(())
            })
        }
    }
    Connect::new(move || {
        let tokens = tokens.clone();
        async move {
            let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?.tcp_nodelay(true);
            let next = rand::random_range(0..tokens.len());
            Ok(Box::new(Grpc { client: CatalogServiceClient::new(endpoint.connect().await?), tokens, next })
                as Box<dyn Caller>)
        }
    })
}
