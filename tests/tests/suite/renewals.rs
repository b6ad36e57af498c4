//! Renewals: automatic renewal as each subscription's owner chooses it,
//! one charge per period of a subscription whoever renews it, and the
//! renewal pass (`offers jobs renewals --at`, so a test moves time instead
//! of waiting for it).

use offers_tests::{TestSuite, both};
use serde_json::json;

both!(
    auto_renewal_is_the_owners_choice,
    a_period_is_renewed_once,
    the_pass_renews_what_asks_for_it_once_from_the_old_expiry,
    a_renewal_without_balance_charges_nothing_then_lapses,
    passes_at_once_charge_a_period_once,
    a_reminder_says_when_and_for_what_it_renews,
    the_owner_renewing_by_hand_races_the_pass,
    a_new_price_is_charged_only_after_its_notice,
    a_withdrawn_offer_is_not_renewed,
);

/// One renewal pass as of `at`; its report line.
async fn pass(suite: &TestSuite, at: chrono::DateTime<chrono::Utc>) -> String {
    let at = at.to_rfc3339();
    let run = suite.offers_cli(&["jobs", "renewals", "--at", &at]).await;
    let out = String::from_utf8_lossy(&run.stdout).to_string();
    assert!(run.status.success(), "{out}{}", String::from_utf8_lossy(&run.stderr));
    out
}

/// Buys `code` with automatic renewal as `token`'s user; the subscription
/// once it settled.
async fn bought_renewing(suite: &TestSuite, token: &str, code: &str) -> serde_json::Value {
    let offer = suite.offer_id(token, code).await;
    let bought =
        suite.api.post("/api/v1/activation/", Some(token), &json!({"offer_id": offer, "auto_renew": true})).await;
    assert_eq!(bought.status, 202, "{}", bought.body);
    assert_eq!(suite.settled(token, bought.str("transaction_id")).await.body["status"], "SUCCESS");
    subscription(suite, token, &offer).await
}

/// The caller's transactions of `kind`.
async fn of_kind(suite: &TestSuite, token: &str, kind: &str) -> Vec<serde_json::Value> {
    let page = suite.api.get("/api/v1/account/transactions/?limit=200", Some(token)).await;
    page.body["results"].as_array().expect("results").iter().filter(|t| t["kind"] == kind).cloned().collect()
}

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

async fn the_pass_renews_what_asks_for_it_once_from_the_old_expiry(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let sub = bought_renewing(suite, &token, "DATA-1GB").await;
    let ends = time(&sub["expires_at"]);
    // Someone who did not ask is left alone.
    let other = suite.token("demo2").await;
    let theirs = suite.api.post("/api/v1/activation/", Some(&other), &json!({"offer_id": sub["offer_id"]})).await;
    suite.settled(&other, theirs.str("transaction_id")).await;
    let (before, others_before) = (suite.balance(&token).await, suite.balance(&other).await);

    // A day's lead: a week before the end nothing is due; an hour before, it is.
    assert!(pass(suite, ends - chrono::Duration::days(7)).await.contains("renewed: 0;"));
    assert!(pass(suite, ends - chrono::Duration::hours(1)).await.contains("renewed: 1;"));
    let renewal = of_kind(suite, &token, "AUTO_RENEWAL").await;
    assert_eq!(renewal.len(), 1, "{renewal:?}");
    let id = renewal[0]["id"].as_str().expect("id").to_string();
    assert_eq!(suite.settled(&token, &id).await.body["status"], "SUCCESS");
    let renewed = subscription(suite, &token, sub["offer_id"].as_str().expect("offer")).await;
    assert_eq!(time(&renewed["expires_at"]) - ends, chrono::Duration::days(7), "from the old expiry: {renewed}");
    assert_eq!(
        (renewed["last_renewal"]["status"].as_str(), renewed["auto_renew"].as_bool()),
        (Some("SUCCESS"), Some(true))
    );
    assert_eq!(suite.balance(&token).await, before - 500);
    assert_eq!(suite.balance(&other).await, others_before, "not asked, not charged");

    // The same moment again, or the old period's: nothing more is due.
    assert!(pass(suite, ends - chrono::Duration::hours(1)).await.contains("renewed: 0;"));
    // A pass that read the subscription before the renewal and buys after
    // it names the period it saw, which is gone: refused, nothing charged.
    let late = stale_renewal(suite, &renewed, ends).await;
    assert_eq!(late.code(), tonic::Code::Aborted, "{late:?}");
    assert_eq!(suite.balance(&token).await, before - 500, "one period, one charge");
}

