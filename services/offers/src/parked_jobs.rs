//! `JobAdminService`: the bus's parked jobs, listed and replayed for
//! `offers admin jobs`. The account role serves it: it always has the bus
//! (for its outbox relay), and in the embedded mode the in-process bus, and
//! so its parking lists, live in that process.

use offers_kit::Error;
use offers_kit::audit::{Act, Deed, Trail};
use offers_kit::bus::{BusError, Parked, ParkedJob, SharedBus};
use offers_kit::grpc::to_timestamp;
use offers_proto::jobs::v1::job_admin_service_server::{JobAdminService, JobAdminServiceServer};
use offers_proto::jobs::v1::{self as pb};
use tonic::{Request, Response, Status};

const DEFAULT_PAGE: usize = 100;
const MAX_PAGE: usize = 1000;

pub struct JobAdmin {
    bus: SharedBus,
    /// Replays are recorded in the account service's trail (this service
    /// runs with it): after the jobs moved, since the bus and the database
    /// share no transaction, with how many did.
    trail: Trail,
    /// What "every topic" means.
    topics: &'static [&'static str],
}

pub fn server(bus: SharedBus, trail: Trail) -> JobAdminServiceServer<JobAdmin> {
    JobAdminServiceServer::new(JobAdmin { bus, trail, topics: crate::TOPICS })
}

/// A topic as an operator typed it: a name the bus could have made a queue
/// of, never arbitrary text that ends up in a broker command.
fn topic(name: &str) -> Result<&str, Error> {
    let valid = (1..=100).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if valid { Ok(name) } else { Err(Error::invalid_request(format!("topic: not a topic name: {name:?}"))) }
}

fn page_size(requested: i32) -> Result<usize, Error> {
    match usize::try_from(requested) {
        Ok(0) => Ok(DEFAULT_PAGE),
        Ok(n) if n <= MAX_PAGE => Ok(n),
        _ => Err(Error::invalid_request(format!("page_size: 0 to {MAX_PAGE}"))),
    }
}

fn parked_job(job: ParkedJob) -> pb::ParkedJob {
    pb::ParkedJob {
        payload: job.payload,
        delivery_count: job.deliveries.map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
        reason: job.reason.unwrap_or_default(),
        park_time: job.parked_at.map(to_timestamp),
    }
}

#[tonic::async_trait]
impl JobAdminService for JobAdmin {
    async fn list_parked_jobs(
        &self,
        request: Request<pb::ListParkedJobsRequest>,
    ) -> Result<Response<pb::ListParkedJobsResponse>, Status> {
        let request = request.into_inner();
        let page = page_size(request.page_size)?;
        let every = request.topic.is_empty();
        let topics = if every { self.topics.to_vec() } else { vec![topic(&request.topic)?] };
        let mut listed = Vec::with_capacity(topics.len());
        for topic in topics {
            let parked = match self.bus.parked(topic, page).await {
                Ok(parked) => parked,
                // Among every topic, one nothing has used yet has parked nothing.
                Err(BusError::NoSuchTopic(_)) if every => Parked::default(),
                Err(e) => return Err(Error::from(e).into()),
            };
            listed.push(pb::ParkedTopic {
                topic: topic.to_string(),
                total: i64::try_from(parked.total).unwrap_or(i64::MAX),
                jobs: parked.jobs.into_iter().map(parked_job).collect(),
            });
        }
        Ok(Response::new(pb::ListParkedJobsResponse { topics: listed }))
    }

    async fn replay_parked_jobs(
        &self,
        request: Request<pb::ReplayParkedJobsRequest>,
    ) -> Result<Response<pb::ReplayParkedJobsResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let request = request.into_inner();
        let topic = topic(&request.topic)?;
        let max = match usize::try_from(request.max_jobs) {
            Ok(0) => usize::MAX,
            Ok(n) => n,
            Err(_) => return Err(Error::invalid_request("max_jobs: must not be negative").into()),
        };
        let replayed = self.bus.replay(topic, max).await.map_err(Error::from)?;
        tracing::info!(topic, replayed, "parked jobs replayed");
        if replayed > 0 {
            let deed = Deed {
                action: "jobs.replay",
                target: format!("topic:{topic}"),
                detail: format!("replayed={replayed}"),
            };
            let txn = self.trail.begin().await.map_err(Error::from)?;
            self.trail.record(&txn, &act, deed).await.map_err(Error::from)?;
            txn.commit().await.map_err(Error::from)?;
        }
        Ok(Response::new(pb::ReplayParkedJobsResponse { replayed: i32::try_from(replayed).unwrap_or(i32::MAX) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_names_not_text() {
        assert!(topic("partner.callback").is_ok());
        assert!(topic("test.poison-1_a").is_ok());
        for bad in ["", "Partner", "a b", "x/y", "#", &"a".repeat(101)] {
            assert!(topic(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn page_sizes_default_and_are_bounded() {
        assert_eq!(page_size(0).ok(), Some(DEFAULT_PAGE));
        assert_eq!(page_size(7).ok(), Some(7));
        assert!(page_size(-1).is_err() && page_size(1001).is_err());
    }
}
