//! The RabbitMQ bus: a durable direct exchange, a durable quorum queue per
//! topic with an explicit delivery limit, past which a job is dead-lettered
//! (at least once) to the topic's parking queue, persistent messages with
//! publisher confirms, manual acks, bounded prefetch, and delay queues that
//! dead-letter back to the exchange.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::DateTime;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind, ExchangeKind};
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

use super::{Bus, BusError, Delivery, Disposition, Handler, Outgoing, Parked, ParkedJob, handle_in_trace, observe};
use crate::config::BusSettings;
use crate::trace::Carrier;

impl From<lapin::Error> for BusError {
    fn from(err: lapin::Error) -> Self {
        // A channel-level error is about the job or queue in hand; anything
        // else (the connection, the network) is about the broker.
        match amqp_error(&err) {
            Some(AMQPErrorKind::Soft(_)) => BusError::Refused(err.to_string()),
            _ => BusError::Broker(err.to_string()),
        }
    }
}

/// Delay queues come in power-of-two tiers of milliseconds; a job waits in
/// the tier just above its delay with its own expiry, so a queue's head can
/// hold back the rest by at most half its tier.
fn delay_tier(delay: Duration) -> u64 {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX).max(1000);
    ms.checked_next_power_of_two().unwrap_or(1 << 62)
}

/// The parking queues' own delivery limit: listing parked jobs hands them
/// back to their queue, which counts as a delivery, and a parked job must
/// outlive any number of looks. Not `-1`: that means "no limit" on
/// RabbitMQ 4 but drops a returned message at once on RabbitMQ 3.
const PARKED_DELIVERY_LIMIT: i64 = 1_000_000;

/// How often a consumer reads its topic's queue depths for the gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(15);

pub struct RabbitBus {
    url: String,
    prefix: String,
    prefetch: u16,
    delivery_limit: u32,
    state: Mutex<Option<RabbitState>>,
}

struct RabbitState {
    connection: Connection,
    publisher: Channel,
    declared: HashSet<String>,
}

impl RabbitBus {
    pub fn new(settings: &BusSettings) -> Self {
        Self {
            url: settings.url.clone(),
            prefix: settings.prefix.clone(),
            prefetch: settings.prefetch,
            delivery_limit: settings.delivery_limit,
            state: Mutex::new(None),
        }
    }

    fn exchange(&self) -> String {
        self.prefix.clone()
    }

    fn parking_exchange(&self) -> String {
        format!("{}.parked", self.prefix)
    }

    fn queue(&self, topic: &str) -> String {
        format!("{}.{topic}", self.prefix)
    }

