//! The production shape at work: what every process measures, calls spread
//! over replicas, and a process stopped in the middle of a burst.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use offers::roles::Role;
use offers_harness::local::Replicas;
use offers_tests::provider::{Answer, StubProvider};
use offers_tests::{Api, TestSuite, both};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value;
use serde_json::json;

/// Whether the Prometheus text has a sample of `name` carrying every label.
fn has_series(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    text.lines().any(|line| {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('{'))
            .is_some_and(|rest| labels.iter().all(|(k, v)| rest.contains(&format!("{k}=\"{v}\""))))
    })
}

/// The sample value of the one series of `name` with these labels, or 0.
fn value_of(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| has_series(line, name, labels))
        .filter_map(|line| line.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
        .sum()
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let reply = Api::new(addr).get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    reply.body.as_str().expect("text").to_string()
}

/// A purchase through to settlement, and a miss, seen in the histograms.
async fn red_metrics_name_routes_methods_and_codes(suite: &TestSuite) {
    let bought = suite.demo_buys("DATA-1GB").await;
    let id = bought.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&bought.token, &id).await.body["status"], "SUCCESS");
    assert_eq!(suite.api.get("/api/v1/no-such-thing/", None).await.status, 404);
    let text = scrape(suite.http_addr).await;
    let http = "offers_http_request_duration_seconds_bucket";
    assert!(has_series(&text, http, &[("route", "/api/v1/activation/"), ("method", "POST"), ("status", "202")]));
    let status_route = "/api/v1/activation/status/{transaction_id}/";
    assert!(has_series(&text, http, &[("route", status_route), ("method", "GET"), ("status", "200")]), "{text}");
    assert!(has_series(&text, http, &[("route", "unmatched"), ("status", "404")]), "no path becomes a label");
    let server = "offers_grpc_server_duration_seconds_bucket";
    let activate = [("service", "offers.activation.v1.ActivationService"), ("method", "ActivateOffer")];
    assert!(has_series(&text, server, &[activate[0], activate[1], ("code", "OK")]));
    let client = "offers_grpc_client_duration_seconds_bucket";
    let settle = [("service", "offers.account.v1.LedgerService"), ("method", "SettleTransaction"), ("code", "OK")];
    assert!(has_series(&text, client, &settle));
    let provider = "offers_provider_call_duration_seconds_bucket";
    assert!(has_series(&text, provider, &[("call", "activate"), ("outcome", "provisioned"), ("le", "30")]));
    let settled = "offers_activation_settle_duration_seconds_bucket";
    assert!(has_series(&text, settled, &[("status", "SUCCESS"), ("kind", "ACTIVATION"), ("le", "600")]), "{text}");
    assert!(has_series(&text, "offers_db_pool_connections", &[("state", "idle")]));
}

