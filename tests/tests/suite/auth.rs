use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use offers_tests::{Backend, TestSuite, across_processes, both, each_backend};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, Query};
use serde_json::json;
use std::time::Duration;

const PROFILE: &str = "/api/v1/auth/profile/";

async fn login_succeeds_and_fails(suite: &TestSuite) {
    let ok = suite.api.login("demo", "demo-password").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.body["token_type"], "Bearer");
    assert!(ok.body["expires_in"].as_i64().is_some_and(|s| s > 0 && s <= 3600));
    assert!(ok.str("refresh_token").starts_with("rt_"));
    // The access token is an EdDSA JWT with the claims every service checks.
    let claims = decode_claims(ok.str("access_token"));
    for claim in ["iss", "aud", "exp", "sub", "jti"] {
        assert!(!claims[claim].is_null(), "missing {claim} in {claims}");
    }

    suite.api.login("demo", "wrong-password").await.assert_problem(401, "invalid_credentials");
    suite.api.login("nobody-here", "demo-password").await.assert_problem(401, "invalid_credentials");
    suite
        .api
        .post("/api/v1/auth/login/", None, &json!({"username": "demo"}))
        .await
        .assert_problem(400, "invalid_request");
    suite.api.post_raw("/api/v1/auth/login/", None, "{not json").await.assert_problem(400, "invalid_request");
}

async fn profile_needs_a_valid_token(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let profile = suite.api.get(PROFILE, Some(&token)).await;
    assert_eq!(profile.status, 200, "{}", profile.body);
    assert_eq!(profile.body["username"], "demo");
    for field in ["id", "email", "phone_number", "first_name", "last_name", "date_joined"] {
        assert!(profile.body.get(field).is_some(), "profile lacks {field}");
    }
    suite.api.get(PROFILE, None).await.assert_problem(401, "unauthenticated");
    suite.api.get(PROFILE, Some("not-a-token")).await.assert_problem(401, "invalid_token");
}

fn decode_claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).expect("three parts");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json")
}

