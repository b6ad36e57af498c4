use std::collections::BTreeSet;
use std::time::Duration;

use offers_proto::auth::v1::GetUserRequest;
use offers_proto::auth::v1::get_user_request::Lookup;
use offers_proto::auth::v1::user_admin_service_client::UserAdminServiceClient;
use offers_tests::{Backend, TestSuite, across_processes, both, each_backend};
use serde_json::json;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Every path the gateway serves, with its methods.
const SERVED: &[(&str, &str)] = &[
    ("/api/v1/auth/login/", "post"),
    ("/api/v1/auth/refresh/", "post"),
    ("/api/v1/auth/logout/", "post"),
    ("/api/v1/auth/profile/", "get"),
    ("/api/v1/offers/", "get"),
    ("/api/v1/offers/{offer_id}/", "get"),
    ("/api/v1/offers/renew/", "post"),
    ("/api/v1/activation/", "post"),
    ("/api/v1/activation/status/{transaction_id}/", "get"),
    ("/api/v1/account/balance/", "get"),
    ("/api/v1/account/subscriptions/", "get"),
    ("/api/v1/account/subscriptions/{subscription_id}/", "patch"),
    ("/api/v1/account/transactions/", "get"),
    ("/api/v1/account/transactions/{transaction_id}/", "get"),
    ("/api/v1/partner/activate/", "post"),
    ("/api/v1/partner/validate/{reference}/", "get"),
    ("/api/v1/partner/callback/", "post"),
    ("/api/v1/partner/balance/", "get"),
    ("/api/v1/partner/transactions/", "get"),
    ("/api/v1/openapi.json", "get"),
    ("/.well-known/jwks.json", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
];

async fn openapi_lists_every_served_path(suite: &TestSuite) {
    let doc = suite.api.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.status, 200);
    assert!(doc.body["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", doc.body["openapi"]);
    let documented: BTreeSet<(String, String)> = doc.body["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(path, item)| item.as_object().expect("item").keys().map(move |m| (path.clone(), m.clone())))
        .collect();
    let served: BTreeSet<(String, String)> = SERVED.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(documented, served);

    // And each documented path is really routed: never the fallback's 404.
    let token = suite.token("demo").await;
    for (path, method) in SERVED {
        let concrete = path
            .replace("{offer_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{transaction_id}", &uuid::Uuid::now_v7().to_string())
            .replace("{reference}", "REF-000000000000");
        let reply = match *method {
            "get" => suite.api.get(&concrete, Some(&token)).await,
            _ => suite.api.post(&concrete, Some(&token), &json!({})).await,
        };
        assert!(
            !(reply.status == 404 && reply.body["detail"] == "no such path"),
            "{method} {path} is documented but not served"
        );
    }
}

async fn every_answer_carries_a_request_id(suite: &TestSuite) {
    let health = suite.api.get("/healthz", None).await;
    assert_eq!(health.status, 200);
    assert!(health.header("x-request-id").is_some_and(|id| !id.is_empty()));
    let unknown = suite.api.get("/api/v1/nothing-here/", None).await;
    unknown.assert_problem(404, "not_found");
    // A request id the client sends is kept.
    let reply = suite
        .api
        .post_with(
            "/api/v1/auth/login/",
            None,
            &json!({"username": "demo", "password": "demo-password"}),
            &[("x-request-id", "req-from-client-42")],
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("req-from-client-42"));
}

async fn wrong_methods_get_a_problem(suite: &TestSuite) {
    let token = suite.token("demo").await;
    suite.api.get("/api/v1/offers/renew/", Some(&token)).await.assert_problem(405, "method_not_allowed");
    suite
        .api
        .post("/api/v1/account/balance/", Some(&token), &json!({}))
        .await
        .assert_problem(405, "method_not_allowed");
}

async fn oversized_bodies_are_refused(suite: &TestSuite) {
    let huge = "x".repeat(suite.settings.gateway.body_limit_bytes + 1);
    let reply = suite.api.post("/api/v1/auth/login/", None, &json!({"username": huge, "password": "p"})).await;
    reply.assert_problem(413, "payload_too_large");
}

async fn readiness_and_metrics(suite: &TestSuite) {
    let ready = suite.api.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["checks"]["database"], "ok");
    suite.api.login("demo", "demo-password").await;
    let metrics = suite.api.get("/metrics", None).await;
    assert_eq!(metrics.status, 200);
}

async fn grpc_health_and_internal_credential(suite: &TestSuite) {
    for channel in [suite.public_channel().await, suite.internal_channel().await] {
        let mut health = HealthClient::new(channel);
        for service in ["", "offers.auth.v1.AuthService", "offers.catalog.v1.CatalogService"] {
            let answer = health.check(HealthCheckRequest { service: service.into() }).await;
            // Public services are on the public listener only; the overall status is on both.
            if let Ok(answer) = answer {
                assert_eq!(answer.into_inner().status(), ServingStatus::Serving, "{service}");
            }
        }
    }
    let mut health = HealthClient::new(suite.public_channel().await);
    let answer =
        health.check(HealthCheckRequest { service: "offers.auth.v1.AuthService".into() }).await.expect("health");
    assert_eq!(answer.into_inner().status(), ServingStatus::Serving);

    // The internal listener refuses callers without the credential, user tokens included.
    let mut users = UserAdminServiceClient::new(suite.internal_channel().await);
    let lookup = || GetUserRequest { lookup: Some(Lookup::Username("demo".into())) };
    let status = users.get_user(lookup()).await.expect_err("no credential");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);
    let token = suite.token("demo").await;
    let mut request = tonic::Request::new(lookup());
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    assert_eq!(users.get_user(request).await.expect_err("user token").code(), tonic::Code::Unauthenticated);
    let found = suite.admin().clients.users.get_user(lookup()).await.expect("with the credential").into_inner();
    assert_eq!(found.user.expect("user").username, "demo");

    // Internal services are not on the public listener at all.
    let mut public = UserAdminServiceClient::new(suite.public_channel().await);
    assert_eq!(public.get_user(lookup()).await.expect_err("not served").code(), tonic::Code::Unimplemented);
}

