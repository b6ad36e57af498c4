//! The activation pipeline, end to end, with the money checked at every step.

use std::time::Duration;

use chrono::{DateTime, Utc};
use offers_kit::bus::Outgoing;
use offers_proto::contracts::{Job, ProvisionJob, Step};
use offers_tests::provider::{Answer, StubProvider};
use offers_tests::{Backend, Bought, TestSuite, across_processes, both, each_backend};
use serde_json::json;

fn time(value: &serde_json::Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("RFC 3339").to_utc()
}

async fn activation_succeeds_end_to_end(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let before = suite.balance(&token).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let started = Utc::now();
    let accepted = suite.activate(&token, &offer).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(accepted.body["status"], "PENDING");
    let tx = accepted.str("transaction_id").to_string();
    // Charged at once, before provisioning.
    assert_eq!(suite.balance(&token).await, before - 500);

    let done = suite.settled(&token, &tx).await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert_eq!((done.body["amount"].as_i64(), done.body["offer_id"].as_str()), (Some(500), Some(offer.as_str())));
    assert_eq!(suite.balance(&token).await, before - 500, "success keeps the charge, once");

    let detail = suite.transaction(&token, &tx).await;
    assert_eq!(
        (detail["kind"].as_str(), detail["status"].as_str(), detail["attempts"].as_i64()),
        (Some("ACTIVATION"), Some("SUCCESS"), Some(1))
    );
    let subscription_id = detail["subscription_id"].as_str().expect("subscription");
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    let sub = subs.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|s| s["id"] == subscription_id)
        .expect("listed")
        .clone();
    assert_eq!((sub["status"].as_str(), sub["offer_id"].as_str()), (Some("ACTIVE"), Some(offer.as_str())));
    let length = time(&sub["expires_at"]) - time(&sub["activated_at"]);
    assert_eq!(length, chrono::Duration::days(7), "DATA-1GB runs 7 days");
    assert!(time(&sub["activated_at"]) >= started - chrono::Duration::seconds(1));

    // Activating the same offer again extends the running subscription.
    let again = suite.activate(&token, &offer).await;
    suite.settled(&token, again.str("transaction_id")).await;
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    let results = subs.body["results"].as_array().expect("results");
    assert_eq!(results.len(), 1, "{}", subs.body);
    assert_eq!(time(&results[0]["expires_at"]) - time(&sub["expires_at"]), chrono::Duration::days(7));
}

async fn rejected_activation_refunds_exactly(suite: &TestSuite) {
    let Bought { token, before, reply, .. } = suite.demo_buys("SIM-FAIL").await;
    let tx = reply.str("transaction_id").to_string();
    let done = suite.settled(&token, &tx).await;
    assert_eq!(done.body["status"], "FAILED", "{}", done.body);
    assert!(done.body["failure_reason"].as_str().is_some_and(|r| r.contains("rejected")), "{}", done.body);
    assert_eq!(suite.balance(&token).await, before, "the money is back, exactly");
    let detail = suite.transaction(&token, &tx).await;
    assert_eq!(detail["attempts"], 1, "a permanent rejection is not retried");
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    assert!(subs.body["results"].as_array().expect("results").is_empty());
}

async fn flaky_provisioning_succeeds_on_the_third_attempt(suite: &TestSuite) {
    let Bought { token, before, reply, .. } = suite.demo_buys("SIM-FLAKY").await;
    let tx = reply.str("transaction_id").to_string();
    let done = suite.settled(&token, &tx).await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert_eq!(suite.transaction(&token, &tx).await["attempts"], 3);
    assert_eq!(suite.balance(&token).await, before - 100);
}

