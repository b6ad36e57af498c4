//! No caller chooses a label value: requests to made-up gRPC paths and
//! methods, on both gRPC listeners (gRPC over HTTP/2 and gRPC-Web over
//! HTTP/1.1, before and after the credential) and made-up REST paths and
//! HTTP methods, leave the set of series on `/metrics` as it was; and every
//! label of every series draws from a set named here.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::StreamExt;
use offers_tests::{Api, DevProcess};
use prost::Message;
use rand::Rng;

/// The series of a Prometheus text: name and labels of every sample.
async fn series(http: std::net::SocketAddr) -> BTreeSet<String> {
    let reply = Api::new(http).get("/metrics", None).await;
    assert_eq!(reply.status, 200);
    let text = reply.body.as_str().expect("text").to_string();
    text.lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_string()))
        .collect()
}

fn made_up(rng: &mut impl Rng, len: usize) -> String {
    (0..len).map(|_| char::from(rng.sample(rand::distr::Alphanumeric))).collect()
}

/// How the made-up requests reach the process.
struct Clients {
    h1: reqwest::Client,
    h2: reqwest::Client,
    credential: String,
}

/// One empty gRPC message frame.
const EMPTY_FRAME: [u8; 5] = [0; 5];

/// The `i`th made-up request: each kind names its parts at random, so only
/// a label that takes the caller's words grows with them.
async fn made_up_request(dev: &DevProcess, clients: &Clients, i: usize, words: [String; 3]) {
    let [a, b, c] = words;
    let grpc = |addr: std::net::SocketAddr, web: bool, path: String, credential: bool| {
        let (client, content_type) =
            if web { (&clients.h1, "application/grpc-web+proto") } else { (&clients.h2, "application/grpc") };
        let mut request = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", content_type)
            .header("te", "trailers")
            .body(EMPTY_FRAME.to_vec());
        if credential {
            request = request.bearer_auth(&clients.credential);
        }
        request
    };
    let http = |method: &str, path: String| {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a token");
        clients.h1.request(method, format!("http://{}{path}", dev.http))
    };
    let request = match i % 9 {
        0 => grpc(dev.grpc, true, format!("/{a}.{b}/{c}"), false),
        1 => grpc(dev.grpc, false, format!("/offers.auth.v1.AuthService/{a}"), false),
        2 => grpc(dev.grpc, false, format!("/{a}{b}{}", c.repeat(200)), false),
        3 => grpc(dev.internal_grpc, true, format!("/{a}/{b}"), false),
        4 => grpc(dev.internal_grpc, false, format!("/{a}.{b}/{c}"), true),
        5 => grpc(dev.internal_grpc, true, format!("/offers.account.v1.LedgerService/{a}"), true),
        6 => http("GET", format!("/api/v1/{a}/{b}/")),
        7 => http(&format!("X{}", a.to_uppercase()), format!("/{b}")),
        _ => http(&format!("Q{}", a.to_uppercase()), "/api/v1/offers/".to_string()),
    };
    let answer = request.send().await.expect("an answer");
    let _ = answer.bytes().await;
}

