//! Expiry reminders: scheduled once per subscription, window and expiry,
//! delivered by the channels that reach the user, retried when they fail.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use offers_kit::bus::Outgoing;
use offers_notifier::ReminderJob;
use offers_proto::catalog::v1::Offer;
use offers_proto::contracts::Job;
use offers_tests::{Backend, TestSuite, across_processes, both, each_backend};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// A subscription to a new offer of `days`, settled, for a new user.
async fn subscription_of(suite: &TestSuite, code: &str, days: i32, phone: &str) -> (String, String) {
    let mut admin = suite.admin();
    let offer = Offer {
        code: code.into(),
        name: format!("Bundle {code}"),
        price: 100,
        currency_code: suite.settings.currency.clone(),
        duration_days: days,
        is_active: true,
        ..Default::default()
    };
    let offer = match admin.create_offer(offer).await.expect("offer") {
        offers::admin::Created::New(o) => o.id,
        offers::admin::Created::Existing => panic!("offer {code} exists"),
    };
    let username = format!("r{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let request = offers_proto::auth::v1::CreateUserRequest {
        username: username.clone(),
        password: offers::dev::DEMO_PASSWORD.into(),
        email: format!("{username}@example.com"),
        phone_number: phone.into(),
        first_name: "Rita".into(),
        ..Default::default()
    };
    let offers::admin::Created::New(user) = admin.create_user(request).await.expect("user") else { panic!("exists") };
    admin.credit(&user.id, 10_000, &suite.settings.currency, &username, "test").await.expect("credit");
    let token = suite.token(&username).await;
    let tx = suite.activate(&token, &offer).await.str("transaction_id").to_string();
    assert_eq!(suite.settled(&token, &tx).await.body["status"], "SUCCESS");
    let sub = suite.transaction(&token, &tx).await["subscription_id"].as_str().expect("subscription").to_string();
    (token, sub)
}

fn sink(suite: &TestSuite) -> String {
    let path = suite.settings.notifier.sink_file.clone().expect("sink");
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Waits until `check` holds (reminders are delivered asynchronously).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn reminders_go_out_once(suite: &TestSuite) {
    subscription_of(suite, "EXP-2D", 2, "").await;
    subscription_of(suite, "EXP-10D", 10, "").await;
    let now = Utc::now();
    let first = suite.expiring_subscriptions(now).await.expect("ran");
    assert_eq!(first.scheduled, 1, "only the one expiring within 3 days: {first:?}");
    let second = suite.expiring_subscriptions(now).await.expect("ran");
    assert_eq!((second.scheduled, second.already_reminded), (0, 1), "a rerun sends nothing");
    eventually("the reminder", || sink(suite).contains("Bundle EXP-2D")).await;
    let log = sink(suite);
    assert!(log.contains("renew"), "the text carries a renewal hint: {log}");
    assert!(!log.contains("EXP-10D"));

    // The same job delivered again: nothing more goes out.
    let reminder: uuid::Uuid = {
        use sea_orm::{ConnectionTrait, Statement};
        let db = suite.database();
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), "SELECT id FROM notifier_reminders"))
            .await
            .expect("query")
            .expect("a reminder");
        row.try_get("", "id").expect("id")
    };
    let job = serde_json::to_vec(&ReminderJob { reminder_id: reminder, attempt: 0 }).expect("json");
    suite.bus().publish(ReminderJob::TOPIC, Outgoing::new(&job, &Default::default())).await.expect("publish");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink(suite).matches("--- email to").count(), 1, "exactly one reminder: {}", sink(suite));

    // Seen from three days on, the 2-day subscription has expired: nothing for it.
    let later = suite.expiring_subscriptions(now + chrono::Duration::days(3)).await.expect("ran");
    assert_eq!(later.scheduled, 0);
}

async fn renewal_rearms_the_reminder(suite: &TestSuite) {
    let (token, sub) = subscription_of(suite, "EXP-REN", 2, "").await;
    let now = Utc::now();
    assert_eq!(suite.expiring_subscriptions(now).await.expect("ran").scheduled, 1);
    let renewal = suite.api.post("/api/v1/offers/renew/", Some(&token), &json!({"subscription_id": sub})).await;
    suite.settled(&token, renewal.str("transaction_id")).await;
    // Now it expires in four days: two days on, its new expiry is due a reminder of its own.
    let later = suite.expiring_subscriptions(now + chrono::Duration::days(2)).await.expect("ran");
    assert_eq!(later.scheduled, 1, "{later:?}");
    eventually("both reminders", || sink(suite).matches("--- email to").count() == 2).await;
}

