//! The job bus: RabbitMQ in production (durable quorum queues, publisher
//! confirms, manual acks, delay queues), an in-process queue for the
//! embedded mode. Delivery is at least once in both; handlers make the
//! effect exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable: {0}")]
    Broker(#[from] lapin::Error),
    #[error("message broker refused the message")]
    Nacked,
    #[error("message broker did not answer in time")]
    TimedOut,
}

/// One received job.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub payload: Vec<u8>,
    /// The broker handed this job out before without an ack.
    pub redelivered: bool,
}

/// What to do with a job once its handler is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// The effect is committed (or was already there): forget the job.
    Ack,
    /// Nothing was committed and it may work later: hand the job out again.
    Requeue,
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, delivery: Delivery) -> Disposition;
}

impl Delivery {
    /// The job as `T`; a payload that will never parse is logged and `None`
    /// (ack it: keeping it would loop forever).
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        match serde_json::from_slice(&self.payload) {
            Ok(job) => Some(job),
            Err(e) => {
                tracing::error!(error = %e, "dropping a malformed job");
                None
            }
        }
    }
}

/// A handler could not record its outcome and nothing is settled: the job
/// goes back, after a pause so an outage does not become a busy loop.
pub async fn requeue_later(error: &(dyn std::fmt::Display + Sync)) -> Disposition {
    tracing::warn!(error = %error, "job not done; requeueing");
    tokio::time::sleep(Duration::from_secs(1)).await;
    Disposition::Requeue
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes durably; returns only once the broker has taken the job.
    /// With a delay the job is delivered no sooner than that.
    async fn publish(&self, topic: &str, payload: &[u8], delay: Option<Duration>) -> Result<(), BusError>;
    /// Feeds `topic` to `handler` until `shutdown`, reconnecting as needed.
    async fn consume(&self, topic: &str, handler: Arc<dyn Handler>, shutdown: CancellationToken);
    async fn ping(&self) -> Result<(), BusError>;
}

pub type SharedBus = Arc<dyn Bus>;

pub async fn from_settings(settings: &crate::config::BusSettings) -> SharedBus {
    if settings.url == "memory://" {
        Arc::new(MemoryBus::new(settings.prefetch))
    } else {
        Arc::new(RabbitBus::new(&settings.url, &settings.prefix, settings.prefetch))
    }
}

/// Delay queues come in power-of-two tiers of milliseconds; a job waits in
/// the tier just above its delay with its own expiry, so a queue's head can
/// hold back the rest by at most half its tier.
fn delay_tier(delay: Duration) -> u64 {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1000);
    ms.checked_next_power_of_two().unwrap_or(1 << 62)
}

pub struct RabbitBus {
    url: String,
    prefix: String,
    prefetch: u16,
    state: Mutex<Option<RabbitState>>,
}

struct RabbitState {
    connection: Connection,
    publisher: Channel,
    declared: HashSet<String>,
}

impl RabbitBus {
    pub fn new(url: &str, prefix: &str, prefetch: u16) -> Self {
        Self { url: url.into(), prefix: prefix.into(), prefetch, state: Mutex::new(None) }
    }

    fn exchange(&self) -> String {
        self.prefix.clone()
    }

    fn queue(&self, topic: &str) -> String {
        format!("{}.{topic}", self.prefix)
    }

    fn delay_queue(&self, topic: &str, tier: u64) -> String {
        format!("{}.{topic}.delay.{tier}", self.prefix)
    }

    async fn connect(&self) -> Result<Connection, BusError> {
        Ok(Connection::connect(&self.url, ConnectionProperties::default()).await?)
    }

    /// The live publishing state, reconnecting first if the last one died.
    async fn with_state<R>(&self, f: impl AsyncFnOnce(&mut RabbitState) -> Result<R, BusError>) -> Result<R, BusError> {
        let mut guard = self.state.lock().await;
        let alive =
            guard.as_ref().is_some_and(|s| s.connection.status().connected() && s.publisher.status().connected());
        if !alive {
            let connection = self.connect().await?;
            let publisher = connection.create_channel().await?;
            publisher.confirm_select(ConfirmSelectOptions::default()).await?;
            self.declare_exchange(&publisher).await?;
            *guard = Some(RabbitState { connection, publisher, declared: HashSet::new() });
        }
        let state = guard.as_mut().ok_or(BusError::Nacked)?;
        let result = f(state).await;
        if result.is_err() {
            // A failed channel is useless; the next call starts afresh.
            *guard = None;
        }
        result
    }

    async fn declare_exchange(&self, channel: &Channel) -> Result<(), BusError> {
        let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel.exchange_declare(self.exchange().into(), ExchangeKind::Direct, options, FieldTable::default()).await?;
        Ok(())
    }