/// A token with these claims signed by `key_pem`, naming the key the suite
/// signs with (as a forger would).
fn forge(genuine: &str, key_pem: &str, claims: serde_json::Value) -> String {
    offers_kit::jwt_crypto::install();
    let key = EncodingKey::from_ed_pem(key_pem.as_bytes()).expect("key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = jsonwebtoken::decode_header(genuine).expect("header").kid;
    jsonwebtoken::encode(&header, &claims, &key).expect("sign")
}

async fn forged_tokens_are_refused(suite: &TestSuite) {
    let genuine = suite.token("demo").await;
    let claims = decode_claims(&genuine);
    let now = chrono::Utc::now().timestamp();

    // Signed by a key the suite does not trust.
    let (other_key, _) = offers_kit::token::generate_keypair().expect("keys");
    let wrong_signature = forge(&genuine, &other_key, claims.clone());
    // Algorithm "none" with no signature at all.
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let body = URL_SAFE_NO_PAD.encode(claims.to_string());
    let alg_none = format!("{header}.{body}.");
    // Right key, wrong audience; right key, expired.
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("someone-else");
    let wrong_aud = forge(&genuine, &suite.private_key_pem, wrong_aud);
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    let expired = forge(&genuine, &suite.private_key_pem, expired);
    // Right key, right claims: the control that proves forging itself works.
    let control = forge(&genuine, &suite.private_key_pem, claims);
    assert_eq!(suite.api.get(PROFILE, Some(&control)).await.status, 200);

    for (what, token) in
        [("wrong signature", wrong_signature), ("alg none", alg_none), ("wrong aud", wrong_aud), ("expired", expired)]
    {
        let reply = suite.api.get(PROFILE, Some(&token)).await;
        assert_eq!(reply.status, 401, "{what}: {}", reply.body);
        reply.assert_problem(401, "invalid_token");
    }
}

async fn the_grpc_service_checks_tokens_too(suite: &TestSuite) {
    use offers_proto::auth::v1::GetProfileRequest;
    use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
    let mut client = AuthServiceClient::new(suite.public_channel().await);
    let mut request = tonic::Request::new(GetProfileRequest {});
    request.metadata_mut().insert("authorization", "Bearer a.b.c".parse().expect("ascii"));
    let status = client.get_profile(request).await.expect_err("a bogus token is refused");
    assert_eq!(status.code(), tonic::Code::Unauthenticated);

    let token = suite.token("demo").await;
    let mut request = tonic::Request::new(GetProfileRequest {});
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    let profile = client.get_profile(request).await.expect("profile").into_inner();
    assert_eq!(profile.user.expect("user").username, "demo");
}

async fn refresh_rotates_and_reuse_revokes_the_family(suite: &TestSuite) {
    let first = suite.api.login("demo", "demo-password").await;
    let original = first.str("refresh_token").to_string();

    let second = suite.api.post("/api/v1/auth/refresh/", None, &json!({"refresh_token": original})).await;
    assert_eq!(second.status, 200, "{}", second.body);
    let rotated = second.str("refresh_token").to_string();
    assert_ne!(rotated, original, "refresh must rotate");
    assert_eq!(suite.api.get(PROFILE, Some(second.str("access_token"))).await.status, 200);

    // Presenting the spent token again: refused, and the family dies with it.
    suite
        .api
        .post("/api/v1/auth/refresh/", None, &json!({"refresh_token": original}))
        .await
        .assert_problem(401, "invalid_token");
    suite
        .api
        .post("/api/v1/auth/refresh/", None, &json!({"refresh_token": rotated}))
        .await
        .assert_problem(401, "invalid_token");

    // Another login is another family, untouched.
    let other = suite.api.login("demo", "demo-password").await;
    let again =
        suite.api.post("/api/v1/auth/refresh/", None, &json!({"refresh_token": other.str("refresh_token")})).await;
    assert_eq!(again.status, 200, "{}", again.body);

    suite
        .api
        .post("/api/v1/auth/refresh/", None, &json!({"refresh_token": "rt_unknown"}))
        .await
        .assert_problem(401, "invalid_token");
}

async fn logout_ends_refreshing(suite: &TestSuite) {
    let login = suite.api.login("demo", "demo-password").await;
    let (access, refresh) = (login.str("access_token").to_string(), login.str("refresh_token").to_string());
    suite
        .api
        .post("/api/v1/auth/logout/", None, &json!({"refresh_token": refresh}))
        .await
        .assert_problem(401, "unauthenticated");
    // Someone else's refresh token cannot be logged out.
    let other = suite.token("demo2").await;
    suite
        .api
        .post("/api/v1/auth/logout/", Some(&other), &json!({"refresh_token": refresh}))
        .await
        .assert_problem(401, "invalid_token");

    let out = suite.api.post("/api/v1/auth/logout/", Some(&access), &json!({"refresh_token": refresh})).await;
    assert_eq!(out.status, 200, "{}", out.body);
    assert_eq!(out.body, json!({"detail": "logged out"}));
    suite
        .api
        .post("/api/v1/auth/refresh/", None, &json!({"refresh_token": refresh}))
        .await
        .assert_problem(401, "invalid_token");
}

fn kid(token: &str) -> String {
    jsonwebtoken::decode_header(token).expect("header").kid.expect("a kid")
}

async fn published_kids(suite: &TestSuite) -> Vec<String> {
    let jwks = suite.api.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, 200, "{}", jwks.body);
    let keys = jwks.body["keys"].as_array().expect("keys");
    for key in keys {
        assert_eq!(
            (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
            (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
        );
    }
    keys.iter().map(|k| k["kid"].as_str().expect("kid").to_string()).collect()
}

/// Waits for every verifier in the suite to reload the key set.
async fn key_sets_reloaded(suite: &TestSuite) {
    tokio::time::sleep(suite.settings.auth.jwks_refresh * 2 + Duration::from_secs(1)).await;
}

async fn signing_keys_rotate_and_retire(suite: &TestSuite) {
    use offers_proto::auth::v1::SigningKeyState;
    let old = suite.token("demo").await;
    assert_eq!(published_kids(suite).await, [kid(&old)]);
    let mut admin = suite.admin();
    let rotated = admin.rotate_key().await.expect("rotate");
    assert_eq!(rotated.state(), SigningKeyState::Next, "{rotated:?}");
    assert!(!rotated.signing && rotated.kid != kid(&old));
    // Published at once; signing only from its time, once every verifier had it.
    let mut kids = published_kids(suite).await;
    kids.sort();
    let mut both = [kid(&old), rotated.kid.clone()];
    both.sort();
    assert_eq!(kids, both, "both keys are published");
    let signs_from = rotated.sign_time.as_ref().and_then(offers_kit::grpc::from_timestamp).expect("a sign time");
    let delay = signs_from - chrono::Utc::now();
    let expected = suite.settings.auth.jwks_refresh + suite.settings.auth.key_publish_margin;
    assert!(delay.to_std().is_ok_and(|delay| delay <= expected), "signs {delay} from now");
    assert!(delay > chrono::Duration::zero(), "not yet");
    assert_eq!(kid(&suite.token("demo").await), kid(&old), "the old key signs until the new one's time");
    tokio::time::sleep((delay + chrono::Duration::milliseconds(300)).to_std().expect("ahead")).await;
    let new = suite.token("demo").await;
    assert_eq!(kid(&new), rotated.kid, "new tokens are signed with the new key from its time");
    for token in [&old, &new] {
        assert_eq!(suite.api.get(PROFILE, Some(token)).await.status, 200, "the old key still verifies until retired");
    }
    let listed = admin.keys().await.expect("keys");
    let previous = listed.iter().find(|k| k.kid == kid(&old)).expect("the old key");
    assert_eq!(previous.state(), SigningKeyState::Retiring, "{previous:?}");
    assert!(!previous.signing && previous.retire_time.is_some(), "it retires after a token lifetime: {previous:?}");
    let current = listed.iter().find(|k| k.kid == rotated.kid).expect("the new key");
    assert_eq!((current.state(), current.generation), (SigningKeyState::Signing, previous.generation + 1));

    // A compromised key is retired at once: its tokens stop verifying.
    admin.retire_key(&kid(&old)).await.expect("retire");
    key_sets_reloaded(suite).await;
    assert_eq!(published_kids(suite).await, [kid(&new)]);
    suite.api.get(PROFILE, Some(&old)).await.assert_problem(401, "invalid_token");
    assert_eq!(suite.api.get(PROFILE, Some(&new)).await.status, 200);
}

/// The stored password hash of `user_id`.
async fn stored_hash(suite: &TestSuite, user_id: &str) -> String {
    use sea_orm::sea_query::ExprTrait;
    let query = Query::select()
        .column("password_hash")
        .from("auth_users")
        .and_where(Expr::col("id").eq(uuid::Uuid::parse_str(user_id).expect("id")))
        .to_owned();
    let row = suite.database().query_one(&query).await.expect("query").expect("the user");
    row.try_get::<String>("", "password_hash").expect("a hash")
}

/// A user whose hash was made with the parameters used until 2026-12 (19
/// MiB, 2 passes) logs in as before; that login replaces the hash with one
/// of today's parameters, and a wrong password replaces nothing.
async fn an_outdated_password_hash_is_renewed_at_login(suite: &TestSuite) {
    use argon2::PasswordHasher;
    use sea_orm::sea_query::ExprTrait;
    let (user_id, token) = suite.user_with_balance(0).await;
    let username = suite.api.get(PROFILE, Some(&token)).await.str("username").to_string();
    let password = offers::dev::DEMO_PASSWORD;
    let legacy = argon2::Argon2::default().hash_password(password.as_bytes()).expect("hash").to_string();
    assert!(legacy.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{legacy}");
    let update = Query::update()
        .table("auth_users")
        .value("password_hash", legacy.clone())
        .and_where(Expr::col("id").eq(uuid::Uuid::parse_str(&user_id).expect("id")))
        .to_owned();
    suite.database().execute(&update).await.expect("the old hash stored");

    assert_eq!(suite.api.login(&username, "not-the-password").await.status, 401);
    assert_eq!(stored_hash(suite, &user_id).await, legacy, "a wrong password renews nothing");
    assert_eq!(suite.api.login(&username, password).await.status, 200, "the old hash still verifies");
    let renewed = stored_hash(suite, &user_id).await;
    assert!(renewed.starts_with("$argon2id$v=19$m=12288,t=3,p=1$"), "{renewed}");
    assert_eq!(suite.api.login(&username, password).await.status, 200, "and the new one too");
    assert_eq!(stored_hash(suite, &user_id).await, renewed, "a current hash is left as it is");
}

both!(
    an_outdated_password_hash_is_renewed_at_login,
    signing_keys_rotate_and_retire,
    login_succeeds_and_fails,
    profile_needs_a_valid_token,
    forged_tokens_are_refused,
    the_grpc_service_checks_tokens_too,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_ends_refreshing,
    operators_sign_in_with_a_console_role,
);

// Across every process boundary: each role its own process.
across_processes!(
    login_succeeds_and_fails,
    forged_tokens_are_refused,
    refresh_rotates_and_reuse_revokes_the_family,
    logout_ends_refreshing,
    signing_keys_rotate_and_retire,
);

async fn login_is_rate_limited(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.auth.login_per_username = 3;
        s.auth.login_per_address = 5;
    })
    .await
    else {
        return;
    };
    for _ in 0..3 {
        assert_eq!(suite.api.login("demo", "wrong-password").await.status, 401);
    }
    let limited = suite.api.login("demo", "demo-password").await;
    limited.assert_problem(429, "rate_limited");
    let retry_after: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // Another username from the same address still gets in, until the address limit.
    assert_eq!(suite.api.login("demo2", "demo-password").await.status, 200);
    assert_eq!(suite.api.login("demo2", "demo-password").await.status, 429, "address limit of 5");
    suite.stop().await;
}

/// A login from `address` as our trusted proxy reports it, after whatever
/// the client wrote in its own `X-Forwarded-For` line.
async fn login_via_proxy(suite: &TestSuite, username: &str, password: &str, forged: &str, address: &str) -> u16 {
    let body = serde_json::json!({"username": username, "password": password});
    let lines = [("x-forwarded-for", forged), ("x-forwarded-for", address)];
    suite.api.post_with("/api/v1/auth/login/", None, &body, &lines).await.status
}

fn random_username() -> String {
    format!("nobody{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

async fn a_login_flood_is_refused_as_busy_not_queued(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.auth.password_hash_concurrency = 1;
        s.auth.password_hash_wait = Duration::from_millis(50);
        s.auth.login_per_address = 1_000;
    })
    .await
    else {
        return;
    };
    let usernames: Vec<String> = (0..40).map(|_| random_username()).collect();
    let logins = usernames.iter().map(|username| suite.api.login(username, "a-guess"));
    let replies = futures_util::future::join_all(logins).await;
    let busy: Vec<_> = replies.iter().filter(|r| r.status == 503).collect();
    assert_eq!(busy.len() + replies.iter().filter(|r| r.status == 401).count(), 40, "only 401 or 503");
    assert!(!busy.is_empty(), "the excess is refused at once");
    for reply in busy {
        reply.assert_problem(503, "service_unavailable");
        assert!(reply.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    }
    assert_eq!(suite.api.login("demo", "demo-password").await.status, 200, "and then it serves again");
    suite.stop().await;
}

async fn forged_forwarded_for_lines_do_not_dodge_the_limit(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.gateway.trusted_proxy_hops = 1;
        s.auth.login_per_address = 20;
    })
    .await
    else {
        return;
    };
    let mut statuses = Vec::new();
    for i in 0..30 {
        let forged = format!("198.51.100.{i}");
        statuses.push(login_via_proxy(&suite, &random_username(), "a-guess", &forged, "203.0.113.7").await);
    }
    assert_eq!(statuses[..20], [401; 20], "{statuses:?}");
    assert_eq!(statuses[20..], [429; 10], "one client, one bucket, whatever it writes: {statuses:?}");
    // Another client behind the same proxy is its own bucket.
    assert_eq!(login_via_proxy(&suite, "demo", "demo-password", "203.0.113.7", "203.0.113.8").await, 200);
    suite.stop().await;
}

