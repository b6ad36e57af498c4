//! The outbox relay: publishes jobs the ledger wrote, with publisher
//! confirms, and marks them published only once the broker has them. A job
//! that cannot be published stays in the outbox and is tried again, so an
//! outage of the broker delays jobs but loses none.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use offers_kit::bus::SharedBus;
use sea_orm::sea_query::{Condition, Expr};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::entity::outbox;

/// How long a relay owns a row it is publishing.
const LEASE: chrono::Duration = chrono::Duration::seconds(15);
const BATCH: u64 = 100;

pub struct Relay {
    pub db: DatabaseConnection,
    pub bus: SharedBus,
    pub wake: Arc<Notify>,
    pub interval: Duration,
}

impl Relay {
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.interval;
        loop {
            match self.drain().await {
                Ok(()) => backoff = self.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay could not publish; will retry");
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

    /// Publishes everything due, batch after batch.
    async fn drain(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        loop {
            let now = Utc::now();
            let rows = outbox::Entity::find()
                .filter(outbox::Column::PublishedAt.is_null())
                .filter(
                    Condition::any().add(outbox::Column::LeaseUntil.is_null()).add(outbox::Column::LeaseUntil.lt(now)),
                )
                .order_by_asc(outbox::Column::Id)
                .limit(BATCH)
                .all(&self.db)
                .await?;
            let backlog = rows.len();
            metrics::gauge!("offers_outbox_backlog").set(backlog as f64);
            for row in rows {
                self.publish(row).await?;
            }
            if (backlog as u64) < BATCH {
                return Ok(());
            }
        }
    }

    async fn publish(&self, row: outbox::Model) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let now = Utc::now();
        // Take the row for a while, so another relay replica leaves it alone.
        let leased = outbox::Entity::update_many()
            .col_expr(outbox::Column::LeaseUntil, Expr::value(now + LEASE))
            .filter(outbox::Column::Id.eq(row.id))
            .filter(outbox::Column::PublishedAt.is_null())
            .filter(Condition::any().add(outbox::Column::LeaseUntil.is_null()).add(outbox::Column::LeaseUntil.lt(now)))
            .exec(&self.db)
            .await?;
        if leased.rows_affected != 1 {
            return Ok(());
        }
        let delay = (row.available_at - now).to_std().ok().filter(|d| !d.is_zero());
        if let Err(e) = self.bus.publish(&row.topic, row.payload.as_bytes(), delay).await {
            // Hand the row back at once rather than when the lease runs out.
            outbox::Entity::update_many()
                .col_expr(outbox::Column::LeaseUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None))
                .filter(outbox::Column::Id.eq(row.id))
                .exec(&self.db)
                .await?;
            return Err(e.into());
        }
        outbox::Entity::update_many()
            .col_expr(outbox::Column::PublishedAt, Expr::value(Utc::now()))
            .filter(outbox::Column::Id.eq(row.id))
            .exec(&self.db)
            .await?;
        metrics::counter!("offers_outbox_published_total", "topic" => row.topic).increment(1);
        Ok(())
    }
}