/// An automatic renewal of `sub` for the period ending `period_end`, as a
/// pass that read it then would ask the ledger (over the internal listener).
async fn stale_renewal(
    suite: &TestSuite,
    sub: &serde_json::Value,
    period_end: chrono::DateTime<chrono::Utc>,
) -> tonic::Status {
    use offers_proto::account::v1 as pb;
    let mut ledger = pb::ledger_service_client::LedgerServiceClient::new(suite.internal_channel().await);
    let token = suite.token("demo").await;
    let offer =
        suite.api.get(&format!("/api/v1/offers/{}/", sub["offer_id"].as_str().expect("offer")), Some(&token)).await;
    let request = pb::PurchaseRequest {
        user_id: suite.api.get("/api/v1/auth/profile/", Some(&token)).await.str("id").to_string(),
        kind: pb::TransactionKind::AutoRenewal.into(),
        offer: Some(offers_proto::catalog::v1::Offer {
            id: offer.str("id").to_string(),
            code: offer.str("code").to_string(),
            name: offer.str("name").to_string(),
            price: offer.body["price"].as_i64().expect("price"),
            currency_code: offer.str("currency").to_string(),
            duration_days: 7,
            is_active: true,
            ..Default::default()
        }),
        subscription_id: sub["id"].as_str().expect("id").to_string(),
        period_end: Some(offers_proto::timestamps::to_timestamp(period_end)),
        ..Default::default()
    };
    let mut request = tonic::Request::new(request);
    let credential = format!("Bearer {}", suite.settings.internal_token().expect("credential"));
    request.metadata_mut().insert("authorization", credential.parse().expect("ascii"));
    ledger.purchase(request).await.expect_err("a period that is gone")
}

async fn a_renewal_without_balance_charges_nothing_then_lapses(suite: &TestSuite) {
    let (_, token) = suite.user_with_balance(500).await;
    let sub = bought_renewing(suite, &token, "DATA-1GB").await;
    let (ends, offer) = (time(&sub["expires_at"]), sub["offer_id"].as_str().expect("offer").to_string());
    assert_eq!(suite.balance(&token).await, 0);

    for hours in [3, 2] {
        let report = pass(suite, ends - chrono::Duration::hours(hours)).await;
        assert!(report.contains("renewed: 0;") && report.contains("not charged: 1;"), "{report}");
        let noted = subscription(suite, &token, &offer).await;
        assert_eq!(noted["last_renewal"]["status"], "FAILED", "{noted}");
        assert_eq!(noted["last_renewal"]["reason"], "insufficient_balance");
        assert_eq!(noted["auto_renew"], true, "tried again until the end");
    }
    assert_eq!(suite.balance(&token).await, 0, "never below zero, nothing charged");
    // Told once, however many passes tried.
    let told = format!("We could not renew your {}", sub["offer_name"].as_str().expect("name"));
    eventually("the renewal notice", || notifications(suite).contains(&told)).await;
    let log = notifications(suite);
    assert_eq!(log.matches(&format!("{told}:")).count(), 1, "one message: {log}");
    assert!(log.contains("Top up by"), "{log}");
    let report = pass(suite, ends + chrono::Duration::minutes(1)).await;
    assert!(report.contains("lapsed: 1"), "{report}");
    let lapsed = subscription(suite, &token, &offer).await;
    assert_eq!(
        (lapsed["auto_renew"].as_bool(), lapsed["last_renewal"]["reason"].as_str()),
        (Some(false), Some("lapsed"))
    );
    assert!(of_kind(suite, &token, "AUTO_RENEWAL").await.is_empty());
    let ended = format!("Your {} has ended", sub["offer_name"].as_str().expect("name"));
    eventually("the lapse notice", || notifications(suite).contains(&ended)).await;
}

