//! The job bus itself, on both implementations: delayed delivery through
//! the delay queues, redelivery of what a handler did not ack, and jobs
//! parked past the delivery limit, listed and replayed by an operator.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use offers_kit::bus::{Bus, Delivery, Disposition, Handler, MemoryBus, Outgoing, RabbitBus};
use offers_kit::config::BusSettings;
use offers_kit::{Error, ErrorCode};
use offers_proto::jobs::v1::ParkedTopic;
use offers_tests::backends::{TEST_TOPICS, amqp_url};
use offers_tests::{Backend, TestSuite, each_backend};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

struct Collect {
    seen: AtomicUsize,
    out: mpsc::UnboundedSender<(Vec<u8>, Instant, bool)>,
}

#[async_trait]
impl Handler for Collect {
    async fn handle(&self, delivery: Delivery) -> Disposition {
        // The very first delivery is refused once, to see it come back.
        if self.seen.fetch_add(1, Ordering::SeqCst) == 0 && delivery.payload == b"requeue-me" {
            return Disposition::Requeue;
        }
        let _ = self.out.send((delivery.payload, Instant::now(), delivery.redelivered));
        Disposition::Ack
    }
}

async fn delays_and_redelivery(bus: Arc<dyn Bus>) {
    let (out, mut received) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let handler = Arc::new(Collect { seen: AtomicUsize::new(0), out });
    let consumer = tokio::spawn({
        let (bus, stop) = (bus.clone(), stop.clone());
        async move { bus.consume("bus.test", handler, stop).await }
    });
    bus.publish("bus.test", Outgoing::new(b"requeue-me", &Default::default())).await.expect("publish");
    let (payload, _, redelivered) = received.recv().await.expect("redelivered");
    assert_eq!((payload.as_slice(), redelivered), (b"requeue-me".as_slice(), true));

    let sent = Instant::now();
    bus.publish("bus.test", Outgoing::new(b"later", &Default::default()).after(Duration::from_millis(1500)))
        .await
        .expect("publish delayed");
    bus.publish("bus.test", Outgoing::new(b"now", &Default::default())).await.expect("publish");
    let (first, _, _) = received.recv().await.expect("now");
    assert_eq!(first, b"now");
    let (second, at, _) =
        tokio::time::timeout(Duration::from_secs(10), received.recv()).await.expect("in time").expect("later");
    assert_eq!(second, b"later");
    let waited = at - sent;
    assert!(waited >= Duration::from_millis(1400) && waited < Duration::from_secs(6), "delivered after {waited:?}");
    stop.cancel();
    consumer.await.expect("consumer");
}

#[tokio::test]
async fn memory_bus_delays_and_redelivers() {
    delays_and_redelivery(Arc::new(MemoryBus::new(&BusSettings { prefetch: 4, ..Default::default() }))).await;
}

#[tokio::test]
async fn rabbitmq_delays_and_redelivers() {
    if offers_tests::backends::Resources::provision(offers_tests::Backend::Real).await.is_none() {
        return;
    }
    let prefix = format!("t{}", uuid::Uuid::new_v4().simple());
    let bus = Arc::new(RabbitBus::new(&BusSettings { url: amqp_url(), prefix, prefetch: 4, ..Default::default() }));
    delays_and_redelivery(bus.clone()).await;
    let tiers: Vec<u64> = (10..=20).map(|p| 1u64 << p).collect();
    bus.delete_topology(&["bus.test"], &tiers).await.expect("clean up");
}

/// Hands every job back until healed; then acks it and passes it on.
struct Poisoned {
    healed: AtomicBool,
    deliveries: AtomicUsize,
    done: mpsc::UnboundedSender<Vec<u8>>,
}

#[async_trait]
impl Handler for Poisoned {
    async fn handle(&self, delivery: Delivery) -> Disposition {
        self.deliveries.fetch_add(1, Ordering::SeqCst);
        if !self.healed.load(Ordering::SeqCst) {
            return Disposition::Requeue;
        }
        let _ = self.done.send(delivery.payload);
        Disposition::Ack
    }
}