async fn a_grpc_caller_cannot_pick_its_bucket(backend: Backend) {
    use offers_proto::auth::v1::LoginRequest;
    use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.auth.login_per_address = 5).await else { return };
    let mut client = AuthServiceClient::new(suite.public_channel().await);
    let mut codes = Vec::new();
    for i in 0..8 {
        let mut request = tonic::Request::new(LoginRequest { username: random_username(), password: "x".into() });
        let metadata = request.metadata_mut();
        metadata.insert("offers-client-address", format!("198.51.100.{i}").parse().expect("ascii"));
        metadata.insert("offers-forwarded-by", "a-guess-at-the-credential".parse().expect("ascii"));
        codes.push(client.login(request).await.expect_err("no such user").code());
    }
    let limited = codes.iter().filter(|c| **c == tonic::Code::ResourceExhausted).count();
    assert_eq!(limited, 3, "limited by its real address after 5: {codes:?}");
    suite.stop().await;
}

async fn one_address_cannot_lock_a_user_out_everywhere(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.gateway.trusted_proxy_hops = 1;
        s.auth.login_per_username = 3;
        s.auth.login_per_username_global = 5;
    })
    .await
    else {
        return;
    };
    for _ in 0..3 {
        assert_eq!(login_via_proxy(&suite, "demo", "wrong", "", "198.51.100.1").await, 401);
    }
    assert_eq!(login_via_proxy(&suite, "demo", "demo-password", "", "198.51.100.1").await, 429, "that address is out");
    assert_eq!(login_via_proxy(&suite, "demo", "demo-password", "", "198.51.100.2").await, 200, "the user is not");
    // Past the higher ceiling across addresses, the username rests everywhere.
    assert_eq!(login_via_proxy(&suite, "demo", "wrong", "", "198.51.100.3").await, 401);
    assert_eq!(login_via_proxy(&suite, "demo", "demo-password", "", "198.51.100.4").await, 429);
    suite.stop().await;
}