/// What the notifier's file channel holds (every user's messages).
fn notifications(suite: &TestSuite) -> String {
    let path = suite.settings.notifier.sink_file.clone().expect("the file channel");
    std::fs::read_to_string(path).unwrap_or_default()
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Two passes at the same moment (two scheduler replicas, or a pass rerun
/// after a crash): the period is charged once.
async fn passes_at_once_charge_a_period_once(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let sub = bought_renewing(suite, &token, "VOICE-100").await;
    let at = time(&sub["expires_at"]) - chrono::Duration::hours(1);
    let before = suite.balance(&token).await;
    let (first, second) = tokio::join!(pass(suite, at), pass(suite, at));
    let renewed = [&first, &second].iter().filter(|r| r.contains("renewed: 1;")).count();
    assert_eq!(renewed, 1, "{first}\n{second}");
    assert_eq!(of_kind(suite, &token, "AUTO_RENEWAL").await.len(), 1);
    assert_eq!(suite.balance(&token).await, before - 300);
}

/// The expiry reminder of a subscription that renews itself says when, for
/// what, and whether the balance covers it.
async fn a_reminder_says_when_and_for_what_it_renews(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let sub = bought_renewing(suite, &token, "DATA-1GB").await;
    let (_, short) = suite.user_with_balance(500).await;
    let poor = bought_renewing(suite, &short, "VOICE-100").await;
    let ends = Ord::max(time(&sub["expires_at"]), time(&poor["expires_at"]));
    let report = suite.expiring_subscriptions(ends - chrono::Duration::hours(1)).await.expect("ran");
    assert_eq!(report.scheduled, 2, "{report:?}");
    eventually("both reminders", || notifications(suite).matches("renews automatically on").count() == 2).await;
    let log = notifications(suite);
    assert!(log.contains("for 500 EUR from your balance. Your balance covers it."), "{log}");
    assert!(log.contains("for 300 EUR from your balance. Your balance (200 EUR) does not cover it"), "{log}");
}

/// The owner renews by hand while the pass renews the same period: one of
/// them charges it, the other is refused (`conflict`) or finds it in
/// progress. SIM-SLOW keeps the first renewal PENDING for seconds, so the
/// two always meet on the same period, whichever comes first.
async fn the_owner_renewing_by_hand_races_the_pass(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let sub = bought_renewing(suite, &token, "SIM-SLOW").await;
    let at = time(&sub["expires_at"]) - chrono::Duration::hours(1);
    let before = suite.balance(&token).await;
    let by_hand = json!({"subscription_id": sub["id"]});
    let (report, manual) =
        tokio::join!(pass(suite, at), suite.api.post("/api/v1/offers/renew/", Some(&token), &by_hand));
    let charged = usize::from(report.contains("renewed: 1;")) + usize::from(manual.status == 202);
    assert_eq!(charged, 1, "{report}\n{}", manual.body);
    if manual.status != 202 {
        manual.assert_problem(409, "conflict");
    }
    assert_eq!(suite.balance(&token).await, before - 100, "the period charged once");
}

/// Sets `code`'s price, as an operator would.
async fn reprice(suite: &TestSuite, offer: &str, price: i64) {
    let change = offers_proto::catalog::v1::Offer { id: offer.to_string(), price, ..Default::default() };
    let changed = suite.admin().update_offer(change, vec!["price".into()]).await.expect("reprice");
    assert_eq!(changed.price, price);
}

/// A price other than the one last paid is announced once, ahead of the
/// renewal, and charged only when the announcement came
/// `price_notice_days` (7) before; announced later, the renewal is skipped
/// with a notice and the subscription ends.
async fn a_new_price_is_charged_only_after_its_notice(suite: &TestSuite) {
    let (_, token) = suite.user_with_balance(2000).await;
    let sub = bought_renewing(suite, &token, "DATA-1GB").await;
    let (ends, offer) = (time(&sub["expires_at"]), sub["offer_id"].as_str().expect("offer").to_string());
    let name = sub["offer_name"].as_str().expect("name").to_string();
    reprice(suite, &offer, 700).await;

    // Eight days out (lead a day, notice seven): announced, nothing charged,
    // and only once however many passes see it.
    let early = ends - chrono::Duration::days(8) + chrono::Duration::hours(1);
    let report = pass(suite, early).await;
    assert!(report.contains("renewed: 0;") && report.contains("price announced: 1;"), "{report}");
    assert!(pass(suite, early).await.contains("price announced: 0;"));
    assert_eq!(suite.balance(&token).await, 1500);
    let told = format!("The price of your {name} changes");
    eventually("the price notice", || notifications(suite).contains(&told)).await;
    let log = notifications(suite);
    assert_eq!(log.matches(&told).count(), 1, "one message: {log}");
    assert!(log.contains("charges 700 EUR from your balance. Your balance covers it."), "{log}");

    // Due, announced in time: renewed at the new price, from the old expiry.
    let report = pass(suite, ends - chrono::Duration::hours(1)).await;
    assert!(report.contains("renewed: 1;"), "{report}");
    let renewals = of_kind(suite, &token, "AUTO_RENEWAL").await;
    assert_eq!(renewals.len(), 1, "{renewals:?}");
    assert_eq!(renewals[0]["amount"], 700);
    assert_eq!(suite.settled(&token, renewals[0]["id"].as_str().expect("id")).await.body["status"], "SUCCESS");
    assert_eq!(suite.balance(&token).await, 800);
    let renewed = subscription(suite, &token, &offer).await;
    let next = time(&renewed["expires_at"]);
    assert_eq!(next - ends, chrono::Duration::days(7), "{renewed}");

    // A change announced only an hour before the renewal: skipped, told,
    // tried again until the end, then the subscription lapses unrenewed.
    reprice(suite, &offer, 900).await;
    let report = pass(suite, next - chrono::Duration::hours(1)).await;
    assert!(report.contains("not charged: 1;") && report.contains("price announced: 1;"), "{report}");
    let skipped = subscription(suite, &token, &offer).await;
    assert_eq!(
        (skipped["last_renewal"]["status"].as_str(), skipped["last_renewal"]["reason"].as_str()),
        (Some("FAILED"), Some("price_changed")),
        "{skipped}"
    );
    assert_eq!(skipped["auto_renew"], true);
    assert_eq!(suite.balance(&token).await, 800, "never a price told too late");
    let not_renewed = format!("Your {name} was not renewed");
    eventually("the skip notice", || notifications(suite).contains(&not_renewed)).await;
    eventually("the new price told as well", || notifications(suite).contains("charges 900 EUR")).await;
    assert!(pass(suite, next + chrono::Duration::minutes(1)).await.contains("lapsed: 1;"));
    assert_eq!(of_kind(suite, &token, "AUTO_RENEWAL").await.len(), 1);
    assert_eq!(suite.balance(&token).await, 800);
    suite.assert_ledger_invariant().await;
}

/// An offer withdrawn from sale is not renewed: nothing charged, the
/// subscriber told, automatic renewal off with the reason shown.
async fn a_withdrawn_offer_is_not_renewed(suite: &TestSuite) {
    let (_, token) = suite.user_with_balance(1000).await;
    let sub = bought_renewing(suite, &token, "DATA-1GB").await;
    let (ends, offer) = (time(&sub["expires_at"]), sub["offer_id"].as_str().expect("offer").to_string());
    let off = offers_proto::catalog::v1::Offer { id: offer.clone(), is_active: false, ..Default::default() };
    suite.admin().update_offer(off, vec!["is_active".into()]).await.expect("withdraw");

    // Not due yet: nothing noted before its time.
    let report = pass(suite, ends - chrono::Duration::days(3)).await;
    assert!(report.contains("not charged: 0;"), "{report}");
    let report = pass(suite, ends - chrono::Duration::hours(1)).await;
    assert!(report.contains("renewed: 0;") && report.contains("not charged: 1;"), "{report}");
    let stopped = subscription(suite, &token, &offer).await;
    assert_eq!(
        (stopped["auto_renew"].as_bool(), stopped["last_renewal"]["reason"].as_str()),
        (Some(false), Some("offer_inactive")),
        "{stopped}"
    );
    assert_eq!(suite.balance(&token).await, 500);
    let told = format!("Your {} will not renew", sub["offer_name"].as_str().expect("name"));
    eventually("the withdrawal notice", || notifications(suite).contains(&told)).await;
}
