//! Partners: keys, activation on a user's behalf, references, callbacks.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use offers_proto::contracts::PartnerEvent;
use offers_proto::partner::v1::PartnerStatus;
use offers_tests::{Backend, Reply, TestSuite, across_processes, both, each_backend};
use serde_json::{Value, json};

const DEMO_KEY: &str = "demo-partner-key";

async fn user_id(suite: &TestSuite, token: &str) -> String {
    suite.api.get("/api/v1/auth/profile/", Some(token)).await.str("id").to_string()
}

async fn partner_activate(suite: &TestSuite, key: &str, body: &Value) -> Reply {
    suite.api.post("/api/v1/partner/activate/", Some(key), body).await
}

/// Polls the partner's view of a reference until it leaves PENDING.
async fn settled_reference(suite: &TestSuite, key: &str, reference: &str) -> Reply {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let reply = suite.api.get(&format!("/api/v1/partner/validate/{reference}/"), Some(key)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body["status"] != "PENDING" {
            return reply;
        }
        assert!(tokio::time::Instant::now() < deadline, "{reference} still PENDING");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Another partner with its own key and `float` in its account.
async fn funded_partner(suite: &TestSuite, name: &str, float: i64) -> (String, String) {
    let mut admin = suite.admin();
    let offers::admin::Created::New(created) = admin.create_partner(name).await.expect("partner") else {
        panic!("partner exists")
    };
    let id = created.partner.expect("partner").id;
    if float > 0 {
        let currency = suite.settings.currency.clone();
        admin.fund_partner(&id, float, &currency, &format!("test-float:{name}")).await.expect("fund");
    }
    (id, created.secret)
}

/// A second partner with its own key and some money in its account.
async fn other_partner(suite: &TestSuite, name: &str) -> (String, String) {
    funded_partner(suite, name, 100_000).await
}

/// The calling partner's account: (balance, credit limit, available),
/// waiting out the partner's rate limit if a burst just used it up.
async fn partner_balance(suite: &TestSuite, key: &str) -> (i64, i64, i64) {
    let mut reply = suite.api.get("/api/v1/partner/balance/", Some(key)).await;
    while reply.status == 429 {
        let wait = reply.header("retry-after").and_then(|s| s.parse().ok()).unwrap_or(1);
        tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
        reply = suite.api.get("/api/v1/partner/balance/", Some(key)).await;
    }
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.body["currency"], suite.settings.currency.as_str());
    let field = |name: &str| reply.body[name].as_i64().unwrap_or_else(|| panic!("{name} in {}", reply.body));
    (field("balance"), field("credit_limit"), field("available"))
}

async fn partner_activation_charges_the_partner_not_the_user(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let before = suite.balance(&token).await;
    let (float, _, _) = partner_balance(suite, DEMO_KEY).await;
    assert_eq!(float, offers::dev::DEMO_PARTNER_FLOAT, "the demo partner's float");
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let accepted = partner_activate(suite, DEMO_KEY, &json!({"user_id": user, "offer_id": offer, "amount": 500})).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "PENDING");
    let reference = accepted.str("reference").to_string();
    assert!(reference.starts_with("REF-") && reference.len() == 16, "{reference}");
    assert!(reference[4..].chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));

    let valid = settled_reference(suite, DEMO_KEY, &reference).await;
    assert_eq!(valid.body["status"], "SUCCESS", "{}", valid.body);
    assert_eq!(valid.body["is_valid"], true);
    assert_eq!(
        (valid.body["user_id"].as_str(), valid.body["offer_id"].as_str()),
        (Some(user.as_str()), Some(offer.as_str()))
    );
    assert_eq!(valid.body["transaction_id"], accepted.body["transaction_id"]);
    assert_eq!(suite.balance(&token).await, before, "the partner paid; the user's balance is untouched");
    assert_eq!(partner_balance(suite, DEMO_KEY).await, (float - 500, 0, float - 500), "the partner paid, once");

    // The user sees it, with its kind and reference, and the subscription.
    let tx = suite.transaction(&token, accepted.str("transaction_id")).await;
    assert_eq!((tx["kind"].as_str(), tx["reference"].as_str()), (Some("PARTNER_ACTIVATION"), Some(reference.as_str())));
    let list = suite.api.get("/api/v1/account/transactions/", Some(&token)).await;
    assert!(list.body["results"].as_array().expect("results").iter().any(|t| t["reference"] == reference.as_str()));
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    assert_eq!(subs.body["results"][0]["offer_id"], offer.as_str());
    let status =
        suite.api.get(&format!("/api/v1/activation/status/{}/", accepted.str("transaction_id")), Some(&token)).await;
    assert_eq!(status.body["status"], "SUCCESS");
}

