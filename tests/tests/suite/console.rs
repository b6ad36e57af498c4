//! The operator console, through its HTTP pages as a browser uses them:
//! sign-in by console role, a review resolved and a customer topped up
//! (the money checked), partner keys made and revoked, offers edited,
//! every act in the audit trail with the operator's name and note; and
//! what it refuses: viewers acting, forms without their token or from
//! another site, a session after sign-out, hostile input (never a 5xx).

use std::time::{Duration, Instant};

use offers_tests::console::{Console, Page};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use offers_tests::{Backend, TestSuite, across_processes, both, each_backend};
use serde_json::json;

both!(
    an_operator_resolves_a_review_and_tops_up_a_customer,
    partner_keys_and_limits_are_managed_in_the_console,
    offers_are_created_edited_and_withdrawn_in_the_console,
    a_viewer_sees_every_page_but_cannot_act,
    forms_need_their_token_their_origin_and_a_live_session,
);

// A partner whose callbacks run out of retries.
each_backend!(
    an_abandoned_callback_is_sent_again_from_the_console,
    a_session_ends_after_its_idle_timeout,
    the_console_sign_in_counts_against_the_login_limits,
);

// The console in its own process, reaching auth, account and partner over
// the network, with its sessions in Redis.
across_processes!(
    an_operator_resolves_a_review_and_tops_up_a_customer,
    partner_keys_and_limits_are_managed_in_the_console
);

const PASSWORD: &str = "demo-password";

async fn operator(suite: &TestSuite) -> Console {
    Console::sign_in(suite, "operator", PASSWORD).await.expect("the demo operator signs in")
}

/// The console's page for the user `username` (found by the search form).
async fn customer_page(console: &mut Console, username: &str) -> (String, Page) {
    let found = console.get(&format!("/console/customers?q={username}")).await;
    assert_eq!(found.status, 303, "{}", found.html);
    let path = found.location().expect("a customer page").to_string();
    let page = console.get(&path).await;
    assert_eq!(page.status, 200, "{}", page.html);
    (path, page)
}