/// A username is counted only once it is one (the rule registration
/// applies), and a key's parts cannot run into each other: failed logins for
/// `demo2:127.0.0.9` once filled the bucket of the real `demo2` at
/// 127.0.0.9 (and likewise an IPv6 /64's, whose name holds colons).
async fn a_crafted_username_cannot_use_up_another_users_bucket(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.gateway.trusted_proxy_hops = 1;
        s.auth.login_per_username = 5;
    })
    .await
    else {
        return;
    };
    for (victim_address, crafted) in [("127.0.0.9", "demo2:127.0.0.9"), ("2001:db8:1:2::7", "demo2:2001:db8:1:2::/64")]
    {
        for _ in 0..6 {
            let body = serde_json::json!({"username": crafted, "password": "a-guess"});
            let lines = [("x-forwarded-for", "198.51.100.20")];
            let reply = suite.api.post_with("/api/v1/auth/login/", None, &body, &lines).await;
            reply.assert_problem(400, "invalid_request");
        }
        let status = login_via_proxy(&suite, "demo2", "demo-password", "", victim_address).await;
        assert_eq!(status, 200, "demo2 at {victim_address} was locked out by {crafted:?}");
    }
    suite.stop().await;
}

async fn refresh(suite: &TestSuite, token: &str) -> Option<String> {
    let reply = suite.api.post("/api/v1/auth/refresh/", None, &serde_json::json!({"refresh_token": token})).await;
    match reply.status {
        200 => Some(reply.str("refresh_token").to_string()),
        401 => None,
        other => panic!("refresh answered {other}: {}", reply.body),
    }
}