async fn made_up_requests(dev: &DevProcess, clients: &Clients, count: usize) {
    let batch: Vec<(usize, [String; 3])> = {
        let mut rng = rand::rng();
        (0..count).map(|i| (i, [made_up(&mut rng, 12), made_up(&mut rng, 12), made_up(&mut rng, 40)])).collect()
    };
    futures_util::stream::iter(batch)
        .for_each_concurrent(16, |(i, words)| made_up_request(dev, clients, i, words))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_cannot_grow_the_metrics() {
    let dev = DevProcess::start().await;
    let clients = Clients {
        h1: reqwest::Client::builder().http1_only().build().expect("client"),
        h2: reqwest::Client::builder().http2_prior_knowledge().build().expect("client"),
        credential: dev.internal_token(),
    };
    // Each kind once, so the `unknown` series and their codes exist, and
    // a purchase, so every part of the process has recorded something.
    made_up_requests(&dev, &clients, 9 * 3).await;
    let api = Api::new(dev.http);
    let token = api.login("demo", offers::dev::DEMO_PASSWORD).await.str("access_token").to_string();
    let offers = api.get("/api/v1/offers/", Some(&token)).await;
    // An offer the simulator provisions at once (the SIM- ones fail, stall or hold on purpose).
    let offer = offers.body["results"]
        .as_array()
        .and_then(|all| all.iter().find(|o| o["code"].as_str().is_some_and(|c| !c.starts_with("SIM-"))))
        .and_then(|o| o["id"].as_str())
        .expect("a plain offer")
        .to_string();
    let bought = api.post("/api/v1/activation/", Some(&token), &serde_json::json!({"offer_id": offer})).await;
    assert_eq!(bought.status, 202, "{}", bought.body);
    let status = format!("/api/v1/activation/status/{}/", bought.str("transaction_id"));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while api.get(&status, Some(&token)).await.body["status"] == "PENDING" {
        assert!(tokio::time::Instant::now() < deadline, "the purchase did not settle");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A scrape is itself a request the next one shows; and the periodic
    // reporters (the reconciler's gauges, the pool's, every 5 s) must each
    // have reported once: the set is settled when a scrape a period later
    // shows nothing new.
    series(dev.http).await;
    let mut before = series(dev.http).await;
    for _ in 0..5 {
        tokio::time::sleep(std::time::Duration::from_secs(6)).await;
        let later = series(dev.http).await;
        if later == before {
            break;
        }
        before = later;
    }

    made_up_requests(&dev, &clients, 9 * 1_000).await;
    let after = series(dev.http).await;
    let grown: Vec<_> = after.difference(&before).collect();
    assert!(grown.is_empty(), "{} new series, e.g. {:?}", grown.len(), grown.iter().take(5).collect::<Vec<_>>());
    assert_eq!(before.len(), after.len());

    let document = api.get("/api/v1/openapi.json", None).await.body;
    let routes: BTreeSet<String> = document["paths"].as_object().expect("paths").keys().cloned().collect();
    every_label_is_bounded(&after, &routes);
}

/// The value of one series on `/metrics`, 0 if it is not there yet.
async fn sample(http: std::net::SocketAddr, series: &str) -> u64 {
    let reply = Api::new(http).get("/metrics", None).await;
    let text = reply.body.as_str().expect("text").to_string();
    text.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0)
}

/// Histogram samples are folded into their buckets by the process itself,
/// between scrapes (it held every one until a scrape came, and `offers dev`
/// is never scraped): requests before and after a fold are all counted,
/// and each once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_once_across_folds_and_scrapes() {
    let dev = DevProcess::start().await;
    let api = Api::new(dev.http);
    let series = r#"offers_http_request_duration_seconds_count{route="/healthz",method="GET",status="200"}"#;
    let healthz = || async {
        for _ in 0..200 {
            assert_eq!(api.get("/healthz", None).await.status, 200);
        }
    };
    let first = sample(dev.http, series).await;
    healthz().await;
    // Longer than the fold's period, with no scrape meanwhile.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    healthz().await;
    assert_eq!(sample(dev.http, series).await, first + 400);
    healthz().await;
    assert_eq!(sample(dev.http, series).await, first + 600, "a scrape does not count anything twice");
}

/// The set a label's values must come from.
enum Bound {
    /// Exactly these.
    Values(&'static [&'static str]),
    /// A service the process serves (its descriptors), or `unknown`.
    GrpcService,
    /// A method of a service the process serves, or `unknown`.
    GrpcMethod,
    /// A route template of the REST document, or `unmatched`.
    Route,
    /// An HTTP status code.
    HttpStatus,
    /// A topic of the bus (`offers::TOPICS`).
    Topic,
    /// A partner's name, which only an operator sets.
    Partner,
}

const GRPC_CODES: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];
const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "other"];
const TX_STATUSES: &[&str] = &["SUCCESS", "FAILED"];
const TX_KINDS: &[&str] = &["ACTIVATION", "RENEWAL", "PARTNER_ACTIVATION", "GIFT", "AUTO_RENEWAL"];
const OUTBOX_TABLES: &[&str] = &["account_outbox", "notifier_outbox"];

