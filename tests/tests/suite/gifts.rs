//! Gifts: a user buys an offer for another user from their own balance.
//! The payer is charged (and refunded on failure) and alone sees the
//! transaction; the recipient gets the subscription and sees nothing else.

use offers_tests::{Backend, TestSuite, both, each_backend};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use serde_json::json;

both!(a_gift_charges_the_payer_and_subscribes_the_recipient, a_failed_gift_refunds_the_payer);
each_backend!(gifts_refuse_what_they_cannot_give, concurrent_gifts_stop_at_the_limit);

/// The ids among a page of the caller's `list` (`subscriptions` or
/// `transactions`) for which `field` is `value`.
async fn listed(suite: &TestSuite, token: &str, list: &str, field: &str, value: &str) -> Vec<String> {
    let page = suite.api.get(&format!("/api/v1/account/{list}/?limit=200"), Some(token)).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let results = page.body["results"].as_array().expect("results");
    results.iter().filter(|r| r[field] == value).map(|r| r["id"].as_str().expect("id").to_string()).collect()
}

async fn gift(suite: &TestSuite, token: &str, offer: &str, recipient: &str, key: &str) -> offers_tests::Reply {
    let body = json!({"offer_id": offer, "recipient": recipient});
    suite.api.post_with("/api/v1/activation/", Some(token), &body, &[("idempotency-key", key)]).await
}

async fn a_gift_charges_the_payer_and_subscribes_the_recipient(suite: &TestSuite) {
    let (payer, recipient) = (suite.token("demo").await, suite.token("demo2").await);
    let (paid_before, received_before) = (suite.balance(&payer).await, suite.balance(&recipient).await);
    let offer = suite.offer_id(&payer, "DATA-1GB").await;

    let reply = gift(suite, &payer, &offer, "demo2", "gift-1").await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let tx = reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&payer, &tx).await.body["status"], "SUCCESS");

    assert_eq!(suite.balance(&payer).await, paid_before - 500, "the payer paid");
    assert_eq!(suite.balance(&recipient).await, received_before, "the recipient paid nothing");
    assert_eq!(listed(suite, &recipient, "subscriptions", "offer_id", &offer).await.len(), 1, "the recipient's");
    assert!(listed(suite, &payer, "subscriptions", "offer_id", &offer).await.is_empty(), "not the payer's");
    assert_eq!(listed(suite, &payer, "transactions", "kind", "GIFT").await, vec![tx.clone()]);
    assert!(listed(suite, &recipient, "transactions", "kind", "GIFT").await.is_empty(), "the payer's alone");
    let peek = suite.api.get(&format!("/api/v1/activation/status/{tx}/"), Some(&recipient)).await;
    peek.assert_problem(404, "not_found");
    let peek = suite.api.get(&format!("/api/v1/account/transactions/{tx}/"), Some(&recipient)).await;
    peek.assert_problem(404, "not_found");

    // The same request again is the same gift; the key with another
    // recipient is another request.
    let again = gift(suite, &payer, &offer, "demo2", "gift-1").await;
    assert_eq!((again.status, again.str("transaction_id")), (202, tx.as_str()), "{}", again.body);
    let (_, other) = suite.user_with_balance(0).await;
    let other_name = suite.api.get("/api/v1/auth/profile/", Some(&other)).await.str("username").to_string();
    gift(suite, &payer, &offer, &other_name, "gift-1").await.assert_problem(422, "idempotency_key_reused");
    assert_eq!(suite.balance(&payer).await, paid_before - 500, "charged once");
}

async fn a_failed_gift_refunds_the_payer(suite: &TestSuite) {
    let (payer, recipient) = (suite.token("demo").await, suite.token("demo2").await);
    let (paid_before, received_before) = (suite.balance(&payer).await, suite.balance(&recipient).await);
    let offer = suite.offer_id(&payer, "SIM-FAIL").await;
    let reply = gift(suite, &payer, &offer, "demo2", "gift-fails").await;
    assert_eq!(reply.status, 202, "{}", reply.body);
    let tx = reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&payer, &tx).await.body["status"], "FAILED");
    assert_eq!(suite.balance(&payer).await, paid_before, "refunded to the payer");
    assert_eq!(suite.balance(&recipient).await, received_before, "never to the recipient");
    assert!(listed(suite, &recipient, "subscriptions", "offer_id", &offer).await.is_empty());
}

/// Self, unknown, malformed and inactive recipients are refused, and so is
/// a gift beyond `gifting.max_per_day`: each with nothing charged.
async fn gifts_refuse_what_they_cannot_give(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.gifting.max_per_day = 2).await else { return };
    let payer = suite.token("demo").await;
    let before = suite.balance(&payer).await;
    let offer = suite.offer_id(&payer, "VOICE-100").await;
    let (quitter, quitter_token) = suite.user_with_balance(0).await;
    let profile = suite.api.get("/api/v1/auth/profile/", Some(&quitter_token)).await;
    let quitter_name = profile.str("username").to_string();
    let deactivate = Query::update()
        .table("auth_users")
        .value("is_active", false)
        .and_where(Expr::col("id").eq(uuid::Uuid::parse_str(&quitter).expect("id")))
        .to_owned();
    suite.database().execute(&deactivate).await.expect("deactivated");
    for (n, recipient) in
        ["demo", "DEMO", "nobody-by-that-name", "", "no", "a:b", &quitter_name].into_iter().enumerate()
    {
        let refused = gift(&suite, &payer, &offer, recipient, &format!("refused-{n}")).await;
        refused.assert_problem(400, "invalid_recipient");
    }
    // Not nullable, as the document says: null is no "absent".
    for body in [json!({"offer_id": offer, "recipient": null}), json!({"offer_id": offer, "auto_renew": null})] {
        suite.api.post("/api/v1/activation/", Some(&payer), &body).await.assert_problem(400, "invalid_request");
    }
    assert_eq!(suite.balance(&payer).await, before, "nothing charged");

    for n in 0..2 {
        let reply = gift(&suite, &payer, &offer, "demo2", &format!("within-{n}")).await;
        assert_eq!(reply.status, 202, "{}", reply.body);
    }
    let over = gift(&suite, &payer, &offer, "demo2", "over").await;
    over.assert_problem(429, "gift_limit_reached");
    assert_eq!(suite.balance(&payer).await, before - 2 * 300, "two gifts charged, the third refused");
    // The limit is the payer's: the recipient buys for themselves as ever.
    let own = suite.activate(&suite.token("demo2").await, &offer).await;
    assert_eq!(own.status, 202, "{}", own.body);
    suite.stop().await;
}

/// Gifts racing each other at the limit: exactly `max_per_day` get
/// through, whichever they are, and only they are charged.
async fn concurrent_gifts_stop_at_the_limit(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.gifting.max_per_day = 3).await else { return };
    let payer = suite.token("demo").await;
    let before = suite.balance(&payer).await;
    let offer = suite.offer_id(&payer, "VOICE-100").await;
    let keys: Vec<String> = (0..8).map(|n| format!("race-{n}")).collect();
    let racing = keys.iter().map(|key| gift(&suite, &payer, &offer, "demo2", key));
    let replies = futures_util::future::join_all(racing).await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    for refused in replies.iter().filter(|r| r.status != 202) {
        refused.assert_problem(429, "gift_limit_reached");
    }
    assert_eq!(accepted, 3, "{:?}", replies.iter().map(|r| r.status).collect::<Vec<_>>());
    assert_eq!(suite.balance(&payer).await, before - 3 * 300);
    suite.stop().await;
}
