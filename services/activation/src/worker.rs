//! The provisioning worker: takes provisioning jobs off the bus, claims the
//! attempt, calls the provisioning system and records the outcome through
//! the ledger. An unknown outcome is retried; when the attempts run out, or
//! a refusal follows attempts whose fate is unknown, the worker asks the
//! provider what became of the request before anything is refunded — and
//! a `not_found` heard within the settle window of the last request is
//! asked again once it has passed, since that request may still be queued
//! at the provider — and parks the transaction for review when even that
//! cannot be known, or when the provider contradicts itself. Jobs
//! are acked only after their effect is committed; a duplicate or stale job
//! finds its attempt already claimed and is dropped.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use offers_kit::bus::{Delivery, Disposition, Handler, requeue_later};
use offers_kit::grpc::InternalChannel;
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::contracts::{ProvisionJob, Step};

use crate::provider::{Inquiry, Outcome, Provider};
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
        let (label, decision) = match job.step {
            Step::Provision => self.provision(&tx, job.attempt).await,
            Step::Confirm => self.confirm(&tx.id, job.attempt).await,
        };
        metrics::counter!("offers_worker_jobs_total", "result" => label).increment(1);
        self.persist(&tx.id, job.attempt, decision).await;
        Ok(())
    }

    /// Sends the request and judges its answer by the contract.
    async fn provision(&self, tx: &account::Transaction, attempt: i32) -> (&'static str, Decision) {
        let sent = Instant::now();
        let outcome = self.provider.activate(tx, attempt).await;
        tracing::info!(transaction_id = %tx.id, attempt, ?outcome, "provisioning attempt");
        match outcome {
            Outcome::Provisioned => {
                ("provisioned", Decision::Settle(account::TransactionStatus::Success, String::new()))
            }
            // The first attempt's refusal is the whole story.
            Outcome::Rejected(reason) if attempt <= 1 => {
                ("rejected", Decision::Settle(account::TransactionStatus::Failed, rejected(&reason)))
            }
            // A refusal after attempts whose fate is unknown: one of those
            // may have provisioned it.
            Outcome::Rejected(reason) => self.ask(&tx.id, Some(reason), attempt, sent).await,
            Outcome::Unknown(detail) if self.settings.retry.allows_after(attempt.unsigned_abs()) => {
                let delay = self.settings.retry.delay(attempt.unsigned_abs());
                ("retry", Decision::Retry(Step::Provision, delay, detail))
            }
            Outcome::Unknown(_) => self.ask(&tx.id, None, attempt, sent).await,
        }
    }

    /// What the provider says became of the transaction, when the attempts
    /// so far leave it open: provisioned, refused, not found — final only
    /// once the settle window has passed since the last request was `sent`,
    /// else asked again then — or unknown, when an operator decides and
    /// nothing is refunded.
    async fn ask(&self, id: &str, refusal: Option<String>, attempts: i32, sent: Instant) -> (&'static str, Decision) {
        match self.provider.inquire(id).await {
            Inquiry::Provisioned => {
                ("inquired_provisioned", Decision::Settle(account::TransactionStatus::Success, String::new()))
            }
            Inquiry::Rejected(reason) => ("inquired_rejected", not_provisioned(reason.or(refusal), attempts)),
            Inquiry::NotFound => match self.settings.settle_window.checked_sub(sent.elapsed()) {
                Some(rest) if !rest.is_zero() => {
                    let note = "not found while our last request may still be on its way; asking again".to_string();
                    ("inquired_not_found_early", Decision::Retry(Step::Confirm, rest, note))
                }
                _ => ("inquired_not_found", not_provisioned(refusal, attempts)),
            },
            Inquiry::Unknown(detail) => ("review", Decision::Review(format!("after {attempts} attempts: {detail}"))),
        }
    }

    /// Asks again about a key the provider reported not found before the
    /// settle window had passed. That answer fenced the key, so now it must
    /// still be not found; a provider that provisioned it anyway broke the
    /// contract, and neither outcome can be trusted without an operator.
    async fn confirm(&self, id: &str, attempt: i32) -> (&'static str, Decision) {
        match self.provider.inquire(id).await {
            Inquiry::NotFound => ("confirmed_not_found", not_provisioned(None, attempt)),
            Inquiry::Rejected(reason) => ("confirmed_rejected", not_provisioned(reason, attempt)),
            Inquiry::Provisioned => (
                "review",
                Decision::Review(
                    "the provisioning system reported it not found, then provisioned it: it broke the contract".into(),
                ),
            ),
            Inquiry::Unknown(detail) => {
                ("review", Decision::Review(format!("confirming that it was not found: {detail}")))
            }
        }
    }

    /// Records the attempt's outcome, trying a few times: the attempt is
    /// claimed, so should the ledger stay unreachable the reconciler re-drives
    /// the transaction after the lease (the provider dedupes on its id).
    async fn persist(&self, transaction_id: &str, attempt: i32, decision: Decision) {
        let mut pause = Duration::from_millis(200);
        for _ in 0..4 {
            let result = match &decision {
                Decision::Settle(status, reason) => self
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
                Decision::Review(reason) => self
                    .ledger
                    .clone()
                    .mark_for_review(account::MarkForReviewRequest {
                        transaction_id: transaction_id.into(),
                        attempt,
                        reason: reason.clone(),
                    })
                    .await
                    .map(drop),
                Decision::Retry(step, delay, error) => self
                    .ledger
                    .clone()
                    .schedule_retry(account::ScheduleRetryRequest {
                        transaction_id: transaction_id.into(),
                        attempt,
                        delay_ms: i64::try_from(delay.as_millis()).unwrap_or(i64::MAX),
                        last_error: error.clone(),
                        confirm: *step == Step::Confirm,
                    })
                    .await
                    .map(drop),
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

/// What an attempt leads to.
enum Decision {
    /// SUCCESS, or FAILED with the reason customers see.
    Settle(account::TransactionStatus, String),
    /// Another attempt, doing this, after this delay (the detail is for
    /// operators).
    Retry(Step, Duration, String),
    /// Nobody can tell whether it was provisioned: an operator decides.
    Review(String),
}

/// FAILED, for the provider's reason when it gave one.
fn not_provisioned(reason: Option<String>, attempts: i32) -> Decision {
    let reason = match reason {
        Some(reason) => rejected(&reason),
        None => format!("the provisioning system did not provision it ({attempts} attempts)"),
    };
    Decision::Settle(account::TransactionStatus::Failed, reason)
}

/// The reason a refused transaction failed, as customers see it.
fn rejected(reason: &str) -> String {
    format!("rejected by the provisioning system: {reason}")
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