async fn insufficient_balance_writes_nothing(suite: &TestSuite) {
    let (_, token) = suite.user_with_balance(1000).await;
    let offer = suite.offer_id(&token, "COMBO-30").await;
    suite.activate(&token, &offer).await.assert_problem(400, "insufficient_balance");
    assert_eq!(suite.balance(&token).await, 1000);
    let list = suite.api.get("/api/v1/account/transactions/", Some(&token)).await;
    assert_eq!(list.body["results"], json!([]), "no transaction was recorded");
    // Bad input is refused before any money moves.
    suite.activate(&token, "not-an-id").await.assert_problem(400, "invalid_id");
    suite.activate(&token, &uuid::Uuid::now_v7().to_string()).await.assert_problem(404, "not_found");
    suite.api.post("/api/v1/activation/", Some(&token), &json!({})).await.assert_problem(400, "invalid_request");
    suite
        .api
        .post("/api/v1/activation/", None, &json!({"offer_id": offer}))
        .await
        .assert_problem(401, "unauthenticated");
    assert_eq!(suite.balance(&token).await, 1000);
}

async fn inactive_offers_are_not_sold(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let offer = suite.offer_id(&token, "VOICE-100").await;
    let mut admin = suite.admin();
    let off = offers_proto::catalog::v1::Offer { id: offer.clone(), is_active: false, ..Default::default() };
    admin.update_offer(off, vec!["is_active".into()]).await.expect("deactivate");
    suite.activate(&token, &offer).await.assert_problem(400, "offer_inactive");
}

