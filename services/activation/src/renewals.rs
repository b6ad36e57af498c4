//! The renewal pass: every subscription whose owner asked for automatic
//! renewal and that ends within `renewal.lead` is renewed from its owner's
//! balance through the same purchase a user's renewal makes (hold,
//! provisioning job, settlement), at the offer's current price. A period is
//! charged at most once because the ledger refuses a second renewal of it
//! (`conflict`), whoever makes it — another replica's pass, a pass after a
//! crash, the owner by hand — so replicas need no lock. What charges
//! nothing is noted on the subscription (`last_renewal`); the pass tries
//! again on later passes until the subscription ends, then turns automatic
//! renewal off.

use std::time::Duration;

use chrono::{DateTime, Utc};
use offers_kit::grpc::{InternalChannel, from_timestamp, to_timestamp};
use offers_kit::{Error, ErrorCode};
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::catalog::v1::{self as catalog, catalog_admin_service_client::CatalogAdminServiceClient};
use offers_proto::contracts::{PurchaseKind, PurchaseOrder};
use offers_proto::ids::{Id, SubscriptionId, UserId};
use tokio_util::sync::CancellationToken;

/// The reasons a renewal charged nothing (the ledger's metric labels).
const INSUFFICIENT_BALANCE: &str = "insufficient_balance";
const OFFER_INACTIVE: &str = "offer_inactive";
const PRICE_CHANGED: &str = "price_changed";
const LAPSED: &str = "lapsed";

pub struct Renewals {
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    /// How long before its end a subscription is renewed.
    pub lead: Duration,
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RenewalReport {
    /// Charged and queued for provisioning.
    pub renewed: u32,
    /// Already renewed for this period, or being renewed.
    pub in_progress: u32,
    /// Nothing charged: no balance, offer withdrawn, price changed.
    pub not_charged: u32,
    /// Ended without a renewal: automatic renewal turned off.
    pub lapsed: u32,
    /// Could not be tried now (a dependency failed); the next pass will.
    pub failed: u32,
}

enum Outcome {
    Renewed,
    InProgress,
    NotCharged,
    Lapsed,
}

impl Renewals {
    /// One pass as of `now`.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<RenewalReport, Error> {
        let lead = chrono::Duration::from_std(self.lead).unwrap_or(chrono::Duration::MAX);
        let mut report = RenewalReport::default();
        let mut page_token = String::new();
        loop {
            let request = account::ListRenewalsDueRequest {
                due_before: Some(to_timestamp(now + lead)),
                page_size: 200,
                page_token: page_token.clone(),
            };
            let page = self.ledger.clone().list_renewals_due(request).await?.into_inner();
            for due in page.renewals {
                match self.renew(due, now).await {
                    Ok(Outcome::Renewed) => report.renewed += 1,
                    Ok(Outcome::InProgress) => report.in_progress += 1,
                    Ok(Outcome::NotCharged) => report.not_charged += 1,
                    Ok(Outcome::Lapsed) => report.lapsed += 1,
                    Err(e) => {
                        tracing::warn!(error = %e, "a renewal could not be tried; the next pass will");
                        report.failed += 1;
                    }
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        // A pass that found nothing to do is not news (it runs every few
        // minutes, and `offers dev` shows its first screen meanwhile).
        if report == RenewalReport::default() {
            tracing::debug!(?report, "renewal pass");
        } else {
            tracing::info!(?report, "renewal pass");
        }
        Ok(report)
    }

    /// Passes every `interval` until shutdown.
    pub async fn run(self, interval: Duration, stop: CancellationToken) {
        loop {
            if let Err(e) = self.run_once(Utc::now()).await {
                tracing::warn!(error = %e, "renewal pass failed; trying again at the next");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    async fn renew(&self, due: account::DueRenewal, now: DateTime<Utc>) -> Result<Outcome, Error> {
        let sub = due.subscription.ok_or_else(|| Error::internal("the ledger listed no subscription"))?;
        let id = SubscriptionId::parse(&sub.id)?;
        let ends = sub.expire_time.as_ref().and_then(from_timestamp).ok_or_else(|| Error::internal("no expiry"))?;
        let pending = sub.last_renewal.as_ref().is_some_and(|r| r.status() == account::TransactionStatus::Pending);
        if pending {
            return Ok(Outcome::InProgress);
        }
        if ends <= now {
            self.note(id, ends, LAPSED, true).await?;
            return Ok(Outcome::Lapsed);
        }
        let lookup = catalog::LookupOfferRequest { id: sub.offer_id.clone() };
        let offer = match self.catalog.clone().lookup_offer(lookup).await {
            Ok(answer) => answer.into_inner().offer.filter(|o| o.is_active),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(status.into()),
        };
        let Some(offer) = offer else {
            self.note(id, ends, OFFER_INACTIVE, true).await?;
            return Ok(Outcome::NotCharged);
        };
        // Never a new price its owner was not told of.
        if due.last_price != 0 && offer.price != due.last_price {
            self.note(id, ends, PRICE_CHANGED, false).await?;
            return Ok(Outcome::NotCharged);
        }
        let owner = UserId::parse(&sub.user_id)?;
        let kind = PurchaseKind::AutoRenewal { subscription: id, period_end: ends };
        let order = PurchaseOrder::new(owner, kind, &offer, None)?;
        match self.ledger.clone().purchase(account::PurchaseRequest::from(order)).await {
            Ok(_) => Ok(Outcome::Renewed),
            Err(status) => match Error::from_status(status) {
                e if e.code == ErrorCode::InsufficientBalance => {
                    self.note(id, ends, INSUFFICIENT_BALANCE, false).await?;
                    Ok(Outcome::NotCharged)
                }
                e if e.code == ErrorCode::Conflict => Ok(Outcome::InProgress),
                e => Err(e),
            },
        }
    }

    async fn note(&self, id: SubscriptionId, period_end: DateTime<Utc>, reason: &str, stop: bool) -> Result<(), Error> {
        let request = account::NoteRenewalRequest {
            subscription_id: id.to_string(),
            period_end: Some(to_timestamp(period_end)),
            reason: reason.into(),
            stop,
        };
        self.ledger.clone().note_renewal(request).await?;
        Ok(())
    }
}
