//! Contracts between services as the code holds them: a purchase (which
//! travels over gRPC, converted in one place), and what does not travel
//! over gRPC: the jobs on the bus and the transaction-status entry in the
//! cache. The producer and the consumer of each share the one type here.

mod purchase;

pub use purchase::{Idempotency, KeyScope, OfferSnapshot, OrderError, Payer, PurchaseKind, PurchaseOrder};

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::account::v1::TransactionStatus;
use crate::ids::{OfferId, PartnerId, SubscriptionId, TransactionId, UserId};

/// A job on the bus: its payload is the JSON of the type, on its topic.
pub trait Job: Serialize + DeserializeOwned + Send + Sync + 'static {
    const TOPIC: &'static str;
}

/// Provision a PENDING transaction with the external system (account →
/// activation worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionJob {
    pub transaction_id: TransactionId,
    /// The attempt this job may make; a job whose attempt was already made
    /// (a redelivery, a duplicate) is dropped.
    pub attempt: i32,
    /// What the attempt does; jobs written before steps existed provision.
    #[serde(default)]
    pub step: Step,
}

/// What a provisioning attempt does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Sends the request (and asks about the key when its outcome is open).
    #[default]
    Provision,
    /// Sends nothing: asks again about a key the provider reported not
    /// found before the settle window had passed since the last request
    /// was sent, which a request still queued at the provider could have
    /// overtaken (docs/ARCHITECTURE.md, "The provisioning contract").
    Confirm,
}

impl Job for ProvisionJob {
    const TOPIC: &'static str = "activation.provision";
}

/// A partner transaction reached a final state (account → partner
/// callback worker), as its callback reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartnerEvent {
    /// Stable per event: the partner dedupes on it.
    pub event_id: Uuid,
    pub partner_id: PartnerId,
    pub transaction_id: TransactionId,
    pub reference: String,
    pub status: String,
    pub failure_reason: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
    /// Delivery attempts made before this one.
    #[serde(default)]
    pub attempt: u32,
}

impl Job for PartnerEvent {
    const TOPIC: &'static str = "partner.callback";
}

/// An automatic renewal that charged nothing, or the new price one will
/// charge, to tell the subscriber (account → notifier): one per
/// subscription, period, reason and price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewalNotice {
    pub subscription_id: SubscriptionId,
    pub user_id: UserId,
    pub offer_name: String,
    /// The end of the period that was not renewed.
    pub period_end: chrono::DateTime<chrono::Utc>,
    /// Why nothing was charged (`insufficient_balance`, `offer_inactive`,
    /// `price_changed` or `lapsed`), or `price_notice`: the renewal will
    /// charge a new price.
    pub reason: String,
    /// The price the renewal charges, for `price_notice` and
    /// `price_changed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<Price>,
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Price {
    pub amount: i64,
    pub currency: String,
}

impl RenewalNotice {
    /// The reason of a notice telling the new price a renewal will charge.
    pub const PRICE_NOTICE: &'static str = "price_notice";
}

impl Job for RenewalNotice {
    const TOPIC: &'static str = "notification.renewal";
}

/// A transaction's status as cached after every change (account writes,
/// activation reads first). `revision` orders the writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub user_id: UserId,
    pub status: TransactionStatus,
    pub offer_id: OfferId,
    pub amount: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
    pub revision: i64,
    /// Until when the entry may be served without asking the ledger; after
    /// that only while the ledger cannot be reached, marked stale. `None`
    /// for a settled status, which never changes.
    pub fresh_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl StatusEntry {
    /// The cache key of transaction `id`'s entry.
    pub fn key(id: TransactionId) -> String {
        format!("tx:{id}")
    }

    /// The entry as hash fields (the revision travels beside them).
    pub fn to_fields(&self) -> Vec<(&'static str, String)> {
        vec![
            ("user_id", self.user_id.to_string()),
            ("status", self.status.as_str_name().to_string()),
            ("offer_id", self.offer_id.to_string()),
            ("amount", self.amount.to_string()),
            ("currency", self.currency.clone()),
            ("failure_reason", self.failure_reason.clone().unwrap_or_default()),
            ("updated_at", self.updated_at.to_rfc3339()),
            ("fresh_until", self.fresh_until.map(|t| t.to_rfc3339()).unwrap_or_default()),
        ]
    }

    /// The entry a hash holds, or `None` for an incomplete or foreign one
    /// (read it from the database instead).
    pub fn from_fields(fields: &HashMap<String, String>) -> Option<Self> {
        let get = |name: &str| fields.get(name).map(String::as_str);
        Some(Self {
            user_id: get("user_id")?.parse::<Uuid>().ok()?.into(),
            status: TransactionStatus::from_str_name(get("status")?)?,
            offer_id: get("offer_id")?.parse::<Uuid>().ok()?.into(),
            amount: get("amount")?.parse().ok()?,
            currency: get("currency")?.to_string(),
            failure_reason: get("failure_reason").filter(|r| !r.is_empty()).map(str::to_string),
            updated_at: chrono::DateTime::parse_from_rfc3339(get("updated_at")?).ok()?.to_utc(),
            revision: get("revision")?.parse().ok()?,
            fresh_until: match get("fresh_until").unwrap_or_default() {
                "" => None,
                at => Some(chrono::DateTime::parse_from_rfc3339(at).ok()?.to_utc()),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_entries_round_trip_through_fields() {
        let entry = StatusEntry {
            user_id: UserId::generate(),
            status: TransactionStatus::Failed,
            offer_id: OfferId::generate(),
            amount: 500,
            currency: "EUR".into(),
            failure_reason: Some("rejected".into()),
            updated_at: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("time"),
            revision: 4,
            fresh_until: Some(chrono::DateTime::from_timestamp(1_800_000_030, 0).expect("time")),
        };
        let mut fields: HashMap<String, String> =
            entry.to_fields().into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        fields.insert("revision".into(), "4".into());
        assert_eq!(StatusEntry::from_fields(&fields), Some(entry));
        fields.remove("status");
        assert_eq!(StatusEntry::from_fields(&fields), None);
    }
}