async fn failed_partner_activation_refunds_the_partner_once(suite: &TestSuite) {
    let token = suite.token("demo2").await;
    let user = user_id(suite, &token).await;
    let before = suite.balance(&token).await;
    let (float, _, _) = partner_balance(suite, DEMO_KEY).await;
    let offer = suite.offer_id(&token, "SIM-FAIL").await;
    let accepted = partner_activate(suite, DEMO_KEY, &json!({"user_id": user, "offer_id": offer, "amount": 100})).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    // The rejection may settle before a balance read here could see the
    // hold; the ledger check after the test proves the hold came from the
    // partner and the refund went back to it.
    let done = settled_reference(suite, DEMO_KEY, accepted.str("reference")).await;
    assert_eq!(done.body["status"], "FAILED");
    assert_eq!(partner_balance(suite, DEMO_KEY).await.0, float, "the money went back to whoever paid");
    assert_eq!(suite.balance(&token).await, before, "no money is created for the user");
    // Duplicate settle attempts change nothing more.
    let id = accepted.str("transaction_id").to_string();
    let mut admin = suite.admin();
    let settle = offers_proto::account::v1::SettleTransactionRequest {
        transaction_id: id,
        status: offers_proto::account::v1::TransactionStatus::Failed.into(),
        failure_reason: "again".into(),
        attempt: 0,
    };
    let again = admin.clients.ledger.settle_transaction(settle).await.expect("settle").into_inner();
    assert!(!again.applied);
    assert_eq!(partner_balance(suite, DEMO_KEY).await.0, float, "refunded once");
    assert_eq!(suite.balance(&token).await, before);
}

