//! The transactional outbox: a service writes a job in the same database
//! transaction as the change that calls for it, and the relay publishes it
//! to the bus with publisher confirms, marking it published only once the
//! broker has it. A broker outage delays jobs; it loses none. Each owning
//! service has its own outbox table (same columns), so table ownership
//! holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Index, Order, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use sea_orm_migration::SchemaManager;
use sea_orm_migration::schema::{string, text, timestamp_with_time_zone, timestamp_with_time_zone_null, uuid};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::SharedBus;

/// How long a relay owns a row it is publishing.
const LEASE: chrono::Duration = chrono::Duration::seconds(15);
const BATCH: u64 = 100;

#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error("database: {0}")]
    Db(#[from] DbErr),
    #[error("job payload: {0}")]
    Payload(#[from] serde_json::Error),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
}

/// One service's outbox table, and the signal that wakes its relay.
#[derive(Clone)]
pub struct Outbox {
    table: &'static str,
    wake: Arc<Notify>,
}

fn col(name: &str) -> Alias {
    Alias::new(name)
}

impl Outbox {
    pub fn new(table: &'static str) -> Self {
        Self { table, wake: Arc::new(Notify::new()) }
    }

    /// Creates the table (for the owning service's migration).
    pub async fn create_table(manager: &SchemaManager<'_>, table: &'static str) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(col(table))
                    .col(uuid("id").primary_key())
                    .col(string("topic"))
                    .col(text("payload"))
                    .col(timestamp_with_time_zone("available_at"))
                    .col(timestamp_with_time_zone_null("lease_until"))
                    .col(timestamp_with_time_zone_null("published_at"))
                    .col(timestamp_with_time_zone("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(format!("{table}_unpublished"))
                    .table(col(table))
                    .col(col("published_at"))
                    .col(col("id"))
                    .to_owned(),
            )
            .await
    }

    /// Writes a job, due at `at`, inside the caller's transaction.
    pub async fn enqueue(
        &self,
        db: &impl ConnectionTrait,
        topic: &str,
        payload: &impl serde::Serialize,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let insert = Query::insert()
            .into_table(col(self.table))
            .columns(["id", "topic", "payload", "available_at", "created_at"].map(col))
            .values_panic([
                Uuid::now_v7().into(),
                topic.into(),
                serde_json::to_string(payload)?.into(),
                at.into(),
                Utc::now().into(),
            ])
            .to_owned();
        db.execute(&insert).await?;
        Ok(())
    }

    /// Tells the relay there is something to publish (call after commit).
    pub fn notify(&self) {
        self.wake.notify_one();
    }

    /// Forgets jobs published more than a day ago.
    pub async fn prune(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let delete = Query::delete()
            .from_table(col(self.table))
            .and_where(Expr::col(col("published_at")).lt(Utc::now() - chrono::Duration::days(1)))
            .to_owned();
        db.execute(&delete).await.map(drop)
    }

    /// Publishes due jobs until `shutdown`: woken by [`Outbox::notify`], or
    /// every `interval`, backing off while the broker is away.
    pub async fn relay(self, db: DatabaseConnection, bus: SharedBus, interval: Duration, shutdown: CancellationToken) {
        let mut backoff = interval;
        loop {
            match self.drain(&db, &bus).await {
                Ok(()) => backoff = interval,
                Err(e) => {
                    tracing::warn!(table = self.table, error = %e, "outbox relay could not publish; will retry");
                    backoff = (backoff * 2).min(Duration::from_secs(15));
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(backoff) => {}
            }
        }
    }

    fn free(&self, now: DateTime<Utc>) -> Condition {
        Condition::all().add(Expr::col(col("published_at")).is_null()).add(
            Condition::any().add(Expr::col(col("lease_until")).is_null()).add(Expr::col(col("lease_until")).lt(now)),
        )
    }

    /// Publishes everything due now, batch after batch.
    pub async fn drain(&self, db: &DatabaseConnection, bus: &SharedBus) -> Result<(), OutboxError> {
        loop {
            let now = Utc::now();
            let select = Query::select()
                .columns(["id", "topic", "payload", "available_at"].map(col))
                .from(col(self.table))
                .cond_where(self.free(now))
                .order_by(col("id"), Order::Asc)
                .limit(BATCH)
                .to_owned();
            let rows = db.query_all(&select).await?;
            let count = rows.len();
            metrics::gauge!("offers_outbox_backlog", "table" => self.table).set(count as f64);
            for row in rows {
                let id: Uuid = row.try_get("", "id")?;
                let topic: String = row.try_get("", "topic")?;
                let payload: String = row.try_get("", "payload")?;
                let available_at: DateTime<Utc> = row.try_get("", "available_at")?;
                self.publish(db, bus, id, &topic, &payload, available_at).await?;
            }
            if (count as u64) < BATCH {
                return Ok(());
            }
        }
    }

    async fn set(
        &self,
        db: &DatabaseConnection,
        id: Uuid,
        column: &str,
        value: Option<DateTime<Utc>>,
        cond: Condition,
    ) -> Result<u64, DbErr> {
        let update = Query::update()
            .table(col(self.table))
            .value(col(column), value)
            .cond_where(Condition::all().add(Expr::col(col("id")).eq(id)).add(cond))
            .to_owned();
        Ok(db.execute(&update).await?.rows_affected())
    }

    async fn publish(
        &self,
        db: &DatabaseConnection,
        bus: &SharedBus,
        id: Uuid,
        topic: &str,
        payload: &str,
        available_at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let now = Utc::now();
        // Take the row for a while, so another relay replica leaves it alone.
        if self.set(db, id, "lease_until", Some(now + LEASE), self.free(now)).await? != 1 {
            return Ok(());
        }
        let delay = (available_at - now).to_std().ok().filter(|d| !d.is_zero());
        if let Err(e) = bus.publish(topic, payload.as_bytes(), delay).await {
            // Hand the row back at once rather than when the lease runs out.
            self.set(db, id, "lease_until", None, Condition::all()).await?;
            return Err(e.into());
        }
        self.set(db, id, "published_at", Some(Utc::now()), Condition::all()).await?;
        metrics::counter!("offers_outbox_published_total", "topic" => topic.to_string()).increment(1);
        Ok(())
    }
}
