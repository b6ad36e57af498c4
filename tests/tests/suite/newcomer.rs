//! The newcomer's first minute, as the README tells it: `deploy/local/up`
//! (the production shape: a release build, every role its own process on
//! PostgreSQL, Redis and RabbitMQ), then, as soon as it says it is ready, a
//! login and that first token on every authenticated REST route and on one
//! gRPC call per public service. None may be refused: a fresh deployment
//! used to answer 401 for up to 30 s (each auth caller made its own key,
//! and the verifiers had loaded the set a moment before).

use std::path::{Path, PathBuf};
use std::time::Instant;

use offers_harness::local::Member;
use offers_tests::Api;
use serde_json::json;

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script(name: &str, dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut command =
        offers_tests::outside_cargo(std::process::Command::new(repository().join("deploy/local").join(name)));
    command.arg("--dir").arg(dir).args(extra).current_dir(repository());
    command.output().unwrap_or_else(|e| panic!("deploy/local/{name} runs: {e}"))
}

fn with_token<T>(token: &str, body: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "builds the release binary, as deploy/local/up does; .ci/run runs it after the benchmark has built it"]
async fn deploy_local_up_takes_its_first_token_everywhere() {
    let dir = std::env::temp_dir().join(format!("offers-newcomer-{}", uuid::Uuid::new_v4().simple()));
    let up = script("up", &dir, &[]);
    let printed = String::from_utf8_lossy(&up.stdout).to_string();
    assert!(up.status.success(), "deploy/local/up failed:\n{printed}\n{}", String::from_utf8_lossy(&up.stderr));
    let ready = Instant::now();
    let edge = printed
        .lines()
        .find_map(|l| l.trim().strip_prefix("REST")?.trim().strip_prefix("http://")?.strip_suffix("/api/v1/"))
        .unwrap_or_else(|| panic!("no REST address in:\n{printed}"))
        .parse()
        .expect("an address");
    let api = Api::new(edge);
    let login = api.login("demo", offers::dev::DEMO_PASSWORD).await;
    assert_eq!(login.status, 200, "{}", login.body);
    let token = login.str("access_token").to_string();
    let refresh = login.str("refresh_token").to_string();
    let first_call = api.get("/api/v1/auth/profile/", Some(&token)).await;
    let took = ready.elapsed();
    assert_eq!(first_call.status, 200, "the first call, {took:?} after ready: {}", first_call.body);

    let offers = api.get("/api/v1/offers/", Some(&token)).await;
    let offer = offers.body["results"][0]["id"].as_str().expect("an offer").to_string();
    let bought = api
        .post_with("/api/v1/activation/", Some(&token), &json!({ "offer_id": offer }), &[("Idempotency-Key", "first")])
        .await;
    assert_eq!(bought.status, 202, "{}", bought.body);
    let transaction = bought.str("transaction_id").to_string();
    let gets = [
        "/api/v1/auth/profile/".to_string(),
        "/api/v1/offers/".into(),
        format!("/api/v1/offers/{offer}/"),
        "/api/v1/account/balance/".into(),
        "/api/v1/account/subscriptions/".into(),
        "/api/v1/account/transactions/".into(),
        format!("/api/v1/account/transactions/{transaction}/"),
        format!("/api/v1/activation/status/{transaction}/"),
    ];
    for path in &gets {
        let reply = api.get(path, Some(&token)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    }
    let renew = api.post("/api/v1/offers/renew/", Some(&token), &json!({ "offer_id": offer })).await;
    assert_ne!(renew.status, 401, "renew: {}", renew.body);

    let members: Vec<Member> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("processes.json")).expect("the state file"))
            .expect("json");
    let grpc_of = |role: &str| {
        let member = members.iter().find(|m| m.role == role).unwrap_or_else(|| panic!("a {role} process"));
        tonic::transport::Channel::from_shared(format!("http://{}", member.grpc.expect("gRPC")))
            .expect("url")
            .connect_lazy()
    };
    use offers_proto::account::v1::account_service_client::AccountServiceClient;
    use offers_proto::activation::v1::GetActivationStatusRequest;
    use offers_proto::activation::v1::activation_service_client::ActivationServiceClient;
    use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
    use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
    AuthServiceClient::new(grpc_of("auth")).get_profile(with_token(&token, Default::default())).await.expect("auth");
    CatalogServiceClient::new(grpc_of("catalog"))
        .list_offers(with_token(&token, Default::default()))
        .await
        .expect("catalog");
    AccountServiceClient::new(grpc_of("account"))
        .get_balance(with_token(&token, Default::default()))
        .await
        .expect("account");
    let status = GetActivationStatusRequest { transaction_id: transaction.clone() };
    ActivationServiceClient::new(grpc_of("activation"))
        .get_activation_status(with_token(&token, status))
        .await
        .expect("activation");

    let logout = api.post("/api/v1/auth/logout/", Some(&token), &json!({ "refresh_token": refresh })).await;
    assert_eq!(logout.status, 200, "{}", logout.body);
    let down = script("down", &dir, &["--purge"]);
    assert!(down.status.success(), "deploy/local/down: {}", String::from_utf8_lossy(&down.stderr));
    println!("ready → first authenticated answer in {took:?}");
    std::fs::remove_dir_all(&dir).ok();
}