    async fn declare_topic(&self, channel: &Channel, topic: &str) -> Result<(), BusError> {
        let queue = self.queue(topic);
        channel.queue_declare(queue.clone().into(), durable(), quorum()).await?;
        channel
            .queue_bind(
                queue.into(),
                self.exchange().into(),
                topic.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(())
    }

    async fn declare_delay(&self, channel: &Channel, topic: &str, tier: u64) -> Result<String, BusError> {
        let name = self.delay_queue(topic, tier);
        let mut args = quorum();
        args.insert("x-dead-letter-exchange".into(), text(&self.exchange()));
        args.insert("x-dead-letter-routing-key".into(), text(topic));
        // Quorum queues dead-letter at least once only with reject-publish overflow.
        args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
        args.insert("x-overflow".into(), text("reject-publish"));
        channel.queue_declare(name.clone().into(), durable(), args).await?;
        Ok(name)
    }

    /// Deletes the exchange and every queue under this bus's prefix that it
    /// declared (tests use a prefix each).
    pub async fn delete_topology(&self, topics: &[&str], tiers: &[u64]) -> Result<(), BusError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        for topic in topics {
            channel.queue_delete(self.queue(topic).into(), QueueDeleteOptions::default()).await?;
            for &tier in tiers {
                channel.queue_delete(self.delay_queue(topic, tier).into(), QueueDeleteOptions::default()).await?;
            }
        }
        channel.exchange_delete(self.exchange().into(), Default::default()).await?;
        connection.close(0, "done".into()).await?;
        Ok(())
    }

    async fn consume_once(
        &self,
        topic: &str,
        handler: &Arc<dyn Handler>,
        shutdown: &CancellationToken,
    ) -> Result<(), BusError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        self.declare_exchange(&channel).await?;
        self.declare_topic(&channel, topic).await?;
        channel.basic_qos(self.prefetch, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                self.queue(topic).into(),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(topic, "consuming");
        // Handlers run in a set owned by this call: if the consumer is
        // aborted, so are they, and their unacked jobs go back to the queue
        // with the connection.
        let mut handlers = tokio::task::JoinSet::new();
        let limit = usize::from(self.prefetch);
        loop {
            while handlers.len() >= limit {
                handlers.join_next().await;
            }
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                next = consumer.next() => next,
            };
            let Some(delivery) = next else { break };
            let delivery = delivery?;
            let handler = handler.clone();
            handlers.spawn(async move {
                let job = Delivery { payload: delivery.data.clone(), redelivered: delivery.redelivered };
                let outcome = match handler.handle(job).await {
                    Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
                    Disposition::Requeue => {
                        delivery.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await
                    }
                };
                if let Err(e) = outcome {
                    // The broker will hand the job out again; the handler is idempotent.
                    tracing::warn!(error = %e, "could not settle a delivery");
                }
            });
            while handlers.try_join_next().is_some() {}
        }
        // Let running handlers finish before the channel goes away.
        while handlers.join_next().await.is_some() {}
        let _ = connection.close(0, "shutdown".into()).await;
        Ok(())
    }
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn quorum() -> FieldTable {
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), text("quorum"));
    args
}

/// How long a publish (with its confirm) may take before the broker counts
/// as unavailable: a blocked broker (memory or disk alarm) would otherwise
/// hold the publisher, and the outbox relay behind it, forever.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