async fn an_operator_resolves_a_review_and_tops_up_a_customer(suite: &TestSuite) {
    // The simulator never tells what became of SIM-UNKNOWN: it waits for review.
    let bought = suite.demo_buys("SIM-UNKNOWN").await;
    assert_eq!(bought.reply.status, 202, "{}", bought.reply.body);
    let tx = bought.reply.str("transaction_id").to_string();
    let mut console = operator(suite).await;
    let waited = Instant::now();
    let queue = loop {
        let page = console.get("/console/reviews").await;
        if page.html.contains(&tx) {
            break page;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "never reached the review queue");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(queue.html.contains("after 5 attempts"), "why it waits is shown: {}", queue.html);
    // Each attempt with what the provider answered: four retried, the fifth's inquiry could not tell.
    assert_eq!(queue.html.matches("<td>retry</td>").count(), 4, "{}", queue.html);
    assert_eq!(queue.html.matches("<td>review</td>").count(), 1);
    assert!(queue.html.contains("503 Service Unavailable"), "the provider's answers: {}", queue.html);
    assert_eq!(suite.balance(&bought.token).await, bought.before - 100, "held while in doubt");
    let waiting = overview(suite).await;
    assert_eq!(waiting.reviews_waiting, 1, "the overview counts the queue");
    assert!(waiting.oldest_review_time.is_some());
    // Summed over the day: the purchase's hour may have just turned.
    let pending_now: i64 = waiting.hours.iter().map(|h| h.pending).sum();
    assert!(pending_now >= 1, "the day's purchases, the one in review pending: {waiting:?}");

    // A resolution says what happened and why; the form says what is missing.
    let resolve = format!("/console/reviews/{tx}/resolve");
    let no_note = console.act(&resolve, &[("outcome", "failed"), ("note", "  ")]).await;
    assert_eq!(no_note.status, 422, "{}", no_note.html);
    assert!(no_note.flash().is_some_and(|f| f.contains("Say why")), "{:?}", no_note.flash());
    let no_outcome = console.act(&resolve, &[("note", "provider has no record")]).await;
    assert_eq!(no_outcome.status, 422);
    assert_eq!(suite.balance(&bought.token).await, bought.before - 100, "nothing moved on a refused form");
    let note = "the provider has no record of line 0612";
    let done = console.act(&resolve, &[("outcome", "failed"), ("note", note)]).await;
    assert_eq!((done.status, done.location()), (303, Some("/console/reviews")), "{}", done.html);
    let after = console.get("/console/reviews").await;
    assert!(after.flash().is_some_and(|f| f.contains("resolved as not provisioned")), "{:?}", after.flash());
    assert!(!after.html.contains(&format!("review-{tx}")), "no longer waiting");
    assert_eq!(suite.balance(&bought.token).await, bought.before, "refunded, exactly once");
    let decided = overview(suite).await;
    assert_eq!((decided.reviews_waiting, decided.oldest_review_time), (0, None));
    let pending: i64 = decided.hours.iter().map(|h| h.pending).sum();
    assert_eq!(pending, pending_now - 1, "it left PENDING");
    assert!(decided.hours.iter().map(|h| h.failed).sum::<i64>() >= 1, "and counts as failed: {decided:?}");
    assert_eq!(decided.hours.len(), 24);
    let again = console.act(&resolve, &[("outcome", "succeeded"), ("note", "second thoughts")]).await;
    assert!((400..500).contains(&again.status), "decided once: {}", again.status);
    assert_eq!(suite.balance(&bought.token).await, bought.before);

    let detail = console.get(&format!("/console/transactions/{tx}")).await;
    assert_eq!(detail.status, 200);
    assert!(detail.html.contains("FAILED") && !detail.html.contains("form class=\"resolve\""), "decided: no form");

    // The customer's page shows the refund and the failed transaction.
    let (path, page) = customer_page(&mut console, "demo").await;
    assert!(page.html.contains(&tx) && page.html.contains("FAILED"), "{}", page.html);
    assert!(page.html.contains(&format!("{} EUR", bought.before)), "the balance after the refund");

    // A top-up: refused forms credit nothing; the form sent twice credits once.
    let key = page.field("key").expect("the top-up form's key");
    let top_up = format!("{path}/top-up");
    let refusals =
        [("-5", "x"), ("12.50", "x"), ("", "x"), ("250", " "), ("99999999999999999999", "x"), ("250", "nul\0")];
    for (amount, reason) in refusals {
        let refused = console.act(&top_up, &[("key", &key), ("amount", amount), ("reason", reason)]).await;
        assert_eq!(refused.status, 422, "{amount:?} {reason:?}: {}", refused.status);
        assert!(refused.flash().is_some(), "the form says why");
    }
    let reason = "goodwill for the outage on 7 December";
    for expected in ["Credited 250 EUR", "made already"] {
        let sent = console.act(&top_up, &[("key", &key), ("amount", "250"), ("reason", reason)]).await;
        assert_eq!(sent.status, 303, "{}", sent.html);
        let shown = console.get(&path).await;
        assert!(shown.flash().is_some_and(|f| f.contains(expected)), "{:?}", shown.flash());
    }
    assert_eq!(suite.balance(&bought.token).await, bought.before + 250, "credited once");

    // Both acts are in the audit page, with the operator's name and note.
    let audit = console.get("/console/audit?actor=operator").await;
    assert_eq!(audit.status, 200);
    for text in ["transaction.resolve", note, "credit", reason] {
        assert!(audit.html.contains(text), "{text} missing from the audit page");
    }
    let (_, breaks) = suite.admin().check_audit().await.expect("check");
    assert!(breaks.is_empty(), "{breaks:?}");
}

async fn overview(suite: &TestSuite) -> offers_proto::account::v1::GetOperationsOverviewResponse {
    let request = offers_proto::account::v1::GetOperationsOverviewRequest { hours: 0 };
    let answer = suite.admin().clients.ledger.get_operations_overview(request).await.expect("overview");
    answer.into_inner()
}

/// The secret in "New key pk_…: <secret> — copy it now".
fn shown_secret(page: &Page) -> String {
    let flash = page.flash().expect("the new key is shown");
    let after = flash.split_once(": ").expect("a secret").1;
    after.split_whitespace().next().expect("a secret").to_string()
}

async fn partner_keys_and_limits_are_managed_in_the_console(suite: &TestSuite) {
    let mut console = operator(suite).await;
    let list = console.get("/console/partners?q=DEMO").await;
    assert!(list.html.contains("/console/partners/demo-partner"), "found by any case: {}", list.html);
    let base = "/console/partners/demo-partner";
    let made = console.act(&format!("{base}/keys"), &[("note", "a key for the new POS")]).await;
    assert_eq!(made.status, 201, "{}", made.html);
    let secret = shown_secret(&made);
    let balance = |key: String| async move { suite.api.get("/api/v1/partner/balance/", Some(&key)).await.status };
    assert_eq!(balance(secret.clone()).await, 200, "the new key works");
    let page = console.get(base).await;
    assert!(!page.html.contains(&secret), "the secret is shown once, never again");
    // Keys are listed newest first: the first row is the new one.
    let marker = "id=\"key-";
    let start = page.html.find(marker).expect("a key row") + marker.len();
    let key_id = page.html[start..start + 36].to_string();
    let revoked = console.act(&format!("{base}/keys/{key_id}/revoke"), &[("note", "the POS was stolen")]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.html);
    assert!(console.get(base).await.flash().is_some_and(|f| f.contains("revoked")));
    assert_eq!(balance(secret).await, 401, "a revoked key is refused");

    let bad = console.act(&format!("{base}/credit-limit"), &[("limit", "lots"), ("note", "x")]).await;
    assert_eq!(bad.status, 422, "{}", bad.html);
    let set = console.act(&format!("{base}/credit-limit"), &[("limit", "5000"), ("note", "new contract")]).await;
    assert_eq!(set.status, 303);
    assert!(console.get(base).await.flash().is_some_and(|f| f.contains("5000 EUR")));
    let demo_key = |key: &'static str| async move { suite.api.get("/api/v1/partner/balance/", Some(key)).await.status };
    let suspend = [("status", "suspended"), ("note", "unpaid invoice")];
    assert_eq!(console.act(&format!("{base}/status"), &suspend).await.status, 303);
    assert_eq!(demo_key("demo-partner-key").await, 401, "a suspended partner's keys are refused");
    let bad_status = console.act(&format!("{base}/status"), &[("status", "paused"), ("note", "x")]).await;
    assert_eq!(bad_status.status, 422);
    let reactivate = [("status", "active"), ("note", "paid")];
    assert_eq!(console.act(&format!("{base}/status"), &reactivate).await.status, 303);
    assert_eq!(demo_key("demo-partner-key").await, 200);
    let missing = console.get("/console/partners/no-such-partner").await;
    assert_eq!(missing.status, 404);

    let audit = console.get(&format!("/console/audit?action=api_key.revoke&target=api_key:{key_id}")).await;
    assert!(audit.html.contains("the POS was stolen") && audit.html.contains(">operator<"), "{}", audit.html);
}

async fn offers_are_created_edited_and_withdrawn_in_the_console(suite: &TestSuite) {
    let mut console = operator(suite).await;
    let offer = |code: &'static str, price: &'static str, on_sale: &'static str, note: &'static str| {
        [
            ("code", code),
            ("name", "Console weekend"),
            ("description", "made in the console"),
            ("price", price),
            ("duration_days", "2"),
            ("data_mb", "2048"),
            ("voice_minutes", "0"),
            ("sms", "0"),
            ("on_sale", on_sale),
            ("note", note),
        ]
    };
    let bad = console.act("/console/offers", &offer("CONSOLE-1", "cheap", "yes", "weekend promo")).await;
    assert_eq!(bad.status, 422, "{}", bad.html);
    let mut nul = offer("CONSOLE-0", "700", "yes", "weekend promo");
    nul[2] = ("description", "a NUL\0 in the text");
    let refused = console.act("/console/offers", &nul).await;
    assert_eq!(refused.status, 400, "the catalog refuses it, the database never sees it: {}", refused.html);
    assert!(bad.html.contains("value=\"Console weekend\""), "the form keeps what was typed");
    let made = console.act("/console/offers", &offer("CONSOLE-1", "700", "yes", "weekend promo")).await;
    assert_eq!(made.status, 303, "{}", made.html);
    let path = made.location().expect("the offer's page").to_string();
    let twice = console.act("/console/offers", &offer("CONSOLE-1", "700", "yes", "weekend promo")).await;
    assert_eq!(twice.status, 409, "{}", twice.html);
    let token = suite.token("demo").await;
    let listed = |token: String| async move {
        let offers = suite.api.get("/api/v1/offers/?limit=200", Some(&token)).await;
        offers.body["results"].as_array().expect("results").iter().any(|o| o["code"] == "CONSOLE-1")
    };
    assert!(listed(token.clone()).await, "on sale");
    let withdrawn = console.act(&path, &offer("IGNORED", "700", "no", "promo over")).await;
    assert_eq!(withdrawn.status, 303, "{}", withdrawn.html);
    assert!(!listed(token).await, "withdrawn");
    let list = console.get("/console/offers").await;
    assert!(list.html.contains("CONSOLE-1") && list.html.contains("withdrawn"), "operators still see it");
    let audit = console.get("/console/audit?action=offer.update").await;
    assert!(audit.html.contains("promo over"));
}

async fn a_viewer_sees_every_page_but_cannot_act(suite: &TestSuite) {
    let mut viewer = Console::sign_in(suite, "viewer", PASSWORD).await.expect("the demo viewer signs in");
    for path in [
        "/console/",
        "/console/reviews",
        "/console/customers",
        "/console/partners",
        "/console/offers",
        "/console/jobs",
        "/console/audit",
    ] {
        let page = viewer.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.html);
    }
    assert!(viewer.get("/console/").await.html.contains("<svg"), "the overview draws its chart");
    let (path, page) = customer_page(&mut viewer, "demo2").await;
    assert!(!page.html.contains("/top-up\""), "no forms to act with");
    let token = suite.token("demo2").await;
    let before = suite.balance(&token).await;
    let refused = viewer.act(&format!("{path}/top-up"), &[("key", "k1"), ("amount", "100"), ("reason", "try")]).await;
    assert_eq!(refused.status, 403, "{}", refused.html);
    let key = viewer.act("/console/partners/demo-partner/keys", &[("note", "try")]).await;
    assert_eq!(key.status, 403);
    assert_eq!(suite.balance(&token).await, before);

    // A console role taken away ends the session at once.
    let mut admin = suite.admin();
    let user = admin.user("viewer").await.expect("viewer");
    admin.set_console_role(&user.id, offers_proto::auth::v1::ConsoleRole::Unspecified).await.expect("taken away");
    let after = viewer.get("/console/").await;
    assert_eq!((after.status, after.location()), (303, Some("/console/sign-in")), "no longer a viewer");
    let again = Console::sign_in(suite, "viewer", PASSWORD).await.err().expect("refused");
    assert_eq!(again.status, 403);
}

