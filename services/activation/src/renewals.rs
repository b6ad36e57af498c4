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
//!
//! A price other than the one last paid is charged only once it was
//! announced to the subscriber `renewal.price_notice_days` before: the pass
//! looks that far beyond `lead` to announce new prices in time (the ledger
//! records the announcement with the notice it sends, once per price).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use offers_kit::grpc::{InternalChannel, from_timestamp, to_timestamp};
use offers_kit::{Error, ErrorCode};
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::catalog::v1::{self as catalog, catalog_admin_service_client::CatalogAdminServiceClient};
use offers_proto::contracts::{PurchaseKind, PurchaseOrder};
use offers_proto::ids::{Id, SubscriptionId, UserId};
use tokio_util::sync::CancellationToken;

use crate::settings::RenewalSettings;

/// The reasons a renewal charged nothing (the ledger's metric labels).
const INSUFFICIENT_BALANCE: &str = "insufficient_balance";
const OFFER_INACTIVE: &str = "offer_inactive";
const PRICE_CHANGED: &str = "price_changed";
const LAPSED: &str = "lapsed";

pub struct Renewals {
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    pub settings: RenewalSettings,
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
    /// A new price announced to the subscriber.
    pub announced: u32,
    /// Could not be tried now (a dependency failed); the next pass will.
    pub failed: u32,
}

/// One pass: its moment, what it did, and the offers it looked up.
struct Pass {
    now: DateTime<Utc>,
    report: RenewalReport,
    offers: HashMap<String, Option<catalog::Offer>>,
}

impl Renewals {
    /// One pass as of `now`.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<RenewalReport, Error> {
        let horizon = self.settings.lead + self.settings.price_notice();
        let horizon = chrono::Duration::from_std(horizon).unwrap_or(chrono::Duration::MAX);
        let mut pass = Pass { now, report: RenewalReport::default(), offers: HashMap::new() };
        let mut page_token = String::new();
        loop {
            let request = account::ListRenewalsDueRequest {
                due_before: Some(to_timestamp(now + horizon)),
                page_size: 200,
                page_token: page_token.clone(),
            };
            let page = self.ledger.clone().list_renewals_due(request).await?.into_inner();
            for due in page.renewals {
                if let Err(e) = self.consider(due, &mut pass).await {
                    tracing::warn!(error = %e, "a renewal could not be tried; the next pass will");
                    pass.report.failed += 1;
                }
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        // A pass that found nothing to do is not news (it runs every few
        // minutes, and `offers dev` shows its first screen meanwhile).
        let report = pass.report;
        if report == RenewalReport::default() {
            tracing::debug!(?report, "renewal pass");
        } else {
            tracing::info!(?report, "renewal pass");
        }
        Ok(report)
    }

    /// Passes every `interval` until shutdown.
    pub async fn run(self, stop: CancellationToken) {
        loop {
            if let Err(e) = self.run_once(Utc::now()).await {
                tracing::warn!(error = %e, "renewal pass failed; trying again at the next");
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.settings.interval) => {}
            }
        }
    }

