//! Delivers reminder jobs: claims the reminder, looks the user up through
//! auth, sends by every channel that reaches them, and records the outcome.
//! A channel that already delivered is not used again on a retry, and a
//! finished reminder is never sent again, however often its job arrives.

use async_trait::async_trait;
use chrono::Utc;
use offers_kit::bus::{Delivery, Disposition, Handler, SharedBus, requeue_later};
use offers_kit::grpc::InternalChannel;
use offers_kit::lease::{Follow, Lease, Redrive};
use offers_kit::{Error, ErrorCode};
use offers_proto::auth::v1::{self as auth, user_admin_service_client::UserAdminServiceClient};
use offers_proto::contracts::Job;
use sea_orm::sea_query::{Condition, Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::channels::{Channels, Text};
use crate::entity::reminder::{self, Status};
use crate::error::NotifierError;
use crate::settings::NotifierSettings;

/// Send one expiry reminder (scheduler → reminder worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderJob {
    pub reminder_id: Uuid,
    /// Delivery attempts made before this one.
    #[serde(default)]
    pub attempt: u32,
}

impl Job for ReminderJob {
    const TOPIC: &'static str = "notification.reminder";
}

pub struct ReminderWorker {
    db: DatabaseConnection,
    bus: SharedBus,
    users: UserAdminServiceClient<InternalChannel>,
    channels: Channels,
    settings: NotifierSettings,
    lease: Lease,
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
    pub fn new(
        db: DatabaseConnection,
        bus: SharedBus,
        users: UserAdminServiceClient<InternalChannel>,
        channels: Channels,
        settings: NotifierSettings,
    ) -> Self {
        let lease = Lease {
            table: "notifier_reminders",
            key: "id",
            open: Condition::all().add(Expr::col(reminder::Column::Status).eq(Status::Queued)),
            // Long enough for the user lookup and every channel's exchanges.
            length: settings.send_timeout * 10,
        };
        Self { db, bus, users, channels, settings, lease }
    }

    /// Re-drives, until `shutdown`, reminders whose job was lost.
    pub async fn reconcile(self: std::sync::Arc<Self>, shutdown: CancellationToken) {
        let redrive = Redrive { every: self.settings.reconcile_interval, grace: self.settings.redrive_grace };
        let (lease, db, bus) = (self.lease.clone(), self.db.clone(), self.bus.clone());
        let redriven = || metrics::counter!("offers_reminders_redriven_total");
        lease.reconcile(db, bus, ReminderJob::TOPIC, redrive, redriven, shutdown).await;
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
        let id = job.reminder_id;
        self.lease.deliver(&self.db, &self.bus, ReminderJob::TOPIC, id, &job, async || self.send(job).await).await
    }

    /// One delivery attempt; a transient failure comes back as the next
    /// attempt's job and its delay.
    async fn send(&self, job: ReminderJob) -> Result<Follow<ReminderJob>, NotifierError> {
        let Some(reminder) = reminder::Entity::find_by_id(job.reminder_id).one(&self.db).await? else {
            return Ok(None);
        };
        let lookup =
            auth::GetUserRequest { lookup: Some(auth::get_user_request::Lookup::Id(reminder.user_id.to_string())) };
        let user = match self.users.clone().get_user(lookup).await {
            Ok(answer) => answer.into_inner().user.unwrap_or_default(),
            Err(status) => match Error::from_status(status) {
                e if e.code == ErrorCode::NotFound => {
                    self.finish(reminder.id, Status::Skipped, &[], Some("user not found".into())).await?;
                    return Ok(None);
                }
                e => return Err(e.into()),
            },
        };
        let mut sent: Vec<&str> = reminder.sent_channels.split(',').filter(|c| !c.is_empty()).collect();
        let targets: Vec<_> = self.channels.iter().filter_map(|c| Some((c, c.address(&user)?))).collect();
        if targets.is_empty() {
            self.finish(reminder.id, Status::Skipped, &[], Some("no reachable channel".into())).await?;
            return Ok(None);
        }
        let name = if user.first_name.is_empty() { user.username.clone() } else { user.first_name.clone() };
        let text = render(&name, &reminder.offer_name, reminder.expires_at);
        let mut failures = Vec::new();
        for (channel, to) in &targets {
            if sent.contains(&channel.name()) {
                continue;
            }
            match channel.send(to, &text).await {
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
            self.finish(reminder.id, Status::Sent, &sent, None).await?;
            return Ok(None);
        }
        let attempt = job.attempt + 1;
        let retry = failures.iter().any(|e| e.transient) && self.settings.retry.allows_after(attempt);
        let error = failures.iter().map(|e| e.message.clone()).collect::<Vec<_>>().join("; ");
        if !retry {
            // What went out stays recorded; the rest is given up on.
            let status = if sent.is_empty() { Status::Failed } else { Status::Sent };
            self.finish(reminder.id, status, &sent, Some(error)).await?;
            return Ok(None);
        }
        self.finish(reminder.id, Status::Queued, &sent, Some(error)).await?;
        let delay = self.settings.retry.delay(attempt);
        Ok(Some((ReminderJob { reminder_id: reminder.id, attempt }, delay)))
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
