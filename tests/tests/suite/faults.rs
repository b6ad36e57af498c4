//! Dependencies going away, each behind a proxy the test cuts, stalls and
//! restores (the machine's shared services are never touched): PostgreSQL
//! down is a bounded 503 with nothing written, offers and cached statuses
//! served marked stale, and recovery without a restart; Redis down changes
//! nothing a client can see; RabbitMQ down keeps jobs in the outbox until
//! it returns. Real backends only: the embedded ones have nothing to cut.

use std::time::{Duration, Instant};

use offers_tests::backends::{amqp_url, postgres_url, redis_url};
use offers_tests::faults::FaultProxy;
use offers_tests::provider::{Answer, StubProvider};
use offers_tests::{Backend, TestSuite};
use sea_orm::ConnectionTrait;

/// How long an outage may hold a request: the settings below answer
/// within about two seconds; this leaves room for a loaded machine.
const BOUND: Duration = Duration::from_secs(6);

fn stale(reply: &offers_tests::Reply) -> bool {
    reply.header("offers-stale") == Some("true")
}

/// Polls `path` until it answers `status`.
async fn until_status(suite: &TestSuite, path: &str, status: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while suite.api.get(path, None).await.status != status {
        assert!(Instant::now() < deadline, "{path} did not turn {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_outage_is_a_bounded_503_with_stale_reads_and_recovers() {
    let pg = FaultProxy::to_url(&postgres_url()).await;
    // The first purchase is provisioned; later ones hang, so they stay PENDING.
    let provider = StubProvider::start(|n| if n == 1 { Answer::ok() } else { Answer::Hang }, |_| Answer::Hang).await;
    let Some(suite) = TestSuite::spawn_with(Backend::Real, |s| {
        s.database.url = pg.in_url(&s.database.url);
        s.database.acquire_timeout = Duration::from_secs(1);
        s.call_timeout = Duration::from_secs(2);
        s.catalog.cache_ttl = Duration::from_secs(1);
        s.ledger.status_fresh = Duration::from_secs(1);
        s.provisioning.url = Some(provider.url.clone());
    })
    .await
    else {
        return;
    };
    let bought = suite.demo_buys("DATA-1GB").await;
    let settled_id = bought.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&bought.token, &settled_id).await.body["status"], "SUCCESS");
    let voice = suite.offer_id(&bought.token, "VOICE-100").await;
    let pending = suite.activate(&bought.token, &voice).await;
    assert_eq!(pending.status, 202, "{}", pending.body);
    let pending_id = pending.str("transaction_id").to_string();
    let combo = suite.offer_id(&bought.token, "COMBO-30").await;
    let balance = suite.balance(&bought.token).await;
    // Past the freshness of the cached offers and of the PENDING status.
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    for outage in [FaultProxy::cut as fn(&FaultProxy), FaultProxy::stall] {
        outage(&pg);
        let started = Instant::now();
        let refused = suite.activate(&bought.token, &combo).await;
        assert!(started.elapsed() < BOUND, "a purchase waited {:?}", started.elapsed());
        refused.assert_problem(503, "service_unavailable");
        let started = Instant::now();
        suite.api.get("/api/v1/account/balance/", Some(&bought.token)).await.assert_problem(503, "service_unavailable");
        assert!(started.elapsed() < BOUND, "a balance read waited {:?}", started.elapsed());

        let ready = suite.api.get("/readyz", None).await;
        assert_eq!(ready.status, 503, "{}", ready.body);
        assert_ne!(ready.body["checks"]["database"], "ok", "{}", ready.body);

        let offers = suite.api.get("/api/v1/offers/", Some(&bought.token)).await;
        assert_eq!(offers.status, 200, "{}", offers.body);
        assert!(stale(&offers), "the last-known offers are marked stale");
        assert!(offers.header("etag").is_none(), "and carry no tag to revalidate with");
        assert!(offers.body["results"].as_array().is_some_and(|r| r.iter().any(|o| o["code"] == "COMBO-30")));

        let path = |id: &str| format!("/api/v1/activation/status/{id}/");
        let settled = suite.api.get(&path(&settled_id), Some(&bought.token)).await;
        assert_eq!((settled.status, settled.body["status"].as_str()), (200, Some("SUCCESS")), "{}", settled.body);
        assert!(!stale(&settled), "a settled status never changes: it is not stale");
        // Retries refresh the PENDING entry until the outage stops them.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let waiting = suite.api.get(&path(&pending_id), Some(&bought.token)).await;
        assert_eq!((waiting.status, waiting.body["status"].as_str()), (200, Some("PENDING")), "{}", waiting.body);
        assert!(stale(&waiting), "a PENDING status past its freshness is marked stale");
        pg.restore();
        // Every process finds the database again by itself.
        until_status(&suite, "/readyz", 200).await;
    }

    assert_eq!(suite.balance(&bought.token).await, balance, "the refused purchases wrote nothing");
    let list = suite.api.get("/api/v1/account/transactions/", Some(&bought.token)).await;
    let purchases = list.body["results"].as_array().expect("results").len();
    assert_eq!(purchases, 2, "only the two purchases made before the outage exist: {}", list.body);
    let again = suite.activate(&bought.token, &combo).await;
    assert_eq!(again.status, 202, "purchases work again: {}", again.body);
    let offers = suite.api.get("/api/v1/offers/", Some(&bought.token)).await;
    assert!(offers.status == 200 && !stale(&offers), "fresh offers again");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_changes_nothing_a_client_sees() {
    let redis = FaultProxy::to_url(&redis_url()).await;
    let Some(suite) = TestSuite::spawn_with(Backend::Real, |s| s.cache.url = redis.in_url(&s.cache.url)).await else {
        return;
    };
    redis.cut();
    let bought = suite.demo_buys("DATA-1GB").await;
    assert_eq!(bought.reply.status, 202, "{}", bought.reply.body);
    let id = bought.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&bought.token, &id).await.body["status"], "SUCCESS");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500);
    let offers = suite.api.get("/api/v1/offers/", Some(&bought.token)).await;
    assert!(offers.status == 200 && !stale(&offers), "offers come from the database: {}", offers.body);
    redis.restore();
    let again = suite.demo_buys("VOICE-100").await;
    let id = again.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&again.token, &id).await.body["status"], "SUCCESS");
    suite.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rabbitmq_outage_keeps_jobs_in_the_outbox_until_it_returns() {
    let amqp = FaultProxy::to_url(&amqp_url()).await;
    let Some(suite) = TestSuite::spawn_with(Backend::Real, |s| s.bus.url = amqp.in_url(&s.bus.url)).await else {
        return;
    };
    amqp.cut();
    let bought = suite.demo_buys("DATA-1GB").await;
    assert_eq!(bought.reply.status, 202, "purchases are accepted: {}", bought.reply.body);
    let id = bought.reply.str("transaction_id").to_string();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let path = format!("/api/v1/activation/status/{id}/");
    assert_eq!(suite.api.get(&path, Some(&bought.token)).await.body["status"], "PENDING");
    let waiting = suite
        .database()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Postgres,
            "SELECT count(*) AS n FROM account_outbox WHERE published_at IS NULL",
        ))
        .await
        .expect("query")
        .expect("row");
    assert!(waiting.try_get::<i64>("", "n").expect("count") >= 1, "the job waits in the outbox");
    amqp.restore();
    assert_eq!(suite.settled(&bought.token, &id).await.body["status"], "SUCCESS", "the job flows once it returns");
    assert_eq!(suite.balance(&bought.token).await, bought.before - 500);
    suite.stop().await;
}