both!(red_metrics_name_routes_methods_and_codes);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_process_measures_its_own_part() {
    let Some(suite) = TestSuite::spawn_processes().await else { return };
    let bought = suite.demo_buys("DATA-1GB").await;
    let id = bought.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&bought.token, &id).await.body["status"], "SUCCESS");
    let Some(deployment) = suite.processes() else { return };
    let edge = scrape(deployment.edge()).await;
    let activate = [("route", "/api/v1/activation/"), ("method", "POST"), ("status", "202")];
    assert!(has_series(&edge, "offers_http_request_duration_seconds_bucket", &activate));
    let upstream = [("service", "offers.activation.v1.ActivationService"), ("method", "ActivateOffer"), ("code", "OK")];
    assert!(has_series(&edge, "offers_grpc_client_duration_seconds_bucket", &upstream));
    assert!(
        !has_series(&edge, "offers_provider_call_duration_seconds_bucket", &[]),
        "the edge never calls the provider"
    );
    let mut provider_calls = 0.0;
    for worker in deployment.members_of(Role::Worker) {
        let text = scrape(worker.http).await;
        provider_calls += value_of(&text, "offers_provider_call_duration_seconds_count", &[("call", "activate")]);
    }
    assert_eq!(provider_calls, 1.0, "one provisioning call, by one of the workers");
    let account = deployment.members_of(Role::Account).next().expect("account");
    let text = scrape(account.http).await;
    let settle = [("service", "offers.account.v1.LedgerService"), ("method", "SettleTransaction"), ("code", "OK")];
    assert!(has_series(&text, "offers_grpc_server_duration_seconds_bucket", &settle));
    assert!(has_series(&text, "offers_activation_settle_duration_seconds_bucket", &[("status", "SUCCESS")]));
    // The job's way out: the outbox relay and the broker, seen by account.
    assert!(value_of(&text, "offers_outbox_published_total", &[]) >= 1.0, "{text}");
    assert!(value_of(&text, "offers_bus_published_total", &[]) >= 1.0, "{text}");
    assert!(has_series(&text, "offers_outbox_oldest_age_seconds", &[("table", "account_outbox")]), "{text}");
    assert!(has_series(&text, "offers_db_pool_connections", &[("state", "in_use")]), "{text}");
    // ... and in: the workers consumed it.
    let mut consumed = 0.0;
    for worker in deployment.members_of(Role::Worker) {
        consumed += value_of(&scrape(worker.http).await, "offers_bus_consumed_total", &[("outcome", "ack")]);
    }
    assert!(consumed >= 1.0, "a worker consumed and acked the job");
    // The catalog's cache: the first list of a fresh suite misses, the next hits.
    assert_eq!(suite.api.get("/api/v1/offers/", Some(&bought.token)).await.status, 200);
    let catalog = deployment.members_of(Role::Catalog).next().expect("catalog");
    let text = scrape(catalog.http).await;
    let (hits, misses) = (
        value_of(&text, "offers_catalog_cache_total", &[("result", "hit")]),
        value_of(&text, "offers_catalog_cache_total", &[("result", "miss")]),
    );
    assert!(hits >= 1.0 && misses >= 1.0, "hits {hits}, misses {misses}");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_one_gateway_reaches_both_catalogs() {
    let replicas = Replicas::default().set(Role::Catalog, 2);
    let Some(suite) = TestSuite::spawn_processes_with(replicas, Vec::new(), |_| {}).await else { return };
    let token = suite.token("demo").await;
    let Some(deployment) = suite.processes() else { return };
    // The gateway's first connections race: a replica that was not yet
    // accepting when the gateway probed is left out until the next
    // resolution round (every 5 s), so bursts all go to the other until
    // then. Once both are connected, a burst is spread; a gateway that kept
    // to one replica never spreads, however long this waits.
    let mut served = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        let burst = (0..40).map(|_| suite.api.get("/api/v1/offers/", Some(&token)));
        for reply in futures_util::future::join_all(burst).await {
            assert_eq!(reply.status, 200, "{}", reply.body);
        }
        served.clear();
        for catalog in deployment.members_of(Role::Catalog) {
            let text = scrape(catalog.http).await;
            let list = [("service", "offers.catalog.v1.CatalogService"), ("method", "ListOffers")];
            served.push(value_of(&text, "offers_grpc_server_duration_seconds_count", &list));
        }
        if served.iter().all(|&n| n > 0.0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(served.len(), 2);
    assert!(served.iter().all(|&n| n > 0.0), "both catalogs served the bursts: {served:?}");
    assert!(served.iter().sum::<f64>() >= 40.0, "{served:?}");
    suite.stop().await;
}

/// A well-behaved client: the same Idempotency-Key until an answer that
/// is not "unavailable" (or no answer at all, while the edge restarts).
async fn buy_until_accepted(api: Api, token: String, offer: String, key: String) -> String {
    for _ in 0..300 {
        let reply = api
            .post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": offer}), &[("Idempotency-Key", &key)])
            .await;
        match reply.status {
            202 => return reply.str("transaction_id").to_string(),
            0 | 502..=504 => tokio::time::sleep(Duration::from_millis(100)).await,
            _ => panic!("unexpected answer {}: {}", reply.status, reply.body),
        }
    }
    panic!("{key} was never accepted")
}

/// Each purchase of `ids` ends SUCCESS, and the demo user paid for each once.
async fn each_sold_once(suite: &TestSuite, token: &str, before: i64, mut ids: Vec<String>, keys: usize) {
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), keys, "one transaction per key");
    for id in &ids {
        assert_eq!(suite.settled(token, id).await.body["status"], "SUCCESS", "{id}");
    }
    assert_eq!(suite.balance(token).await, before - 500 * keys as i64, "each purchase charged exactly once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_in_a_burst_loses_and_duplicates_nothing() {
    // One replica of activation and of the worker stops mid-burst; the
    // other replica takes over, so no buyer sees anything but its 202.
    let Some(mut suite) = TestSuite::spawn_processes().await else { return };
    let token = suite.token("demo").await;
    let before = suite.balance(&token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let burst: Vec<_> = (0..30)
        .map(|i| {
            let (api, token, offer) = (suite.api.clone(), token.clone(), offer.clone());
            tokio::spawn(async move {
                let key = format!("burst-{i}");
                let headers = [("Idempotency-Key", key.as_str())];
                let reply =
                    api.post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": offer}), &headers).await;
                assert_eq!(reply.status, 202, "{key}: {}", reply.body);
                reply.str("transaction_id").to_string()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let grace = suite.settings.shutdown_grace + Duration::from_secs(1);
    let deployment = suite.deployment();
    for role in [Role::Activation, Role::Worker] {
        let member = deployment.members_of(role).next().expect("a replica").clone();
        let exit = deployment.terminate(&member, grace).await.expect("signal");
        assert_eq!(exit, Some(0), "{} exits cleanly within the grace period", member.name());
    }
    let mut ids = Vec::new();
    for task in burst {
        ids.push(task.await.expect("every purchase accepted"));
    }
    each_sold_once(&suite, &token, before, ids, 30).await;
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_process_stops_cleanly_under_load_and_comes_back() {
    // Each kind of process in turn gets SIGTERM while purchases are under
    // way, exits cleanly within the grace period, and is started again;
    // buyers retry with their key while a role without a second replica
    // is away. Nothing is lost, nothing is charged twice.
    let Some(mut suite) = TestSuite::spawn_processes().await else { return };
    let token = suite.token("demo").await;
    let before = suite.balance(&token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let grace = suite.settings.shutdown_grace + Duration::from_secs(1);
    let mut ids = Vec::new();
    let mut keys = 0;
    for &role in Role::ALL {
        let burst: Vec<_> = (0..6)
            .map(|i| {
                let key = format!("{role}-{i}");
                tokio::spawn(buy_until_accepted(suite.api.clone(), token.clone(), offer.clone(), key))
            })
            .collect();
        keys += burst.len();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let deployment = suite.deployment();
        let member = deployment.members_of(role).next().expect("a process").clone();
        let exit = deployment.terminate(&member, grace).await.expect("signal");
        assert_eq!(exit, Some(0), "{} exits cleanly within the grace period", member.name());
        deployment.restart(&member, Duration::from_secs(60)).await.expect("starts again");
        for task in burst {
            ids.push(task.await.expect("buyer"));
        }
    }
    each_sold_once(&suite, &token, before, ids, keys).await;
    suite.stop().await;
}

/// Spans as an OTLP collector receives them: (service, trace id, span name).
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<(String, String, String)>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().expect("lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| r.attributes.iter())
                .find(|a| a.key == "service.name")
                .and_then(|a| a.value.as_ref())
                .and_then(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                spans.push((service.clone(), hex::encode(&span.trace_id), span.name));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse { partial_success: None }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_activation_is_one_trace_across_the_processes() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let otlp = listener.local_addr().expect("addr");
    let server = tonic::transport::Server::builder()
        .add_service(TraceServiceServer::new(collector.clone()))
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    tokio::spawn(server);
    // Export batches quickly, so the test need not wait long for them.
    let env = vec![("OTEL_BSP_SCHEDULE_DELAY".to_string(), "200".to_string())];
    let provider = StubProvider::start(|_| Answer::ok(), |_| Answer::not_found()).await;
    let provider_url = provider.url.clone();
    let configure = |s: &mut offers::settings::Settings| {
        s.telemetry.otlp_endpoint = Some(format!("http://{otlp}"));
        s.provisioning.url = Some(provider_url);
    };
    let Some(suite) = TestSuite::spawn_processes_with(Replicas::default(), env, configure).await else { return };
    let token = suite.token("demo").await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    // The caller's trace: everything the purchase causes joins it.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-{}-01", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let accepted = suite
        .api
        .post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": offer}), &[("traceparent", &traceparent)])
        .await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.str("transaction_id").to_string();
    assert_eq!(suite.settled(&token, &id).await.body["status"], "SUCCESS");

    let wanted = ["offers-gateway", "offers-activation", "offers-account", "offers-worker"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let services = loop {
        let services: BTreeSet<String> = collector
            .0
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, trace, _)| *trace == trace_id)
            .map(|(service, _, _)| service.clone())
            .collect();
        if wanted.iter().all(|w| services.contains(*w)) || tokio::time::Instant::now() > deadline {
            break services;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for service in wanted {
        assert!(services.contains(service), "no span of {service} in the trace; got {services:?}");
    }
    // The provisioning system was called within the same trace.
    let sent = provider.traceparents();
    assert!(sent.len() == 1 && sent[0].starts_with(&format!("00-{trace_id}-")), "{sent:?}");
    let Some(deployment) = suite.processes() else { return };
    let in_trace = format!("\"trace_id\":\"{trace_id}\"");
    let mut logged = Vec::new();
    for member in &deployment.members {
        let log = std::fs::read_to_string(&member.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().filter(|line| line.contains(&in_trace)).collect();
        if lines.is_empty() {
            continue;
        }
        logged.push(member.name());
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
            assert!(event["span_id"].as_str().is_some_and(|s| s.len() == 16), "{line}");
        }
    }
    assert!(logged.len() >= 3, "the trace id is in the logs of {logged:?}");
    let edge = deployment.members_of(Role::Gateway).next().expect("gateway");
    let edge_log = std::fs::read_to_string(&edge.log).unwrap_or_default();
    let request_id = accepted.header("x-request-id").expect("request id");
    assert!(
        edge_log.lines().any(|l| l.contains(&in_trace) && l.contains(&format!("\"request_id\":\"{request_id}\""))),
        "the edge's lines carry the request id"
    );
    suite.stop().await;
}
