//! The outbox relay past a job the broker refuses: the jobs behind it go
//! out, and it waits for a later try. Only RabbitMQ refuses single jobs
//! (the in-process bus takes everything), so this runs on the real backends.

use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, LongString};
use offers_kit::outbox::Outbox;
use offers_tests::backends::amqp_url;
use offers_tests::{Backend, TestSuite};
use sea_orm::sea_query::{Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection};

/// (published, attempts) of the account outbox's row of `topic`.
async fn state(db: &DatabaseConnection, topic: &str) -> (bool, i32) {
    let select = Query::select()
        .columns(["published_at", "attempts"])
        .from("account_outbox")
        .and_where(Expr::col("topic").eq(topic))
        .to_owned();
    let row = db.query_one(&select).await.expect("query").expect("the row");
    let published: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "published_at").expect("published_at");
    (published.is_some(), row.try_get("", "attempts").expect("attempts"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_outbox_goes_on_past_a_refused_job() {
    let Some(suite) = TestSuite::spawn(Backend::Real).await else { return };
    // A queue as an older version declared it (no delivery limit): RabbitMQ
    // refuses to declare it again with ours, so its jobs cannot be published.
    let (refused, fine) = ("test.misdeclared", "test.outbox");
    let amqp = lapin::Connection::connect(&amqp_url(), Default::default()).await.expect("amqp");
    let channel = amqp.create_channel().await.expect("channel");
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
    let options = QueueDeclareOptions { durable: true, ..Default::default() };
    let queue = format!("{}.{refused}", suite.settings.bus.prefix);
    channel.queue_declare(queue.into(), options, args).await.expect("declare the old queue");

    let db = suite.database();
    let outbox = Outbox::new("account_outbox");
    let now = chrono::Utc::now();
    outbox.enqueue(db, refused, &serde_json::json!({"job": "refused"}), now).await.expect("enqueue");
    outbox.enqueue(db, fine, &serde_json::json!({"job": "behind it"}), now).await.expect("enqueue");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !state(db, fine).await.0 {
        assert!(tokio::time::Instant::now() < deadline, "the job behind the refused one was not published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (published, attempts) = state(db, refused).await;
    assert!(!published && attempts >= 1, "the refused job waits for a later try: {published} {attempts}");

    amqp.close(0, "done".into()).await.ok();
    suite.stop().await;
}

/// Jobs enough for several batches, some held back by a delay queue, all
/// in flight to RabbitMQ at once: each reaches the queue once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_outbox_publishes_batches_each_job_once() {
    let Some(suite) = TestSuite::spawn(Backend::Real).await else { return };
    let topic = "test.batch";
    let db = suite.database();
    let outbox = Outbox::new("account_outbox");
    let now = chrono::Utc::now();
    const JOBS: usize = 250;
    for n in 0..JOBS {
        let at = if n % 10 == 0 { now + chrono::Duration::seconds(1) } else { now };
        outbox.enqueue(db, topic, &n, at).await.expect("enqueue");
    }

    let unpublished = Query::select()
        .expr(Expr::col("id").count())
        .from("account_outbox")
        .and_where(Expr::col("topic").eq(topic))
        .and_where(Expr::col("published_at").is_null())
        .to_owned();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let row = db.query_one(&unpublished).await.expect("count").expect("a row");
        let left: i64 = row.try_get_by_index(0).expect("count");
        if left == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{left} of {JOBS} jobs still unpublished");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Published, they are in the queue, or on their way from the delay queue.
    let amqp = lapin::Connection::connect(&amqp_url(), Default::default()).await.expect("amqp");
    let channel = amqp.create_channel().await.expect("channel");
    let queue = format!("{}.{topic}", suite.settings.bus.prefix);
    let mut seen = std::collections::BTreeMap::<usize, u32>::new();
    let mut quiet_since = tokio::time::Instant::now();
    // Past the last job, a while longer, so a duplicate would show.
    while seen.len() < JOBS || quiet_since.elapsed() < Duration::from_secs(2) {
        assert!(tokio::time::Instant::now() < deadline, "{} of {JOBS} jobs arrived", seen.len());
        let get = lapin::options::BasicGetOptions { no_ack: true };
        match channel.basic_get(queue.as_str().into(), get).await.expect("basic.get") {
            Some(message) => {
                let n: usize = serde_json::from_slice(&message.delivery.data).expect("a job");
                *seen.entry(n).or_default() += 1;
                quiet_since = tokio::time::Instant::now();
            }
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    assert!(seen.values().all(|&times| times == 1), "some job arrived twice: {seen:?}");
    assert_eq!(seen.keys().copied().collect::<Vec<_>>(), (0..JOBS).collect::<Vec<_>>());

    amqp.close(0, "done".into()).await.ok();
    suite.stop().await;
}
