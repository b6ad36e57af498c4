//! Leased delivery: the protocol a worker follows when a job stands for a
//! row that must be acted on at most once at a time (a partner callback, a
//! reminder). The worker claims the row for a lease; a row that is finished
//! is left alone; a row leased by someone else (who may have died) is looked
//! at again when the lease ends, by republishing the job for then; a worker
//! that fails releases its claim so the redelivered job can take it at once.
//!
//! The row also records the job it waits for and when that job is due
//! (`job`, `job_due_at`), so a reconciler can re-drive a row whose job was
//! lost: one still open, whose job is overdue and which nobody holds.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Order, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use sea_orm_migration::SchemaManager;
use sea_orm_migration::schema::{text_null, timestamp_with_time_zone_null};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{BusError, Outgoing, SharedBus};

/// Rows re-driven per pass at most; the next pass takes the rest.
const REDRIVE_BATCH: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// When a reconciler looks for lost jobs, and how late a job must be to
/// count as lost.
#[derive(Debug, Clone, Copy)]
pub struct Redrive {
    pub every: Duration,
    /// How long past its due time (and past any lease on its row) a job may
    /// still be on its way. Longer than a delay queue can hold a job back
    /// (up to the job's own delay), or on-time retries are re-driven too.
    pub grace: Duration,
}

/// A table whose rows are delivered under a lease.
#[derive(Clone)]
pub struct Lease {
    pub table: &'static str,
    pub key: &'static str,
    /// Rows still to be delivered (not finished or given up on).
    pub open: Condition,
    pub length: Duration,
}

pub enum Claim {
    Taken,
    /// Finished or given up on: nothing to do, ever.
    Done,
    /// Held by someone else; its lease ends after this long.
    Busy(Duration),
}

/// What a delivery attempt leaves to do: nothing, or this job again later.
pub type Follow<J> = Option<(J, Duration)>;

fn col(name: &str) -> Alias {
    Alias::new(name)
}

impl Lease {
    /// Adds `job` and `job_due_at` to a leased table (for the owning
    /// service's migration).
    pub async fn add_job_columns(manager: &SchemaManager<'_>, table: &'static str) -> Result<(), DbErr> {
        for column in [text_null("job"), timestamp_with_time_zone_null("job_due_at")] {
            // One column per statement: SQLite adds no more at once.
            manager.alter_table(Table::alter().table(col(table)).add_column(column).to_owned()).await?;
        }
        Ok(())
    }

    fn row(&self, id: Uuid) -> Condition {
        Condition::all().add(Expr::col(col(self.key)).eq(id)).add(self.open.clone())
    }

    /// Takes the row for the lease, unless it is finished or held.
    pub async fn claim(&self, db: &DatabaseConnection, id: Uuid) -> Result<Claim, DbErr> {
        let now = Utc::now();
        let until = now + chrono::Duration::from_std(self.length).unwrap_or(chrono::Duration::minutes(1));
        let free =
            Condition::any().add(Expr::col(col("lease_until")).is_null()).add(Expr::col(col("lease_until")).lt(now));
        let take = Query::update()
            .table(col(self.table))
            .value(col("lease_until"), until)
            .cond_where(self.row(id).add(free))
            .to_owned();
        if db.execute(&take).await?.rows_affected() == 1 {
            return Ok(Claim::Taken);
        }
        let held = Query::select().column(col("lease_until")).from(col(self.table)).cond_where(self.row(id)).to_owned();
        Ok(match db.query_one(&held).await? {
            Some(row) => {
                let until: Option<chrono::DateTime<Utc>> = row.try_get("", "lease_until")?;
                let left = until.map_or(chrono::Duration::zero(), |until| until - now);
                Claim::Busy(left.to_std().unwrap_or_default() + Duration::from_secs(1))
            }
            None => Claim::Done,
        })
    }

    /// Gives the row back after a failure, so the next delivery of its job
    /// can take it at once; should that fail, the lease runs out instead.
    pub async fn release(&self, db: &DatabaseConnection, id: Uuid) {
        let release = Query::update()
            .table(col(self.table))
            .value(col("lease_until"), Option::<chrono::DateTime<Utc>>::None)
            .and_where(Expr::col(col(self.key)).eq(id))
            .to_owned();
        if let Err(e) = db.execute(&release).await {
            tracing::warn!(table = self.table, %id, error = %e, "could not release a lease; it will expire");
        }
    }