    /// Renews, announces or notes what one due subscription needs, counted
    /// in the pass's report.
    async fn consider(&self, due: account::DueRenewal, pass: &mut Pass) -> Result<(), Error> {
        let now = pass.now;
        let mut sub = due.subscription.ok_or_else(|| Error::internal("the ledger listed no subscription"))?;
        let id = SubscriptionId::parse(&sub.id)?;
        let ends = sub.expire_time.as_ref().and_then(from_timestamp).ok_or_else(|| Error::internal("no expiry"))?;
        let pending = sub.last_renewal.as_ref().is_some_and(|r| r.status() == account::TransactionStatus::Pending);
        if pending {
            pass.report.in_progress += 1;
            return Ok(());
        }
        if ends <= now {
            self.note(id, ends, LAPSED, true).await?;
            pass.report.lapsed += 1;
            return Ok(());
        }
        let offer = self.offer(&sub.offer_id, &mut pass.offers).await?;
        let due_now = ends - now <= chrono::Duration::from_std(self.settings.lead).unwrap_or(chrono::Duration::MAX);
        let Some(offer) = offer else {
            if due_now {
                self.note(id, ends, OFFER_INACTIVE, true).await?;
                pass.report.not_charged += 1;
            }
            return Ok(());
        };
        // What the subscriber was last told the renewal charges: a price
        // announced since, else what they last paid (0: nothing known, the
        // current price stands).
        let told = if sub.announced_price != 0 { sub.announced_price } else { due.last_price };
        if told != 0 && offer.price != told && self.announce(id, ends, &offer, now).await? {
            sub.announced_price = offer.price;
            sub.price_announce_time = Some(to_timestamp(now));
            pass.report.announced += 1;
        }
        if !due_now {
            return Ok(());
        }
        if due.last_price != 0 && offer.price != due.last_price && !self.told_in_time(&sub, offer.price, now) {
            self.note(id, ends, PRICE_CHANGED, false).await?;
            pass.report.not_charged += 1;
            return Ok(());
        }
        let owner = UserId::parse(&sub.user_id)?;
        let kind = PurchaseKind::AutoRenewal { subscription: id, period_end: ends };
        let order = PurchaseOrder::new(owner, kind, &offer, None)?;
        match self.ledger.clone().purchase(account::PurchaseRequest::from(order)).await {
            Ok(_) => pass.report.renewed += 1,
            Err(status) => match Error::from_status(status) {
                e if e.code == ErrorCode::InsufficientBalance => {
                    self.note(id, ends, INSUFFICIENT_BALANCE, false).await?;
                    pass.report.not_charged += 1;
                }
                e if e.code == ErrorCode::Conflict => pass.report.in_progress += 1,
                e => return Err(e),
            },
        }
        Ok(())
    }

    /// The offer on sale now (`None`: withdrawn or gone), asked of the
    /// catalog once per pass: many subscriptions share a few offers, and
    /// the pass reaches `price_notice_days` ahead.
    async fn offer(
        &self,
        id: &str,
        seen: &mut HashMap<String, Option<catalog::Offer>>,
    ) -> Result<Option<catalog::Offer>, Error> {
        if let Some(offer) = seen.get(id) {
            return Ok(offer.clone());
        }
        let lookup = catalog::LookupOfferRequest { id: id.to_string() };
        let offer = match self.catalog.clone().lookup_offer(lookup).await {
            Ok(answer) => answer.into_inner().offer.filter(|o| o.is_active),
            Err(status) if status.code() == tonic::Code::NotFound => None,
            Err(status) => return Err(status.into()),
        };
        seen.insert(id.to_string(), offer.clone());
        Ok(offer)
    }

    /// Whether the subscriber was told of `price` at least
    /// `renewal.price_notice_days` before `now`.
    fn told_in_time(&self, sub: &account::Subscription, price: i64, now: DateTime<Utc>) -> bool {
        let notice = chrono::Duration::from_std(self.settings.price_notice()).unwrap_or(chrono::Duration::MAX);
        let told_at = sub.price_announce_time.as_ref().and_then(from_timestamp);
        sub.announced_price == price && told_at.is_some_and(|at| at + notice <= now)
    }

    /// Announces `offer`'s price as what the renewal of the period ending
    /// `period_end` charges; whether this was news.
    async fn announce(
        &self,
        id: SubscriptionId,
        period_end: DateTime<Utc>,
        offer: &catalog::Offer,
        now: DateTime<Utc>,
    ) -> Result<bool, Error> {
        let request = account::AnnounceRenewalPriceRequest {
            subscription_id: id.to_string(),
            period_end: Some(to_timestamp(period_end)),
            price: offer.price,
            currency_code: offer.currency_code.clone(),
            announce_time: Some(to_timestamp(now)),
        };
        Ok(self.ledger.clone().announce_renewal_price(request).await?.into_inner().applied)
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
