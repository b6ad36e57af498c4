//! The expiring-subscriptions scheduler: finds active subscriptions that
//! expire within a reminder window and queues one reminder per
//! (subscription, window, expiry) through the outbox. The unique record is
//! what makes reruns, overlapping runs and a run that died halfway safe; the
//! lock only keeps replicas from doing the work twice at once.

use chrono::{DateTime, Utc};
use offers_kit::grpc::{InternalChannel, from_timestamp, to_timestamp};
use offers_kit::outbox::Outbox;
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::contracts::Job;
use sea_orm::sea_query::{Condition, Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::entity::{lock, reminder, run};
use crate::error::NotifierError;
use crate::settings::NotifierSettings;
use crate::worker::ReminderJob;

const LOCK: &str = "expiring-subscriptions";
const LOCK_LEASE: chrono::Duration = chrono::Duration::minutes(10);

pub struct Scheduler {
    db: DatabaseConnection,
    ledger: LedgerServiceClient<InternalChannel>,
    outbox: Outbox,
    settings: NotifierSettings,
    holder: String,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Reminders queued by this run.
    pub scheduled: u32,
    /// Subscriptions in a window that were reminded before.
    pub already_reminded: u32,
}

/// `(window, from, to)`: each window covers expiries between the next smaller
/// window and itself, so a subscription gets the reminder of the window it
/// is in, not all of them at once.
pub fn bands(windows_hours: &[u32]) -> Vec<(u32, chrono::Duration, chrono::Duration)> {
    let mut windows = windows_hours.to_vec();
    windows.sort_unstable();
    windows.dedup();
    let mut lower = 0;
    windows
        .into_iter()
        .map(|w| {
            let band = (w, chrono::Duration::hours(i64::from(lower)), chrono::Duration::hours(i64::from(w)));
            lower = w;
            band
        })
        .collect()
}

impl Scheduler {
    pub fn new(
        db: DatabaseConnection,
        ledger: LedgerServiceClient<InternalChannel>,
        outbox: Outbox,
        settings: NotifierSettings,
    ) -> Self {
        Self { db, ledger, outbox, settings, holder: Uuid::new_v4().to_string() }
    }

    /// Takes (or, for its holder, extends) the lease; wall-clock time, not
    /// the pass's `as of` time, so a pass run for another moment cannot
    /// steal or leave behind a lock.
    async fn lock(&self) -> Result<bool, NotifierError> {
        let now = Utc::now();
        let row = lock::ActiveModel {
            name: Set(LOCK.into()),
            holder: Set(String::new()),
            locked_until: Set(DateTime::<Utc>::UNIX_EPOCH),
        };
        lock::Entity::insert(row)
            .on_conflict(OnConflict::column(lock::Column::Name).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        let taken = lock::Entity::update_many()
            .col_expr(lock::Column::Holder, Expr::value(self.holder.clone()))
            .col_expr(lock::Column::LockedUntil, Expr::value(now + LOCK_LEASE))
            .filter(lock::Column::Name.eq(LOCK))
            .filter(
                Condition::any()
                    .add(lock::Column::LockedUntil.lt(now))
                    .add(lock::Column::Holder.eq(self.holder.clone())),
            )
            .exec(&self.db)
            .await?;
        Ok(taken.rows_affected == 1)
    }

    async fn unlock(&self) -> Result<(), NotifierError> {
        lock::Entity::update_many()
            .col_expr(lock::Column::LockedUntil, Expr::value(DateTime::<Utc>::UNIX_EPOCH))
            .filter(lock::Column::Name.eq(LOCK))
            .filter(lock::Column::Holder.eq(self.holder.clone()))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// One pass as of `now`; `None` when another run holds the lock.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<Option<RunReport>, NotifierError> {
        if !self.lock().await? {
            return Ok(None);
        }
        let outcome = self.schedule(now).await;
        self.unlock().await?;
        let report = outcome?;
        metrics::counter!("offers_reminders_scheduled_total").increment(u64::from(report.scheduled));
        tracing::info!(
            scheduled = report.scheduled,
            already_reminded = report.already_reminded,
            "expiring-subscriptions run"
        );
        Ok(Some(report))
    }

    async fn schedule(&self, now: DateTime<Utc>) -> Result<RunReport, NotifierError> {
        let mut report = RunReport::default();
        for (window, from, to) in bands(&self.settings.windows_hours) {
            let mut page_token = String::new();
            loop {
                // Never remind of what has already expired, whatever `now` the pass is for.
                let after = Ord::max(now + from, Utc::now());
                let request = account::ListExpiringSubscriptionsRequest {
                    expire_after: Some(to_timestamp(after)),
                    expire_before: Some(to_timestamp(now + to)),
                    page_size: 200,
                    page_token: page_token.clone(),
                };
                let page = self.ledger.clone().list_expiring_subscriptions(request).await?.into_inner();
                for subscription in page.subscriptions {
                    if self.queue(window, &subscription, now).await? {
                        report.scheduled += 1;
                    } else {
                        report.already_reminded += 1;
                    }
                }
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
                // A long pass keeps its lease.
                self.lock().await?;
            }
        }
        if report.scheduled > 0 {
            self.outbox.notify();
        }
        Ok(report)
    }

    /// Records the reminder and queues its job together; false when this
    /// (subscription, window, expiry) was reminded already.
    async fn queue(&self, window: u32, s: &account::Subscription, now: DateTime<Utc>) -> Result<bool, NotifierError> {
        let (Ok(subscription_id), Ok(user_id), Some(expires_at)) =
            (Uuid::parse_str(&s.id), Uuid::parse_str(&s.user_id), s.expire_time.as_ref().and_then(from_timestamp))
        else {
            tracing::warn!(subscription_id = %s.id, "skipping a subscription the ledger described badly");
            return Ok(false);
        };
        let about = reminder::About {
            subscription_id,
            window_hours: i32::try_from(window).unwrap_or(i32::MAX),
            expires_at,
            user_id,
            offer_name: s.offer_name.clone(),
            notice: String::new(),
            price: 0,
        };
        let (row, job) = about.queued(now);
        let txn = self.db.begin().await?;
        let inserted = reminder::insert_once(&txn, row).await?;
        if inserted == 0 {
            txn.rollback().await?;
            return Ok(false);
        }
        self.outbox.enqueue(&txn, ReminderJob::TOPIC, &job, Utc::now()).await?;
        txn.commit().await?;
        Ok(true)
    }

    async fn finished(&self, period: &str) -> Result<bool, NotifierError> {
        Ok(run::Entity::find_by_id(period.to_string()).one(&self.db).await?.is_some())
    }

    async fn mark_finished(&self, period: &str, report: RunReport) -> Result<(), NotifierError> {
        let row = run::ActiveModel {
            period: Set(period.into()),
            scheduled: Set(i32::try_from(report.scheduled).unwrap_or(i32::MAX)),
            finished_at: Set(Utc::now()),
        };
        run::Entity::insert(row)
            .on_conflict(OnConflict::column(run::Column::Period).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// Runs once a day at the configured UTC time, on whichever replica gets
    /// there first. The pass is anchored at the day's nominal time, so
    /// consecutive days' windows meet exactly; a day whose run did not
    /// happen or did not finish (everything down, a crash) is caught up at
    /// the next check.
    pub async fn run_daily(self, shutdown: CancellationToken) {
        let Some(at) = self.settings.run_at() else { return };
        let every = self.settings.check_interval;
        loop {
            let now = Utc::now();
            // The latest scheduled moment not in the future.
            let mut due = now.date_naive().and_time(at).and_utc();
            if due > now {
                due -= chrono::Duration::days(1);
            }
            let period = due.date_naive().to_string();
            match self.finished(&period).await {
                Ok(false) => match self.run_once(due).await {
                    Ok(Some(report)) => {
                        if let Err(e) = self.mark_finished(&period, report).await {
                            tracing::warn!(error = %e, "could not record the finished run");
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "expiring-subscriptions run failed; will retry"),
                },
                Ok(true) => {}
                Err(e) => tracing::warn!(error = %e, "could not check the latest run"),
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_become_bands() {
        let b = bands(&[24, 72, 24]);
        assert_eq!(b.len(), 2);
        assert_eq!(b[0], (24, chrono::Duration::zero(), chrono::Duration::hours(24)));
        assert_eq!(b[1], (72, chrono::Duration::hours(24), chrono::Duration::hours(72)));
    }
}