/// The services a listener lists over reflection (`v1` or `v1alpha`), with
/// the service credential when given.
macro_rules! listed_services {
    ($version:ident, $channel:expr, $credential:expr) => {{
        use tonic_reflection::pb::$version::ServerReflectionRequest;
        use tonic_reflection::pb::$version::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::$version::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::$version::server_reflection_response::MessageResponse;
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut request = tonic::Request::new(tokio_stream::iter([ask]));
        if let Some(credential) = $credential {
            request.metadata_mut().insert("authorization", format!("Bearer {credential}").parse().expect("ascii"));
        }
        match ServerReflectionClient::new($channel).server_reflection_info(request).await {
            Err(status) => Err(status.code()),
            Ok(answer) => {
                let mut stream = answer.into_inner();
                let reply = stream.message().await.expect("answer").expect("one message");
                let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
                    panic!("not a list")
                };
                let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
                names.sort();
                Ok(names)
            }
        }
    }};
}

/// Each listener describes exactly what it serves, over both reflection
/// versions; the internal one only to callers with the credential.
async fn reflection_lists_exactly_each_listeners_services(suite: &TestSuite) {
    let common =
        ["grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"];
    let mut public: Vec<String> = [
        "offers.account.v1.AccountService",
        "offers.activation.v1.ActivationService",
        "offers.auth.v1.AuthService",
        "offers.catalog.v1.CatalogService",
        "offers.partner.v1.PartnerService",
    ]
    .iter()
    .chain(&common)
    .map(|s| s.to_string())
    .collect();
    public.sort();
    let mut internal: Vec<String> = [
        "offers.account.v1.LedgerService",
        "offers.audit.v1.AuditService",
        "offers.auth.v1.SigningKeyAdminService",
        "offers.auth.v1.UserAdminService",
        "offers.catalog.v1.CatalogAdminService",
        "offers.jobs.v1.JobAdminService",
        "offers.partner.v1.PartnerAdminService",
    ]
    .iter()
    .chain(&common)
    .map(|s| s.to_string())
    .collect();
    internal.sort();
    let credential = suite.settings.internal_token().expect("credential").to_string();
    let none: Option<&str> = None;
    assert_eq!(listed_services!(v1, suite.public_channel().await, none), Ok(public.clone()));
    assert_eq!(listed_services!(v1alpha, suite.public_channel().await, none), Ok(public));
    assert_eq!(listed_services!(v1, suite.internal_channel().await, Some(&credential)), Ok(internal.clone()));
    assert_eq!(listed_services!(v1alpha, suite.internal_channel().await, Some(&credential)), Ok(internal));
    // Without the credential the internal listener describes nothing, and
    // tells nothing of its health either.
    assert_eq!(listed_services!(v1, suite.internal_channel().await, none), Err(tonic::Code::Unauthenticated));
    assert_eq!(listed_services!(v1alpha, suite.internal_channel().await, none), Err(tonic::Code::Unauthenticated));
    let health =
        HealthClient::new(suite.internal_channel().await).check(HealthCheckRequest { service: String::new() }).await;
    assert_eq!(health.expect_err("no credential").code(), tonic::Code::Unauthenticated);
}

