//! The job bus: RabbitMQ in production (durable quorum queues, publisher
//! confirms, manual acks, delay queues), an in-process queue for the
//! embedded mode. Delivery is at least once in both; handlers make the
//! effect exactly once. A job handed back unsettled more often than the
//! delivery limit is parked — kept aside per topic, never dropped — until
//! an operator replays it.

mod memory;
mod observe;
#[cfg(feature = "rabbitmq")]
mod rabbit;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

pub use memory::MemoryBus;
#[cfg(feature = "rabbitmq")]
pub use rabbit::RabbitBus;

use crate::config::BusSettings;
use crate::trace::Carrier;

/// Runs `handler` on `delivery` in a span of the trace the job carries.
async fn handle_in_trace(handler: &dyn Handler, topic: &str, delivery: Delivery) -> Disposition {
    use tracing::Instrument;
    let span = tracing::info_span!("job", otel.name = %format!("{topic} process"), otel.kind = "consumer", topic);
    crate::trace::continue_from(&span, &delivery.trace);
    handler.handle(delivery).instrument(span).await
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable: {0}")]
    Broker(String),
    #[error("message broker refused the message")]
    Nacked,
    /// A refusal about this job or its queue (a queue declared with other
    /// arguments, a message too large, no permission on it), while other
    /// jobs may well go through.
    #[error("message broker refused: {0}")]
    Refused(String),
    #[error("message broker did not answer in time")]
    TimedOut,
    #[error("no queue for topic {0:?}")]
    NoSuchTopic(String),
}

impl BusError {
    /// The broker is away (not this job refused): every job would fail alike.
    pub fn is_outage(&self) -> bool {
        matches!(self, BusError::Broker(_) | BusError::TimedOut)
    }
}

impl From<BusError> for crate::Error {
    fn from(err: BusError) -> Self {
        match err {
            BusError::NoSuchTopic(_) => crate::Error::new(crate::ErrorCode::NotFound, err.to_string()),
            BusError::Broker(_) | BusError::Nacked | BusError::Refused(_) | BusError::TimedOut => {
                crate::Error::unavailable(err)
            }
        }
    }
}

/// One received job.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub payload: Vec<u8>,
    /// The broker handed this job out before without an ack.
    pub redelivered: bool,
    /// The trace the job belongs to (message headers).
    pub trace: Carrier,
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

/// A job on its way to the broker: its bytes, how long it is held back
/// before delivery, and the trace context that travels in the message
/// headers (so its handler continues the trace).
#[derive(Clone, Copy)]
pub struct Outgoing<'a> {
    pub payload: &'a [u8],
    pub delay: Option<Duration>,
    pub trace: &'a Carrier,
}

impl<'a> Outgoing<'a> {
    /// Delivered as soon as possible, continuing `trace`.
    pub fn new(payload: &'a [u8], trace: &'a Carrier) -> Self {
        Self { payload, delay: None, trace }
    }

    /// Delivered no sooner than `delay` from now.
    pub fn after(self, delay: Duration) -> Self {
        Self { delay: Some(delay), ..self }
    }
}

#[async_trait]
pub trait Bus: Send + Sync + 'static {
    /// Publishes durably; returns only once the broker has taken the job.
    async fn publish(&self, topic: &str, job: Outgoing<'_>) -> Result<(), BusError>;
    /// Publishes each `(topic, job)`, answering for each in order up to the
    /// first sign of an outage (`Broker`, `TimedOut`), which is the last
    /// answer: the jobs after it may or may not have gone. A bus that can
    /// keep many confirms in flight does; by default they go one by one.
    async fn publish_all(&self, jobs: &[(&str, Outgoing<'_>)]) -> Vec<Result<(), BusError>> {
        let mut answers = Vec::with_capacity(jobs.len());
        for (topic, job) in jobs {
            let answer = self.publish(topic, *job).await;
            let outage = answer.as_ref().is_err_and(BusError::is_outage);
            answers.push(answer);
            if outage {
                break;
            }
        }
        answers
    }
    /// Feeds `topic` to `handler` until `shutdown`, reconnecting as needed.
    async fn consume(&self, topic: &str, handler: Arc<dyn Handler>, shutdown: CancellationToken);
    async fn ping(&self) -> Result<(), BusError>;
    /// How many jobs `topic`'s parking queue holds, and up to `max` of
    /// them, left where they are.
    async fn parked(&self, topic: &str, max: usize) -> Result<Parked, BusError>;
    /// Moves up to `max` of `topic`'s parked jobs back to its queue, each
    /// taken off the parking queue only once the queue has it; returns how
    /// many moved.
    async fn replay(&self, topic: &str, max: usize) -> Result<usize, BusError>;
}

/// A job handed back unsettled past the delivery limit, waiting in its
/// topic's parking queue for an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedJob {
    pub payload: Vec<u8>,
    /// How often it was handed out, where the bus knows.
    pub deliveries: Option<u32>,
    /// Why it was parked (RabbitMQ's dead-letter reason, `delivery_limit`).
    pub reason: Option<String>,
    pub parked_at: Option<DateTime<Utc>>,
}

/// A look into a topic's parking queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parked {
    /// Every job it holds.
    pub total: u64,
    /// The first of them, oldest first.
    pub jobs: Vec<ParkedJob>,
}

/// Why a parked job was parked: past the delivery limit (RabbitMQ's word).
pub const PARKED_PAST_LIMIT: &str = "delivery_limit";

pub type SharedBus = Arc<dyn Bus>;

/// The bus the settings name: in-process for `memory://`, RabbitMQ otherwise.
pub fn from_settings(settings: &BusSettings) -> Result<SharedBus, BusError> {
    if settings.url == "memory://" {
        return Ok(Arc::new(MemoryBus::new(settings)));
    }
    #[cfg(feature = "rabbitmq")]
    return Ok(Arc::new(RabbitBus::new(settings)));
    #[cfg(not(feature = "rabbitmq"))]
    Err(BusError::Broker("this build has no RabbitMQ support".into()))
}