    fn parking_queue(&self, topic: &str) -> String {
        format!("{}.{topic}.parked", self.prefix)
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

    /// The topic's queue, bound to the exchange, and its parking queue,
    /// bound to the parking exchange, where the queue dead-letters a job
    /// handed back more than `delivery_limit` times.
    async fn declare_topic(&self, channel: &Channel, topic: &str) -> Result<(), BusError> {
        let options = ExchangeDeclareOptions { durable: true, ..Default::default() };
        channel
            .exchange_declare(self.parking_exchange().into(), ExchangeKind::Direct, options, FieldTable::default())
            .await?;
        let parking = self.parking_queue(topic);
        let mut args = quorum();
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(PARKED_DELIVERY_LIMIT));
        channel.queue_declare(parking.clone().into(), durable(), args).await?;
        bind(channel, &parking, &self.parking_exchange(), topic).await?;

        let queue = self.queue(topic);
        let mut args = dead_letter_to(&self.parking_exchange(), topic);
        args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(i64::from(self.delivery_limit)));
        channel
            .queue_declare(queue.clone().into(), durable(), args)
            .await
            .map_err(|e| declared_otherwise(&queue, e))?;
        bind(channel, &queue, &self.exchange(), topic).await
    }

    async fn declare_delay(&self, channel: &Channel, queue: &str, topic: &str) -> Result<(), BusError> {
        channel.queue_declare(queue.into(), durable(), dead_letter_to(&self.exchange(), topic)).await?;
        Ok(())
    }

    /// Deletes the exchanges and every queue under this bus's prefix that it
    /// declared (tests use a prefix each).
    pub async fn delete_topology(&self, topics: &[&str], tiers: &[u64]) -> Result<(), BusError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        for topic in topics {
            let delays = tiers.iter().map(|&tier| self.delay_queue(topic, tier));
            for queue in [self.queue(topic), self.parking_queue(topic)].into_iter().chain(delays) {
                channel.queue_delete(queue.into(), QueueDeleteOptions::default()).await?;
            }
        }
        for exchange in [self.exchange(), self.parking_exchange()] {
            channel.exchange_delete(exchange.into(), Default::default()).await?;
        }
        connection.close(0, "done".into()).await?;
        Ok(())
    }

    /// Sets the depth gauges from the broker's counts (a passive declare
    /// answers with the messages ready in a queue).
    async fn refresh_gauges(&self, connection: &Connection, topic: &str) {
        let counts = async {
            let channel = connection.create_channel().await?;
            let ready = channel.queue_declare(self.queue(topic).into(), passive(), FieldTable::default()).await?;
            let parked =
                channel.queue_declare(self.parking_queue(topic).into(), passive(), FieldTable::default()).await?;
            channel.close(200, "counted".into()).await?;
            Ok::<_, lapin::Error>((ready.message_count(), parked.message_count()))
        };
        match counts.await {
            Ok((ready, parked)) => observe::depths(topic, ready.into(), parked.into()),
            Err(e) => tracing::debug!(topic, error = %e, "could not read the queue depths"),
        }
    }

    /// How many jobs the topic's parking queue holds, on `channel`; a topic
    /// nobody declared has none.
    async fn parked_count(&self, channel: &Channel, topic: &str) -> Result<u32, BusError> {
        match channel.queue_declare(self.parking_queue(topic).into(), passive(), FieldTable::default()).await {
            Ok(queue) => Ok(queue.message_count()),
            Err(e) if is_not_found(&e) => Err(BusError::NoSuchTopic(topic.to_string())),
            Err(e) => Err(e.into()),
        }
    }

    async fn peek_parked(&self, connection: &Connection, topic: &str, max: usize) -> Result<Parked, BusError> {
        let channel = connection.create_channel().await?;
        let total = self.parked_count(&channel, topic).await?;
        let mut jobs = Vec::new();
        while jobs.len() < max {
            let Some(message) = channel.basic_get(self.parking_queue(topic).into(), BasicGetOptions::default()).await?
            else {
                break;
            };
            jobs.push(parked_job(&message.delivery));
        }
        // Unacked, so closing the channel puts every one back, in order.
        channel.close(200, "listed".into()).await?;
        Ok(Parked { total: total.into(), jobs })
    }

    async fn move_parked(&self, connection: &Connection, topic: &str, max: usize) -> Result<usize, BusError> {
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        // Only what is parked now: a job that fails again is parked again
        // behind these, and must not come round in this same replay.
        let budget = max.min(usize::try_from(self.parked_count(&channel, topic).await?).unwrap_or(usize::MAX));
        self.declare_topic(&channel, topic).await?;
        let mut moved = 0;
        while moved < budget {
            let Some(message) = channel.basic_get(self.parking_queue(topic).into(), BasicGetOptions::default()).await?
            else {
                break;
            };
            let delivery = message.delivery;
            let publish = async {
                let confirm = channel
                    .basic_publish(
                        self.exchange().into(),
                        topic.into(),
                        BasicPublishOptions { mandatory: true, ..Default::default() },
                        &delivery.data,
                        replayed_properties(&delivery.properties),
                    )
                    .await?
                    .await?;
                Ok::<_, lapin::Error>(confirm.is_ack() && confirm.take_message().is_none())
            };
            match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
                Ok(Ok(true)) => delivery.acker.ack(BasicAckOptions::default()).await.map(drop)?,
                // Unacked, it goes back to the parking queue with the channel.
                Ok(Ok(false)) => return Err(BusError::Nacked),
                Ok(Err(e)) => return Err(e.into()),
                Err(_) => return Err(BusError::TimedOut),
            }
            moved += 1;
        }
        channel.close(200, "replayed".into()).await?;
        Ok(moved)
    }

    /// Runs `work` on a connection of its own (operator tools: they must
    /// not hold up the publisher), closing it afterwards.
    async fn on_own_connection<R>(
        &self,
        work: impl AsyncFnOnce(&Connection) -> Result<R, BusError>,
    ) -> Result<R, BusError> {
        let connection = self.connect().await?;
        let result = work(&connection).await;
        let _ = connection.close(0, "done".into()).await;
        result
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
        let in_flight = usize::from(self.prefetch);
        let mut gauges = tokio::time::interval(GAUGES_EVERY);
        loop {
            while handlers.len() >= in_flight {
                handlers.join_next().await;
            }
            let next = tokio::select! {
                () = shutdown.cancelled() => break,
                _ = gauges.tick() => {
                    self.refresh_gauges(&connection, topic).await;
                    continue;
                }
                next = consumer.next() => next,
            };
            let Some(delivery) = next else { break };
            let delivery = delivery?;
            observe::received(topic, delivery.redelivered);
            let handler = handler.clone();
            let topic = topic.to_string();
            let delivery_limit = u64::from(self.delivery_limit);
            handlers.spawn(async move {
                let trace = carrier(&delivery.properties);
                let job = Delivery { payload: delivery.data.clone(), redelivered: delivery.redelivered, trace };
                let disposition = handle_in_trace(handler.as_ref(), &topic, job).await;
                observe::settled(&topic, disposition);
                let outcome = match disposition {
                    Disposition::Ack => delivery.acker.ack(BasicAckOptions::default()).await,
                    Disposition::Requeue => {
                        // Handed back this often already, the broker parks it now.
                        if delivery_count(&delivery.properties) >= delivery_limit {
                            observe::parked(&topic);
                            tracing::warn!(topic, "job parked past the delivery limit");
                        }
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

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions { passive: true, ..Default::default() }
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, routing_key: &str) -> Result<(), BusError> {
    let options = QueueBindOptions::default();
    channel.queue_bind(queue.into(), exchange.into(), routing_key.into(), options, FieldTable::default()).await?;
    Ok(())
}

/// A quorum queue that dead-letters to `exchange` under `routing_key`.
fn dead_letter_to(exchange: &str, routing_key: &str) -> FieldTable {
    let mut args = quorum();
    args.insert("x-dead-letter-exchange".into(), text(exchange));
    args.insert("x-dead-letter-routing-key".into(), text(routing_key));
    // Quorum queues dead-letter at least once only with reject-publish overflow.
    args.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    args.insert("x-overflow".into(), text("reject-publish"));
    args
}

/// RabbitMQ refuses to declare a queue again with other arguments; say
/// what to do about it rather than only that it failed.
fn declared_otherwise(queue: &str, err: lapin::Error) -> BusError {
    match amqp_error(&err) {
        Some(AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)) => BusError::Refused(format!(
            "{err} — queue {queue} exists with other arguments (declared by an older version, or with another \
             bus.delivery_limit); see \"Queues declared with other arguments\" in docs/runbooks.md"
        )),
        _ => err.into(),
    }
}

fn amqp_error(err: &lapin::Error) -> Option<&AMQPErrorKind> {
    match err.kind() {
        ErrorKind::ProtocolError(amqp) => Some(amqp.kind()),
        _ => None,
    }
}

fn is_not_found(err: &lapin::Error) -> bool {
    matches!(amqp_error(err), Some(AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND)))
}

/// The trace context as message headers.
fn trace_headers(trace: &Carrier) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in trace {
        table.insert(key.as_str().into(), text(value));
    }
    table
}

/// The trace context a message carries in its headers.
fn carrier(properties: &BasicProperties) -> Carrier {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|name| match header(properties, name)? {
            AMQPValue::LongString(value) => Some((name.to_string(), String::from_utf8_lossy(value.as_bytes()).into())),
            _ => None,
        })
        .collect()
}

fn header<'a>(properties: &'a BasicProperties, name: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(name)
}