async fn forms_need_their_token_their_origin_and_a_live_session(suite: &TestSuite) {
    // Only staff sign in; the form's own token is needed too.
    let wrong = Console::sign_in(suite, "operator", "not-the-password").await.err().expect("refused");
    assert_eq!(wrong.status, 401, "{}", wrong.html);
    let customer = Console::sign_in(suite, "demo", PASSWORD).await.err().expect("refused");
    assert_eq!(customer.status, 403, "a customer has no console role");
    let mut stranger = Console::new(suite);
    let forged = stranger
        .post("/console/sign-in", &[("token", "guess"), ("username", "operator"), ("password", PASSWORD)])
        .await;
    assert_eq!(forged.status, 403, "a sign-in without the form's token");

    let mut console = operator(suite).await;
    let home = console.get("/console/").await;
    let csp = home.header("content-security-policy").expect("a CSP");
    assert!(csp.contains("frame-ancestors 'none'") && !csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(home.header("x-content-type-options"), Some("nosniff"));
    let token = suite.token("demo2").await;
    let before = suite.balance(&token).await;
    let (path, _) = customer_page(&mut console, "demo2").await;
    let top_up = format!("{path}/top-up");
    let form = [("key", "csrf-test"), ("amount", "100"), ("reason", "forged")];
    let no_token = console.post(&top_up, &form).await;
    assert_eq!(no_token.status, 403, "no CSRF token: {}", no_token.html);
    let stale: Vec<(&str, &str)> = [("csrf", "stale-token")].into_iter().chain(form).collect();
    assert_eq!(console.post(&top_up, &stale).await.status, 403, "a token of no session");
    let csrf = console.csrf.clone();
    let with_token: Vec<(&str, &str)> = [("csrf", csrf.as_str())].into_iter().chain(form).collect();
    let other_site = console.post_from(&top_up, &with_token, &[("origin", "http://evil.example")]).await;
    assert_eq!(other_site.status, 403, "another origin, even with the token");
    let cross = console.post_from(&top_up, &with_token, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, 403, "a cross-site request");
    assert_eq!(suite.balance(&token).await, before, "nothing was credited");

    // Hostile input is a 4xx page, never a failure.
    for path in [
        "/console/customers/%00",
        "/console/customers/'%20OR%201=1--",
        "/console/customers/00000000-0000-0000-0000-000000000000",
        "/console/offers/not-an-id",
        "/console/partners/%F0%9F%92%A5",
        "/console/reviews?after=garbage",
        "/console/partners?after=garbage",
        "/console/audit?limit=99999999999999999999",
        "/console/no/such/page",
        "/console/audit?actor=%00",
        "/console/partners?q=%00",
        "/console/partners/%00",
        "/console/customers?q=%00",
    ] {
        let page = console.get(path).await;
        assert!((200..500).contains(&page.status), "{path}: {} {}", page.status, page.html);
    }
    let huge = console.act("/console/jobs/provisioning/replay", &[("max", "-1"), ("note", "x")]).await;
    assert_eq!(huge.status, 422);

    // Signing out ends the session on the server: its cookie opens nothing.
    let copied = console.clone();
    let out = console.act("/console/sign-out", &[]).await;
    assert_eq!((out.status, out.location()), (303, Some("/console/sign-in")));
    let mut replayed = copied;
    let after = replayed.get("/console/").await;
    assert_eq!((after.status, after.location()), (303, Some("/console/sign-in")), "revoked on the server");
}

async fn an_abandoned_callback_is_sent_again_from_the_console(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.partner.callback_retry.attempts = 2).await else { return };
    // The partner's endpoint fails until it is mended.
    let (mended, posts) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicUsize::new(0)));
    let (up, seen) = (mended.clone(), posts.clone());
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move || {
            let (up, seen) = (up.clone(), seen.clone());
            async move {
                seen.fetch_add(1, Ordering::SeqCst);
                if up.load(Ordering::SeqCst) { axum::http::StatusCode::OK } else { axum::http::StatusCode::BAD_GATEWAY }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let key = Some("demo-partner-key");
    let registered = suite.api.post("/api/v1/partner/callback/", key, &json!({"callback_url": url})).await;
    assert_eq!(registered.status, 200, "{}", registered.body);
    let token = suite.token("demo").await;
    let user = suite.api.get("/api/v1/auth/profile/", Some(&token)).await.str("id").to_string();
    let offer = suite.offer_id(&token, "SIM-FAIL").await;
    let body = json!({"user_id": user, "offer_id": offer, "amount": 100});
    let accepted = suite.api.post("/api/v1/partner/activate/", key, &body).await;
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let reference = accepted.str("reference").to_string();

    let mut console = operator(&suite).await;
    let base = "/console/partners/demo-partner";
    let page_until = async |console: &mut Console, text: &str| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let page = console.get(base).await;
            if page.html.contains(text) {
                return page;
            }
            assert!(Instant::now() < deadline, "never showed {text:?}: {}", page.html);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let page = page_until(&mut console, "abandoned: callback answered 502").await;
    assert!(page.html.contains(&reference), "the delivery names its reference");
    let marker = "id=\"callback-";
    let start = page.html.find(marker).expect("a delivery row") + marker.len();
    let event = page.html[start..start + 36].to_string();
    assert_eq!(posts.load(Ordering::SeqCst), 2, "both attempts were made");

    let redeliver = format!("{base}/callbacks/{event}/redeliver");
    let no_note = console.act(&redeliver, &[("note", "")]).await;
    assert_eq!(no_note.status, 422, "{}", no_note.html);
    mended.store(true, Ordering::SeqCst);
    let sent = console.act(&redeliver, &[("note", "the partner fixed their endpoint (ticket 88)")]).await;
    assert_eq!(sent.status, 303, "{}", sent.html);
    page_until(&mut console, "delivered ").await;
    assert_eq!(posts.load(Ordering::SeqCst), 3, "sent once more, and delivered");
    let again = console.act(&redeliver, &[("note", "once more")]).await;
    assert_eq!(again.status, 409, "a delivered callback is not sent again: {}", again.html);
    let audit = console.get("/console/audit?action=callback.redeliver").await;
    assert!(audit.html.contains("ticket 88") && audit.html.contains(&format!("callback:{event}")), "{}", audit.html);
    suite.stop().await;
}

async fn a_session_ends_after_its_idle_timeout(backend: Backend) {
    let idle = Duration::from_secs(2);
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.console.idle_timeout = idle).await else { return };
    let mut console = operator(&suite).await;
    // Each page seen renews it: busy for longer than the timeout, still in.
    for _ in 0..4 {
        tokio::time::sleep(idle / 2).await;
        assert_eq!(console.get("/console/reviews").await.status, 200, "renewed by use");
    }
    tokio::time::sleep(idle + Duration::from_secs(1)).await;
    let after = console.get("/console/").await;
    assert_eq!((after.status, after.location()), (303, Some("/console/sign-in")), "idle too long");
    suite.stop().await;
}

/// Guessing an operator's password in the console counts in the same
/// buckets as the API's login: the console is no way around its limits.
async fn the_console_sign_in_counts_against_the_login_limits(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.auth.login_per_username = 3).await else { return };
    for _ in 0..3 {
        let wrong = Console::sign_in(&suite, "operator", "guess").await.err().expect("refused");
        assert_eq!(wrong.status, 401, "{}", wrong.html);
    }
    let limited = Console::sign_in(&suite, "operator", PASSWORD).await.err().expect("limited, even with the password");
    assert_eq!(limited.status, 429, "{}", limited.html);
    assert!(limited.flash().is_some_and(|f| !f.is_empty()), "the form says why");
    suite.api.login("operator", PASSWORD).await.assert_problem(429, "rate_limited");
    suite.stop().await;
}
