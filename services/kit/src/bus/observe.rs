//! What both buses count, under the same names, so a dashboard reads the
//! embedded mode and RabbitMQ alike.

use super::Disposition;

pub(super) fn published(topic: &str) {
    metrics::counter!("offers_bus_published_total", "topic" => topic.to_string()).increment(1);
}

/// A job handed to a handler; `redelivered` when it had been handed out before.
pub(super) fn received(topic: &str, redelivered: bool) {
    if redelivered {
        metrics::counter!("offers_bus_redelivered_total", "topic" => topic.to_string()).increment(1);
    }
}

pub(super) fn settled(topic: &str, disposition: Disposition) {
    let outcome = match disposition {
        Disposition::Ack => "ack",
        Disposition::Requeue => "requeue",
    };
    metrics::counter!("offers_bus_consumed_total", "topic" => topic.to_string(), "outcome" => outcome).increment(1);
}

/// A job went past the delivery limit into its parking queue.
pub(super) fn parked(topic: &str) {
    metrics::counter!("offers_bus_parked_total", "topic" => topic.to_string()).increment(1);
}

/// How many jobs wait in the topic's queue, and in its parking queue.
pub(super) fn depths(topic: &str, ready: u64, parked: u64) {
    metrics::gauge!("offers_bus_queue_depth", "topic" => topic.to_string()).set(ready as f64);
    metrics::gauge!("offers_bus_parked_jobs", "topic" => topic.to_string()).set(parked as f64);
}
