//! Completion callbacks: when a partner's transaction settles, the ledger
//! queues an event; this worker posts it to the partner's callback URL,
//! signed, retrying with backoff. A delivery is claimed before it is made
//! and recorded once it succeeds, so each event is delivered successfully
//! at most once; partners dedupe on the event id all the same.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use hmac::{Hmac, Mac};
use offers_kit::audit::{Act, Deed, Trail};
use offers_kit::bus::{Delivery, Disposition, Handler, Outgoing, SharedBus, requeue_later};
use offers_kit::lease::{Follow, Lease, Redrive};
use offers_proto::contracts::{Job, PartnerEvent};
use offers_proto::ids::PartnerId;
use sea_orm::sea_query::{Condition, Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    TransactionTrait,
};
use serde_json::json;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::destination;
use crate::egress::{SystemLookup, callback_client, refused};
use crate::entity::{delivery, partner};
use crate::error::PartnerError;
use crate::settings::PartnerSettings;

pub const SIGNATURE_HEADER: &str = "X-Offers-Signature";
pub const TIMESTAMP_HEADER: &str = "X-Offers-Timestamp";
pub const EVENT_HEADER: &str = "X-Offers-Event-Id";

/// `v1=` and the hex HMAC-SHA256 of `"{timestamp}.{body}"` under the secret.
pub fn sign(secret: &str, timestamp: i64, body: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        unreachable!("HMAC takes keys of any length")
    };
    mac.update(format!("{timestamp}.{body}").as_bytes());
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a delivery did not go through.
enum Failure {
    /// Worth another try, with the reason recorded.
    Retry(String),
    /// The URL leads off the public internet (said why): never delivered.
    NotPublic(String),
}

pub struct CallbackWorker {
    db: DatabaseConnection,
    bus: SharedBus,
    http: reqwest::Client,
    settings: PartnerSettings,
    lease: Lease,
    /// Redeliveries are administrative acts.
    trail: Trail,
}

#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("bus: {0}")]
    Bus(#[from] offers_kit::bus::BusError),
}

impl CallbackWorker {
    pub fn new(db: DatabaseConnection, bus: SharedBus, settings: PartnerSettings) -> Result<Self, reqwest::Error> {
        let timeout = settings.callback_timeout;
        let http = callback_client(Arc::new(SystemLookup), settings.allow_private_callbacks, timeout)?;
        let lease = Lease {
            table: "partner_callback_deliveries",
            key: "event_id",
            open: Condition::all()
                .add(Expr::col(delivery::Column::DeliveredAt).is_null())
                .add(Expr::col(delivery::Column::AbandonedAt).is_null()),
            length: settings.callback_timeout * 2,
        };
        let trail = Trail::new(crate::service::TRAIL, db.clone());
        Ok(Self { db, bus, http, settings, lease, trail })
    }

    /// Re-drives, until `shutdown`, callbacks whose job was lost.
    pub async fn reconcile(self: Arc<Self>, shutdown: CancellationToken) {
        let redrive =
            Redrive { every: self.settings.callback_reconcile_interval, grace: self.settings.callback_redrive_grace };
        let (lease, db, bus) = (self.lease.clone(), self.db.clone(), self.bus.clone());
        let redriven = || metrics::counter!("offers_partner_callbacks_redriven_total");
        lease.reconcile(db, bus, PartnerEvent::TOPIC, redrive, redriven, shutdown).await;
    }

