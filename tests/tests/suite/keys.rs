//! The access-token signing keys as a deployment meets them: replicas
//! starting together on an empty database, a key the verifiers have not
//! loaded yet, and a key encryption key that changes.

use std::net::SocketAddr;
use std::time::Duration;

use offers::process::Process;
use offers::roles::Role;
use offers::settings::Settings;
use offers_proto::auth::v1::GetJwksRequest;
use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
use offers_tests::backends::Resources;
use offers_tests::{Backend, TestSuite, each_backend};
use secrecy::SecretString;

const PROFILE: &str = "/api/v1/auth/profile/";

/// Settings for bare auth processes on `resources`, without the key the
/// harness usually presets: the keys are the auth service's own, as in a
/// real deployment.
async fn auth_settings(resources: &Resources) -> Settings {
    let mut settings = Settings::default().embedded(&resources.scratch_dir()).expect("embedded settings");
    resources.apply(&mut settings);
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);
    settings.shutdown_grace = Duration::from_secs(1);
    offers::process::connect_database(&settings, true).await.expect("migrated");
    settings
}

async fn published(process: &Process) -> Vec<String> {
    let url = format!("http://{}", process.grpc_addr.expect("gRPC listener"));
    let mut client = AuthServiceClient::connect(url).await.expect("connect");
    let keys = client.get_jwks(GetJwksRequest {}).await.expect("jwks").into_inner().keys;
    let mut kids: Vec<String> = keys.into_iter().map(|k| k.kid).collect();
    kids.sort();
    kids
}

/// Three auth replicas starting at once on an empty database sign with
/// one key (each used to make and store its own, and the others' tokens
/// were refused until a reload).
async fn replicas_starting_together_make_one_signing_key(backend: Backend) {
    let Some(resources) = Resources::provision(backend).await else { return };
    let settings = auth_settings(&resources).await;
    let start = || Process::start(settings.clone(), &[Role::Auth], false);
    let (a, b, c) = tokio::join!(start(), start(), start());
    let replicas = [a.expect("auth 1"), b.expect("auth 2"), c.expect("auth 3")];
    let first = published(&replicas[0]).await;
    assert_eq!(first.len(), 1, "one key, not one per replica: {first:?}");
    for replica in &replicas[1..] {
        assert_eq!(published(replica).await, first);
    }
    for replica in replicas {
        replica.stop().await;
    }
}

/// A token signed with a key no verifier has loaded yet (the signing key
/// was retired, so the next one signs at once, and the processes reload
/// their key sets only hourly) is accepted on the first call everywhere:
/// the edge, and each public gRPC service.
async fn a_token_of_a_key_not_loaded_yet_is_accepted_at_once(suite: &TestSuite) {
    let old = suite.token("demo").await;
    assert_eq!(suite.api.get(PROFILE, Some(&old)).await.status, 200);
    let old_kid = jsonwebtoken::decode_header(&old).expect("header").kid.expect("kid");
    suite.admin().retire_key(&old_kid).await.expect("retire");
    let new = suite.token("demo").await;
    assert_ne!(jsonwebtoken::decode_header(&new).expect("header").kid, Some(old_kid));
    for path in [PROFILE, "/api/v1/account/balance/", "/api/v1/offers/", "/api/v1/account/transactions/"] {
        assert_eq!(suite.api.get(path, Some(&new)).await.status, 200, "{path} with the new key");
    }
    if suite.processes().is_some() {
        // Each service behind the edge checked the token itself above.
        return suite.api.get(PROFILE, Some(&old)).await.assert_problem(401, "invalid_token");
    }
    let channel = suite.public_channel().await;
    fn authorized<T>(token: &str, body: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(body);
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    }
    use offers_proto::account::v1::account_service_client::AccountServiceClient;
    use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
    CatalogServiceClient::new(channel.clone())
        .list_offers(authorized(&new, Default::default()))
        .await
        .expect("catalog takes the new key");
    AccountServiceClient::new(channel.clone())
        .get_balance(authorized(&new, Default::default()))
        .await
        .expect("account takes the new key");
    AuthServiceClient::new(channel).get_profile(authorized(&new, Default::default())).await.expect("auth takes it");
    suite.api.get(PROFILE, Some(&old)).await.assert_problem(401, "invalid_token");
}

async fn hourly_reloads(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.auth.jwks_refresh = Duration::from_hours(1)).await else {
        return;
    };
    a_token_of_a_key_not_loaded_yet_is_accepted_at_once(&suite).await;
    suite.stop().await;
}

async fn hourly_reloads_across_processes() -> Option<()> {
    let replicas = offers_harness::local::Replicas::default();
    let suite =
        TestSuite::spawn_processes_with(replicas, Vec::new(), |s| s.auth.jwks_refresh = Duration::from_hours(1))
            .await?;
    a_token_of_a_key_not_loaded_yet_is_accepted_at_once(&suite).await;
    suite.stop().await;
    Some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_of_a_key_not_loaded_yet_is_accepted_at_once_across_processes() {
    hourly_reloads_across_processes().await;
}

fn kek(byte: u8) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([byte; 32])
}

