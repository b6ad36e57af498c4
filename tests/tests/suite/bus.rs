//! The job bus itself, on both implementations: delayed delivery through
//! the delay queues, and redelivery of what a handler did not ack.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use offers_kit::bus::{Bus, Delivery, Disposition, Handler, MemoryBus, RabbitBus};
use offers_kit::config::BusSettings;
use offers_tests::backends::amqp_url;
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
    bus.publish("bus.test", b"requeue-me", None).await.expect("publish");
    let (payload, _, redelivered) = received.recv().await.expect("redelivered");
    assert_eq!((payload.as_slice(), redelivered), (b"requeue-me".as_slice(), true));

    let sent = Instant::now();
    bus.publish("bus.test", b"later", Some(Duration::from_millis(1500))).await.expect("publish delayed");
    bus.publish("bus.test", b"now", None).await.expect("publish");
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