async fn concurrent_runs_queue_one_set(suite: &TestSuite) {
    subscription_of(suite, "EXP-RACE", 1, "").await;
    let now = Utc::now();
    let (a, b) = tokio::join!(suite.expiring_subscriptions(now), suite.expiring_subscriptions(now));
    let total = a.map_or(0, |r| r.scheduled) + b.map_or(0, |r| r.scheduled);
    assert_eq!(total, 1, "{a:?} {b:?}");
    eventually("the reminder", || sink(suite).contains("Bundle EXP-RACE")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink(suite).matches("--- email to").count(), 1, "{}", sink(suite));
}

both!(reminders_go_out_once, renewal_rearms_the_reminder, concurrent_runs_queue_one_set);

// Across every process boundary: each role its own process.
across_processes!(reminders_go_out_once, renewal_rearms_the_reminder,);

/// The daily pass as production runs it: the scheduler process (which
/// made the day's pass when it started, before there was anything to
/// remind), its outbox relay, the broker, and the notifier process
/// delivering. The day's record of the pass is removed once the
/// subscriptions exist, so the scheduler makes it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_process_sends_the_days_reminders() {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::Query;
    let configure = |s: &mut offers::settings::Settings| s.notifier.check_interval = Duration::from_secs(1);
    let replicas = offers_harness::local::Replicas::default();
    let Some(suite) = TestSuite::spawn_processes_with(replicas, Vec::new(), configure).await else { return };
    let runs = || async {
        let count = Query::select().expr(sea_orm::sea_query::Expr::cust("COUNT(*)")).from("notifier_runs").to_owned();
        let row = suite.database().query_one(&count).await.expect("query").expect("a row");
        row.try_get_by_index::<i64>(0).expect("count")
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while runs().await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the scheduler made no pass at start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    subscription_of(&suite, "EXP-2D", 2, "").await;
    subscription_of(&suite, "EXP-10D", 10, "").await;
    assert!(!sink(&suite).contains("EXP-2D"), "nothing before the pass");
    suite.database().execute(&Query::delete().from_table("notifier_runs").to_owned()).await.expect("re-armed");
    eventually("the scheduled reminder", || sink(&suite).contains("Bundle EXP-2D")).await;
    assert!(!sink(&suite).contains("EXP-10D"), "only what expires within the window");
    suite.stop().await;
}

/// A queued reminder for the subscription, as the scheduler records it,
/// whose job is due `due_in` from now, with no job published (as if lost).
async fn reminder_without_job(
    suite: &TestSuite,
    token: &str,
    sub: &str,
    offer: &str,
    due_in: chrono::Duration,
) -> uuid::Uuid {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Query, SimpleExpr};
    let user: uuid::Uuid =
        suite.api.get("/api/v1/auth/profile/", Some(token)).await.str("id").parse().expect("user id");
    let (id, now) = (uuid::Uuid::now_v7(), Utc::now());
    let job = ReminderJob { reminder_id: id, attempt: 0 };
    let values: Vec<(&str, SimpleExpr)> = vec![
        ("id", id.into()),
        ("subscription_id", uuid::Uuid::parse_str(sub).expect("subscription id").into()),
        ("window_hours", 72.into()),
        ("expires_at", (now + chrono::Duration::days(2)).into()),
        ("user_id", user.into()),
        ("offer_name", offer.into()),
        ("status", "QUEUED".into()),
        ("sent_channels", "".into()),
        ("attempts", 0.into()),
        ("lease_until", Option::<chrono::DateTime<Utc>>::None.into()),
        ("last_error", Option::<String>::None.into()),
        ("created_at", now.into()),
        ("finished_at", Option::<chrono::DateTime<Utc>>::None.into()),
        ("job", serde_json::to_string(&job).expect("json").into()),
        ("job_due_at", (now + due_in).into()),
    ];
    let (columns, values): (Vec<&str>, Vec<SimpleExpr>) = values.into_iter().unzip();
    let insert = Query::insert().into_table("notifier_reminders").columns(columns).values_panic(values).to_owned();
    suite.database().execute(&insert).await.expect("insert the reminder");
    id
}

async fn reminder_status(suite: &TestSuite, id: uuid::Uuid) -> String {
    use sea_orm::ConnectionTrait;
    use sea_orm::sea_query::{Expr, ExprTrait, Query};
    let select =
        Query::select().column("status").from("notifier_reminders").and_where(Expr::col("id").eq(id)).to_owned();
    let row = suite.database().query_one(&select).await.expect("query").expect("the reminder");
    row.try_get("", "status").expect("status")
}

