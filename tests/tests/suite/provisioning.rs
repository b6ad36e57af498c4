//! The provisioning contract against a provider that misbehaves: an
//! unknown outcome is retried and then asked about, never guessed; nothing
//! is refunded while the provider may have delivered — not even when it
//! says `not_found` while a request may still be on its way; a redirect is
//! never a success; what customers read is never a URL or a library's error.

use std::time::{Duration, Instant};

use offers_proto::account::v1::TransactionStatus;
use offers_tests::provider::{Answer, StubProvider};
use offers_tests::{Backend, Bought, TestSuite, each_backend};
use serde_json::json;

/// A suite whose provisioning system is `provider`.
async fn suite_with(backend: Backend, provider: &StubProvider) -> Option<TestSuite> {
    let url = provider.url.clone();
    TestSuite::spawn_with(backend, move |s| s.provisioning.url = Some(url)).await
}

/// The demo user buys DATA-1GB and the transaction settles: what it became.
async fn buy_and_settle(suite: &TestSuite) -> (Bought, serde_json::Value) {
    let bought = suite.demo_buys("DATA-1GB").await;
    assert_eq!(bought.reply.status, 202, "{}", bought.reply.body);
    let done = suite.settled(&bought.token, bought.reply.str("transaction_id")).await;
    let detail = suite.transaction(&bought.token, bought.reply.str("transaction_id")).await;
    assert_eq!(done.body["status"], detail["status"]);
    (bought, detail)
}

async fn a_timeout_then_in_progress_ends_provisioned(backend: Backend) {
    // The first call is provisioned but answered after our timeout; every
    // retry meets the provider's 409 "request in progress".
    let first = Answer::Late(Duration::from_secs(3), Box::new(Answer::ok()));
    let provider = StubProvider::start(
        move |n| if n == 1 { first.clone() } else { Answer::status(409) },
        |_| Answer::provisioned(),
    )
    .await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let (bought, tx) = buy_and_settle(&suite).await;
    assert_eq!(tx["status"], "SUCCESS", "asked, not guessed: {tx}");
    assert_eq!(tx["attempts"], 5, "every attempt was made first");
    assert_eq!(provider.inquiries(), 1);
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500, "charged once, not refunded");
    suite.stop().await;
}

async fn an_unauthorized_provider_is_retried_not_refunded(backend: Backend) {
    // A credential rotation on the provider's side: 401 for a while, then fine.
    let provider =
        StubProvider::start(|n| if n <= 3 { Answer::status(401) } else { Answer::ok() }, |_| Answer::not_found()).await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let (bought, tx) = buy_and_settle(&suite).await;
    assert_eq!((tx["status"].as_str(), tx["attempts"].as_i64()), (Some("SUCCESS"), Some(4)), "{tx}");
    assert_eq!(provider.inquiries(), 0, "nothing was in doubt");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500, "no refund");
    suite.stop().await;
}

async fn a_redirect_is_never_a_success(backend: Backend) {
    let provider = StubProvider::start(|_| Answer::Redirect("/moved"), |_| Answer::not_found()).await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let (bought, tx) = buy_and_settle(&suite).await;
    assert_eq!(tx["status"], "FAILED", "the provider says it never saw it: {tx}");
    assert!(provider.elsewhere().is_empty(), "a redirect was followed: {:?}", provider.elsewhere());
    assert_eq!((provider.posts(), provider.inquiries()), (5, 2), "not found, and still so after the settle window");
    let reason = tx["failure_reason"].as_str().expect("a reason");
    assert!(!reason.contains("http") && !reason.contains("127.0.0.1"), "{reason}");
    assert_eq!(suite.balance(&bought.token).await, bought.before, "refunded, exactly");
    suite.stop().await;
}

async fn provisioned_without_an_answer_is_found_by_asking(backend: Backend) {
    let provider = StubProvider::start(|_| Answer::Hang, |_| Answer::provisioned()).await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let (bought, tx) = buy_and_settle(&suite).await;
    assert_eq!(tx["status"], "SUCCESS", "{tx}");
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&bought.token)).await;
    assert_eq!(subs.body["results"].as_array().expect("results").len(), 1, "one subscription effect");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500);
    suite.stop().await;
}