    /// Makes sure the event has its delivery row (the first job creates it),
    /// waiting for this job from now on.
    async fn register(&self, event: &PartnerEvent) -> Result<(), DeliveryError> {
        let row = delivery::ActiveModel {
            event_id: Set(event.event_id),
            partner_id: Set(event.partner_id.uuid()),
            transaction_id: Set(event.transaction_id.uuid()),
            attempts: Set(0),
            lease_until: Set(None),
            delivered_at: Set(None),
            abandoned_at: Set(None),
            last_error: Set(None),
            created_at: Set(Utc::now()),
            job: Set(serde_json::to_string(event).ok()),
            job_due_at: Set(Some(Utc::now())),
        };
        delivery::Entity::insert(row)
            .on_conflict(OnConflict::column(delivery::Column::EventId).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// A partner's deliveries, newest first.
    pub async fn deliveries(
        &self,
        partner_id: PartnerId,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<delivery::Model>, PartnerError> {
        let mut query = delivery::Entity::find().filter(delivery::Column::PartnerId.eq(partner_id.uuid()));
        if let Some(after) = after {
            query = query.filter(delivery::Column::EventId.lt(after));
        }
        Ok(query.order_by_desc(delivery::Column::EventId).limit(limit).all(&self.db).await?)
    }

    /// Sends an abandoned callback again from its first retry: the row is
    /// open again and waits for the new job (so the reconciler re-drives it
    /// should this publish be lost), recorded in the audit trail with the act.
    pub async fn redeliver(&self, event_id: Uuid, act: &Act) -> Result<delivery::Model, PartnerError> {
        let row =
            delivery::Entity::find_by_id(event_id).one(&self.db).await?.ok_or(PartnerError::NotFound("delivery"))?;
        if row.delivered_at.is_some() {
            return Err(PartnerError::Conflict("the partner acknowledged this callback already".into()));
        }
        if row.abandoned_at.is_none() {
            return Err(PartnerError::Conflict("this callback is still being retried".into()));
        }
        let event =
            row.job.as_deref().and_then(|job| serde_json::from_str::<PartnerEvent>(job).ok()).ok_or_else(|| {
                PartnerError::Invalid("this delivery predates recorded jobs: it cannot be sent again".into())
            })?;
        let event = PartnerEvent { attempt: 0, ..event };
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let reopened = delivery::Entity::update_many()
            .col_expr(delivery::Column::AbandonedAt, Expr::value(Option::<chrono::DateTime<Utc>>::None))
            .col_expr(delivery::Column::LeaseUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None))
            .col_expr(delivery::Column::Job, Expr::value(serde_json::to_string(&event).ok()))
            .col_expr(delivery::Column::JobDueAt, Expr::value(Some(now)))
            .filter(delivery::Column::EventId.eq(event_id))
            .filter(delivery::Column::AbandonedAt.is_not_null())
            .exec(&txn)
            .await?;
        if reopened.rows_affected != 1 {
            return Err(PartnerError::Conflict("another redelivery of this callback came first".into()));
        }
        let deed = Deed {
            action: "callback.redeliver",
            target: format!("callback:{event_id}"),
            detail: format!(
                "partner={} transaction={} attempts_so_far={}",
                row.partner_id, row.transaction_id, row.attempts
            ),
        };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        let carrier = offers_kit::trace::current_carrier();
        if let Err(e) = self.bus.publish(PartnerEvent::TOPIC, Outgoing::new(&payload, &carrier)).await {
            tracing::warn!(%event_id, error = %e, "redelivery not published; the reconciler sends it");
        }
        delivery::Entity::find_by_id(event_id).one(&self.db).await?.ok_or(PartnerError::NotFound("delivery"))
    }

    async fn record(
        &self,
        event: &PartnerEvent,
        outcome: Result<(), String>,
        give_up: bool,
    ) -> Result<(), DeliveryError> {
        let now = Utc::now();
        let mut update = delivery::Entity::update_many()
            .col_expr(delivery::Column::Attempts, Expr::col(delivery::Column::Attempts).add(1))
            .col_expr(delivery::Column::LeaseUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None));
        update = match &outcome {
            Ok(()) => update.col_expr(delivery::Column::DeliveredAt, Expr::value(now)),
            Err(error) => {
                let update = update.col_expr(delivery::Column::LastError, Expr::value(error.clone()));
                if give_up { update.col_expr(delivery::Column::AbandonedAt, Expr::value(now)) } else { update }
            }
        };
        update.filter(delivery::Column::EventId.eq(event.event_id)).exec(&self.db).await?;
        Ok(())
    }

    async fn post(&self, url: url::Url, secret: &str, event: &PartnerEvent) -> Result<(), Failure> {
        let body = json!({
            "event_id": event.event_id,
            "reference": event.reference,
            "transaction_id": event.transaction_id,
            "status": event.status,
            "failure_reason": event.failure_reason,
            "occurred_at": event.occurred_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        })
        .to_string();
        let timestamp = Utc::now().timestamp();
        // The partner may join its own trace to ours.
        let mut trace = http::HeaderMap::new();
        offers_kit::trace::inject_headers(&mut trace);
        let response = self
            .http
            .post(url)
            .headers(trace)
            .header("Content-Type", "application/json")
            .header(EVENT_HEADER, event.event_id.to_string())
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, sign(secret, timestamp, &body))
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if refused(&e) {
                    Failure::NotPublic("the callback URL does not lead to a public address".into())
                } else {
                    Failure::Retry(format!("callback failed: {}", e.without_url()))
                }
            })?;
        match response.status() {
            status if status.is_success() => Ok(()),
            status => Err(Failure::Retry(format!("callback answered {status}"))),
        }
    }

    async fn deliver(&self, event: PartnerEvent) -> Result<(), DeliveryError> {
        self.register(&event).await?;
        self.lease
            .deliver(&self.db, &self.bus, PartnerEvent::TOPIC, event.event_id, &event, async || {
                self.attempt(&event).await
            })
            .await
    }

    /// One delivery attempt; a failure that is worth retrying comes back as
    /// the next attempt's event and its delay.
    async fn attempt(&self, event: &PartnerEvent) -> Result<Follow<PartnerEvent>, DeliveryError> {
        let event = event.clone();
        let partner = partner::Entity::find_by_id(event.partner_id.uuid()).one(&self.db).await?;
        let Some((url, secret)) = partner.and_then(|p| p.callback_url.zip(p.callback_secret)) else {
            // Nobody to tell: the partner registered no callback.
            self.record(&event, Err("no callback URL registered".into()), true).await?;
            return Ok(None);
        };
        // Checked again, as the client will read it: the URL may have been
        // stored under older rules; its name's addresses, by the resolver.
        let outcome = match destination::callback_url(&url, self.settings.allow_private_callbacks) {
            Ok(target) => self.post(target, &secret, &event).await,
            Err(refusal) => Err(Failure::NotPublic(refusal.to_string())),
        };
        let outcome = match outcome {
            Ok(()) => Ok(()),
            Err(Failure::Retry(error)) => Err(error),
            Err(Failure::NotPublic(why)) => {
                // Checked at delivery too: a name can be pointed inside after registration.
                metrics::counter!("offers_partner_callbacks_total", "result" => "refused").increment(1);
                self.record(&event, Err(why), true).await?;
                return Ok(None);
            }
        };
        let attempt = event.attempt + 1;
        let give_up = !self.settings.callback_retry.allows_after(attempt);
        match &outcome {
            Ok(()) => metrics::counter!("offers_partner_callbacks_total", "result" => "delivered").increment(1),
            Err(e) if give_up => {
                metrics::counter!("offers_partner_callbacks_total", "result" => "abandoned").increment(1);
                tracing::error!(event_id = %event.event_id, partner_id = %event.partner_id, error = %e, "giving up on a callback");
            }
            Err(e) => {
                metrics::counter!("offers_partner_callbacks_total", "result" => "retry").increment(1);
                tracing::warn!(event_id = %event.event_id, partner_id = %event.partner_id, attempt, error = %e, "callback failed; will retry");
            }
        }
        let failed = outcome.is_err();
        self.record(&event, outcome, give_up).await?;
        if !failed || give_up {
            return Ok(None);
        }
        let delay = self.settings.callback_retry.delay(attempt);
        Ok(Some((PartnerEvent { attempt, ..event }, delay)))
    }
}

#[async_trait]
impl Handler for CallbackWorker {
    async fn handle(&self, delivery: Delivery) -> Disposition {
        let Some(event) = delivery.decode::<PartnerEvent>() else { return Disposition::Ack };
        match self.deliver(event).await {
            Ok(()) => Disposition::Ack,
            Err(e) => requeue_later(&e).await,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn signatures_cover_timestamp_and_body() {
        let a = super::sign("secret", 1, "{}");
        assert!(a.starts_with("v1=") && a.len() == 3 + 64);
        assert_ne!(a, super::sign("secret", 2, "{}"));
        assert_ne!(a, super::sign("other", 1, "{}"));
        assert_eq!(a, super::sign("secret", 1, "{}"));
    }
}