async fn a_partner_float_covers_exactly_what_it_holds(suite: &TestSuite) {
    let (_, key) = funded_partner(suite, "small-bank", 3 * 500).await;
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let before = suite.balance(&token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let body = json!({"user_id": user, "offer_id": offer, "amount": 500});
    let replies = futures_util::future::join_all((0..20).map(|_| partner_activate(suite, &key, &body))).await;
    let accepted: Vec<_> = replies.iter().filter(|r| r.status == 202).collect();
    assert_eq!(accepted.len(), 3, "statuses: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    for refused in replies.iter().filter(|r| r.status != 202) {
        refused.assert_problem(400, "insufficient_partner_funds");
    }
    assert_eq!(partner_balance(suite, &key).await, (0, 0, 0));
    let listed = suite.api.get("/api/v1/partner/transactions/", Some(&key)).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    assert_eq!(listed.body["results"].as_array().expect("results").len(), 3, "nothing written for the refused");
    for reply in accepted {
        assert_eq!(settled_reference(suite, &key, reply.str("reference")).await.body["status"], "SUCCESS");
    }
    assert_eq!(suite.balance(&token).await, before, "the user paid nothing");
}

async fn a_credit_limit_lets_a_partner_go_below_zero(suite: &TestSuite) {
    let (partner, key) = funded_partner(suite, "credit-bank", 0).await;
    let token = suite.token("demo").await;
    let body = json!({"user_id": user_id(suite, &token).await, "offer_id": suite.offer_id(&token, "DATA-1GB").await, "amount": 500});
    partner_activate(suite, &key, &body).await.assert_problem(400, "insufficient_partner_funds");
    let mut admin = suite.admin();
    admin.set_credit_limit(&partner, 700).await.expect("limit");
    assert_eq!(partner_balance(suite, &key).await, (0, 700, 700));
    let accepted = partner_activate(suite, &key, &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(partner_balance(suite, &key).await, (-500, 700, 200));
    partner_activate(suite, &key, &body).await.assert_problem(400, "insufficient_partner_funds");
    assert!(admin.set_credit_limit(&partner, 400).await.is_err(), "not below what it owes");
    settled_reference(suite, &key, accepted.str("reference")).await;
}

async fn partners_list_only_their_own_transactions(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let offer = suite.offer_id(&token, "VOICE-100").await;
    let (_, key) = other_partner(suite, "listing-bank").await;
    let body = json!({"user_id": user, "offer_id": offer, "amount": 300});
    let mine: Vec<String> = futures_util::future::join_all((0..3).map(|_| partner_activate(suite, &key, &body)))
        .await
        .iter()
        .map(|r| r.str("reference").to_string())
        .collect();
    let demo = partner_activate(suite, DEMO_KEY, &body).await;
    assert_eq!(demo.status, 202);
    let first = suite.api.get("/api/v1/partner/transactions/?limit=2", Some(&key)).await;
    assert_eq!(first.status, 200, "{}", first.body);
    let second = suite
        .api
        .get(&format!("/api/v1/partner/transactions/?limit=2&cursor={}", first.str("next_cursor")), Some(&key))
        .await;
    let listed: Vec<String> = [&first, &second]
        .iter()
        .flat_map(|page| page.body["results"].as_array().expect("results").clone())
        .map(|t| {
            assert_eq!(t["kind"], "PARTNER_ACTIVATION");
            t["reference"].as_str().expect("reference").to_string()
        })
        .collect();
    let mut expected = mine.clone();
    expected.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, expected, "its own three, not the demo partner's");
    for reference in &mine {
        settled_reference(suite, &key, reference).await;
    }
    settled_reference(suite, DEMO_KEY, demo.str("reference")).await;
    suite.api.get("/api/v1/partner/transactions/", None).await.assert_problem(401, "unauthenticated");
}

async fn partner_input_is_checked(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let unknown = uuid::Uuid::now_v7().to_string();
    let cases = [
        (json!({"user_id": unknown, "offer_id": offer, "amount": 500}), "invalid_user"),
        (json!({"user_id": "nope", "offer_id": offer, "amount": 500}), "invalid_user"),
        (json!({"user_id": user, "offer_id": unknown, "amount": 500}), "invalid_offer"),
        (json!({"user_id": user, "offer_id": "nope", "amount": 500}), "invalid_offer"),
        (json!({"user_id": user, "offer_id": offer, "amount": 499}), "amount_mismatch"),
        (json!({"user_id": user, "offer_id": offer}), "invalid_request"),
        (json!({"user_id": user, "offer_id": offer, "amount": "500"}), "invalid_request"),
        (json!({"user_id": user, "offer_id": offer, "amount": 5.5}), "invalid_request"),
    ];
    for (body, code) in cases {
        let reply = partner_activate(suite, DEMO_KEY, &body).await;
        reply.assert_problem(400, code);
        if code == "invalid_request" {
            let detail = reply.body["detail"].as_str().unwrap_or_default();
            assert!(detail.contains("amount"), "the detail names the field: {detail}");
        }
    }
    // An inactive offer cannot be sold by partners either.
    let voice = suite.offer_id(&token, "VOICE-100").await;
    let off = offers_proto::catalog::v1::Offer { id: voice.clone(), is_active: false, ..Default::default() };
    suite.admin().update_offer(off, vec!["is_active".into()]).await.expect("deactivate");
    partner_activate(suite, DEMO_KEY, &json!({"user_id": user, "offer_id": voice, "amount": 300}))
        .await
        .assert_problem(400, "invalid_offer");
    suite.api.get("/api/v1/partner/validate/REF-12/", Some(DEMO_KEY)).await.assert_problem(400, "invalid_id");
}

async fn partner_credentials_are_enforced(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let body = json!({"user_id": user, "offer_id": offer, "amount": 500});
    partner_activate(suite, "pk_live_not-a-real-key", &body).await.assert_problem(401, "unauthenticated");
    // A bad key with a bad body is still a 401: credentials come first.
    partner_activate(suite, "pk_live_not-a-real-key", &json!({})).await.assert_problem(401, "unauthenticated");
    let bad_idempotency_key = [("Idempotency-Key", "with space")];
    let answer =
        suite.api.post_with("/api/v1/partner/activate/", Some("pk_live_not-a-real-key"), &body, &bad_idempotency_key);
    answer.await.assert_problem(401, "unauthenticated");
    let answer = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &bad_idempotency_key);
    answer.await.assert_problem(400, "invalid_request");
    suite.api.post("/api/v1/partner/activate/", None, &body).await.assert_problem(401, "unauthenticated");
    // A user's access token is no partner key.
    partner_activate(suite, &token, &body).await.assert_problem(401, "unauthenticated");

    let (partner_id, first) = other_partner(suite, "rotating-bank").await;
    assert!(first.starts_with("pk_live_"));
    let mut admin = suite.admin();
    let second = admin.create_key(&partner_id, None).await.expect("second key");
    // Both keys live at once: rotation without downtime.
    for key in [&first, &second.secret] {
        assert_eq!(suite.api.get("/api/v1/partner/validate/REF-000000000000/", Some(key)).await.status, 404);
    }
    let first_id = admin.partner("rotating-bank").await.expect("partner").id;
    assert_eq!(first_id, partner_id);
    // Revoke the first: it stops, the second goes on.
    let listed = second.api_key.expect("key");
    assert!(listed.prefix.starts_with("pk_live_"));
    let revoked = admin.create_key(&partner_id, None).await.expect("third");
    admin.revoke_key(&revoked.api_key.expect("key").id).await.expect("revoke");
    suite
        .api
        .get("/api/v1/partner/validate/REF-000000000000/", Some(&revoked.secret))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(suite.api.get("/api/v1/partner/validate/REF-000000000000/", Some(&second.secret)).await.status, 404);
    // Suspended: every key is refused, until reactivated.
    admin.set_partner_status(&partner_id, PartnerStatus::Suspended).await.expect("suspend");
    partner_activate(suite, &second.secret, &body).await.assert_problem(401, "unauthenticated");
    admin.set_partner_status(&partner_id, PartnerStatus::Active).await.expect("reactivate");
    assert_eq!(partner_activate(suite, &second.secret, &body).await.status, 202);
    // Preset secrets are refused outside the embedded mode's demo data.
    let preset = admin.create_key(&partner_id, Some("chosen-by-the-caller-123")).await;
    assert_eq!(suite.settings.partner.allow_preset_keys, preset.is_ok());
}

