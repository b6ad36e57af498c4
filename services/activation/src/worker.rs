//! The provisioning worker: takes provisioning jobs off the bus, claims the
//! attempt, calls the provisioning system and settles the outcome through
//! the ledger. Jobs are acked only after their effect is committed; a
//! duplicate or stale job finds its attempt already claimed and is dropped.

use std::time::Duration;

use async_trait::async_trait;
use offers_kit::bus::{Delivery, Disposition, Handler, requeue_later};
use offers_kit::grpc::InternalChannel;
use offers_kit::retry::backoff;
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::contracts::ProvisionJob;

use crate::provider::{Outcome, Provider};
use crate::settings::ProvisioningSettings;

pub struct Worker {
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub provider: Provider,
    pub settings: ProvisioningSettings,
}

#[derive(Debug, thiserror::Error)]
#[error("ledger call failed: {0}")]
struct LedgerDown(#[from] tonic::Status);

/// Whether a failed ledger call may work later.
fn retryable(status: &tonic::Status) -> bool {
    use tonic::Code;
    matches!(
        status.code(),
        Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Aborted
            | Code::Internal
            | Code::ResourceExhausted
    )
}

impl Worker {
    async fn process(&self, job: ProvisionJob) -> Result<(), LedgerDown> {
        let claim = self
            .ledger
            .clone()
            .claim_attempt(account::ClaimAttemptRequest {
                transaction_id: job.transaction_id.to_string(),
                attempt: job.attempt,
            })
            .await?
            .into_inner();
        if !claim.claimed {
            metrics::counter!("offers_worker_jobs_total", "result" => "stale").increment(1);
            tracing::debug!(transaction_id = %job.transaction_id, attempt = job.attempt, "attempt already made or settled; dropping the job");
            return Ok(());
        }
        let Some(tx) = claim.transaction else { return Ok(()) };
        let outcome = self.provider.activate(&tx, job.attempt).await;
        tracing::info!(transaction_id = %tx.id, attempt = job.attempt, ?outcome, "provisioning attempt");
        let max = i32::try_from(self.settings.max_attempts).unwrap_or(i32::MAX);
        let (label, request) = match outcome {
            Outcome::Provisioned => ("provisioned", Settle::Done(account::TransactionStatus::Success, String::new())),
            Outcome::Rejected(reason) => ("rejected", Settle::Done(account::TransactionStatus::Failed, reason)),
            Outcome::Transient(error) if job.attempt >= max => (
                "exhausted",
                Settle::Done(
                    account::TransactionStatus::Failed,
                    format!("provisioning failed after {} attempts: {error}", job.attempt),
                ),
            ),
            Outcome::Transient(error) => ("retry", Settle::Retry(error)),
        };
        metrics::counter!("offers_worker_jobs_total", "result" => label).increment(1);
        self.persist(&tx.id, job.attempt, request).await;
        Ok(())
    }

    /// Records the attempt's outcome, trying a few times: the attempt is
    /// claimed, so should the ledger stay unreachable the reconciler re-drives
    /// the transaction after the lease (the provider dedupes on its id).
    async fn persist(&self, transaction_id: &str, attempt: i32, request: Settle) {
        let mut pause = Duration::from_millis(200);
        for _ in 0..4 {
            let result = match &request {
                Settle::Done(status, reason) => self
                    .ledger
                    .clone()
                    .settle_transaction(account::SettleTransactionRequest {
                        transaction_id: transaction_id.into(),
                        status: (*status).into(),
                        failure_reason: reason.clone(),
                        attempt,
                    })
                    .await
                    .map(drop),
                Settle::Retry(error) => {
                    let delay = backoff(
                        attempt,
                        Duration::from_millis(self.settings.retry_base_ms),
                        Duration::from_millis(self.settings.retry_max_ms),
                    );
                    self.ledger
                        .clone()
                        .schedule_retry(account::ScheduleRetryRequest {
                            transaction_id: transaction_id.into(),
                            attempt,
                            delay_ms: i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                            last_error: error.clone(),
                        })
                        .await
                        .map(drop)
                }
            };
            match result {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(transaction_id, error = %e, "could not record the attempt; trying again");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
        tracing::error!(transaction_id, "giving up recording the attempt; the reconciler will re-drive it");
    }
}

enum Settle {
    Done(account::TransactionStatus, String),
    Retry(String),
}

#[async_trait]
impl Handler for Worker {
    async fn handle(&self, delivery: Delivery) -> Disposition {
        let Some(job) = delivery.decode::<ProvisionJob>() else { return Disposition::Ack };
        match self.process(job).await {
            Ok(()) => Disposition::Ack,
            // Nothing was claimed: the job can go back.
            Err(LedgerDown(status)) if retryable(&status) => requeue_later(&status).await,
            Err(LedgerDown(status)) => {
                // The ledger refused the job itself (unknown transaction, bad
                // id): it will never succeed, so it must not loop.
                tracing::error!(transaction_id = %job.transaction_id, error = %status, "dropping a job the ledger refuses");
                Disposition::Ack
            }
        }
    }
}
