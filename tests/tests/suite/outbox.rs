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