    /// Runs `attempt` for the row `id` under the lease, as the handler of
    /// `job` from `topic`. A row held elsewhere has its job republished for
    /// when the lease ends; a failed attempt releases the row and returns the
    /// error (the handler requeues the job); a follow-up job is published
    /// with its delay. A job is acked only once any copy is with the broker,
    /// so none is lost.
    pub async fn deliver<J, E>(
        &self,
        db: &DatabaseConnection,
        bus: &SharedBus,
        topic: &str,
        id: Uuid,
        job: &J,
        attempt: impl AsyncFnOnce() -> Result<Follow<J>, E>,
    ) -> Result<(), E>
    where
        J: serde::Serialize,
        E: From<DbErr> + From<BusError>,
    {
        match self.claim(db, id).await? {
            Claim::Done => Ok(()),
            Claim::Busy(wait) => later(bus, topic, job, wait).await.map_err(E::from),
            Claim::Taken => match attempt().await {
                Ok(None) => Ok(()),
                Ok(Some((next, delay))) => {
                    self.record_next(db, id, &next, delay).await?;
                    later(bus, topic, &next, delay).await.map_err(E::from)
                }
                Err(e) => {
                    self.release(db, id).await;
                    Err(e)
                }
            },
        }
    }
}

impl Lease {
    /// Records that the row now waits for `job`, due after `delay`.
    async fn record_next<J: serde::Serialize>(
        &self,
        db: &DatabaseConnection,
        id: Uuid,
        job: &J,
        delay: Duration,
    ) -> Result<(), DbErr> {
        let due = Utc::now() + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::days(1));
        let update = Query::update()
            .table(col(self.table))
            .value(col("job"), serde_json::to_string(job).unwrap_or_default())
            .value(col("job_due_at"), due)
            .and_where(Expr::col(col(self.key)).eq(id))
            .to_owned();
        db.execute(&update).await.map(drop)
    }

    /// Rows still open whose job is more than `grace` overdue and that
    /// nobody has held within `grace` either: their job was lost.
    fn overdue(&self, now: DateTime<Utc>, grace: Duration) -> Condition {
        let cutoff = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::days(1));
        Condition::all()
            .add(self.open.clone())
            .add(Expr::col(col("job")).is_not_null())
            .add(Expr::col(col("job_due_at")).lt(cutoff))
            .add(
                Condition::any()
                    .add(Expr::col(col("lease_until")).is_null())
                    .add(Expr::col(col("lease_until")).lt(cutoff)),
            )
    }

    /// Publishes again the job of every row whose job was lost, counting
    /// each on `redriven`. Each row's due time moves to now first, under the
    /// same condition, so replicas re-drive a row once per deadline.
    async fn redrive(
        &self,
        db: &DatabaseConnection,
        bus: &SharedBus,
        topic: &str,
        grace: Duration,
        redriven: &metrics::Counter,
    ) -> Result<(), RedriveError> {
        let now = Utc::now();
        let select = Query::select()
            .columns([col(self.key), col("job")])
            .from(col(self.table))
            .cond_where(self.overdue(now, grace))
            .order_by(col("job_due_at"), Order::Asc)
            .limit(REDRIVE_BATCH)
            .to_owned();
        for row in db.query_all(&select).await? {
            let id: Uuid = row.try_get("", self.key)?;
            let job: String = row.try_get("", "job")?;
            let take = Query::update()
                .table(col(self.table))
                .value(col("job_due_at"), now)
                .cond_where(Condition::all().add(Expr::col(col(self.key)).eq(id)).add(self.overdue(now, grace)))
                .to_owned();
            if db.execute(&take).await?.rows_affected() != 1 {
                continue;
            }
            tracing::info!(table = self.table, %id, topic, "re-driving a job that is overdue");
            // A re-driven job starts a trace of its own: the one it belonged
            // to ended long ago.
            bus.publish(topic, Outgoing::new(job.as_bytes(), &crate::trace::Carrier::new())).await?;
            redriven.increment(1);
        }
        Ok(())
    }

    /// Re-drives lost jobs every `redrive.every` until `shutdown`, counting
    /// them on `redriven`.
    pub async fn reconcile(
        self,
        db: DatabaseConnection,
        bus: SharedBus,
        topic: &'static str,
        redrive: Redrive,
        redriven: fn() -> metrics::Counter,
        shutdown: CancellationToken,
    ) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(redrive.every) => {}
            }
            if let Err(e) = self.redrive(&db, &bus, topic, redrive.grace, &redriven()).await {
                tracing::warn!(table = self.table, error = %e, "reconciler pass failed");
            }
        }
    }
}

async fn later<J: serde::Serialize>(bus: &SharedBus, topic: &str, job: &J, delay: Duration) -> Result<(), BusError> {
    let payload = serde_json::to_vec(job).unwrap_or_default();
    bus.publish(topic, Outgoing::new(&payload, &crate::trace::current_carrier()).after(delay)).await
}