async fn lost_reminders_are_redriven(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.notifier.reconcile_interval = Duration::from_millis(100);
        s.notifier.redrive_grace = Duration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let (token, sub) = subscription_of(&suite, "EXP-LOST", 2, "").await;
    let lost = reminder_without_job(&suite, &token, &sub, "Bundle EXP-LOST", -chrono::Duration::minutes(5)).await;
    let later = reminder_without_job(&suite, &token, &sub, "Bundle EXP-LATER", chrono::Duration::hours(1)).await;
    eventually("the lost reminder", || sink(&suite).contains("Bundle EXP-LOST")).await;
    eventually_status(&suite, lost, "SENT").await;
    assert!(!sink(&suite).contains("EXP-LATER"), "a job not yet due is left alone");
    assert_eq!(reminder_status(&suite, later).await, "QUEUED");
    suite.stop().await;
}

async fn eventually_status(suite: &TestSuite, id: uuid::Uuid, status: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while reminder_status(suite, id).await != status {
        assert!(tokio::time::Instant::now() < deadline, "the reminder did not become {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A minimal SMTP server: accepts every message and keeps its envelope and data.
async fn smtp_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let got: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let store = got.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 test ESMTP\r\n").await;
                let mut transcript = String::new();
                let mut in_data = false;
                while let Ok(Some(line)) = lines.next_line().await {
                    transcript.push_str(&line);
                    transcript.push('\n');
                    let reply: &[u8] = if in_data {
                        if line == "." {
                            in_data = false;
                            b"250 queued\r\n"
                        } else {
                            continue;
                        }
                    } else {
                        let upper = line.to_ascii_uppercase();
                        if upper.starts_with("EHLO") {
                            b"250-test\r\n250 OK\r\n"
                        } else if upper.starts_with("DATA") {
                            in_data = true;
                            b"354 go on\r\n"
                        } else if upper.starts_with("QUIT") {
                            let _ = write.write_all(b"221 bye\r\n").await;
                            break;
                        } else {
                            b"250 OK\r\n"
                        }
                    };
                    let _ = write.write_all(reply).await;
                }
                store.lock().expect("lock").push(transcript);
            });
        }
    });
    (port, got)
}

async fn email_goes_over_smtp(backend: Backend) {
    let (port, got) = smtp_server().await;
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.notifier.sink_file = None;
        s.notifier.smtp_url = Some(format!("smtp://127.0.0.1:{port}"));
        s.notifier.smtp_from = "Offers <no-reply@offers.test>".into();
    })
    .await
    else {
        return;
    };
    let (token, _) = subscription_of(&suite, "EXP-MAIL", 1, "").await;
    let email = suite.api.get("/api/v1/auth/profile/", Some(&token)).await.str("email").to_string();
    assert_eq!(suite.expiring_subscriptions(Utc::now()).await.expect("ran").scheduled, 1);
    eventually("the email", || !got.lock().expect("lock").is_empty()).await;
    let transcript = got.lock().expect("lock")[0].clone();
    assert!(transcript.contains(&format!("RCPT TO:<{email}>")), "{transcript}");
    assert!(transcript.contains("MAIL FROM:<no-reply@offers.test>"), "{transcript}");
    assert!(transcript.contains("Bundle EXP-MAIL") && transcript.contains("renew"), "{transcript}");
    suite.stop().await;
}

/// An SMS provider that fails `failures` times with 503, then accepts.
async fn sms_provider(failures: usize) -> (String, Arc<Mutex<Vec<serde_json::Value>>>) {
    let got: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/sms",
        axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
            let store = store.clone();
            async move {
                let mut seen = store.lock().expect("lock");
                seen.push(body);
                if seen.len() <= failures {
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                } else {
                    axum::http::StatusCode::ACCEPTED
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/sms", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

async fn sms_is_retried_to_success(backend: Backend) {
    let (url, got) = sms_provider(2).await;
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.notifier.sink_file = None;
        s.notifier.sms_url = Some(url);
    })
    .await
    else {
        return;
    };
    // A user with a phone number (their email has no channel here).
    subscription_of(&suite, "EXP-SMS", 1, "+15550100").await;
    assert_eq!(suite.expiring_subscriptions(Utc::now()).await.expect("ran").scheduled, 1);
    eventually("three SMS attempts", || got.lock().expect("lock").len() >= 3).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().expect("lock").clone();
    assert_eq!(got.len(), 3, "two failures, one success, then nothing: {got:?}");
    assert_eq!(got[2]["to"], "+15550100");
    assert!(got[2]["text"].as_str().is_some_and(|t| t.contains("Bundle EXP-SMS")), "{got:?}");
    suite.stop().await;
}

each_backend!(email_goes_over_smtp, sms_is_retried_to_success, lost_reminders_are_redriven);