async fn references_are_private_to_their_partner(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let accepted = partner_activate(suite, DEMO_KEY, &json!({"user_id": user, "offer_id": offer, "amount": 500})).await;
    let reference = accepted.str("reference").to_string();
    let (_, other_key) = other_partner(suite, "other-bank").await;
    let theirs = suite.api.get(&format!("/api/v1/partner/validate/{reference}/"), Some(&other_key)).await;
    assert_eq!(theirs.status, 404);
    assert_eq!(theirs.body, json!({"reference": reference, "is_valid": false, "error": "Transaction not found"}));
    settled_reference(suite, DEMO_KEY, &reference).await;
}

async fn partner_idempotency_is_per_partner(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let data = suite.offer_id(&token, "DATA-1GB").await;
    let voice = suite.offer_id(&token, "VOICE-100").await;
    let key = [("Idempotency-Key", "bank-order-1")];
    let body = json!({"user_id": user, "offer_id": data, "amount": 500});
    let first = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &key).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let replay = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &key).await;
    assert_eq!((replay.status, &replay.body), (202, &first.body));
    let reused = json!({"user_id": user, "offer_id": voice, "amount": 300});
    suite
        .api
        .post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &reused, &key)
        .await
        .assert_problem(422, "idempotency_key_reused");
    // Another partner's identical key is its own.
    let (_, other_key) = other_partner(suite, "second-bank").await;
    let theirs = suite.api.post_with("/api/v1/partner/activate/", Some(&other_key), &body, &key).await;
    assert_eq!(theirs.status, 202);
    assert_ne!(theirs.body["reference"], first.body["reference"]);
    settled_reference(suite, DEMO_KEY, first.str("reference")).await;
    settled_reference(suite, &other_key, theirs.str("reference")).await;
    let list = suite.api.get("/api/v1/account/transactions/", Some(&token)).await;
    assert_eq!(list.body["results"].as_array().expect("results").len(), 2, "one each, not three");
}

