//! The embedded-mode bus: one process, so a topic's queue is a list in
//! memory. It keeps RabbitMQ's rules: a job whose handler is dropped before
//! it answers (a crash, a shutdown) goes back on its queue, as when a
//! consumer dies; a job handed back more often than the delivery limit is
//! parked in the topic's parking list instead of handed out again.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

use super::{
    Bus, BusError, Delivery, Disposition, Handler, Outgoing, PARKED_PAST_LIMIT, Parked, ParkedJob, handle_in_trace,
    observe,
};
use crate::config::BusSettings;
use crate::trace::Carrier;

pub struct MemoryBus {
    prefetch: u16,
    delivery_limit: u32,
    topics: Mutex<HashMap<String, Arc<Topic>>>,
}

struct Job {
    payload: Vec<u8>,
    trace: Carrier,
    /// Times it was handed out and came back unsettled.
    returns: u32,
}

struct Topic {
    name: String,
    delivery_limit: u32,
    state: Mutex<Queues>,
    ready: Notify,
}

#[derive(Default)]
struct Queues {
    ready: VecDeque<Job>,
    parked: VecDeque<ParkedJob>,
}

impl Topic {
    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` on the queues and reports their new depths.
    fn update<R>(&self, change: impl FnOnce(&mut Queues) -> R) -> R {
        let mut queues = self.queues();
        let result = change(&mut queues);
        observe::depths(&self.name, queues.ready.len() as u64, queues.parked.len() as u64);
        result
    }

    fn push(&self, job: Job) {
        self.update(|q| q.ready.push_back(job));
        self.ready.notify_one();
    }

    async fn next(&self) -> Job {
        loop {
            if let Some(job) = self.update(|q| q.ready.pop_front()) {
                return job;
            }
            // A push in between leaves a permit, so this cannot miss it.
            self.ready.notified().await;
        }
    }

    /// A job came back unsettled: out again, or parked past the limit.
    fn give_back(&self, job: Job) {
        if job.returns < self.delivery_limit {
            self.push(Job { returns: job.returns + 1, ..job });
            return;
        }
        let parked = ParkedJob {
            payload: job.payload,
            deliveries: Some(job.returns + 1),
            reason: Some(PARKED_PAST_LIMIT.into()),
            parked_at: Some(Utc::now()),
        };
        self.update(|q| q.parked.push_back(parked));
        observe::parked(&self.name);
        tracing::warn!(topic = %self.name, deliveries = job.returns + 1, "job parked past the delivery limit");
    }
}

impl MemoryBus {
    pub fn new(settings: &BusSettings) -> Self {
        Self { prefetch: settings.prefetch, delivery_limit: settings.delivery_limit, topics: Mutex::default() }
    }

    fn topic(&self, name: &str) -> Arc<Topic> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(Topic {
                    name: name.to_string(),
                    delivery_limit: self.delivery_limit,
                    state: Mutex::default(),
                    ready: Notify::new(),
                })
            })
            .clone()
    }

    /// A topic something has published to or consumed from.
    fn existing(&self, name: &str) -> Result<Arc<Topic>, BusError> {
        let topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        topics.get(name).cloned().ok_or_else(|| BusError::NoSuchTopic(name.to_string()))
    }
}

/// Hands a job back unless it was settled.
struct Unsettled {
    job: Option<Job>,
    topic: Arc<Topic>,
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            self.topic.give_back(job);
        }
    }
}

#[async_trait]
impl Bus for MemoryBus {
    async fn publish(&self, topic: &str, outgoing: Outgoing<'_>) -> Result<(), BusError> {
        let queue = self.topic(topic);
        let job = Job { payload: outgoing.payload.to_vec(), trace: outgoing.trace.clone(), returns: 0 };
        match outgoing.delay {
            None => queue.push(job),
            Some(delay) => {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.push(job);
                });
            }
        }
        observe::published(topic);
        Ok(())
    }

    async fn consume(&self, topic: &str, handler: Arc<dyn Handler>, shutdown: CancellationToken) {
        let queue = self.topic(topic);
        let in_flight = Arc::new(Semaphore::new(usize::from(self.prefetch)));
        let mut running = tokio::task::JoinSet::new();
        loop {
            let Ok(permit) = in_flight.clone().acquire_owned().await else {
                break;
            };
            let job = tokio::select! {
                () = shutdown.cancelled() => break,
                job = queue.next() => job,
            };
            let delivery =
                Delivery { payload: job.payload.clone(), redelivered: job.returns > 0, trace: job.trace.clone() };
            observe::received(topic, delivery.redelivered);
            let mut guard = Unsettled { job: Some(job), topic: queue.clone() };
            let handler = handler.clone();
            let stop = shutdown.clone();
            running.spawn(async move {
                tokio::select! {
                    // Dropping the guard unsettled hands the job back.
                    () = stop.cancelled() => {}
                    outcome = handle_in_trace(handler.as_ref(), &guard.topic.name, delivery) => {
                        observe::settled(&guard.topic.name, outcome);
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

    async fn parked(&self, topic: &str, max: usize) -> Result<Parked, BusError> {
        let queue = self.existing(topic)?;
        let queues = queue.queues();
        Ok(Parked { total: queues.parked.len() as u64, jobs: queues.parked.iter().take(max).cloned().collect() })
    }

    async fn replay(&self, topic: &str, max: usize) -> Result<usize, BusError> {
        let queue = self.existing(topic)?;
        let jobs: Vec<ParkedJob> = queue.update(|q| {
            let take = max.min(q.parked.len());
            q.parked.drain(..take).collect()
        });
        let moved = jobs.len();
        for job in jobs {
            queue.push(Job { payload: job.payload, trace: Carrier::new(), returns: 0 });
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use tokio::sync::mpsc;

    use super::*;

    fn bus(delivery_limit: u32) -> Arc<MemoryBus> {
        Arc::new(MemoryBus::new(&BusSettings { prefetch: 4, delivery_limit, ..Default::default() }))
    }

    /// Requeues every job until `healed`, then acks and reports it.
    struct Flaky {
        healed: AtomicBool,
        deliveries: AtomicUsize,
        done: mpsc::UnboundedSender<(Vec<u8>, bool)>,
    }

    impl Flaky {
        fn new(healed: bool) -> (Arc<Self>, mpsc::UnboundedReceiver<(Vec<u8>, bool)>) {
            let (done, finished) = mpsc::unbounded_channel();
            (Arc::new(Self { healed: AtomicBool::new(healed), deliveries: AtomicUsize::new(0), done }), finished)
        }
    }

    #[async_trait]
    impl Handler for Flaky {
        async fn handle(&self, delivery: Delivery) -> Disposition {
            let first = self.deliveries.fetch_add(1, Ordering::SeqCst) == 0;
            if !self.healed.load(Ordering::SeqCst) || (first && delivery.payload == b"fail-once") {
                return Disposition::Requeue;
            }
            let _ = self.done.send((delivery.payload, delivery.redelivered));
            Disposition::Ack
        }
    }

    fn start(bus: &Arc<MemoryBus>, handler: Arc<Flaky>, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
        let (bus, stop) = (bus.clone(), stop.clone());
        tokio::spawn(async move { bus.consume("t", handler, stop).await })
    }

    #[tokio::test]
    async fn memory_bus_redelivers_what_was_not_acked() {
        let bus = bus(20);
        let (handler, mut finished) = Flaky::new(true);
        let stop = CancellationToken::new();
        let consumer = start(&bus, handler, &stop);
        let trace = Carrier::new();
        bus.publish("t", Outgoing::new(b"fail-once", &trace).after(Duration::from_millis(10))).await.expect("publish");
        assert_eq!(finished.recv().await, Some((b"fail-once".to_vec(), true)));
        stop.cancel();
        consumer.await.expect("consumer");
    }

    #[tokio::test]
    async fn a_job_past_the_delivery_limit_is_parked_and_replayed() {
        let bus = bus(3);
        let (handler, mut finished) = Flaky::new(false);
        let stop = CancellationToken::new();
        let consumer = start(&bus, handler.clone(), &stop);
        bus.publish("t", Outgoing::new(b"poison", &Carrier::new())).await.expect("publish");
        while bus.parked("t", 10).await.expect("topic").total == 0 {
            tokio::task::yield_now().await;
        }
        // As RabbitMQ does: the first delivery and one per allowed return.
        assert_eq!(handler.deliveries.load(Ordering::SeqCst), 4);
        let parked = bus.parked("t", 10).await.expect("topic");
        assert_eq!(parked.jobs.len(), 1);
        let job = &parked.jobs[0];
        assert_eq!((job.payload.as_slice(), job.deliveries), (b"poison".as_slice(), Some(4)));
        assert_eq!(job.reason.as_deref(), Some(PARKED_PAST_LIMIT));
        assert_eq!(bus.parked("t", 10).await.expect("topic").total, 1, "listing leaves them parked");

        handler.healed.store(true, Ordering::SeqCst);
        assert_eq!(bus.replay("t", 10).await.expect("replay"), 1);
        assert_eq!(finished.recv().await, Some((b"poison".to_vec(), false)));
        assert_eq!(bus.parked("t", 10).await.expect("topic"), Parked::default());
        stop.cancel();
        consumer.await.expect("consumer");
    }

    #[tokio::test]
    async fn replay_moves_at_most_what_was_asked() {
        let bus = bus(1);
        let (handler, _finished) = Flaky::new(false);
        let stop = CancellationToken::new();
        let consumer = start(&bus, handler, &stop);
        for payload in [b"a", b"b", b"c"] {
            bus.publish("t", Outgoing::new(payload, &Carrier::new())).await.expect("publish");
        }
        while bus.parked("t", 10).await.expect("topic").total < 3 {
            tokio::task::yield_now().await;
        }
        stop.cancel();
        consumer.await.expect("consumer");
        assert_eq!(bus.parked("t", 2).await.expect("topic").jobs.len(), 2);
        assert_eq!(bus.replay("t", 2).await.expect("replay"), 2);
        assert_eq!(bus.parked("t", 10).await.expect("topic").total, 1);
        assert!(matches!(bus.parked("nope", 10).await, Err(BusError::NoSuchTopic(_))));
    }
}
