//! Re-drives transactions left PENDING past their deadline with no job in
//! flight (a worker died mid-attempt, a job was lost before the outbox
//! existed for it, a broker lost a queue), so nothing stays PENDING without
//! someone working on it: a job, or an operator for the ones waiting for
//! review (counted in `offers_ledger_needs_review`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::ledger::Ledger;

const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);

pub async fn run(ledger: Arc<Ledger>, shutdown: CancellationToken) {
    let interval = ledger.settings().reconcile_interval;
    let mut last_housekeeping: Option<Instant> = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        if let Err(e) = pass(&ledger).await {
            tracing::warn!(error = %e, "reconciler pass failed");
        }
        if last_housekeeping.is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY) {
            last_housekeeping = Some(Instant::now());
            if let Err(e) = ledger.housekeeping().await {
                tracing::warn!(error = %e, "housekeeping failed");
            }
        }
    }
}

async fn pass(ledger: &Ledger) -> Result<(), crate::error::LedgerError> {
    // Reported on every pass, so the alert sees the queue even when nothing moves.
    metrics::gauge!("offers_ledger_needs_review").set(ledger.reviews_waiting().await? as f64);
    for tx in ledger.overdue(100).await? {
        if ledger.redrive(&tx).await? {
            metrics::counter!("offers_ledger_redriven_total").increment(1);
            tracing::info!(transaction_id = %tx.id, attempts = tx.attempts, "re-driving an overdue transaction");
        }
    }
    Ok(())
}