async fn concurrent_activations_never_overdraw(suite: &TestSuite) {
    // Exactly seven DATA-1GB (500 each) worth of balance, fifty attempts at once.
    let (_, token) = suite.user_with_balance(7 * 500).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let attempts = (0..50).map(|_| suite.activate(&token, &offer));
    let replies = futures_util::future::join_all(attempts).await;
    let accepted: Vec<_> = replies.iter().filter(|r| r.status == 202).collect();
    let refused = replies.iter().filter(|r| r.status == 400 && r.body["code"] == "insufficient_balance").count();
    assert_eq!(accepted.len(), 7, "statuses: {:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(refused, 43);
    assert_eq!(suite.balance(&token).await, 0);
    for reply in accepted {
        assert_eq!(suite.settled(&token, reply.str("transaction_id")).await.body["status"], "SUCCESS");
    }
    assert_eq!(suite.balance(&token).await, 0, "never negative, nothing refunded");
    let list = suite.api.get("/api/v1/account/transactions/", Some(&token)).await;
    assert_eq!(list.body["results"].as_array().expect("results").len(), 7);
}

async fn duplicate_jobs_have_one_effect(suite: &TestSuite) {
    let Bought { token, before, reply, .. } = suite.demo_buys("DATA-1GB").await;
    let tx = reply.str("transaction_id").to_string();
    let id = uuid::Uuid::parse_str(&tx).expect("uuid");
    // The same job again, twice, racing the original.
    let job = serde_json::to_vec(&ProvisionJob { transaction_id: id.into(), attempt: 1, step: Step::Provision })
        .expect("json");
    suite.bus().publish(ProvisionJob::TOPIC, Outgoing::new(&job, &Default::default())).await.expect("publish");
    suite.bus().publish(ProvisionJob::TOPIC, Outgoing::new(&job, &Default::default())).await.expect("publish");
    assert_eq!(suite.settled(&token, &tx).await.body["status"], "SUCCESS");
    let detail = suite.transaction(&token, &tx).await;
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    // And once more after it settled.
    suite.bus().publish(ProvisionJob::TOPIC, Outgoing::new(&job, &Default::default())).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(suite.transaction(&token, &tx).await, detail, "a late duplicate changes nothing");
    assert_eq!(detail["attempts"], 1);
    assert_eq!(suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await.body, subs.body);
    assert_eq!(suite.balance(&token).await, before - 500, "charged once");
}

async fn renewal_extends_only_the_callers_subscription(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let offer = suite.offer_id(&token, "VOICE-100").await;
    let tx = suite.activate(&token, &offer).await.str("transaction_id").to_string();
    suite.settled(&token, &tx).await;
    let subscription_id = suite.transaction(&token, &tx).await["subscription_id"].as_str().expect("sub").to_string();
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    let expires = time(&subs.body["results"][0]["expires_at"]);

    // Someone else's subscription, or someone else's transaction, does not exist for them.
    let other = suite.token("demo2").await;
    let stolen =
        suite.api.post("/api/v1/offers/renew/", Some(&other), &json!({"subscription_id": subscription_id})).await;
    stolen.assert_problem(404, "not_found");
    suite
        .api
        .post("/api/v1/offers/renew/", Some(&other), &json!({"offer_id": offer}))
        .await
        .assert_problem(404, "not_found");
    suite.api.get(&format!("/api/v1/activation/status/{tx}/"), Some(&other)).await.assert_problem(404, "not_found");
    suite.api.get(&format!("/api/v1/account/transactions/{tx}/"), Some(&other)).await.assert_problem(404, "not_found");

    let before = suite.balance(&token).await;
    let renewal =
        suite.api.post("/api/v1/offers/renew/", Some(&token), &json!({"subscription_id": subscription_id})).await;
    assert_eq!(renewal.status, 202, "{}", renewal.body);
    let renewed = renewal.str("transaction_id").to_string();
    assert_eq!(suite.settled(&token, &renewed).await.body["status"], "SUCCESS");
    let detail = suite.transaction(&token, &renewed).await;
    assert_eq!(
        (detail["kind"].as_str(), detail["subscription_id"].as_str()),
        (Some("RENEWAL"), Some(subscription_id.as_str()))
    );
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    assert_eq!(time(&subs.body["results"][0]["expires_at"]) - expires, chrono::Duration::days(7));
    assert_eq!(suite.balance(&token).await, before - 300);
    // By offer works too.
    let by_offer = suite.api.post("/api/v1/offers/renew/", Some(&token), &json!({"offer_id": offer})).await;
    assert_eq!(by_offer.status, 202, "{}", by_offer.body);
    suite.settled(&token, by_offer.str("transaction_id")).await;
    suite.api.post("/api/v1/offers/renew/", Some(&token), &json!({})).await.assert_problem(400, "invalid_request");
}

async fn idempotency_keys_replay_and_refuse_reuse(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let before = suite.balance(&token).await;
    let data = suite.offer_id(&token, "DATA-1GB").await;
    let voice = suite.offer_id(&token, "VOICE-100").await;
    let key = [("Idempotency-Key", "order-7f3a")];
    let first = suite.api.post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": data}), &key).await;
    assert_eq!(first.status, 202, "{}", first.body);
    suite.settled(&token, first.str("transaction_id")).await;
    let replay = suite.api.post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": data}), &key).await;
    assert_eq!((replay.status, &replay.body), (202, &first.body), "the first answer again");
    assert_eq!(suite.balance(&token).await, before - 500, "charged once");

    let reuse = suite.api.post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": voice}), &key).await;
    reuse.assert_problem(422, "idempotency_key_reused");
    // Keys belong to their user: the same key elsewhere is a new request.
    let other = suite.token("demo2").await;
    let theirs = suite.api.post_with("/api/v1/activation/", Some(&other), &json!({"offer_id": data}), &key).await;
    assert_eq!(theirs.status, 202);
    assert_ne!(theirs.body["transaction_id"], first.body["transaction_id"]);
    suite.settled(&other, theirs.str("transaction_id")).await;

    // Concurrent requests with one key still charge once.
    let race = [("Idempotency-Key", "race-1")];
    let body = json!({"offer_id": voice});
    let replies = futures_util::future::join_all(
        (0..8).map(|_| suite.api.post_with("/api/v1/activation/", Some(&token), &body, &race)),
    )
    .await;
    let ids: std::collections::BTreeSet<_> = replies.iter().map(|r| r.body["transaction_id"].to_string()).collect();
    assert_eq!(ids.len(), 1, "{replies:?}");
    suite.settled(&token, replies[0].str("transaction_id")).await;
    assert_eq!(suite.balance(&token).await, before - 500 - 300);
    for bad in [String::new(), "k".repeat(256), "with space".into()] {
        let headers = [("Idempotency-Key", bad.as_str())];
        let answer =
            suite.api.post_with("/api/v1/activation/", Some(&token), &json!({"offer_id": data}), &headers).await;
        answer.assert_problem(400, "invalid_request");
    }
    assert_eq!(suite.balance(&token).await, before - 500 - 300, "a refused key charges nothing");
}

async fn status_and_lists_check_their_input(suite: &TestSuite) {
    let token = suite.token("demo").await;
    suite.api.get("/api/v1/activation/status/nope/", Some(&token)).await.assert_problem(400, "invalid_id");
    // A segment that does not even decode (invalid UTF-8) is a problem too.
    suite.api.get("/api/v1/activation/status/%FF%FE/", Some(&token)).await.assert_problem(400, "invalid_id");
    let unknown = uuid::Uuid::now_v7();
    suite
        .api
        .get(&format!("/api/v1/activation/status/{unknown}/"), Some(&token))
        .await
        .assert_problem(404, "not_found");
    suite.api.get("/api/v1/account/transactions/nope/", Some(&token)).await.assert_problem(400, "invalid_id");
    suite.api.get("/api/v1/account/balance/", None).await.assert_problem(401, "unauthenticated");
    // Pagination over transactions, newest first.
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let mut made = Vec::new();
    for _ in 0..3 {
        made.push(suite.activate(&token, &offer).await.str("transaction_id").to_string());
    }
    let first = suite.api.get("/api/v1/account/transactions/?limit=2", Some(&token)).await;
    let page: Vec<&str> =
        first.body["results"].as_array().expect("results").iter().filter_map(|t| t["id"].as_str()).collect();
    assert_eq!(page, vec![made[2].as_str(), made[1].as_str()]);
    let cursor = first.str("next_cursor").to_string();
    let second = suite.api.get(&format!("/api/v1/account/transactions/?limit=2&cursor={cursor}"), Some(&token)).await;
    assert_eq!(second.body["results"][0]["id"], made[0].as_str());
    assert_eq!(second.body["next_cursor"], serde_json::Value::Null, "the last page says so");
    // A last page that is exactly full says so too: no empty page to fetch.
    let full = suite.api.get("/api/v1/account/transactions/?limit=3", Some(&token)).await;
    assert_eq!(full.body["results"].as_array().expect("results").len(), 3);
    assert_eq!(full.body["next_cursor"], serde_json::Value::Null, "{}", full.body);
    for tx in &made {
        suite.settled(&token, tx).await;
    }
    // Subscriptions page the same way: two offers, two subscriptions.
    let voice = suite.offer_id(&token, "VOICE-100").await;
    let voice_tx = suite.activate(&token, &voice).await.str("transaction_id").to_string();
    assert_eq!(suite.settled(&token, &voice_tx).await.body["status"], "SUCCESS");
    let subscriptions = |query: String| {
        let token = token.clone();
        async move { suite.api.get(&format!("/api/v1/account/subscriptions/{query}"), Some(&token)).await }
    };
    let full = subscriptions("?limit=2".into()).await;
    assert_eq!(full.body["results"].as_array().expect("results").len(), 2, "{}", full.body);
    assert_eq!(full.body["next_cursor"], serde_json::Value::Null, "an exactly full last page: {}", full.body);
    let first = subscriptions("?limit=1".into()).await;
    let cursor = first.str("next_cursor").to_string();
    let second = subscriptions(format!("?limit=1&cursor={cursor}")).await;
    assert_eq!(second.body["results"].as_array().expect("results").len(), 1);
    assert_ne!(second.body["results"][0]["id"], first.body["results"][0]["id"]);
    assert_eq!(second.body["next_cursor"], serde_json::Value::Null, "{}", second.body);
}

async fn top_ups_happen_once_per_key(suite: &TestSuite) {
    let (user, token) = suite.user_with_balance(0).await;
    let (other, other_token) = suite.user_with_balance(0).await;
    let mut admin = suite.admin();
    let currency = suite.settings.currency.clone();
    let (applied, balance) = admin.credit(&user, 1_000, &currency, "topup-1", "test").await.expect("credit");
    assert!(applied);
    assert_eq!(balance.balance, 1_000);
    let (again, balance) = admin.credit(&user, 1_000, &currency, "topup-1", "test").await.expect("replay");
    assert!(!again, "the same key credits once");
    assert_eq!(balance.balance, 1_000);
    let reused = admin.credit(&user, 2_000, &currency, "topup-1", "test").await;
    assert!(reused.is_err_and(|e| e.to_string().contains("idempotency_key_reused")));
    // Keys are per user.
    assert!(admin.credit(&other, 500, &currency, "topup-1", "test").await.expect("credit").0);
    assert!(admin.credit(&user, 0, &currency, "topup-2", "test").await.is_err(), "nothing is credited for zero");
    assert!(admin.credit(&user, 10, "XXX", "topup-3", "test").await.is_err(), "another currency is refused");
    assert_eq!((suite.balance(&token).await, suite.balance(&other_token).await), (1_000, 500));
}

/// OWASP API3 (object property level): what a client sends beyond the
/// contract changes nothing it does not own, and what it reads shows no
/// property it should not see.
async fn clients_set_and_see_only_their_own_properties(suite: &TestSuite) {
    let (victim, victim_token) = suite.user_with_balance(1_000).await;
    let (_, token) = suite.user_with_balance(1_000).await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let body = json!({
        "offer_id": offer, "price": 1, "amount": 1, "user_id": victim, "status": "SUCCESS",
        "payer_account_id": victim, "currency": "XXX",
    });
    let accepted = suite.api.post("/api/v1/activation/", Some(&token), &body).await;
    assert_eq!((accepted.status, accepted.str("status")), (202, "PENDING"), "{}", accepted.body);
    let id = accepted.str("transaction_id").to_string();
    assert_eq!(suite.settled(&token, &id).await.body["status"], "SUCCESS");
    assert_eq!(suite.balance(&token).await, 500, "the caller paid the offer's own price");
    assert_eq!(suite.balance(&victim_token).await, 1_000, "and nobody else paid anything");
    suite
        .api
        .get(&format!("/api/v1/account/transactions/{id}/"), Some(&victim_token))
        .await
        .assert_problem(404, "not_found");

    let keys = |value: &serde_json::Value| -> Vec<String> {
        let mut keys: Vec<String> = value.as_object().expect("an object").keys().cloned().collect();
        keys.sort();
        keys
    };
    let profile = suite.api.get("/api/v1/auth/profile/", Some(&token)).await;
    let expected = ["date_joined", "email", "first_name", "id", "last_name", "phone_number", "username"];
    assert_eq!(keys(&profile.body), expected, "no password hash, role or token family: {}", profile.body);
    let detail = suite.transaction(&token, &id).await;
    for hidden in ["payer_account_id", "attempt_lease", "needs_review", "review_reason", "legacy"] {
        assert!(detail.get(hidden).is_none(), "{hidden} is internal: {detail}");
    }
}

both!(
    clients_set_and_see_only_their_own_properties,
    top_ups_happen_once_per_key,
    activation_succeeds_end_to_end,
    rejected_activation_refunds_exactly,
    flaky_provisioning_succeeds_on_the_third_attempt,
    insufficient_balance_writes_nothing,
    inactive_offers_are_not_sold,
    concurrent_activations_never_overdraw,
    duplicate_jobs_have_one_effect,
    renewal_extends_only_the_callers_subscription,
    idempotency_keys_replay_and_refuse_reuse,
    status_and_lists_check_their_input,
);

// Across every process boundary: each role its own process.
across_processes!(
    activation_succeeds_end_to_end,
    rejected_activation_refunds_exactly,
    flaky_provisioning_succeeds_on_the_third_attempt,
    insufficient_balance_writes_nothing,
    concurrent_activations_never_overdraw,
    duplicate_jobs_have_one_effect,
    renewal_extends_only_the_callers_subscription,
    idempotency_keys_replay_and_refuse_reuse,
    top_ups_happen_once_per_key,
);

async fn a_worker_killed_mid_attempt_charges_once(backend: Backend) {
    // The first call is taken and never answered (the worker is killed while
    // waiting); later ones provision normally.
    let provider =
        StubProvider::start(|n| if n == 1 { Answer::Hang } else { Answer::ok() }, |_| Answer::not_found()).await;
    let Some(mut suite) = TestSuite::spawn_with(backend, |s| {
        s.provisioning.url = Some(provider.url.clone());
        // Longer than the test takes to kill the worker: the call hangs until then.
        s.provisioning.timeout = Duration::from_secs(10);
        s.ledger.attempt_lease = Duration::from_secs(11);
    })
    .await
    else {
        return;
    };
    let Bought { before, reply, .. } = suite.demo_buys("DATA-1GB").await;
    let tx = reply.str("transaction_id").to_string();
    while provider.posts() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Killed between the provider call and the ack.
    suite.crash_and_restart().await;
    let token = suite.token("demo").await;
    let done = suite.settled(&token, &tx).await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert_eq!(suite.transaction(&token, &tx).await["attempts"], 2, "the lost attempt and the re-driven one");
    assert_eq!(suite.balance(&token).await, before - 500, "one charge");
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&token)).await;
    assert_eq!(subs.body["results"].as_array().expect("results").len(), 1);
    suite.stop().await;
}