/// What `offers admin jobs parked --topic` shows.
async fn parked(suite: &TestSuite, topic: &str) -> ParkedTopic {
    let mut listed = suite.admin().parked_jobs(Some(topic), 10).await.expect("list parked jobs");
    assert_eq!(listed.len(), 1, "{listed:?}");
    listed.remove(0)
}

async fn poison_jobs_are_parked_and_replayed(backend: Backend) {
    let Some(suite) = TestSuite::spawn_with(backend, |s| s.bus.delivery_limit = 3).await else { return };
    let topic = TEST_TOPICS[0];
    let (done, mut finished) = mpsc::unbounded_channel();
    let handler = Arc::new(Poisoned { healed: AtomicBool::new(false), deliveries: AtomicUsize::new(0), done });
    let stop = CancellationToken::new();
    let consumer = tokio::spawn({
        let (bus, handler, stop) = (suite.bus(), handler.clone(), stop.clone());
        async move { bus.consume(topic, handler, stop).await }
    });
    let job = br#"{"job":"poison"}"#;
    suite.bus().publish(topic, Outgoing::new(job, &Default::default())).await.expect("publish");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let shown = loop {
        let shown = parked(&suite, topic).await;
        if shown.total > 0 {
            break shown;
        }
        assert!(tokio::time::Instant::now() < deadline, "the job was not parked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(handler.deliveries.load(Ordering::SeqCst), 4, "the first delivery and one per allowed return");
    assert_eq!((shown.total, shown.jobs.len()), (1, 1));
    let parked_job = &shown.jobs[0];
    assert_eq!(parked_job.payload, job);
    assert_eq!(parked_job.reason, "delivery_limit");
    assert!(parked_job.park_time.is_some());
    if backend == Backend::Embedded {
        assert_eq!(parked_job.delivery_count, 4);
    }
    assert_eq!(parked(&suite, topic).await.total, 1, "looking leaves it parked");

    let mut admin = suite.admin();
    let every = admin.parked_jobs(None, 10).await.expect("list every topic");
    let topics: Vec<&str> = every.iter().map(|t| t.topic.as_str()).collect();
    assert_eq!(topics, offers::TOPICS);
    assert!(every.iter().all(|t| t.total == 0 && t.jobs.is_empty()), "{every:?}");
    let unknown = admin.parked_jobs(Some("no.such.topic"), 10).await.expect_err("no such topic");
    assert_eq!(unknown.downcast_ref::<Error>().map(|e| e.code), Some(ErrorCode::NotFound), "{unknown:#}");
    let bad = admin.replay_parked_jobs("Not A Topic", None).await.expect_err("not a topic name");
    assert_eq!(bad.downcast_ref::<Error>().map(|e| e.code), Some(ErrorCode::InvalidRequest), "{bad:#}");

    handler.healed.store(true, Ordering::SeqCst);
    assert_eq!(admin.replay_parked_jobs(topic, None).await.expect("replay"), 1);
    let replayed = tokio::time::timeout(Duration::from_secs(30), finished.recv()).await.expect("in time");
    assert_eq!(replayed.as_deref(), Some(job.as_slice()));
    assert_eq!(handler.deliveries.load(Ordering::SeqCst), 5, "replayed once, and done");
    assert_eq!(parked(&suite, topic).await.total, 0);
    assert_eq!(admin.replay_parked_jobs(topic, None).await.expect("replay nothing"), 0);
    let filter =
        offers_proto::audit::v1::ListAuditEntriesRequest { action: "jobs.replay".into(), ..Default::default() };
    let replays = admin.audit_entries(&filter, 10).await.expect("audit");
    let recorded: Vec<_> = replays.iter().map(|e| (e.target.as_str(), e.detail.as_str())).collect();
    assert_eq!(recorded, [(format!("topic:{topic}").as_str(), "replayed=1")], "the empty replay is no act");

    stop.cancel();
    consumer.await.expect("consumer");
    suite.stop().await;
}

each_backend!(poison_jobs_are_parked_and_replayed);