/// A retry gets its first answer even when the checks would refuse it
/// now: the price changed, then the offer left sale. Only a new key is
/// refused, and the partner paid once.
async fn a_partner_retry_outlives_changes_to_the_offer(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let (float, _, _) = partner_balance(suite, DEMO_KEY).await;
    let key = [("Idempotency-Key", "bank-order-retried")];
    let body = json!({"user_id": user, "offer_id": offer, "amount": 500});
    let first = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &key).await;
    assert_eq!(first.status, 202, "{}", first.body);

    let repriced = offers_proto::catalog::v1::Offer { id: offer.clone(), price: 650, ..Default::default() };
    suite.admin().update_offer(repriced, vec!["price".into()]).await.expect("reprice");
    let retry = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &key).await;
    assert_eq!((retry.status, &retry.body), (202, &first.body), "the first answer, at the first price");
    let fresh = [("Idempotency-Key", "bank-order-new")];
    let refused = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &fresh).await;
    refused.assert_problem(400, "amount_mismatch");

    let off = offers_proto::catalog::v1::Offer { id: offer.clone(), is_active: false, ..Default::default() };
    suite.admin().update_offer(off, vec!["is_active".into()]).await.expect("withdraw");
    let retry = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &key).await;
    assert_eq!((retry.status, &retry.body), (202, &first.body), "the first answer, off sale");
    let at_the_new_price = json!({"user_id": user, "offer_id": offer, "amount": 650});
    let refused = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &at_the_new_price, &fresh).await;
    refused.assert_problem(400, "invalid_offer");

    settled_reference(suite, DEMO_KEY, first.str("reference")).await;
    assert_eq!(partner_balance(suite, DEMO_KEY).await.0, float - 500, "paid once");
}

