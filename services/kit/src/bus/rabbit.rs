//! The RabbitMQ bus: a durable direct exchange, a durable quorum queue per
//! topic, persistent messages with publisher confirms, manual acks, bounded
//! prefetch, and delay queues that dead-letter back to the exchange.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, Delivery, Disposition, Handler};

impl From<lapin::Error> for BusError {
    fn from(err: lapin::Error) -> Self {
        BusError::Broker(err.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_tiers_are_powers_of_two_above_the_delay() {
        assert_eq!(delay_tier(Duration::from_millis(10)), 1024);
        assert_eq!(delay_tier(Duration::from_millis(1500)), 2048);
        assert_eq!(delay_tier(Duration::from_secs(60)), 65536);
    }
}