/// Every label of every metric, and the set it draws from. A new label
/// fails the test until it is named here with its bounded set.
const LABELS: &[(&str, &str, Bound)] = &[
    ("offers_grpc_server_duration_seconds", "service", Bound::GrpcService),
    ("offers_grpc_server_duration_seconds", "method", Bound::GrpcMethod),
    ("offers_grpc_server_duration_seconds", "code", Bound::Values(GRPC_CODES)),
    ("offers_grpc_client_duration_seconds", "service", Bound::GrpcService),
    ("offers_grpc_client_duration_seconds", "method", Bound::GrpcMethod),
    ("offers_grpc_client_duration_seconds", "code", Bound::Values(GRPC_CODES)),
    ("offers_http_request_duration_seconds", "route", Bound::Route),
    ("offers_http_request_duration_seconds", "method", Bound::Values(HTTP_METHODS)),
    ("offers_http_request_duration_seconds", "status", Bound::HttpStatus),
    ("offers_provider_call_duration_seconds", "call", Bound::Values(&["activate", "inquiry"])),
    (
        "offers_provider_call_duration_seconds",
        "outcome",
        Bound::Values(&["provisioned", "rejected", "unknown", "not_provisioned"]),
    ),
    ("offers_activation_settle_duration_seconds", "status", Bound::Values(TX_STATUSES)),
    ("offers_activation_settle_duration_seconds", "kind", Bound::Values(TX_KINDS)),
    ("offers_ledger_settled_total", "status", Bound::Values(TX_STATUSES)),
    ("offers_ledger_settled_total", "kind", Bound::Values(TX_KINDS)),
    ("offers_ledger_purchases_total", "kind", Bound::Values(TX_KINDS)),
    (
        "offers_worker_jobs_total",
        "result",
        Bound::Values(&[
            "stale",
            "provisioned",
            "rejected",
            "retry",
            "inquired_provisioned",
            "inquired_not_provisioned",
            "review",
        ]),
    ),
    (
        "offers_renewals_total",
        "outcome",
        Bound::Values(&[
            "renewed",
            "provisioning_failed",
            "insufficient_balance",
            "offer_inactive",
            "price_changed",
            "lapsed",
            "other",
        ]),
    ),
    ("offers_activation_status_cache_total", "result", Bound::Values(&["hit", "expired", "miss"])),
    ("offers_catalog_cache_total", "result", Bound::Values(&["hit", "miss", "stale"])),
    ("offers_db_pool_connections", "state", Bound::Values(&["in_use", "idle"])),
    ("offers_outbox_backlog", "table", Bound::Values(OUTBOX_TABLES)),
    ("offers_outbox_oldest_age_seconds", "table", Bound::Values(OUTBOX_TABLES)),
    ("offers_outbox_publish_failures_total", "table", Bound::Values(OUTBOX_TABLES)),
    ("offers_outbox_published_total", "topic", Bound::Topic),
    ("offers_bus_published_total", "topic", Bound::Topic),
    ("offers_bus_redelivered_total", "topic", Bound::Topic),
    ("offers_bus_consumed_total", "topic", Bound::Topic),
    ("offers_bus_consumed_total", "outcome", Bound::Values(&["ack", "requeue"])),
    ("offers_bus_parked_total", "topic", Bound::Topic),
    ("offers_bus_queue_depth", "topic", Bound::Topic),
    ("offers_bus_parked_jobs", "topic", Bound::Topic),
    ("offers_partner_requests_total", "partner", Bound::Partner),
    ("offers_partner_rate_limited_total", "partner", Bound::Partner),
    ("offers_partner_activations_total", "partner", Bound::Partner),
    ("offers_partner_callbacks_total", "result", Bound::Values(&["refused", "delivered", "abandoned", "retry"])),
    ("offers_reminders_sent_total", "channel", Bound::Values(&["email", "sms"])),
    ("offers_reminders_failed_total", "channel", Bound::Values(&["email", "sms"])),
];

/// (service → methods) of everything the process can serve.
fn served_methods() -> BTreeMap<String, BTreeSet<String>> {
    let sets = [
        offers_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut served: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for set in sets {
        for file in prost_types::FileDescriptorSet::decode(set).expect("descriptors").file {
            for service in &file.service {
                let methods = served.entry(format!("{}.{}", file.package(), service.name())).or_default();
                methods.extend(service.method.iter().map(|m| m.name().to_string()));
            }
        }
    }
    served
}

/// `name{a="x",b="y"}` → (family, labels), the family without the
/// histogram's `_bucket`, `_sum`, `_count`.
fn parse(series: &str) -> (String, Vec<(String, String)>) {
    let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
    let family = ["_bucket", "_sum", "_count"].iter().fold(name, |n, suffix| n.strip_suffix(suffix).unwrap_or(n));
    let labels = labels
        .trim_end_matches('}')
        .split("\",")
        .filter(|pair| !pair.is_empty())
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect();
    (family.to_string(), labels)
}

fn every_label_is_bounded(series: &BTreeSet<String>, routes: &BTreeSet<String>) {
    let served = served_methods();
    let unknown = offers_kit::grpc::UNKNOWN;
    for one in series {
        let (family, labels) = parse(one);
        for (label, value) in labels.iter().filter(|(label, _)| label != "le") {
            let Some((_, _, bound)) = LABELS.iter().find(|(f, l, _)| *f == family && l == label) else {
                panic!("{family}{{{label}}} draws from no set named in LABELS: {one}")
            };
            let bounded = match bound {
                Bound::Values(values) => values.contains(&value.as_str()),
                Bound::GrpcService => value == unknown || served.contains_key(value),
                Bound::GrpcMethod => value == unknown || served.values().any(|methods| methods.contains(value)),
                Bound::Route => value == "unmatched" || routes.contains(value),
                Bound::HttpStatus => value.len() == 3 && value.parse::<u16>().is_ok(),
                Bound::Topic => offers::TOPICS.contains(&value.as_str()),
                Bound::Partner => value == offers::dev::DEMO_PARTNER,
            };
            assert!(bounded, "{family}{{{label}=\"{value}\"}} is outside its set");
        }
    }
}