async fn a_refusal_reads_as_a_sentence_never_a_url(backend: Backend) {
    let leaky = json!({"error": "see https://provider.internal:8443/errors/42 for details"});
    let provider = StubProvider::start(move |_| Answer::Json(422, leaky.clone()), |_| Answer::not_found()).await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let (bought, tx) = buy_and_settle(&suite).await;
    assert_eq!((tx["status"].as_str(), tx["attempts"].as_i64()), (Some("FAILED"), Some(1)), "{tx}");
    assert_eq!(tx["failure_reason"], "rejected by the provisioning system: the offer cannot be provisioned");
    assert_eq!(provider.inquiries(), 0, "a first refusal is the whole story");
    assert_eq!(suite.balance(&bought.token).await, bought.before);
    suite.stop().await;
}

/// The transactions waiting for review once `tx` (the caller's, bought
/// with `token`) does; fails if it settles instead.
async fn reviews_once_waiting(
    suite: &TestSuite,
    token: &str,
    tx: &str,
) -> Vec<(offers_proto::account::v1::Transaction, String)> {
    let mut admin = suite.admin();
    loop {
        let waiting = admin.reviews().await.expect("reviews");
        if !waiting.is_empty() {
            return waiting;
        }
        let now = suite.transaction(token, tx).await;
        assert_eq!(now["status"], "PENDING", "settled instead of waiting for review: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn an_unknowable_outcome_waits_for_an_operator(backend: Backend) {
    // The provider never answers, and cannot say what happened either.
    let provider = StubProvider::start(|_| Answer::status(503), |_| Answer::status(500)).await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let bought = suite.demo_buys("DATA-1GB").await;
    let tx = bought.reply.str("transaction_id").to_string();
    let waiting = reviews_once_waiting(&suite, &bought.token, &tx).await;
    let mut admin = suite.admin();
    admin.act_as("ops", "");
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].0.id, tx);
    assert!(waiting[0].1.contains("after 5 attempts"), "{}", waiting[0].1);
    // Still PENDING to the customer, charged, and nothing re-drives it.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(suite.transaction(&bought.token, &tx).await["status"], "PENDING");
    assert_eq!(provider.posts(), 5, "not re-driven while waiting for review");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500, "nothing refunded while in doubt");
    suite.assert_ledger_invariant().await;

    // Resolving needs a note; then it settles through the same path.
    let status = TransactionStatus::Success;
    assert!(admin.resolve(&tx, status, " ").await.is_err(), "a resolution says why");
    let resolved = admin.resolve(&tx, status, "the provider confirmed line 0612 has it").await;
    assert_eq!(resolved.expect("resolved").status(), TransactionStatus::Success);
    assert!(admin.resolve(&tx, TransactionStatus::Failed, "again").await.is_err(), "decided once");
    // The decision is in the audit trail, once: who, what, on what, why.
    let filter =
        offers_proto::audit::v1::ListAuditEntriesRequest { target: format!("transaction:{tx}"), ..Default::default() };
    let entries = admin.audit_entries(&filter, 10).await.expect("audit");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(
        (entry.trail.as_str(), entry.actor.as_str(), entry.action.as_str()),
        ("account", "ops", "transaction.resolve")
    );
    assert_eq!(entry.note, "the provider confirmed line 0612 has it");
    assert_eq!(entry.detail, "outcome=SUCCESS amount=500 EUR");
    assert!(!entry.request_id.is_empty());
    assert!(admin.reviews().await.expect("reviews").is_empty());
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&bought.token)).await;
    assert_eq!(subs.body["results"].as_array().expect("results").len(), 1);
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500);
    let resolution = suite.resolution(&tx).await;
    assert_eq!((resolution.0.as_str(), resolution.1.as_str()), ("SUCCESS", "ops"));
    suite.stop().await;
}

async fn a_review_resolved_as_failed_refunds_the_payer(backend: Backend) {
    let provider = StubProvider::start(|_| Answer::Hang, |_| Answer::Hang).await;
    let Some(suite) = suite_with(backend, &provider).await else { return };
    let bought = suite.demo_buys("DATA-1GB").await;
    let tx = bought.reply.str("transaction_id").to_string();
    reviews_once_waiting(&suite, &bought.token, &tx).await;
    let resolved = suite.admin().resolve(&tx, TransactionStatus::Failed, "the provider has no record of it").await;
    assert_eq!(resolved.expect("resolved").status(), TransactionStatus::Failed);
    assert_eq!(suite.balance(&bought.token).await, bought.before, "refunded, once");
    suite.stop().await;
}

