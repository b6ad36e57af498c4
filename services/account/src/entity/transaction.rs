use offers_proto::account::v1 as pb;
use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
pub enum Kind {
    #[sea_orm(string_value = "ACTIVATION")]
    Activation,
    #[sea_orm(string_value = "RENEWAL")]
    Renewal,
    #[sea_orm(string_value = "PARTNER_ACTIVATION")]
    PartnerActivation,
    #[sea_orm(string_value = "GIFT")]
    Gift,
    #[sea_orm(string_value = "AUTO_RENEWAL")]
    AutoRenewal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum Status {
    #[sea_orm(string_value = "PENDING")]
    Pending,
    #[sea_orm(string_value = "SUCCESS")]
    Success,
    #[sea_orm(string_value = "FAILED")]
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "PENDING",
            Status::Success => "SUCCESS",
            Status::Failed => "FAILED",
        }
    }
}

impl From<Kind> for pb::TransactionKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Activation => pb::TransactionKind::Activation,
            Kind::Renewal => pb::TransactionKind::Renewal,
            Kind::PartnerActivation => pb::TransactionKind::PartnerActivation,
            Kind::Gift => pb::TransactionKind::Gift,
            Kind::AutoRenewal => pb::TransactionKind::AutoRenewal,
        }
    }
}

impl From<Status> for pb::TransactionStatus {
    fn from(status: Status) -> Self {
        match status {
            Status::Pending => pb::TransactionStatus::Pending,
            Status::Success => pb::TransactionStatus::Success,
            Status::Failed => pb::TransactionStatus::Failed,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "account_transactions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Whose transaction it is: who sees it and its status. The
    /// subscription's owner too, except for a gift (`recipient_id`).
    pub user_id: Uuid,
    pub kind: Kind,
    pub offer_id: Uuid,
    pub offer_code: String,
    pub offer_name: String,
    pub duration_days: i32,
    pub subscription_id: Option<Uuid>,
    pub amount: i64,
    pub currency: String,
    pub status: Status,
    #[sea_orm(unique)]
    pub reference: Option<String>,
    pub partner_id: Option<Uuid>,
    /// Who paid and gets the money back on failure: the user's account, or
    /// the partner's for a partner activation.
    pub payer_account_id: Uuid,
    pub failure_reason: Option<String>,
    pub last_error: Option<String>,
    /// Provisioning attempts claimed so far.
    pub attempts: i32,
    /// Bumped by every change, so caches keep the newest copy.
    pub revision: i64,
    /// When the reconciler may re-drive this transaction if still PENDING.
    pub redrive_at: DateTimeUtc,
    /// PENDING because the provider could not say whether it provisioned:
    /// no longer re-driven, never refunded until an operator decides.
    pub needs_review: bool,
    /// Why it waits for review (for operators).
    pub review_reason: Option<String>,
    /// Settled before the double-entry ledger existed: it has no transfers.
    pub legacy: bool,
    /// The expiry this transaction's success gave its subscription.
    pub extended_to: Option<DateTimeUtc>,
    /// A gift's recipient, who owns its subscription.
    pub recipient_id: Option<Uuid>,
    /// Its success turns on the subscription's automatic renewal.
    pub auto_renew: bool,
    /// A renewal's period: the expiry it extends from, as it was when the
    /// renewal was bought. At most one renewal not FAILED per period.
    pub renews_from: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Model {
    /// Whose subscription its success starts or extends.
    pub fn subscriber(&self) -> Uuid {
        self.recipient_id.unwrap_or(self.user_id)
    }
}