/// A browser's gRPC-Web call over HTTP/1.1 (from `origin`, if given): one
/// empty HealthCheckRequest frame.
async fn grpc_web_health_check(addr: std::net::SocketAddr, origin: Option<&str>) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .body(vec![0u8, 0, 0, 0, 0]);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.expect("sent")
}

async fn grpc_web_is_accepted(suite: &TestSuite) {
    let response = grpc_web_health_check(suite.grpc_addr, None).await;
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().expect("ascii").to_string();
    assert!(content_type.starts_with("application/grpc-web"), "{content_type}");
    let body = response.bytes().await.expect("body");
    // A data frame holding HealthCheckResponse { status: SERVING }, then the trailers.
    assert_eq!(&body[..7], &[0, 0, 0, 0, 2, 0x08, 0x01], "{body:?}");
    assert!(String::from_utf8_lossy(&body[7..]).contains("grpc-status:0"), "{body:?}");
}

/// The document describes errors, formats and credentials as the server
/// applies them (schemathesis holds the whole of it to that in CI).
async fn openapi_describes_problems_formats_and_credentials(suite: &TestSuite) {
    let doc = suite.api.get("/api/v1/openapi.json", None).await.body;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        (schemes["bearer"]["scheme"].as_str(), schemes["bearer"]["bearerFormat"].as_str()),
        (Some("bearer"), Some("JWT"))
    );
    assert_eq!(schemes["partner_key"]["scheme"], "bearer");
    let activate = &doc["paths"]["/api/v1/activation/"]["post"];
    assert_eq!(activate["security"], json!([{"bearer": []}]));
    assert_eq!(doc["paths"]["/api/v1/partner/activate/"]["post"]["security"], json!([{"partner_key": []}]));
    for path in ["/api/v1/activation/", "/api/v1/offers/renew/", "/api/v1/partner/activate/"] {
        let key = doc["paths"][path]["post"]["parameters"]
            .as_array()
            .expect("params")
            .iter()
            .find(|p| p["name"] == "Idempotency-Key" && p["in"] == "header")
            .unwrap_or_else(|| panic!("{path} documents no Idempotency-Key"))
            .clone();
        assert_eq!(key["schema"]["pattern"], "^[!-~]{1,255}$", "{path}");
    }
    let reused = &activate["responses"]["422"]["content"]["application/problem+json"];
    assert_eq!(reused["schema"]["allOf"][1]["properties"]["code"]["enum"], json!(["idempotency_key_reused"]));
    assert!(activate["responses"]["400"]["content"].get("application/json").is_none(), "problems are problem+json");
    let limit = doc["paths"]["/api/v1/offers/"]["get"]["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .find(|p| p["name"] == "limit")
        .expect("limit")
        .clone();
    assert_eq!((limit["schema"]["minimum"].as_u64(), limit["schema"]["maximum"].as_u64()), (Some(1), Some(200)));
    assert_eq!(doc["components"]["schemas"]["Reference"]["pattern"], "^REF-[0-9A-F]{12}$");
    assert_eq!(doc["components"]["schemas"]["Id"]["format"], "uuid");
    let username = &doc["components"]["schemas"]["LoginBody"]["properties"]["username"]["pattern"];
    assert_eq!(username, offers_proto::username::PATTERN, "the document states the rule login applies");
    let codes = doc["components"]["schemas"]["Problem"]["properties"]["code"]["enum"].as_array().expect("codes").len();
    assert_eq!(codes, offers_kit::ErrorCode::ALL.len());
}

/// Out of 1 to 200 is refused, naming `limit`, never cut down to fit.
async fn limits_out_of_range_are_refused(suite: &TestSuite) {
    let token = suite.token("demo").await;
    for path in ["/api/v1/offers/", "/api/v1/account/transactions/", "/api/v1/account/subscriptions/"] {
        for limit in ["0", "201", "2147483648", "99999999999", "-1"] {
            let reply = suite.api.get(&format!("{path}?limit={limit}"), Some(&token)).await;
            reply.assert_problem(400, "invalid_request");
            assert!(reply.str("detail").contains("limit"), "{path}?limit={limit}: {}", reply.body);
        }
        assert_eq!(suite.api.get(&format!("{path}?limit=200"), Some(&token)).await.status, 200);
        suite.api.get(&format!("{path}?cursor="), Some(&token)).await.assert_problem(400, "invalid_request");
    }
    let partner = suite.api.get("/api/v1/partner/transactions/?limit=201", Some("demo-partner-key")).await;
    partner.assert_problem(400, "invalid_request");
}

