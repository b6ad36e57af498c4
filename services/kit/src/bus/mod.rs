//! The job bus: RabbitMQ in production (durable quorum queues, publisher
//! confirms, manual acks, delay queues), an in-process queue for the
//! embedded mode. Delivery is at least once in both; handlers make the
//! effect exactly once.

#[cfg(feature = "rabbitmq")]
mod rabbit;

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

#[cfg(feature = "rabbitmq")]
pub use rabbit::RabbitBus;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("message broker unavailable: {0}")]
    Broker(String),
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

/// The bus the settings name: in-process for `memory://`, RabbitMQ otherwise.
pub fn from_settings(settings: &crate::config::BusSettings) -> Result<SharedBus, BusError> {
    if settings.url == "memory://" {
        return Ok(Arc::new(MemoryBus::new(settings.prefetch)));
    }
    #[cfg(feature = "rabbitmq")]
    return Ok(Arc::new(RabbitBus::new(&settings.url, &settings.prefix, settings.prefetch)));
    #[cfg(not(feature = "rabbitmq"))]
    Err(BusError::Broker("this build has no RabbitMQ support".into()))
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
}