/// How often the broker has had this job handed back (quorum queues say so
/// in `x-delivery-count`; absent on a first delivery).
fn delivery_count(properties: &BasicProperties) -> u64 {
    match header(properties, "x-delivery-count") {
        Some(AMQPValue::LongLongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongInt(n)) => u64::try_from(*n).unwrap_or(0),
        Some(AMQPValue::LongUInt(n)) => u64::from(*n),
        _ => 0,
    }
}

/// A parked message as the operator sees it: why and when it was parked
/// come from its latest `x-death` entry (the first one).
fn parked_job(delivery: &lapin::message::Delivery) -> ParkedJob {
    let death = header(&delivery.properties, "x-death")
        .and_then(AMQPValue::as_array)
        .and_then(|deaths| deaths.as_slice().first())
        .and_then(AMQPValue::as_field_table)
        .map(|death| death.inner());
    let reason = death
        .and_then(|d| d.get("reason"))
        .and_then(AMQPValue::as_long_string)
        .map(|r| String::from_utf8_lossy(r.as_bytes()).into_owned());
    let parked_at = death
        .and_then(|d| d.get("time"))
        .and_then(AMQPValue::as_timestamp)
        .and_then(|secs| DateTime::from_timestamp(i64::try_from(secs).ok()?, 0));
    // The broker counts this queue's returns, not the deliveries before parking.
    ParkedJob { payload: delivery.data.clone(), deliveries: None, reason, parked_at }
}