fn with_keks(settings: &Settings, keks: &[String]) -> Settings {
    let mut settings = settings.clone();
    settings.auth.key_encryption_key = Some(SecretString::from(keks.join(",")));
    settings
}

/// The key encryption key can change: a list opens with any of its keys,
/// a re-seal moves every key under the first, after which the old one can
/// go; an auth process given none that opens its keys refuses to start and
/// says why and what to do.
async fn the_key_encryption_key_rotates(backend: Backend) {
    let Some(resources) = Resources::provision(backend).await else { return };
    let base = auth_settings(&resources).await;
    let (old, new, stranger) = (kek(1), kek(2), kek(3));
    let auth =
        Process::start(with_keks(&base, std::slice::from_ref(&old)), &[Role::Auth], false).await.expect("starts");
    let kids = published(&auth).await;
    auth.stop().await;

    let refused = Process::start(with_keks(&base, std::slice::from_ref(&stranger)), &[Role::Auth], false).await;
    let error = format!("{:#}", refused.err().expect("no key opens the stored ones: it must not start"));
    for needed in ["auth.key_encryption_key", "offers admin keys reseal", &kids[0]] {
        assert!(error.contains(needed), "the error names {needed}: {error}");
    }

    let both = with_keks(&base, &[new.clone(), old]);
    let auth = Process::start(both, &[Role::Auth], false).await.expect("the old key is in the list");
    let token = auth.settings.internal_token().expect("credential").to_string();
    let mut admin = offers::admin::AdminClient::connect(&auth.settings, &token).expect("admin");
    admin.act_as("ops", "moving every key under the new key encryption key");
    assert_eq!(admin.reseal_keys().await.expect("reseal"), 1);
    assert_eq!(admin.reseal_keys().await.expect("reseal again"), 0, "nothing left to move");
    auth.stop().await;

    let auth = Process::start(with_keks(&base, &[new]), &[Role::Auth], false).await.expect("only the new key");
    assert_eq!(published(&auth).await, kids, "the same signing key, opened with the new key encryption key");
    auth.stop().await;
}

each_backend!(replicas_starting_together_make_one_signing_key, hourly_reloads, the_key_encryption_key_rotates);

/// What the edge sends with a public call — captured by a stand-in for the
/// auth service — carries nothing the internal listener takes: replayed
/// there as it is, or any of its values as a bearer, it is refused. (The
/// edge used to send the service credential itself to vouch for the
/// client's address.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_calls_metadata_opens_nothing_internal() {
    use std::sync::{Arc, Mutex};
    let Some(suite) = TestSuite::spawn(Backend::Embedded).await else { return };
    let seen: Arc<Mutex<Vec<axum::http::HeaderMap>>> = Arc::default();
    let capture = {
        let seen = seen.clone();
        axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
            seen.lock().expect("lock").push(headers);
            async { ([("content-type", "application/grpc"), ("grpc-status", "14")], "") }
        })
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let stand_in = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, capture).await });
    let mut settings = suite.settings.clone();
    settings.upstream.auth = format!("http://{stand_in}");
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);
    let edge = Process::start(settings, &[Role::Gateway], false).await.expect("an edge");
    let api = offers_tests::Api::new(edge.http_addr);
    let reply = api.login("demo", offers::dev::DEMO_PASSWORD).await;
    assert_eq!(reply.status, 503, "the stand-in says unavailable: {}", reply.body);
    let headers = seen.lock().expect("lock").iter().find(|h| h.contains_key("offers-client-address")).cloned();
    let headers = headers.expect("the login reached the stand-in with a forwarded address");
    let credential = suite.settings.internal_token().expect("credential").to_string();

    use offers_proto::account::v1::CheckLedgerRequest;
    use offers_proto::account::v1::ledger_service_client::LedgerServiceClient;
    let mut ledger = LedgerServiceClient::new(suite.internal_channel().await);
    let mut replayed = tonic::Request::new(CheckLedgerRequest::default());
    for (name, value) in &headers {
        let text = value.to_str().unwrap_or_default();
        assert!(!text.contains(&credential), "{name} carries the service credential");
        if name.as_str().starts_with("offers-") || name == "authorization" || name == "x-request-id" {
            replayed.metadata_mut().insert(
                tonic::metadata::MetadataKey::from_bytes(name.as_str().as_bytes()).expect("name"),
                text.parse().expect("ascii"),
            );
        }
        let mut as_bearer = tonic::Request::new(CheckLedgerRequest::default());
        as_bearer.metadata_mut().insert("authorization", format!("Bearer {text}").parse().expect("ascii"));
        let refused = ledger.check_ledger(as_bearer).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{name} as a bearer");
    }
    let refused = ledger.check_ledger(replayed).await.expect_err("the public metadata as it is");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    edge.stop().await;
    suite.stop().await;
}