/// A thief rotates a stolen token as fast as it can while the victim's
/// spent one comes back: once that reuse has been answered, no refresh of
/// the family may ever succeed again — a rotation in flight cannot slip a
/// live token past the revocation. A hundred rounds, to meet the race.
async fn a_reused_token_stops_its_family_for_good(backend: Backend) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.auth.login_per_username = 1_000;
        s.auth.login_per_username_global = 1_000;
        s.auth.login_per_address = 1_000;
    })
    .await
    else {
        return;
    };
    for round in 0..100 {
        let spent = suite.api.login("demo", "demo-password").await.str("refresh_token").to_string();
        let stolen = refresh(&suite, &spent).await.expect("the first rotation");
        let answered = AtomicBool::new(false);
        let thief = async {
            let mut latest = stolen;
            loop {
                let after_reuse = answered.load(Ordering::SeqCst);
                match refresh(&suite, &latest).await {
                    Some(next) => {
                        assert!(!after_reuse, "round {round}: a refresh succeeded after the reuse was answered");
                        latest = next;
                    }
                    None => return latest,
                }
            }
        };
        let reuse = async {
            assert_eq!(refresh(&suite, &spent).await, None, "a spent token is refused");
            answered.store(true, Ordering::SeqCst);
        };
        let (latest, ()) = tokio::join!(thief, reuse);
        assert_eq!(refresh(&suite, &latest).await, None, "round {round}: the family is dead");
    }
    suite.stop().await;
}