async fn the_simulator_tells_a_late_success_when_asked(backend: Backend) {
    // SIM-SLOW: the simulator provisions on the first request and answers
    // it long after our timeout; with no attempt left, only its answer to
    // the inquiry can settle the transaction.
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.provisioning.retry.attempts = 1).await else { return };
    let bought = suite.demo_buys("SIM-SLOW").await;
    assert_eq!(bought.reply.status, 202, "{}", bought.reply.body);
    let id = bought.reply.str("transaction_id");
    assert_eq!(suite.settled(&bought.token, id).await.body["status"], "SUCCESS");
    let tx = suite.transaction(&bought.token, id).await;
    assert_eq!(tx["attempts"], 1, "{tx}");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 100, "charged once, not refunded");
    suite.stop().await;
}

async fn a_request_held_past_the_inquiry_provisions_nothing(backend: Backend) {
    // SIM-HELD keeps our only request queued at the provider for 2 s: it
    // times out on our side after 1 s, the inquiry then hears `not_found`
    // and fences the key, the request reaches the provider's books at 2 s
    // and is refused, and the second inquiry, after the 3 s settle window,
    // still hears `not_found`.
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.provisioning.retry.attempts = 1;
        s.provisioning.settle_window = Duration::from_secs(3);
    })
    .await
    else {
        return;
    };
    let started = Instant::now();
    let bought = suite.demo_buys("SIM-HELD").await;
    assert_eq!(bought.reply.status, 202, "{}", bought.reply.body);
    let id = bought.reply.str("transaction_id");
    assert_eq!(suite.settled(&bought.token, id).await.body["status"], "FAILED");
    assert!(started.elapsed() >= Duration::from_secs(3), "concluded within the settle window");
    let tx = suite.transaction(&bought.token, id).await;
    assert_eq!(tx["attempts"], 2, "one request, then one confirming inquiry: {tx}");
    assert_eq!(suite.balance(&bought.token).await, bought.before, "refunded, exactly");
    // The held request reached the provider a second before the
    // confirmation: it provisioned nothing.
    let url = format!("{}/v1/activations/{id}", suite.settings.provisioning.url.as_deref().expect("simulator"));
    let answer = reqwest::get(url).await.expect("the simulator answers");
    assert_eq!(answer.status(), 404);
    assert_eq!(answer.json::<serde_json::Value>().await.expect("json")["status"], "not_found");
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&bought.token)).await;
    assert_eq!(subs.body["results"], json!([]), "no bundle");
    suite.stop().await;
}

async fn a_provider_that_provisions_after_not_found_is_reviewed(backend: Backend) {
    // A provider breaking the contract: it says it never saw the request,
    // then provisions it anyway (one that was still queued went through
    // the fence), and says so when asked again after the settle window.
    let provider =
        StubProvider::start(|_| Answer::Hang, |n| if n == 1 { Answer::not_found() } else { Answer::provisioned() })
            .await;
    let url = provider.url.clone();
    let Some(suite) = TestSuite::spawn_with(backend, move |s| {
        s.provisioning.url = Some(url);
        s.provisioning.retry.attempts = 1;
    })
    .await
    else {
        return;
    };
    let bought = suite.demo_buys("DATA-1GB").await;
    let tx = bought.reply.str("transaction_id").to_string();
    let waiting = reviews_once_waiting(&suite, &bought.token, &tx).await;
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].0.id, tx);
    assert!(waiting[0].1.contains("broke the contract"), "{}", waiting[0].1);
    assert_eq!((provider.posts(), provider.inquiries()), (1, 2));
    // Charged, not refunded, no bundle granted by us, and nothing re-drives it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(suite.transaction(&bought.token, &tx).await["status"], "PENDING");
    assert_eq!(provider.posts(), 1, "not re-driven while waiting for review");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500, "nothing refunded while in doubt");
    let subs = suite.api.get("/api/v1/account/subscriptions/", Some(&bought.token)).await;
    assert_eq!(subs.body["results"], json!([]));
    suite.stop().await;
}

each_backend!(
    a_request_held_past_the_inquiry_provisions_nothing,
    a_provider_that_provisions_after_not_found_is_reviewed,
    the_simulator_tells_a_late_success_when_asked,
    a_timeout_then_in_progress_ends_provisioned,
    an_unauthorized_provider_is_retried_not_refunded,
    a_redirect_is_never_a_success,
    provisioned_without_an_answer_is_found_by_asking,
    a_refusal_reads_as_a_sentence_never_a_url,
    an_unknowable_outcome_waits_for_an_operator,
    a_review_resolved_as_failed_refunds_the_payer,
);