#[async_trait]
impl Bus for RabbitBus {
    async fn publish(&self, topic: &str, payload: &[u8], delay: Option<Duration>) -> Result<(), BusError> {
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_confirmed(topic, payload, delay)).await {
            Ok(result) => result,
            Err(_) => {
                // The channel may be wedged; start afresh next time.
                *self.state.lock().await = None;
                Err(BusError::TimedOut)
            }
        }
    }

    async fn consume(&self, topic: &str, handler: Arc<dyn Handler>, shutdown: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        while !shutdown.is_cancelled() {
            match self.consume_once(topic, &handler, &shutdown).await {
                Ok(()) => backoff = Duration::from_millis(200),
                Err(e) => {
                    tracing::warn!(topic, error = %e, retry_in_ms = backoff.as_millis() as u64, "consumer lost the broker");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    async fn ping(&self) -> Result<(), BusError> {
        tokio::time::timeout(PUBLISH_TIMEOUT, self.with_state(async |_| Ok(())))
            .await
            .map_err(|_| BusError::TimedOut)?
    }
}

impl RabbitBus {
    async fn publish_confirmed(&self, topic: &str, payload: &[u8], delay: Option<Duration>) -> Result<(), BusError> {
        self.with_state(async |state| {
            let (exchange, routing_key, properties) = match delay {
                None => {
                    if state.declared.insert(topic.to_string()) {
                        self.declare_topic(&state.publisher, topic).await?;
                    }
                    (self.exchange(), topic.to_string(), BasicProperties::default())
                }
                Some(delay) => {
                    let tier = delay_tier(delay);
                    if state.declared.insert(topic.to_string()) {
                        self.declare_topic(&state.publisher, topic).await?;
                    }
                    let queue = self.declare_delay(&state.publisher, topic, tier).await?;
                    let expiration = delay.as_millis().max(1).to_string();
                    (String::new(), queue, BasicProperties::default().with_expiration(expiration.into()))
                }
            };
            let confirm = state
                .publisher
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    payload,
                    properties.with_delivery_mode(2),
                )
                .await?
                .await?;
            if confirm.is_ack() && confirm.take_message().is_none() { Ok(()) } else { Err(BusError::Nacked) }
        })
        .await
    }
}

struct Job {
    payload: Vec<u8>,
    redelivered: bool,
}

type Queue = (mpsc::UnboundedSender<Job>, Arc<Mutex<mpsc::UnboundedReceiver<Job>>>);

/// The embedded-mode bus: one process, so queues are channels. A job whose
/// handler is dropped before it answers (a crash, a shutdown) goes back on
/// its queue, as RabbitMQ does when a consumer dies.
pub struct MemoryBus {
    prefetch: u16,
    queues: StdMutex<HashMap<String, Queue>>,
}

impl MemoryBus {
    pub fn new(prefetch: u16) -> Self {
        Self { prefetch, queues: StdMutex::new(HashMap::new()) }
    }

    fn queue(&self, topic: &str) -> Queue {
        let mut queues = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        queues
            .entry(topic.to_string())
            .or_insert_with(|| {
                let (tx, rx) = mpsc::unbounded_channel();
                (tx, Arc::new(Mutex::new(rx)))
            })
            .clone()
    }
}

/// Puts a job back unless it was settled.
struct Requeue {
    job: Option<Job>,
    queue: mpsc::UnboundedSender<Job>,
}

impl Drop for Requeue {
    fn drop(&mut self) {
        if let Some(mut job) = self.job.take() {
            job.redelivered = true;
            let _ = self.queue.send(job);
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, topic: &str, payload: &[u8], delay: Option<Duration>) -> Result<(), BusError> {
        let (tx, _) = self.queue(topic);
        let job = Job { payload: payload.to_vec(), redelivered: false };
        match delay {
            None => {
                let _ = tx.send(job);
            }
            Some(delay) => {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = tx.send(job);
                });
            }
        }
        Ok(())
    }

    async fn consume(&self, topic: &str, handler: Arc<dyn Handler>, shutdown: CancellationToken) {
        let (tx, rx) = self.queue(topic);
        let in_flight = Arc::new(Semaphore::new(usize::from(self.prefetch)));
        let mut running = tokio::task::JoinSet::new();
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let job = tokio::select! {
                () = shutdown.cancelled() => break,
                job = async { rx.lock().await.recv().await } => job,
            };
            let Some(job) = job else { break };
            let handler = handler.clone();
            let mut guard = Requeue { job: Some(job), queue: tx.clone() };
            let stop = shutdown.clone();
            running.spawn(async move {
                let delivery =
                    guard.job.as_ref().map(|j| Delivery { payload: j.payload.clone(), redelivered: j.redelivered });
                let Some(delivery) = delivery else { return };
                tokio::select! {
                    // Dropping the guard unsettled hands the job out again.
                    () = stop.cancelled() => {}
                    outcome = handler.handle(delivery) => {
                        if outcome == Disposition::Ack {
                            guard.job = None;
                        }
                    }
                }
                drop(guard);
                drop(permit);
            });
            while running.try_join_next().is_some() {}
        }
        running.shutdown().await;
    }

    async fn ping(&self) -> Result<(), BusError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    struct FailOnce {
        seen: AtomicUsize,
        done: mpsc::UnboundedSender<(Vec<u8>, bool)>,
    }

    #[async_trait]
    impl Handler for FailOnce {
        async fn handle(&self, delivery: Delivery) -> Disposition {
            if self.seen.fetch_add(1, Ordering::SeqCst) == 0 {
                return Disposition::Requeue;
            }
            let _ = self.done.send((delivery.payload, delivery.redelivered));
            Disposition::Ack
        }
    }

    #[tokio::test]
    async fn memory_bus_redelivers_what_was_not_acked() {
        let bus = Arc::new(MemoryBus::new(4));
        let (done, mut finished) = mpsc::unbounded_channel();
        let shutdown = CancellationToken::new();
        let handler = Arc::new(FailOnce { seen: AtomicUsize::new(0), done });
        let consumer = tokio::spawn({
            let bus = bus.clone();
            let shutdown = shutdown.clone();
            async move { bus.consume("t", handler, shutdown).await }
        });
        bus.publish("t", b"job", Some(Duration::from_millis(10))).await.expect("publish");
        assert_eq!(finished.recv().await, Some((b"job".to_vec(), true)));
        shutdown.cancel();
        consumer.await.expect("consumer");
    }

    #[test]
    fn delay_tiers_are_powers_of_two_above_the_delay() {
        assert_eq!(delay_tier(Duration::from_millis(10)), 1024);
        assert_eq!(delay_tier(Duration::from_millis(1500)), 2048);
        assert_eq!(delay_tier(Duration::from_secs(60)), 65536);
    }
}