async fn a_rotated_out_key_retires_by_itself(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.auth.access_ttl = Duration::from_secs(3);
        s.auth.key_retire_margin = Duration::from_secs(5);
    })
    .await
    else {
        return;
    };
    let old = suite.token("demo").await;
    let rotated = suite.admin().rotate_key().await.expect("rotate");
    let rotated_at = std::time::Instant::now();
    assert_eq!(suite.api.get(PROFILE, Some(&old)).await.status, 200, "its tokens verify while they live");
    // Published until its last token has expired and the margin passed
    // (3 + 5 s), then gone without anyone retiring it.
    let deadline = rotated_at + std::time::Duration::from_secs(20);
    while published_kids(&suite).await.contains(&kid(&old)) {
        assert!(std::time::Instant::now() < deadline, "the old key never retired");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let retired_after = rotated_at.elapsed();
    assert!(retired_after >= std::time::Duration::from_secs(7), "retired too early: {retired_after:?}");
    assert_eq!(published_kids(&suite).await, [rotated.kid]);
    let listed = suite.admin().keys().await.expect("keys");
    let previous = listed.iter().find(|k| k.kid == kid(&old)).expect("the old key is kept on record");
    assert!(!previous.signing && previous.retire_time.is_some());
    suite.stop().await;
}

each_backend!(
    a_rotated_out_key_retires_by_itself,
    a_reused_token_stops_its_family_for_good,
    login_is_rate_limited,
    a_login_flood_is_refused_as_busy_not_queued,
    forged_forwarded_for_lines_do_not_dodge_the_limit,
    a_grpc_caller_cannot_pick_its_bucket,
    one_address_cannot_lock_a_user_out_everywhere,
    a_crafted_username_cannot_use_up_another_users_bucket,
);

/// The kernel's account of a process's memory (`VmHWM` is its peak), in MiB.
fn memory_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let line = status.lines().find(|l| l.starts_with(field)).unwrap_or_else(|| panic!("no {field}"));
    line.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()).expect("kB") / 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_stays_within_the_auth_process_memory_budget() {
    // A budget with room for three 12 MiB hashes (one per core runs at
    // once). Unbounded, 120 logins of unknown users (no per-address limit
    // applies) would hash all at once: over 2 GiB in this one process.
    let configure = |s: &mut offers::settings::Settings| {
        s.auth.password_hash_memory_mib = 40;
        s.auth.login_per_address = 10_000;
    };
    let replicas = offers_harness::local::Replicas::default();
    let Some(suite) = TestSuite::spawn_processes_with(replicas, Vec::new(), configure).await else { return };
    let auth = suite.processes().and_then(|d| d.members_of(offers::roles::Role::Auth).next().cloned()).expect("auth");
    let before = memory_mib(auth.pid, "VmRSS:");
    let usernames: Vec<String> = (0..120).map(|_| random_username()).collect();
    let logins = usernames.iter().map(|username| suite.api.login(username, "a-guess"));
    let replies = futures_util::future::join_all(logins).await;
    let busy = replies.iter().filter(|r| r.status == 503).count();
    assert_eq!(busy + replies.iter().filter(|r| r.status == 401).count(), 120, "only 401 or 503, never a crash");
    assert!(busy > 0, "the excess is refused, not queued");
    for reply in replies.iter().filter(|r| r.status == 503) {
        assert!(reply.header("retry-after").is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1)));
    }
    let peak = memory_mib(auth.pid, "VmHWM:");
    assert!(peak < before + 120, "the auth process peaked at {peak} MiB (from {before} MiB)");
    assert_eq!(suite.api.login("demo", offers::dev::DEMO_PASSWORD).await.status, 200, "and it serves again");
    suite.stop().await;
}