/// A replayed job as it was first published: persistent, with its own
/// headers but not the broker's dead-lettering record.
fn replayed_properties(parked: &BasicProperties) -> BasicProperties {
    let own: BTreeMap<_, _> = parked
        .headers()
        .iter()
        .flat_map(|headers| headers.inner())
        .filter(|(name, _)| !is_dead_letter_record(name.as_str()))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    BasicProperties::default().with_delivery_mode(2).with_headers(own.into())
}

fn is_dead_letter_record(header: &str) -> bool {
    header == "x-delivery-count"
        || header == "x-death"
        || header.starts_with("x-first-death-")
        || header.starts_with("x-last-death-")
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
    async fn publish(&self, topic: &str, job: Outgoing<'_>) -> Result<(), BusError> {
        self.publish_all(&[(topic, job)]).await.pop().unwrap_or(Err(BusError::Nacked))
    }

    async fn publish_all(&self, jobs: &[(&str, Outgoing<'_>)]) -> Vec<Result<(), BusError>> {
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.publish_confirmed(jobs)).await {
            Ok(answers) => {
                for ((topic, _), answer) in jobs.iter().zip(&answers) {
                    if answer.is_ok() {
                        observe::published(topic);
                    }
                }
                answers
            }
            Err(_) => {
                // The channel may be wedged; start afresh next time.
                *self.state.lock().await = None;
                vec![Err(BusError::TimedOut)]
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

    async fn parked(&self, topic: &str, max: usize) -> Result<Parked, BusError> {
        self.on_own_connection(async |connection| self.peek_parked(connection, topic, max).await).await
    }

    async fn replay(&self, topic: &str, max: usize) -> Result<usize, BusError> {
        self.on_own_connection(async |connection| self.move_parked(connection, topic, max).await).await
    }
}

impl RabbitBus {
    /// Publishes every job before waiting for any confirm, so a batch costs
    /// the broker's confirm latency once rather than once per job.
    async fn publish_confirmed(&self, jobs: &[(&str, Outgoing<'_>)]) -> Vec<Result<(), BusError>> {
        let mut answers: Vec<Option<Result<(), BusError>>> = jobs.iter().map(|_| None).collect();
        // Routes are declared first, each on its own: a refused declaration
        // closes the channel, and with it the confirms of whatever went out
        // on it. A route refused once is not asked about again in the batch.
        let mut refusals: HashMap<(&str, Option<u64>), String> = HashMap::new();
        for (answer, (topic, job)) in answers.iter_mut().zip(jobs) {
            let key = (*topic, job.delay.map(delay_tier));
            if let Some(why) = refusals.get(&key) {
                *answer = Some(Err(BusError::Refused(why.clone())));
                continue;
            }
            match self.with_state(async |state| self.route(state, topic, job.delay).await.map(drop)).await {
                Ok(()) => {}
                Err(BusError::Refused(why)) => {
                    refusals.insert(key, why.clone());
                    *answer = Some(Err(BusError::Refused(why)));
                }
                // Nothing went out yet: the outage is the first answer.
                Err(e) => return vec![Err(e)],
            }
        }

        let mut confirms = Vec::with_capacity(jobs.len());
        let sent = self
            .with_state(async |state| {
                for (index, (topic, job)) in jobs.iter().enumerate() {
                    if answers[index].is_some() {
                        continue;
                    }
                    let (exchange, routing_key, properties) = self.route(state, topic, job.delay).await?;
                    let confirm = state
                        .publisher
                        .basic_publish(
                            exchange.into(),
                            routing_key.into(),
                            BasicPublishOptions { mandatory: true, ..Default::default() },
                            job.payload,
                            properties.with_delivery_mode(2).with_headers(trace_headers(job.trace)),
                        )
                        .await?;
                    confirms.push((index, confirm));
                }
                Ok(())
            })
            .await;
        // The confirms are awaited without the publishing state, which
        // others may use meanwhile.
        let mut unroutable = false;
        for (index, confirm) in confirms {
            answers[index] = Some(match confirm.await {
                Ok(Confirmation::Ack(None)) => Ok(()),
                Ok(_) => {
                    unroutable = true;
                    Err(BusError::Nacked)
                }
                Err(e) => Err(e.into()),
            });
        }
        if unroutable {
            // A queue may have gone since it was declared: declare afresh.
            *self.state.lock().await = None;
        }
        if let (Err(e), Some(first_unsent)) = (sent, answers.iter_mut().find(|a| a.is_none())) {
            *first_unsent = Some(Err(e));
        }
        let mut answered = Vec::with_capacity(jobs.len());
        for answer in answers.into_iter().map_while(|a| a) {
            let outage = answer.as_ref().is_err_and(BusError::is_outage);
            answered.push(answer);
            if outage {
                break;
            }
        }
        answered
    }

    /// Where a job goes (exchange, routing key, properties), its queues
    /// declared on first use on this connection.
    async fn route(
        &self,
        state: &mut RabbitState,
        topic: &str,
        delay: Option<Duration>,
    ) -> Result<(String, String, BasicProperties), BusError> {
        if !state.declared.contains(topic) {
            self.declare_topic(&state.publisher, topic).await?;
            state.declared.insert(topic.to_string());
        }
        let Some(delay) = delay else {
            return Ok((self.exchange(), topic.to_string(), BasicProperties::default()));
        };
        let queue = self.delay_queue(topic, delay_tier(delay));
        if !state.declared.contains(&queue) {
            self.declare_delay(&state.publisher, &queue, topic).await?;
            state.declared.insert(queue.clone());
        }
        let expiration = delay.as_millis().max(1).to_string();
        Ok((String::new(), queue, BasicProperties::default().with_expiration(expiration.into())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(entries: &[(&str, AMQPValue)]) -> BasicProperties {
        let table: BTreeMap<ShortString, AMQPValue> = entries.iter().map(|(k, v)| ((*k).into(), v.clone())).collect();
        BasicProperties::default().with_headers(table.into())
    }

    #[test]
    fn replays_keep_their_own_headers_but_not_the_dead_lettering_record() {
        let death: BTreeMap<ShortString, AMQPValue> = [("reason".into(), text("delivery_limit"))].into();
        let parked = headers(&[
            ("traceparent", text("00-abc-def-01")),
            ("x-death", AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death.into())].into())),
            ("x-first-death-reason", text("delivery_limit")),
            ("x-last-death-queue", text("offers.t")),
            ("x-delivery-count", AMQPValue::LongLongInt(3)),
        ]);
        let replayed = replayed_properties(&parked);
        let names: Vec<&str> = replayed.headers().iter().flat_map(|h| h.inner().keys()).map(|k| k.as_str()).collect();
        assert_eq!(names, ["traceparent"]);
        assert_eq!(replayed.delivery_mode(), &Some(2));
    }

    #[test]
    fn delivery_counts_are_read_whatever_integer_type_carries_them() {
        assert_eq!(delivery_count(&BasicProperties::default()), 0);
        assert_eq!(delivery_count(&headers(&[("x-delivery-count", AMQPValue::LongLongInt(3))])), 3);
        assert_eq!(delivery_count(&headers(&[("x-delivery-count", AMQPValue::LongInt(2))])), 2);
    }

    #[test]
    fn delay_tiers_are_powers_of_two_above_the_delay() {
        assert_eq!(delay_tier(Duration::from_millis(10)), 1024);
        assert_eq!(delay_tier(Duration::from_millis(1500)), 2048);
        assert_eq!(delay_tier(Duration::from_secs(60)), 65536);
    }
}
