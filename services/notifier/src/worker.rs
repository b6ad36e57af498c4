//! Delivers reminder jobs: claims the reminder, looks the user up through
//! auth, sends by every channel that reaches them, and records the outcome.
//! A channel that already delivered is not used again on a retry, and a
//! finished reminder is never sent again, however often its job arrives.

use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use offers_kit::bus::{Delivery, Disposition, Handler, SharedBus, requeue_later};
use offers_kit::config::NotifierSettings;
use offers_kit::grpc::InternalChannel;
use offers_kit::jobs::{self, ReminderJob};
use offers_kit::retry::backoff;
use offers_kit::{Error, ErrorCode};
use offers_proto::auth::v1::{self as auth, user_admin_service_client::UserAdminServiceClient};
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::channels::{Channels, Text};
use crate::entity::reminder::{self, Status};
use crate::error::NotifierError;

enum Claim {
    Taken(reminder::Model),
    /// Sent, skipped or failed for good: nothing to do, ever.
    Done,
    /// Being sent elsewhere; its lease ends after this long.
    Busy(Duration),
}

pub struct ReminderWorker {
    pub db: DatabaseConnection,
    pub bus: SharedBus,
    pub users: UserAdminServiceClient<InternalChannel>,
    pub channels: Channels,
    pub settings: NotifierSettings,
}

pub fn render(name: &str, offer: &str, expires_at: chrono::DateTime<Utc>) -> Text {
    let when = expires_at.format("%Y-%m-%d %H:%M UTC");
    Text {
        subject: format!("Your {offer} ends on {}", expires_at.format("%Y-%m-%d")),
        body: format!(
            "Hello {name},\n\nYour {offer} subscription ends on {when}.\n\
             To keep it running, renew it before then: in the app, or with \
             POST /api/v1/offers/renew/.\n\n— Offers\n"
        ),
        short: format!("Offers: your {offer} ends {when}. Renew it in the app to keep it running."),
    }
}

impl ReminderWorker {
    async fn claim(&self, job: &ReminderJob) -> Result<Claim, NotifierError> {
        let now = Utc::now();
        // Long enough for the user lookup and every channel's exchanges.
        let lease = chrono::Duration::milliseconds(i64::try_from(self.settings.send_timeout_ms).unwrap_or(60_000) * 10);
        let claimed = reminder::Entity::update_many()
            .col_expr(reminder::Column::LeaseUntil, Expr::value(now + lease))
            .filter(reminder::Column::Id.eq(job.reminder_id))
            .filter(reminder::Column::Status.eq(Status::Queued))
            .filter(
                Condition::any().add(reminder::Column::LeaseUntil.is_null()).add(reminder::Column::LeaseUntil.lt(now)),
            )
            .exec(&self.db)
            .await?;
        let row = reminder::Entity::find_by_id(job.reminder_id).one(&self.db).await?;
        Ok(match row {
            Some(row) if claimed.rows_affected == 1 => Claim::Taken(row),
            Some(row) if row.status == Status::Queued => {
                let left = row.lease_until.map_or(chrono::Duration::zero(), |until| until - now);
                Claim::Busy(left.to_std().unwrap_or_default() + Duration::from_secs(1))
            }
            _ => Claim::Done,
        })
    }

    /// Republishes the job to run after `delay`; acked only once the copy is
    /// with the broker, so it cannot be lost.
    async fn later(&self, job: ReminderJob, delay: Duration) -> Result<(), NotifierError> {
        let payload = serde_json::to_vec(&job).unwrap_or_default();
        self.bus.publish(jobs::REMINDER, &payload, Some(delay)).await?;
        Ok(())
    }