/// Swagger UI, with its assets served by the edge itself (no CDN).
async fn the_docs_page_is_served_offline(suite: &TestSuite) {
    let page = suite.api.get("/api/v1/docs/", None).await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").is_some_and(|t| t.starts_with("text/html")));
    let html = page.body.as_str().expect("html");
    assert!(html.contains("swagger-ui-bundle.js") && !html.contains("://"), "assets must be local: {html}");
    let init = suite.api.get("/api/v1/docs/swagger-initializer.js", None).await;
    assert!(init.body.as_str().is_some_and(|js| js.contains("/api/v1/openapi.json")), "{}", init.body);
    let bundle = suite.api.get("/api/v1/docs/swagger-ui-bundle.js", None).await;
    assert_eq!(bundle.status, 200);
}

const ORIGIN: &str = "https://app.example.com";

/// A browser's preflight for `path` on `addr`, asking to send `headers`.
async fn preflight(addr: std::net::SocketAddr, path: &str, method: &str, headers: &str) -> reqwest::Response {
    reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("http://{addr}{path}"))
        .header("origin", ORIGIN)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .expect("sent")
}

fn allowed(response: &reqwest::Response, header: &str) -> Option<String> {
    response.headers().get(header).and_then(|v| v.to_str().ok()).map(str::to_lowercase)
}

