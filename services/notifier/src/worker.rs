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
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::auth::v1::{self as auth, user_admin_service_client::UserAdminServiceClient};
use offers_proto::contracts::{Job, RenewalNotice};
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
    ledger: LedgerServiceClient<InternalChannel>,
    channels: Channels,
    settings: NotifierSettings,
    lease: Lease,
}

/// What a reminder of a subscription that renews itself says besides its
/// end: the price the renewal charges and whether the balance covers it.
pub struct Renewing {
    pub price: i64,
    pub balance: i64,
    pub currency: String,
}

/// The text of a reminder: an expiry reminder (saying, for a subscription
/// that renews itself, when and for what), or (with a `notice`) why an
/// automatic renewal charged nothing, or the new price it will charge.
pub fn render(
    name: &str,
    (offer, expires_at): (&str, chrono::DateTime<Utc>),
    notice: &str,
    renewing: Option<&Renewing>,
) -> Text {
    let when = expires_at.format("%Y-%m-%d %H:%M UTC");
    let renewal = |subject: String, what: String| Text {
        subject,
        body: format!("Hello {name},\n\n{what}\n\n— Offers\n"),
        short: format!("Offers: {what}"),
    };
    match notice {
        "insufficient_balance" => {
            return renewal(
                format!("We could not renew your {offer}"),
                format!(
                    "We could not renew your {offer}: your balance does not cover it. Top up by {when} \
                     and it will be renewed; otherwise it ends then."
                ),
            );
        }
        "offer_inactive" => {
            return renewal(
                format!("Your {offer} will not renew"),
                format!("Your {offer} will not renew: the offer is no longer sold. It ends on {when}."),
            );
        }
        "price_changed" => {
            return renewal(
                format!("Your {offer} was not renewed"),
                format!(
                    "Your {offer} was not renewed automatically: its price changed too recently to charge \
                     the new price without notice. Renew it yourself by {when} to keep it."
                ),
            );
        }
        "lapsed" => {
            return renewal(
                format!("Your {offer} has ended"),
                format!("Your {offer} ended on {when} without a renewal; automatic renewal is now off."),
            );
        }
        _ => {}
    }
    if let Some(Renewing { price, balance, currency }) = renewing {
        let covered = if balance >= price {
            "Your balance covers it.".to_string()
        } else {
            format!("Your balance ({balance} {currency}) does not cover it: top up before then, or it ends.")
        };
        if notice == RenewalNotice::PRICE_NOTICE {
            return renewal(
                format!("The price of your {offer} changes"),
                format!(
                    "The price of your {offer} has changed: its automatic renewal on {when} charges \
                     {price} {currency} from your balance. {covered} To stop it, turn automatic renewal off \
                     in the app."
                ),
            );
        }
        return Text {
            subject: format!("Your {offer} renews on {}", expires_at.format("%Y-%m-%d")),
            body: format!(
                "Hello {name},\n\nYour {offer} renews automatically on {when} for {price} {currency} from \
                 your balance. {covered}\nTo stop it, turn automatic renewal off in the app.\n\n— Offers\n"
            ),
            short: format!("Offers: your {offer} renews {when} for {price} {currency}. {covered}"),
        };
    }
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
        (users, ledger): (UserAdminServiceClient<InternalChannel>, LedgerServiceClient<InternalChannel>),
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
        Self { db, bus, users, ledger, channels, settings, lease }
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
        let renewing = match reminder.notice.as_str() {
            "" => self.renewing(&reminder).await?,
            RenewalNotice::PRICE_NOTICE => match self.renewing(&reminder).await? {
                Some(renewing) => Some(renewing),
                None => {
                    self.finish(reminder.id, Status::Skipped, &[], Some("no longer renews itself".into())).await?;
                    return Ok(None);
                }
            },
            _ => None,
        };
        let text = render(&name, (&reminder.offer_name, reminder.expires_at), &reminder.notice, renewing.as_ref());
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

impl ReminderWorker {
    /// For a subscription that renews itself (as it stands when the
    /// reminder goes out), the price of its renewal and the balance.
    async fn renewing(&self, reminder: &reminder::Model) -> Result<Option<Renewing>, NotifierError> {
        let lookup = account::LookupSubscriptionRequest {
            lookup: Some(account::lookup_subscription_request::Lookup::Id(reminder.subscription_id.to_string())),
        };
        let found = match self.ledger.clone().lookup_subscription(lookup).await {
            Ok(answer) => answer.into_inner(),
            Err(status) if status.code() == tonic::Code::NotFound => return Ok(None),
            Err(status) => return Err(Error::from_status(status).into()),
        };
        let Some(subscription) = found.subscription.filter(|s| s.auto_renew) else { return Ok(None) };
        // A new price once it is announced, else what was last paid.
        let price = if subscription.announced_price != 0 { subscription.announced_price } else { found.last_price };
        if price == 0 {
            return Ok(None);
        }
        let request = account::GetAccountRequest {
            owner_id: reminder.user_id.to_string(),
            kind: account::AccountKind::User.into(),
        };
        let account = self.ledger.clone().get_account(request).await.map_err(Error::from_status)?.into_inner();
        let account = account.account.unwrap_or_default();
        Ok(Some(Renewing { price, balance: account.balance, currency: account.currency_code }))
    }

    /// Takes a renewal notice in as a reminder (once per subscription,
    /// period and reason, however often it arrives) and delivers it.
    async fn take_notice(&self, notice: RenewalNotice) -> Result<(), NotifierError> {
        let about_price = notice.price.as_ref().map_or(0, |p| p.amount);
        let about = reminder::About {
            subscription_id: notice.subscription_id.uuid(),
            window_hours: 0,
            expires_at: notice.period_end,
            user_id: notice.user_id.uuid(),
            offer_name: notice.offer_name,
            notice: notice.reason.clone(),
            price: about_price,
        };
        reminder::insert_once(&self.db, about.queued(Utc::now()).0).await?;
        // This notice's reminder, new or taken in before.
        let taken = reminder::Entity::find()
            .filter(reminder::Column::SubscriptionId.eq(notice.subscription_id.uuid()))
            .filter(reminder::Column::WindowHours.eq(0))
            .filter(reminder::Column::ExpiresAt.eq(notice.period_end))
            .filter(reminder::Column::Notice.eq(notice.reason))
            .filter(reminder::Column::Price.eq(about_price))
            .one(&self.db)
            .await?;
        match taken {
            Some(reminder) => self.deliver(ReminderJob { reminder_id: reminder.id, attempt: 0 }).await,
            None => Ok(()),
        }
    }
}

/// The renewal notices the ledger sends, taken in as reminders.
pub struct NoticeIntake(pub std::sync::Arc<ReminderWorker>);

#[async_trait]
impl Handler for NoticeIntake {
    async fn handle(&self, delivery: Delivery) -> Disposition {
        let Some(notice) = delivery.decode::<RenewalNotice>() else { return Disposition::Ack };
        match self.0.take_notice(notice).await {
            Ok(()) => Disposition::Ack,
            Err(e) => requeue_later(&e).await,
        }
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
