//! The transactional outbox: a service writes a job in the same database
//! transaction as the change that calls for it, and the relay publishes it
//! to the bus with publisher confirms, marking it published only once the
//! broker has it. A broker outage delays jobs; it loses none. A job the
//! broker refuses on its own is tried again later, with a growing backoff,
//! and the jobs behind it go on. Each owning service has its own outbox
//! table (same columns), so table ownership holds.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Condition, Expr, ExprTrait, Index, Order, Query, Table};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use sea_orm_migration::SchemaManager;
use sea_orm_migration::schema::{
    integer, string, text, text_null, timestamp_with_time_zone, timestamp_with_time_zone_null, uuid,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Outgoing, SharedBus};
use crate::retry::backoff;
use crate::trace::Carrier;

/// How long a relay owns a row it is publishing.
const LEASE: chrono::Duration = chrono::Duration::seconds(15);
const BATCH: u64 = 100;
/// The backoff of a job the broker refused: its first retry after about a
/// second, then doubling up to a quarter of an hour.
const REFUSED_RETRY_BASE: Duration = Duration::from_secs(1);
const REFUSED_RETRY_MAX: Duration = Duration::from_secs(900);

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

    /// Adds the count of refused publishes to a table made by
    /// [`Outbox::create_table`] (for the owning service's migration).
    pub async fn add_attempts(manager: &SchemaManager<'_>, table: &'static str) -> Result<(), DbErr> {
        manager
            .alter_table(Table::alter().table(col(table)).add_column(integer("attempts").default(0)).to_owned())
            .await
    }

    /// Adds the trace a job belongs to, to a table made by
    /// [`Outbox::create_table`] (for the owning service's migration).
    pub async fn add_trace_context(manager: &SchemaManager<'_>, table: &'static str) -> Result<(), DbErr> {
        manager.alter_table(Table::alter().table(col(table)).add_column(text_null("trace_context")).to_owned()).await
    }

    /// Writes a job, due at `at`, inside the caller's transaction, with the
    /// trace of the work that calls for it.
    pub async fn enqueue(
        &self,
        db: &impl ConnectionTrait,
        topic: &str,
        payload: &impl serde::Serialize,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxError> {
        let insert = Query::insert()
            .into_table(col(self.table))
            .columns(["id", "topic", "payload", "available_at", "created_at", "trace_context"].map(col))
            .values_panic([
                Uuid::now_v7().into(),
                topic.into(),
                serde_json::to_string(payload)?.into(),
                at.into(),
                Utc::now().into(),
                trace_context()?.into(),
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

    /// What a relay publishes now: free rows, except those refused before
    /// whose next try is not due yet (a job never tried goes out at once,
    /// into a delay queue if it is due later).
    fn ready(&self, now: DateTime<Utc>) -> Condition {
        self.free(now)
            .add(Condition::any().add(Expr::col(col("attempts")).eq(0)).add(Expr::col(col("available_at")).lte(now)))
    }

    /// Publishes everything ready now, batch after batch; stops at the
    /// first sign of a broker outage.
    pub async fn drain(&self, db: &DatabaseConnection, bus: &SharedBus) -> Result<(), OutboxError> {
        self.report_lag(db).await?;
        loop {
            let jobs = self.lease(db).await?;
            metrics::gauge!("offers_outbox_backlog", "table" => self.table).set(jobs.len() as f64);
            self.publish(db, bus, &jobs).await?;
            if (jobs.len() as u64) < BATCH {
                return Ok(());
            }
        }
    }

    /// Takes the next batch of ready rows for a while, in one statement, so
    /// another relay replica leaves them alone: it re-reads a row it waited
    /// for and finds it leased.
    async fn lease(&self, db: &DatabaseConnection) -> Result<Vec<Row>, OutboxError> {
        let now = Utc::now();
        let next = Query::select()
            .column(col("id"))
            .from(col(self.table))
            .cond_where(self.ready(now))
            .order_by(col("id"), Order::Asc)
            .limit(BATCH)
            .to_owned();
        let lease = Query::update()
            .table(col(self.table))
            .value(col("lease_until"), now + LEASE)
            .cond_where(Condition::all().add(Expr::col(col("id")).in_subquery(next)).add(self.free(now)))
            .returning(
                Query::returning()
                    .columns(["id", "topic", "payload", "available_at", "attempts", "trace_context"].map(col)),
            )
            .to_owned();
        let mut jobs = Vec::new();
        for row in db.query_all(&lease).await? {
            jobs.push(Row {
                id: row.try_get("", "id")?,
                topic: row.try_get("", "topic")?,
                payload: row.try_get("", "payload")?,
                available_at: row.try_get("", "available_at")?,
                attempts: row.try_get("", "attempts")?,
                trace: row
                    .try_get::<Option<String>>("", "trace_context")?
                    .and_then(|t| serde_json::from_str(&t).ok())
                    .unwrap_or_default(),
            });
        }
        // RETURNING keeps no order; the bus gets them oldest first.
        jobs.sort_unstable_by_key(|job| job.id);
        Ok(jobs)
    }

    /// How long the oldest job that is due has waited for the relay (0 when
    /// none has).
    async fn report_lag(&self, db: &DatabaseConnection) -> Result<(), DbErr> {
        let now = Utc::now();
        let due = self.oldest_due(db, now).await?;
        let age = due.map_or(0.0, |at| Ord::max((now - at).num_milliseconds(), 0) as f64 / 1000.0);
        metrics::gauge!("offers_outbox_oldest_age_seconds", "table" => self.table).set(age);
        Ok(())
    }

    /// Since when the oldest job due at `now` has waited; `None` when none
    /// waits.
    pub async fn oldest_due(
        &self,
        db: &DatabaseConnection,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, DbErr> {
        let oldest = Query::select()
            .column(col("available_at"))
            .from(col(self.table))
            .and_where(Expr::col(col("published_at")).is_null())
            .and_where(Expr::col(col("available_at")).lte(now))
            .order_by(col("available_at"), Order::Asc)
            .limit(1)
            .to_owned();
        match db.query_one(&oldest).await? {
            Some(row) => Ok(Some(row.try_get("", "available_at")?)),
            None => Ok(None),
        }
    }

    /// Sets `column` to `value` on the rows `ids`, in one statement.
    async fn set(
        &self,
        db: &DatabaseConnection,
        ids: impl IntoIterator<Item = Uuid>,
        column: &str,
        value: Option<DateTime<Utc>>,
    ) -> Result<(), DbErr> {
        let ids: Vec<Uuid> = ids.into_iter().collect();
        if ids.is_empty() {
            return Ok(());
        }
        let update = Query::update()
            .table(col(self.table))
            .value(col(column), value)
            .and_where(Expr::col(col("id")).is_in(ids))
            .to_owned();
        db.execute(&update).await.map(drop)
    }

    /// Hands a refused row back for a later try, further off each time.
    async fn postpone(&self, db: &DatabaseConnection, job: &Row) -> Result<(), DbErr> {
        let attempts = job.attempts.saturating_add(1);
        let wait = backoff(attempts, REFUSED_RETRY_BASE, REFUSED_RETRY_MAX);
        let retry_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::minutes(15));
        let update = Query::update()
            .table(col(self.table))
            .value(col("attempts"), attempts)
            .value(col("available_at"), retry_at)
            .value(col("lease_until"), Option::<DateTime<Utc>>::None)
            .and_where(Expr::col(col("id")).eq(job.id))
            .to_owned();
        db.execute(&update).await.map(drop)
    }

    /// Hands leased rows to the bus, all in flight at once, and records
    /// what became of each: published, refused (tried again later), or, from
    /// the first sign of an outage on, handed back at once rather than when
    /// the lease runs out.
    async fn publish(&self, db: &DatabaseConnection, bus: &SharedBus, jobs: &[Row]) -> Result<(), OutboxError> {
        let now = Utc::now();
        let outgoing: Vec<(&str, Outgoing<'_>)> = jobs
            .iter()
            .map(|job| {
                let delay = (job.available_at - now).to_std().ok().filter(|d| !d.is_zero());
                (job.topic.as_str(), Outgoing { payload: job.payload.as_bytes(), delay, trace: &job.trace })
            })
            .collect();
        let mut answers = bus.publish_all(&outgoing).await.into_iter();
        let mut published = Vec::with_capacity(jobs.len());
        let mut unanswered = Vec::new();
        let mut outage = None;
        for job in jobs {
            match (outage.is_some(), answers.next()) {
                (true, _) | (false, None) => unanswered.push(job.id),
                (false, Some(Ok(()))) => {
                    published.push(job.id);
                    metrics::counter!("offers_outbox_published_total", "topic" => job.topic.clone()).increment(1);
                }
                // The broker is away: every job would fail alike.
                (false, Some(Err(e))) if e.is_outage() => {
                    unanswered.push(job.id);
                    outage = Some(e);
                }
                // This job alone was refused: it must not hold up the others.
                (false, Some(Err(e))) => {
                    metrics::counter!("offers_outbox_publish_failures_total", "table" => self.table).increment(1);
                    tracing::warn!(table = self.table, id = %job.id, topic = job.topic, attempts = job.attempts + 1, error = %e, "the broker refused an outbox job; will retry it later");
                    self.postpone(db, job).await?;
                }
            }
        }
        self.set(db, published, "published_at", Some(Utc::now())).await?;
        self.set(db, unanswered, "lease_until", None).await?;
        outage.map_or(Ok(()), |e| Err(e.into()))
    }
}

/// One outbox row on its way to the bus.
struct Row {
    id: Uuid,
    topic: String,
    payload: String,
    available_at: DateTime<Utc>,
    attempts: i32,
    trace: Carrier,
}

/// The current trace, as an outbox row keeps it (none outside a trace).
fn trace_context() -> Result<Option<String>, serde_json::Error> {
    let carrier = crate::trace::current_carrier();
    if carrier.is_empty() { Ok(None) } else { serde_json::to_string(&carrier).map(Some) }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use async_trait::async_trait;

    use super::*;
    use crate::bus::{Bus, BusError, Handler, Parked};
    use crate::config::DatabaseSettings;

    /// A broker that refuses every job of one topic, and goes away after
    /// taking `away_after` jobs.
    struct Broker {
        refuses: &'static str,
        away_after: usize,
        published: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Bus for Broker {
        async fn publish(&self, topic: &str, job: Outgoing<'_>) -> Result<(), BusError> {
            if self.published.lock().unwrap_or_else(|p| p.into_inner()).len() >= self.away_after {
                return Err(BusError::Broker("connection refused".into()));
            }
            if topic == self.refuses {
                return Err(BusError::Refused("inequivalent arg 'x-delivery-limit'".into()));
            }
            self.published.lock().unwrap_or_else(|p| p.into_inner()).push(String::from_utf8_lossy(job.payload).into());
            Ok(())
        }

        async fn consume(&self, _: &str, _: Arc<dyn Handler>, _: CancellationToken) {}

        async fn ping(&self) -> Result<(), BusError> {
            Ok(())
        }

        async fn parked(&self, topic: &str, _: usize) -> Result<Parked, BusError> {
            Err(BusError::NoSuchTopic(topic.into()))
        }

        async fn replay(&self, topic: &str, _: usize) -> Result<usize, BusError> {
            Err(BusError::NoSuchTopic(topic.into()))
        }
    }

    fn broker(refuses: &'static str, away_after: usize) -> (Arc<Broker>, SharedBus) {
        let broker = Arc::new(Broker { refuses, away_after, published: Mutex::default() });
        (broker.clone(), broker)
    }

    const TABLE: &str = "test_outbox";

    async fn outbox_with(jobs: &[(&str, u32)]) -> (DatabaseConnection, Outbox) {
        let settings = DatabaseSettings { url: "sqlite::memory:".into(), max_connections: 1, ..Default::default() };
        let db = crate::db::connect(&settings).await.expect("sqlite");
        let manager = SchemaManager::new(&db);
        Outbox::create_table(&manager, TABLE).await.expect("table");
        Outbox::add_attempts(&manager, TABLE).await.expect("attempts column");
        Outbox::add_trace_context(&manager, TABLE).await.expect("trace column");
        let outbox = Outbox::new(TABLE);
        for (topic, job) in jobs {
            outbox.enqueue(&db, topic, job, Utc::now()).await.expect("enqueue");
        }
        (db, outbox)
    }

    /// Each row, in order: (payload, attempts, published, leased, due later).
    async fn rows(db: &DatabaseConnection) -> Vec<(String, i32, bool, bool, bool)> {
        let select = Query::select()
            .columns(["payload", "attempts", "published_at", "lease_until", "available_at"].map(col))
            .from(col(TABLE))
            .order_by(col("id"), Order::Asc)
            .to_owned();
        let now = Utc::now();
        let get = |row: &sea_orm::QueryResult| -> Result<_, DbErr> {
            let published: Option<DateTime<Utc>> = row.try_get("", "published_at")?;
            let leased: Option<DateTime<Utc>> = row.try_get("", "lease_until")?;
            let available_at: DateTime<Utc> = row.try_get("", "available_at")?;
            Ok((
                row.try_get("", "payload")?,
                row.try_get("", "attempts")?,
                published.is_some(),
                leased.is_some(),
                available_at > now,
            ))
        };
        db.query_all(&select).await.expect("rows").iter().map(|r| get(r).expect("row")).collect()
    }

    #[tokio::test]
    async fn a_refused_job_does_not_hold_back_the_ones_behind_it() {
        let (db, outbox) = outbox_with(&[("poison", 1), ("fine", 2), ("fine", 3)]).await;
        let (broker, bus) = broker("poison", usize::MAX);
        outbox.drain(&db, &bus).await.expect("the drain goes on past a refusal");
        assert_eq!(*broker.published.lock().expect("lock"), ["2", "3"]);
        let poisoned = ("1".to_string(), 1, false, false, true);
        assert_eq!(rows(&db).await[0], poisoned, "tried again later, not leased");

        // Not again before its time.
        outbox.drain(&db, &bus).await.expect("drain");
        assert_eq!(rows(&db).await[0], poisoned);

        // Its time come, it is tried again, and pushed further off.
        let due = Query::update().table(col(TABLE)).value(col("available_at"), Utc::now()).to_owned();
        db.execute(&due).await.expect("make it due");
        outbox.drain(&db, &bus).await.expect("drain");
        assert_eq!(rows(&db).await[0], ("1".to_string(), 2, false, false, true));
        assert_eq!(broker.published.lock().expect("lock").len(), 2);
    }

    #[tokio::test]
    async fn an_outage_stops_the_drain_and_keeps_every_job_as_it_was() {
        let (db, outbox) = outbox_with(&[("fine", 1), ("fine", 2)]).await;
        let (_, bus) = broker("none", 0);
        let stopped = outbox.drain(&db, &bus).await;
        assert!(matches!(stopped, Err(OutboxError::Bus(BusError::Broker(_)))), "{stopped:?}");
        for row in rows(&db).await {
            assert_eq!((row.1, row.2, row.3, row.4), (0, false, false, false), "{row:?}");
        }
    }

    #[tokio::test]
    async fn an_outage_in_a_batch_keeps_what_went_and_hands_back_the_rest() {
        let jobs: Vec<(&str, u32)> = (1..=5).map(|n| ("fine", n)).collect();
        let (db, outbox) = outbox_with(&jobs).await;
        let (broker, bus) = broker("none", 2);
        let stopped = outbox.drain(&db, &bus).await;
        assert!(matches!(stopped, Err(OutboxError::Bus(BusError::Broker(_)))), "{stopped:?}");
        assert_eq!(*broker.published.lock().expect("lock"), ["1", "2"]);
        let states: Vec<(bool, bool)> = rows(&db).await.into_iter().map(|row| (row.2, row.3)).collect();
        let (sent, back) = ((true, true), (false, false));
        assert_eq!(states, [sent, sent, back, back, back], "(published, leased) of each row");
    }

    #[tokio::test]
    async fn a_leased_batch_is_left_to_the_relay_that_took_it() {
        let (db, outbox) = outbox_with(&[("fine", 1), ("fine", 2)]).await;
        let leased = outbox.lease(&db).await.expect("lease");
        assert_eq!(leased.iter().map(|job| job.payload.as_str()).collect::<Vec<_>>(), ["1", "2"]);
        let (broker, bus) = broker("none", usize::MAX);
        outbox.drain(&db, &bus).await.expect("drain");
        assert!(broker.published.lock().expect("lock").is_empty(), "another relay's lease was not honoured");
        assert!(outbox.lease(&db).await.expect("lease").is_empty());
    }
}
