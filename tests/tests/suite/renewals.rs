//! Renewals: automatic renewal as each subscription's owner chooses it,
//! and one charge per period of a subscription, whoever renews it.

use offers_tests::{TestSuite, both};
use serde_json::json;

both!(auto_renewal_is_the_owners_choice, a_period_is_renewed_once);

fn time(value: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().expect("a time")).expect("rfc3339").to_utc()
}

/// The caller's subscription to `offer`.
async fn subscription(suite: &TestSuite, token: &str, offer: &str) -> serde_json::Value {
    let page = suite.api.get("/api/v1/account/subscriptions/", Some(token)).await;
    let found = page.body["results"].as_array().expect("results").iter().find(|s| s["offer_id"] == offer).cloned();
    found.unwrap_or_else(|| panic!("no subscription to {offer}: {}", page.body))
}

async fn patch(suite: &TestSuite, token: &str, id: &str, body: &serde_json::Value) -> offers_tests::Reply {
    suite.api.patch(&format!("/api/v1/account/subscriptions/{id}/"), Some(token), body).await
}

async fn auto_renewal_is_the_owners_choice(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let offer = suite.offer_id(&token, "DATA-1GB").await;
    let body = json!({"offer_id": offer, "auto_renew": true});
    let bought = suite.api.post("/api/v1/activation/", Some(&token), &body).await;
    assert_eq!(bought.status, 202, "{}", bought.body);
    assert_eq!(suite.settled(&token, bought.str("transaction_id")).await.body["status"], "SUCCESS");
    let sub = subscription(suite, &token, &offer).await;
    assert_eq!(sub["auto_renew"], true, "{sub}");
    assert_eq!(time(&sub["next_renewal_at"]), time(&sub["expires_at"]), "it renews where it ends");
    let id = sub["id"].as_str().expect("id").to_string();

    let off = patch(suite, &token, &id, &json!({"auto_renew": false})).await;
    assert_eq!(off.status, 200, "{}", off.body);
    assert_eq!((off.body["auto_renew"].clone(), off.body["next_renewal_at"].clone()), (json!(false), json!(null)));
    assert_eq!(subscription(suite, &token, &offer).await["auto_renew"], false, "it stays off");
    let on = patch(suite, &token, &id, &json!({"auto_renew": true})).await;
    assert_eq!(on.body["auto_renew"], true, "{}", on.body);

    let other = suite.token("demo2").await;
    patch(suite, &other, &id, &json!({"auto_renew": false})).await.assert_problem(404, "not_found");
    assert_eq!(subscription(suite, &token, &offer).await["auto_renew"], true, "someone else cannot turn it off");
    patch(suite, &token, "not-an-id", &json!({"auto_renew": false})).await.assert_problem(400, "invalid_id");
    for bad in [json!({"auto_renew": "yes"}), json!({}), json!({"auto_renew": true, "extra": 1}), json!([true])] {
        patch(suite, &token, &id, &bad).await.assert_problem(400, "invalid_request");
    }
    // A gift's recipient did not agree to pay for the next period.
    let gift = json!({"offer_id": offer, "recipient": "demo2", "auto_renew": true});
    let before = suite.balance(&token).await;
    suite.api.post("/api/v1/activation/", Some(&token), &gift).await.assert_problem(400, "invalid_request");
    assert_eq!(suite.balance(&token).await, before, "nothing charged");
}

/// A second renewal of a period already being renewed is refused with
/// nothing charged; once that renewal has extended the subscription, the
/// next period can be renewed.
async fn a_period_is_renewed_once(suite: &TestSuite) {
    // SIM-SLOW answers long after the call's timeout, so a renewal stays
    // PENDING long enough to be raced.
    let bought = suite.demo_buys("SIM-SLOW").await;
    let token = bought.token.clone();
    assert_eq!(suite.settled(&token, bought.reply.str("transaction_id")).await.body["status"], "SUCCESS");
    let sub = subscription(suite, &token, &bought.offer).await;
    let (id, expires) = (sub["id"].as_str().expect("id").to_string(), time(&sub["expires_at"]));
    let before = suite.balance(&token).await;

    let renew = json!({"subscription_id": id});
    let first = suite.api.post("/api/v1/offers/renew/", Some(&token), &renew).await;
    assert_eq!(first.status, 202, "{}", first.body);
    let by_offer = json!({"offer_id": bought.offer});
    for again in [&renew, &by_offer] {
        suite.api.post("/api/v1/offers/renew/", Some(&token), again).await.assert_problem(409, "conflict");
    }
    assert_eq!(suite.balance(&token).await, before - 100, "the period charged once");

    assert_eq!(suite.settled(&token, first.str("transaction_id")).await.body["status"], "SUCCESS");
    let next = suite.api.post("/api/v1/offers/renew/", Some(&token), &renew).await;
    assert_eq!(next.status, 202, "the next period: {}", next.body);
    assert_eq!(suite.settled(&token, next.str("transaction_id")).await.body["status"], "SUCCESS");
    let renewed = subscription(suite, &token, &bought.offer).await;
    assert_eq!(time(&renewed["expires_at"]) - expires, chrono::Duration::days(2), "two periods of one day, no gap");
    assert_eq!(suite.balance(&token).await, before - 200);
}