/// A process that checks tokens but has no key set yet (its auth service
/// is out of reach as it starts) answers "try again" to a good token, never
/// "invalid token" (which a client would take as final), and verifies it as
/// soon as its keys arrive. Found by the soak: a replica restarted after a
/// crash took calls before it had its keys and refused good tokens.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_its_keys_yet_a_process_says_try_again() {
    use offers_proto::catalog::v1::ListOffersRequest;
    use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
    let Some(suite) = TestSuite::spawn(Backend::Real).await else { return };
    let token = suite.token("demo").await;
    let auth = offers_tests::faults::FaultProxy::start(suite.grpc_addr).await;
    auth.stall();
    let mut settings = suite.settings.clone();
    settings.upstream.auth = format!("http://{}", auth.addr);
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);
    let catalog =
        offers::process::Process::start(settings, &[offers::roles::Role::Catalog], false).await.expect("starts");
    let url = format!("http://{}", catalog.grpc_addr.expect("gRPC listener"));
    let mut client =
        CatalogServiceClient::new(tonic::transport::Channel::from_shared(url).expect("url").connect_lazy());
    let list = || {
        let mut request = tonic::Request::new(ListOffersRequest::default());
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    };
    let status = client.list_offers(list()).await.expect_err("no keys yet");
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(status.metadata().get("offers-error-code").and_then(|v| v.to_str().ok()), Some("service_unavailable"));

    auth.restore();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while let Err(status) = client.list_offers(list()).await {
        assert_eq!(status.code(), tonic::Code::Unavailable, "only ever 'try again': {status:?}");
        assert!(tokio::time::Instant::now() < deadline, "the keys never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    catalog.stop().await;
    suite.stop().await;
}

/// The console's sign-in: an operator's password checked like a login's;
/// a customer with the right password is refused for what they are, not
/// for their password; console access given and taken is audited.
async fn operators_sign_in_with_a_console_role(suite: &TestSuite) {
    use offers_proto::auth::v1 as pb;
    let mut admin = suite.admin();
    admin.act_as("root", "the new support shift");
    let request = pb::CreateUserRequest {
        username: "ana-ops".into(),
        password: "a-long-operator-password".into(),
        console_role: pb::ConsoleRole::Operator.into(),
        ..Default::default()
    };
    let offers::admin::Created::New(ana) = admin.create_user(request).await.expect("operator") else { panic!("taken") };
    assert_eq!(ana.console_role(), pb::ConsoleRole::Operator);
    let (customer, _) = suite.user_with_balance(0).await;
    let sign_in = |username: &str, password: &str| pb::SignInOperatorRequest {
        username: username.into(),
        password: password.into(),
        client_address: "203.0.113.7".into(),
    };
    let mut users = admin.clients.users.clone();
    let signed = users.sign_in_operator(sign_in("ana-ops", "a-long-operator-password")).await.expect("signed in");
    assert_eq!(signed.into_inner().user.expect("user").console_role(), pb::ConsoleRole::Operator);
    let wrong = users.sign_in_operator(sign_in("ana-ops", "not-her-password")).await.expect_err("wrong password");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    let nobody = users.sign_in_operator(sign_in("no-such-operator", "whatever-it-is")).await.expect_err("unknown");
    assert_eq!(nobody.code(), tonic::Code::Unauthenticated, "the same answer: {nobody:?}");
    let customer_name = admin.user(&customer).await.expect("customer").username;
    let refused =
        users.sign_in_operator(sign_in(&customer_name, offers::dev::DEMO_PASSWORD)).await.expect_err("a customer");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");

    let viewer = admin.set_console_role(&customer, pb::ConsoleRole::Viewer).await.expect("viewer");
    assert_eq!(viewer.console_role(), pb::ConsoleRole::Viewer);
    let signed = users.sign_in_operator(sign_in(&customer_name, offers::dev::DEMO_PASSWORD)).await.expect("viewer");
    assert_eq!(signed.into_inner().user.expect("user").console_role(), pb::ConsoleRole::Viewer);
    admin.set_console_role(&customer, pb::ConsoleRole::Unspecified).await.expect("taken away");
    let refused = users.sign_in_operator(sign_in(&customer_name, offers::dev::DEMO_PASSWORD)).await.expect_err("gone");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);

    let filter = offers_proto::audit::v1::ListAuditEntriesRequest {
        target: format!("user:{customer}"),
        action: "user.console_role".into(),
        ..Default::default()
    };
    let granted = admin.audit_entries(&filter, 10).await.expect("audit");
    let details: Vec<&str> = granted.iter().map(|e| e.detail.as_str()).collect();
    assert_eq!(details, ["console_role=none", "console_role=viewer"]);
    assert!(granted.iter().all(|e| e.actor == "root" && e.note == "the new support shift"));
}