/// With origins configured, the REST edge and both gRPC listeners answer a
/// browser's preflight (gRPC-Web included) for those origins only; without,
/// none is answered for any origin.
async fn cors_preflights_are_answered_when_configured(backend: Backend) {
    let configure = |s: &mut offers::settings::Settings| {
        s.gateway.cors.allowed_origins = vec![ORIGIN.into()];
        s.grpc_web_cors.allowed_origins = vec![ORIGIN.into()];
        s.grpc_web_cors.max_age = Duration::from_secs(600);
    };
    let Some(suite) = TestSuite::spawn_with(backend, configure).await else { return };
    let rest = preflight(suite.http_addr, "/api/v1/offers/", "GET", "authorization").await;
    assert!(rest.status().is_success(), "{}", rest.status());
    assert_eq!(allowed(&rest, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    assert!(allowed(&rest, "access-control-allow-headers").is_some_and(|h| h.contains("authorization")));

    let grpc_path = "/offers.catalog.v1.CatalogService/ListOffers";
    for addr in [suite.grpc_addr, suite.internal_grpc_addr] {
        let web = preflight(addr, grpc_path, "POST", "content-type,x-grpc-web,authorization").await;
        assert!(web.status().is_success(), "{}", web.status());
        assert_eq!(allowed(&web, "access-control-allow-origin").as_deref(), Some(ORIGIN));
        assert_eq!(allowed(&web, "access-control-max-age").as_deref(), Some("600"));
    }
    // A gRPC-Web call from that origin may read the status trailers.
    let call = grpc_web_health_check(suite.grpc_addr, Some(ORIGIN)).await;
    assert_eq!(allowed(&call, "access-control-allow-origin").as_deref(), Some(ORIGIN));
    assert!(allowed(&call, "access-control-expose-headers").is_some_and(|h| h.contains("grpc-status-details-bin")));
    // Another origin is not let in.
    let other = reqwest::Client::new()
        .request(reqwest::Method::OPTIONS, format!("http://{}/api/v1/offers/", suite.http_addr))
        .header("origin", "https://elsewhere.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .expect("sent");
    assert_eq!(allowed(&other, "access-control-allow-origin"), None);
    suite.stop().await;

    // Off by default.
    let Some(plain) = TestSuite::spawn(backend).await else { return };
    let rest = preflight(plain.http_addr, "/api/v1/offers/", "GET", "authorization").await;
    assert_eq!(allowed(&rest, "access-control-allow-origin"), None);
    let web = preflight(plain.grpc_addr, grpc_path, "POST", "content-type,x-grpc-web").await;
    assert_eq!(allowed(&web, "access-control-allow-origin"), None);
    plain.stop().await;
}

each_backend!(cors_preflights_are_answered_when_configured);

/// Bodies are JSON objects only: serde alone also took a body's fields as
/// an array (found in the money POSTs by the `money_bodies` fuzz target).
async fn bodies_are_objects(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let balance = suite.balance(&token).await;
    for (path, key, body) in [
        ("/api/v1/activation/", token.as_str(), format!("[\"{offer}\"]")),
        ("/api/v1/offers/renew/", token.as_str(), format!("[\"{offer}\"]")),
        ("/api/v1/partner/activate/", "demo-partner-key", format!("[\"{offer}\", \"{offer}\", 100]")),
        ("/api/v1/partner/callback/", "demo-partner-key", "[\"https://hooks.example.com/x\"]".to_string()),
        ("/api/v1/auth/logout/", token.as_str(), "[\"rt_x\"]".to_string()),
    ] {
        suite.api.post_raw(path, Some(key), &body).await.assert_problem(400, "invalid_request");
    }
    assert_eq!(suite.balance(&token).await, balance, "nothing was charged");
    for (path, body) in
        [("/api/v1/auth/login/", "[\"demo\", \"demo-password\"]"), ("/api/v1/auth/refresh/", "[\"rt_x\"]")]
    {
        suite.api.post_raw(path, None, body).await.assert_problem(400, "invalid_request");
    }
}

both!(
    bodies_are_objects,
    openapi_describes_problems_formats_and_credentials,
    limits_out_of_range_are_refused,
    the_docs_page_is_served_offline,
    reflection_lists_exactly_each_listeners_services,
    grpc_web_is_accepted,
    openapi_lists_every_served_path,
    every_answer_carries_a_request_id,
    oversized_bodies_are_refused,
    wrong_methods_get_a_problem,
    readiness_and_metrics,
    grpc_health_and_internal_credential,
);

// Across every process boundary: each role its own process.
across_processes!(every_answer_carries_a_request_id, openapi_lists_every_served_path,);

/// `offers dev` as a newcomer starts it: once `/readyz` says 200 the demo
/// users, offers and partner are there, so the README's first login works;
/// and the first screen is the banner, not a log line per migration and
/// per call, with nothing printed after it while the newcomer tries it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offers_dev_is_ready_only_with_its_demo_data() {
    use std::io::BufRead;
    let dir = std::env::temp_dir().join(format!("offers-dev-{}", uuid::Uuid::new_v4().simple()));
    let port = || offers_harness::local::free_port().expect("a free port").to_string();
    let http = port();
    let mut dev = std::process::Command::new(offers_tests::offers_binary())
        .args(["dev", "--http", &http, "--grpc", &port(), "--internal-grpc", &port(), "--data-dir"])
        .arg(&dir)
        .env_remove("OFFERS_TELEMETRY__LOG_FILTER")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("offers dev starts");
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stdout = std::io::BufReader::new(dev.stdout.take().expect("stdout"));
    let lines = printed.clone();
    std::thread::spawn(move || stdout.lines().map_while(Result::ok).for_each(|l| lines.lock().expect("lock").push(l)));
    let addr: std::net::SocketAddr = http.parse().expect("address");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while offers_harness::local::http_status(addr, "/readyz").await != Some(200) {
        assert!(dev.try_wait().expect("status").is_none(), "offers dev exited");
        assert!(tokio::time::Instant::now() < deadline, "offers dev never became ready");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let api = offers_tests::Api::new(addr);
    let login = api.login("demo", offers::dev::DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "the first login after ready: {}", login.body);
    let offers = api.get("/api/v1/offers/", Some(login.str("access_token"))).await;
    assert!(offers.body["results"].as_array().is_some_and(|o| o.len() >= 5), "{}", offers.body);
    let partner = api.get("/api/v1/partner/balance/", Some(offers::dev::DEMO_PARTNER_KEY)).await;
    assert_eq!(partner.status, 200, "the demo partner: {}", partner.body);
    assert_eq!(partner.body["balance"], offers::dev::DEMO_PARTNER_FLOAT, "{}", partner.body);
    let banner_end = |lines: &[String]| lines.iter().position(|l| l.starts_with("Ctrl-C stops it"));
    while banner_end(&printed.lock().expect("lock")).is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no banner: {:#?}", printed.lock().expect("lock"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    // Time for a log line of the calls above to show, were there one.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    // Less the lines of this test's own polling of /readyz (503 until the
    // demo data is in), which a newcomer does not do.
    let screen: Vec<String> =
        printed.lock().expect("lock").iter().filter(|l| !l.contains("GET /readyz")).cloned().collect();
    let end = banner_end(&screen).expect("the banner");
    assert!(end < 20, "{end} lines before the banner ends: {screen:#?}");
    assert!(screen[end + 1..].iter().all(|l| l.trim().is_empty()), "printed after the banner: {screen:#?}");
    let banner = screen.join("\n");
    for named in [format!("http://{http}/api/v1/docs/"), format!("http://{http}/metrics")] {
        assert!(banner.contains(&named), "the banner names {named}: {banner}");
    }
    dev.kill().expect("stopped");
    dev.wait().expect("reaped");
    std::fs::remove_dir_all(&dir).ok();
}
