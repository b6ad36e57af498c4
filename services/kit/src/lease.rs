//! Leased delivery: the protocol a worker follows when a job stands for a
//! row that must be acted on at most once at a time (a partner callback, a
//! reminder). The worker claims the row for a lease; a row that is finished
//! is left alone; a row leased by someone else (who may have died) is looked
//! at again when the lease ends, by republishing the job for then; a worker
//! that fails releases its claim so the redelivered job can take it at once.

use std::time::Duration;

use chrono::Utc;
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Query};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use uuid::Uuid;

use crate::bus::{BusError, SharedBus};

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
                Ok(Some((next, delay))) => later(bus, topic, &next, delay).await.map_err(E::from),
                Err(e) => {
                    self.release(db, id).await;
                    Err(e)
                }
            },
        }
    }
}

async fn later<J: serde::Serialize>(bus: &SharedBus, topic: &str, job: &J, delay: Duration) -> Result<(), BusError> {
    let payload = serde_json::to_vec(job).unwrap_or_default();
    bus.publish(topic, &payload, Some(delay)).await
}