/// A retry the ledger replays is not another activation: the partner's
/// counter on `/metrics` moves once. (Its own partner, so that no other
/// test's activations share the series.)
async fn a_replayed_partner_activation_is_counted_once(suite: &TestSuite) {
    let name = format!("counted-{}", &uuid::Uuid::now_v7().simple().to_string()[24..]);
    let (_, key) = funded_partner(suite, &name, 10_000).await;
    let token = suite.token("demo").await;
    let body = json!({"user_id": user_id(suite, &token).await, "offer_id": suite.offer_id(&token, "DATA-1GB").await, "amount": 500});
    let idempotency = [("Idempotency-Key", "counted-once")];
    for _ in 0..3 {
        let reply = suite.api.post_with("/api/v1/partner/activate/", Some(&key), &body, &idempotency).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let metrics = suite.api.get("/metrics", None).await;
    let text = metrics.body.as_str().expect("text").to_string();
    let series = format!("offers_partner_activations_total{{partner=\"{name}\"}}");
    let counted = text.lines().find_map(|line| line.strip_prefix(series.as_str())?.trim().parse::<u64>().ok());
    assert_eq!(counted, Some(1), "{series} in:\n{text}");
}

both!(
    callbacks_are_signed_and_retried,
    partner_activation_charges_the_partner_not_the_user,
    failed_partner_activation_refunds_the_partner_once,
    a_partner_float_covers_exactly_what_it_holds,
    a_credit_limit_lets_a_partner_go_below_zero,
    partners_list_only_their_own_transactions,
    partner_input_is_checked,
    partner_credentials_are_enforced,
    references_are_private_to_their_partner,
    partner_idempotency_is_per_partner,
    a_partner_retry_outlives_changes_to_the_offer,
    a_replayed_partner_activation_is_counted_once,
);

// Across every process boundary: each role its own process.
across_processes!(
    a_partner_retry_outlives_changes_to_the_offer,
    callbacks_are_signed_and_retried,
    partner_activation_charges_the_partner_not_the_user,
    failed_partner_activation_refunds_the_partner_once,
    a_partner_float_covers_exactly_what_it_holds,
    references_are_private_to_their_partner,
);

/// What a partner's callback endpoint received: headers and body of each POST.
type Received = Arc<Mutex<Vec<(axum::http::HeaderMap, String)>>>;

/// A partner's callback endpoint, registered for the demo partner: it
/// answers 500 the first time, then 200, and keeps what it received.
/// Returns it with the signing secret the registration answered.
async fn registered_receiver(suite: &TestSuite) -> (Received, String) {
    let received: Received = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hooks/offers",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let mut seen = seen.lock().expect("lock");
                seen.push((headers, body));
                if seen.len() == 1 { axum::http::StatusCode::INTERNAL_SERVER_ERROR } else { axum::http::StatusCode::OK }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks/offers", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let registered = suite.api.post("/api/v1/partner/callback/", Some(DEMO_KEY), &json!({"callback_url": url})).await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    (received, registered.str("signing_secret").to_string())
}

async fn callbacks_are_signed_and_retried(suite: &TestSuite) {
    let (received, secret) = registered_receiver(suite).await;
    suite
        .api
        .post("/api/v1/partner/callback/", Some(DEMO_KEY), &json!({"callback_url": "ftp://x"}))
        .await
        .assert_problem(400, "invalid_request");

    let token = suite.token("demo").await;
    let user = user_id(suite, &token).await;
    let offer = suite.offer_id(&token, "SIM-FAIL").await;
    // The partner's own trace: the callback its request causes joins it.
    let trace_id = uuid::Uuid::new_v4().simple().to_string();
    let traceparent = format!("00-{trace_id}-{}-01", &uuid::Uuid::new_v4().simple().to_string()[..16]);
    let body = json!({"user_id": user, "offer_id": offer, "amount": 100});
    let headers = [("traceparent", traceparent.as_str())];
    let accepted = suite.api.post_with("/api/v1/partner/activate/", Some(DEMO_KEY), &body, &headers).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let reference = accepted.str("reference").to_string();

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while received.lock().expect("lock").len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the callback was not retried to success");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let received = received.lock().expect("lock").clone();
    assert_eq!(received.len(), 2, "one failure, one success, and nothing after the success");
    let (first, second) = (&received[0], &received[1]);
    assert_eq!(first.1, second.1, "a retry sends the same event");
    let event: Value = serde_json::from_str(&second.1).expect("json");
    assert_eq!((event["reference"].as_str(), event["status"].as_str()), (Some(reference.as_str()), Some("FAILED")));
    assert_eq!(event["transaction_id"], accepted.body["transaction_id"]);
    assert!(event["failure_reason"].as_str().is_some() && event["occurred_at"].as_str().is_some());
    let header = |name: &str| second.0.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    assert_eq!(header("x-offers-event-id"), event["event_id"].as_str().expect("event id"));
    // Spans carry a trace context where telemetry is installed: in the
    // `offers` processes always, in this test binary only with TEST_LOG.
    if suite.processes().is_some() {
        assert!(header("traceparent").starts_with(&format!("00-{trace_id}-")), "{}", header("traceparent"));
    }
    let timestamp: i64 = header("x-offers-timestamp").parse().expect("timestamp");
    assert!((chrono::Utc::now().timestamp() - timestamp).abs() < 120);
    assert_eq!(header("x-offers-signature"), offers_partner::sign(&secret, timestamp, &second.1), "a valid signature");
    assert_ne!(header("x-offers-signature"), offers_partner::sign("wrong-secret", timestamp, &second.1));
}

async fn partners_are_rate_limited(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.partner.requests_per_second = 3).await else {
        return;
    };
    let replies = futures_util::future::join_all(
        (0..8).map(|_| suite.api.get("/api/v1/partner/validate/REF-000000000000/", Some(DEMO_KEY))),
    )
    .await;
    let limited: Vec<_> = replies.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty() && limited.len() <= 5, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    limited[0].assert_problem(429, "rate_limited");
    assert!(limited[0].header("retry-after").is_some());
    suite.stop().await;
}

