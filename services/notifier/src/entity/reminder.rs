use sea_orm::ActiveValue::Set;
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;

use crate::worker::ReminderJob;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    #[sea_orm(string_value = "QUEUED")]
    Queued,
    #[sea_orm(string_value = "SENT")]
    Sent,
    /// The user has no channel we can reach.
    #[sea_orm(string_value = "SKIPPED")]
    Skipped,
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifier_reminders")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub subscription_id: Uuid,
    pub window_hours: i32,
    pub expires_at: DateTimeUtc,
    pub user_id: Uuid,
    pub offer_name: String,
    /// Why an automatic renewal charged nothing, for a renewal notice;
    /// empty for an expiry reminder.
    pub notice: String,
    /// The new price a price notice tells of; 0 for every other reminder.
    pub price: i64,
    pub status: Status,
    /// Channels already delivered (comma-separated), so a retry sends only
    /// what failed.
    pub sent_channels: String,
    pub attempts: i32,
    pub lease_until: Option<DateTimeUtc>,
    pub last_error: Option<String>,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
    /// The job the reminder waits for, and when it is due: what the
    /// reconciler publishes again if it is lost.
    pub job: Option<String>,
    pub job_due_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// What a reminder is about: the once-rule's key (subscription, window,
/// expiry, notice, price) and who is told of which offer.
pub struct About {
    pub subscription_id: Uuid,
    /// Hours before the expiry; 0 for a renewal notice.
    pub window_hours: i32,
    pub expires_at: DateTimeUtc,
    pub user_id: Uuid,
    pub offer_name: String,
    /// Empty for an expiry reminder.
    pub notice: String,
    /// The price a price notice tells of; 0 otherwise.
    pub price: i64,
}

impl About {
    /// A new reminder, recorded as of `created_at` (a pass's moment), queued
    /// with its first job due now, and that job.
    pub fn queued(self, created_at: DateTimeUtc) -> (ActiveModel, ReminderJob) {
        let id = Uuid::now_v7();
        let job = ReminderJob { reminder_id: id, attempt: 0 };
        let row = ActiveModel {
            id: Set(id),
            subscription_id: Set(self.subscription_id),
            window_hours: Set(self.window_hours),
            expires_at: Set(self.expires_at),
            user_id: Set(self.user_id),
            offer_name: Set(self.offer_name),
            notice: Set(self.notice),
            price: Set(self.price),
            status: Set(Status::Queued),
            sent_channels: Set(String::new()),
            attempts: Set(0),
            lease_until: Set(None),
            last_error: Set(None),
            created_at: Set(created_at),
            finished_at: Set(None),
            job: Set(serde_json::to_string(&job).ok()),
            job_due_at: Set(Some(chrono::Utc::now())),
        };
        (row, job)
    }
}

/// Inserts `row` unless a reminder with its once-key exists; how many it
/// inserted (0 or 1).
pub async fn insert_once(db: &impl ConnectionTrait, row: ActiveModel) -> Result<u64, DbErr> {
    let once = [Column::SubscriptionId, Column::WindowHours, Column::ExpiresAt, Column::Notice, Column::Price];
    Entity::insert(row).on_conflict(OnConflict::columns(once).do_nothing().to_owned()).exec_without_returning(db).await
}