    async fn finish(
        &self,
        id: uuid::Uuid,
        status: Status,
        sent: &[&str],
        error: Option<String>,
    ) -> Result<(), NotifierError> {
        let mut update = reminder::Entity::update_many()
            .col_expr(reminder::Column::Status, Expr::value(status))
            .col_expr(reminder::Column::SentChannels, Expr::value(sent.join(",")))
            .col_expr(reminder::Column::Attempts, Expr::col(reminder::Column::Attempts).add(1))
            .col_expr(reminder::Column::LastError, Expr::value(error))
            .col_expr(reminder::Column::LeaseUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None));
        if status != Status::Queued {
            update = update.col_expr(reminder::Column::FinishedAt, Expr::value(Utc::now()));
        }
        update.filter(reminder::Column::Id.eq(id)).exec(&self.db).await?;
        Ok(())
    }

    async fn deliver(&self, job: ReminderJob) -> Result<(), NotifierError> {
        let reminder = match self.claim(&job).await? {
            Claim::Taken(reminder) => reminder,
            Claim::Done => return Ok(()),
            // Someone holds it (or held it and died): look again after the lease.
            Claim::Busy(wait) => return self.later(job, wait).await,
        };
        let id = reminder.id;
        let result = self.send(job, reminder).await;
        if result.is_err() {
            // Give it back so the requeued job can take it at once.
            let released = reminder::Entity::update_many()
                .col_expr(reminder::Column::LeaseUntil, Expr::value(Option::<chrono::DateTime<Utc>>::None))
                .filter(reminder::Column::Id.eq(id))
                .exec(&self.db)
                .await;
            if let Err(e) = released {
                tracing::warn!(reminder_id = %id, error = %e, "could not release a reminder; its lease will expire");
            }
        }
        result
    }

    async fn send(&self, job: ReminderJob, reminder: reminder::Model) -> Result<(), NotifierError> {
        let lookup =
            auth::GetUserRequest { lookup: Some(auth::get_user_request::Lookup::Id(reminder.user_id.to_string())) };
        let user = match self.users.clone().get_user(lookup).await {
            Ok(answer) => answer.into_inner().user.unwrap_or_default(),
            Err(status) => match Error::from_status(status) {
                e if e.code == ErrorCode::NotFound => {
                    return self.finish(reminder.id, Status::Skipped, &[], Some("user not found".into())).await;
                }
                e => {
                    // Release the claim so the redelivered job can try again.
                    self.finish(reminder.id, Status::Queued, &[], Some(e.to_string())).await?;
                    return Err(e.into());
                }
            },
        };
        let mut sent: Vec<&str> = reminder.sent_channels.split(',').filter(|c| !c.is_empty()).collect();
        let targets = self.channels.reaching(&user.email, &user.phone_number);
        if targets.is_empty() {
            return self.finish(reminder.id, Status::Skipped, &[], Some("no reachable channel".into())).await;
        }
        let name = if user.first_name.is_empty() { user.username.clone() } else { user.first_name.clone() };
        let text = render(&name, &reminder.offer_name, reminder.expires_at);
        let mut failures = Vec::new();
        for (channel, to) in &targets {
            if sent.contains(&channel.name()) {
                continue;
            }
            match self.channels.send(*channel, to, &text).await {
                Ok(()) => {
                    metrics::counter!("offers_reminders_sent_total", "channel" => channel.name()).increment(1);
                    sent.push(channel.name());
                }
                Err(e) => {
                    metrics::counter!("offers_reminders_failed_total", "channel" => channel.name()).increment(1);
                    tracing::warn!(reminder_id = %reminder.id, channel = channel.name(), error = %e, "reminder not sent");
                    failures.push(e);
                }
            }
        }
        if failures.is_empty() {
            return self.finish(reminder.id, Status::Sent, &sent, None).await;
        }
        let attempt = job.attempt + 1;
        let retry = failures.iter().any(|e| e.transient) && attempt < self.settings.max_attempts;
        let error = failures.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
        if !retry {
            // What went out stays recorded; the rest is given up on.
            let status = if sent.is_empty() { Status::Failed } else { Status::Sent };
            return self.finish(reminder.id, status, &sent, Some(error)).await;
        }
        self.finish(reminder.id, Status::Queued, &sent, Some(error)).await?;
        let delay = backoff(
            i32::try_from(attempt).unwrap_or(i32::MAX),
            Duration::from_millis(self.settings.retry_base_ms),
            Duration::from_millis(self.settings.retry_max_ms),
        );
        self.later(ReminderJob { reminder_id: reminder.id, attempt }, delay).await
    }
}

#[async_trait]
impl Handler for ReminderWorker {
    async fn handle(&self, delivery: Delivery) -> Disposition {
        let Some(job) = delivery.decode::<ReminderJob>() else { return Disposition::Ack };
        match self.deliver(job).await {
            Ok(()) => Disposition::Ack,
            Err(e) => requeue_later(&e).await,
        }
    }
}