async fn callbacks_stay_out_of_our_network(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.partner.allow_private_callbacks = false).await else {
        return;
    };
    for url in [
        "http://hooks.example.com/x",
        "https://127.0.0.1/x",
        "https://10.0.0.7/x",
        "https://[::1]/x",
        "https://localhost/x",
        "https://169.254.169.254/latest",
    ] {
        let reply = suite.api.post("/api/v1/partner/callback/", Some(DEMO_KEY), &json!({"callback_url": url})).await;
        reply.assert_problem(400, "invalid_request");
    }
    let ok = suite
        .api
        .post("/api/v1/partner/callback/", Some(DEMO_KEY), &json!({"callback_url": "https://hooks.example.com/offers"}))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    suite.stop().await;
}

/// The spellings of 127.0.0.1 that registration once took for host names
/// (the HTTP client reads each as 127.0.0.1), at `port`.
fn loopback_spellings(port: u16) -> Vec<String> {
    ["2130706433", "127.1", "0x7f000001", "017700000001", "127.0.0.1.", "%31%32%37.0.0.1", "[::ffff:7f00:1]"]
        .iter()
        .map(|host| format!("https://{host}:{port}/cb"))
        .collect()
}

/// A loopback listener that only counts the connections it is offered.
async fn connection_counter() -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let count: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((connection, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(connection);
        }
    });
    (port, count)
}

/// No spelling of an inside address gets past registration; and one stored
/// before the URL was read as the HTTP client reads it is refused at
/// delivery without a connection ever being opened to it.
async fn no_spelling_of_loopback_is_ever_called(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.partner.allow_private_callbacks = false;
        s.partner.requests_per_second = 1_000;
    })
    .await
    else {
        return;
    };
    let (port, connections) = connection_counter().await;
    let token = suite.token("demo").await;
    let body = json!({"user_id": user_id(&suite, &token).await, "offer_id": suite.offer_id(&token, "SIM-FAIL").await, "amount": 100});
    for url in loopback_spellings(port) {
        let reply = suite.api.post("/api/v1/partner/callback/", Some(DEMO_KEY), &json!({"callback_url": url})).await;
        reply.assert_problem(400, "invalid_request");

        store_callback_url(&suite, &url).await;
        let accepted = partner_activate(&suite, DEMO_KEY, &body).await;
        assert_eq!(accepted.status, 202, "{}", accepted.body);
        let transaction: uuid::Uuid = accepted.str("transaction_id").parse().expect("uuid");
        let error = abandoned_delivery(&suite, transaction).await;
        assert!(error.contains("public"), "{url}: {error}");
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 0, "a callback connected to loopback");
    suite.stop().await;
}

/// Puts `url` in the demo partner's row as registration under older rules
/// would have, with a secret.
async fn store_callback_url(suite: &TestSuite, url: &str) {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let update = Query::update()
        .table("partner_partners")
        .values([("callback_url", url.into()), ("callback_secret", "whsec_test".into())])
        .and_where(Expr::col("name").eq(offers::dev::DEMO_PARTNER))
        .to_owned();
    suite.database().execute(&update).await.expect("update the partner");
}