/// Forwards a local port to RabbitMQ, once told to.
async fn start_forwarding(port: u16) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind the proxy port");
    tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_purchase_time_delays_but_loses_nothing() {
    // A port where no broker answers yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port();
    let Some(suite) = TestSuite::spawn_with(Backend::Real, |s| {
        s.bus.url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
        // Only the outbox may bring the job back, not the reconciler.
        s.ledger.pending_deadline = Duration::from_secs(600);
    })
    .await
    else {
        return;
    };
    let Bought { token, before, reply: accepted, .. } = suite.demo_buys("DATA-1GB").await;
    assert_eq!(accepted.status, 202, "the purchase does not need the broker: {}", accepted.body);
    let tx = accepted.str("transaction_id").to_string();
    assert_eq!(suite.balance(&token).await, before - 500);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(suite.transaction(&token, &tx).await["status"], "PENDING");

    start_forwarding(port).await;
    let done = suite.settled(&token, &tx).await;
    assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    assert_eq!(suite.balance(&token).await, before - 500);
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_down_money_and_status_still_work() {
    let Some(suite) = TestSuite::spawn_with(Backend::Real, |s| s.cache.url = "redis://127.0.0.1:1".into()).await else {
        return;
    };
    let Bought { token, before, reply: accepted, .. } = suite.demo_buys("DATA-1GB").await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let done = suite.settled(&token, accepted.str("transaction_id")).await;
    assert_eq!(done.body["status"], "SUCCESS", "answered from the database: {}", done.body);
    assert_eq!(suite.balance(&token).await, before - 500);
    let ready = suite.api.get("/readyz", None).await;
    assert_eq!(ready.status, 200, "the cache is not required: {}", ready.body);
    assert_ne!(ready.body["checks"]["cache"], "ok");
    suite.stop().await;
}

each_backend!(a_worker_killed_mid_attempt_charges_once);