/// Waits for the callback of `transaction` to be given up, and says why.
async fn abandoned_delivery(suite: &TestSuite, transaction: uuid::Uuid) -> String {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let select = Query::select()
        .columns(["abandoned_at", "delivered_at", "last_error"])
        .from("partner_callback_deliveries")
        .and_where(Expr::col("transaction_id").eq(transaction))
        .to_owned();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        if let Some(row) = suite.database().query_one(&select).await.expect("query") {
            let delivered: Option<chrono::DateTime<chrono::Utc>> =
                row.try_get("", "delivered_at").expect("delivered_at");
            assert!(delivered.is_none(), "a callback to an inside address was delivered");
            let abandoned: Option<chrono::DateTime<chrono::Utc>> =
                row.try_get("", "abandoned_at").expect("abandoned_at");
            if abandoned.is_some() {
                let error: Option<String> = row.try_get("", "last_error").expect("last_error");
                return error.unwrap_or_default();
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the callback of {transaction} was not given up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A delivery row waiting for `event`'s job, due `due_in` from now, as the
/// callback worker records it; no job is published (as if it was lost).
async fn delivery_without_job(suite: &TestSuite, event: &PartnerEvent, due_in: chrono::Duration) {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Query, SimpleExpr};
    let now = chrono::Utc::now();
    let values: Vec<(&str, SimpleExpr)> = vec![
        ("event_id", event.event_id.into()),
        ("partner_id", event.partner_id.uuid().into()),
        ("transaction_id", event.transaction_id.uuid().into()),
        ("attempts", 0.into()),
        ("lease_until", Option::<chrono::DateTime<chrono::Utc>>::None.into()),
        ("delivered_at", Option::<chrono::DateTime<chrono::Utc>>::None.into()),
        ("abandoned_at", Option::<chrono::DateTime<chrono::Utc>>::None.into()),
        ("last_error", Option::<String>::None.into()),
        ("created_at", now.into()),
        ("job", serde_json::to_string(event).expect("json").into()),
        ("job_due_at", (now + due_in).into()),
    ];
    let (columns, values): (Vec<&str>, Vec<SimpleExpr>) = values.into_iter().unzip();
    let insert =
        Query::insert().into_table("partner_callback_deliveries").columns(columns).values_panic(values).to_owned();
    suite.database().execute(&insert).await.expect("insert the delivery");
}

/// (attempts, delivered) of a delivery row.
async fn delivery_state(suite: &TestSuite, event_id: uuid::Uuid) -> (i32, bool) {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let select = Query::select()
        .columns(["attempts", "delivered_at"])
        .from("partner_callback_deliveries")
        .and_where(Expr::col("event_id").eq(event_id))
        .to_owned();
    let row = suite.database().query_one(&select).await.expect("query").expect("the delivery");
    let delivered: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "delivered_at").expect("delivered_at");
    (row.try_get("", "attempts").expect("attempts"), delivered.is_some())
}

async fn lost_callbacks_are_redriven(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.partner.callback_reconcile_interval = Duration::from_millis(100);
        s.partner.callback_redrive_grace = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let (received, _) = registered_receiver(&suite).await;
    let partner = suite.admin().partner(offers::dev::DEMO_PARTNER).await.expect("demo partner");
    let event = |reference: &str| PartnerEvent {
        event_id: uuid::Uuid::now_v7(),
        partner_id: partner.id.parse::<uuid::Uuid>().expect("uuid").into(),
        transaction_id: offers_proto::ids::TransactionId::generate(),
        reference: reference.into(),
        status: "SUCCESS".into(),
        failure_reason: None,
        occurred_at: chrono::Utc::now(),
        attempt: 0,
    };
    let (lost, later) = (event("REF-00000000LOST"), event("REF-0000000LATER"));
    delivery_without_job(&suite, &lost, -chrono::Duration::minutes(5)).await;
    delivery_without_job(&suite, &later, chrono::Duration::hours(1)).await;

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !delivery_state(&suite, lost.event_id).await.1 {
        assert!(tokio::time::Instant::now() < deadline, "the lost callback was not re-driven to delivery");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let bodies: Vec<Value> =
        received.lock().expect("lock").iter().map(|(_, body)| serde_json::from_str(body).expect("json")).collect();
    assert!(bodies.len() >= 2, "the receiver fails the first try: {bodies:?}");
    assert!(bodies.iter().all(|b| b["event_id"] == lost.event_id.to_string()), "{bodies:?}");
    assert_eq!(bodies[0]["reference"], "REF-00000000LOST");
    assert_eq!(delivery_state(&suite, later.event_id).await, (0, false), "a job not yet due is left alone");
    suite.stop().await;
}

each_backend!(
    partners_are_rate_limited,
    callbacks_stay_out_of_our_network,
    no_spelling_of_loopback_is_ever_called,
    lost_callbacks_are_redriven,
);
