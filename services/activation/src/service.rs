//! Activate, renew and report status: validation through the catalog,
//! money through the ledger, status from the cache first.

use offers_kit::cache::SharedCache;
use offers_kit::grpc::{InternalChannel, parse_id, to_timestamp};
use offers_kit::token::Principal;
use offers_kit::{Error, ErrorCode};
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::catalog::v1::{self as catalog, catalog_admin_service_client::CatalogAdminServiceClient};
use offers_proto::contracts::StatusEntry;
use sha2::{Digest, Sha256};
use tonic::Code;

pub struct Activation {
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub cache: SharedCache,
}

/// The caller's key, scoped to them, and a hash of what they asked.
pub struct Keyed<'a> {
    pub key: Option<&'a str>,
    pub request: String,
}

/// What the status endpoint reports.
pub struct StatusView {
    pub status: account::TransactionStatus,
    pub offer_id: String,
    pub amount: i64,
    pub currency: String,
    pub failure_reason: String,
    pub updated_at: Option<prost_types::Timestamp>,
    /// From the cache, because the ledger could not be asked.
    pub stale: bool,
}

impl Activation {
    /// An offer that exists (on sale or not).
    async fn offer(&self, offer_id: &str) -> Result<catalog::Offer, Error> {
        let id = parse_id(offer_id, "offer id")?;
        self.catalog
            .clone()
            .lookup_offer(catalog::LookupOfferRequest { id: id.to_string() })
            .await?
            .into_inner()
            .offer
            .ok_or_else(|| Error::not_found("offer"))
    }

    async fn buy(
        &self,
        who: &Principal,
        kind: account::TransactionKind,
        offer: catalog::Offer,
        subscription_id: String,
        keyed: Keyed<'_>,
    ) -> Result<account::Transaction, Error> {
        let (scope, key, hash) = match keyed.key {
            Some(key) => (
                format!("user:{}", who.user_id),
                key.to_string(),
                hex::encode(Sha256::digest(keyed.request.as_bytes())),
            ),
            None => Default::default(),
        };
        // An offer taken off sale since a keyed request succeeded still
        // replays that request; only a new purchase is refused.
        let replay_only = !offer.is_active;
        if replay_only && key.is_empty() {
            return Err(Error::new(ErrorCode::OfferInactive, format!("offer {} is not on sale", offer.code)));
        }
        let code = offer.code.clone();
        let request = account::PurchaseRequest {
            user_id: who.user_id.to_string(),
            kind: kind.into(),
            offer: Some(offer),
            subscription_id,
            partner_id: String::new(),
            reference: String::new(),
            idempotency_scope: scope,
            idempotency_key: key,
            request_hash: hash,
            replay_only,
        };
        let done = match self.ledger.clone().purchase(request).await {
            Ok(done) => done.into_inner(),
            Err(status) => match Error::from_status(status) {
                e if replay_only && e.code == ErrorCode::NotFound => {
                    return Err(Error::new(ErrorCode::OfferInactive, format!("offer {code} is not on sale")));
                }
                e => return Err(e),
            },
        };
        done.transaction.ok_or_else(|| Error::internal("the ledger returned no transaction"))
    }

    pub async fn activate(
        &self,
        who: &Principal,
        offer_id: &str,
        key: Option<&str>,
    ) -> Result<account::Transaction, Error> {
        let offer = self.offer(offer_id).await?;
        let keyed = Keyed { key, request: format!("activate:{}", offer.id) };
        self.buy(who, account::TransactionKind::Activation, offer, String::new(), keyed).await
    }

    pub async fn renew(
        &self,
        who: &Principal,
        target: account::lookup_subscription_request::Lookup,
        key: Option<&str>,
    ) -> Result<account::Transaction, Error> {
        use account::lookup_subscription_request::Lookup;
        let request = match &target {
            Lookup::Id(id) => format!("renew:{}", parse_id(id, "subscription id")?),
            Lookup::OfOffer(of) => format!("renew-offer:{}", parse_id(&of.offer_id, "offer id")?),
        };
        let subscription = self
            .ledger
            .clone()
            .lookup_subscription(account::LookupSubscriptionRequest { lookup: Some(target) })
            .await?
            .into_inner()
            .subscription
            .ok_or_else(|| Error::not_found("subscription"))?;
        // Someone else's subscription does not exist, as far as the caller can tell.
        if subscription.user_id != who.user_id.to_string() {
            return Err(Error::not_found("subscription"));
        }
        let offer = self.offer(&subscription.offer_id).await?;
        self.buy(who, account::TransactionKind::Renewal, offer, subscription.id, Keyed { key, request }).await
    }

    /// The caller's transaction status: the cache while its entry is fresh,
    /// then the ledger (which reads the database and refills the cache);
    /// the cached entry again, marked stale, when the ledger cannot answer.
    pub async fn status(&self, who: &Principal, transaction_id: &str) -> Result<StatusView, Error> {
        let id = parse_id(transaction_id, "transaction id")?;
        let cached = match self.cache.hash_get(&StatusEntry::key(id)).await {
            Ok(fields) => StatusEntry::from_fields(&fields),
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; reading the status from the ledger");
                None
            }
        };
        if let Some(entry) = &cached
            && entry.user_id != who.user_id
        {
            return Err(Error::not_found("transaction"));
        }
        let fresh = cached.as_ref().is_some_and(|e| e.fresh_until.is_none_or(|until| until > chrono::Utc::now()));
        let result = if fresh {
            "hit"
        } else if cached.is_some() {
            "expired"
        } else {
            "miss"
        };
        metrics::counter!("offers_activation_status_cache_total", "result" => result).increment(1);
        if let (true, Some(entry)) = (fresh, &cached) {
            return Ok(entry_view(entry, false));
        }
        let answer =
            self.ledger.clone().lookup_transaction(account::LookupTransactionRequest { id: id.to_string() }).await;
        let tx = match (answer, cached) {
            (Ok(answer), _) => answer.into_inner().transaction.ok_or_else(|| Error::not_found("transaction"))?,
            (Err(status), Some(entry)) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                tracing::warn!(error = %status, "ledger unavailable; answering from the cache, marked stale");
                return Ok(entry_view(&entry, true));
            }
            (Err(status), _) => return Err(status.into()),
        };
        if tx.user_id != who.user_id.to_string() {
            return Err(Error::not_found("transaction"));
        }
        Ok(StatusView {
            status: tx.status(),
            offer_id: tx.offer_id,
            amount: tx.amount,
            currency: tx.currency_code,
            failure_reason: tx.failure_reason,
            updated_at: tx.update_time,
            stale: false,
        })
    }
}

fn entry_view(entry: &StatusEntry, stale: bool) -> StatusView {
    StatusView {
        status: entry.status,
        offer_id: entry.offer_id.to_string(),
        amount: entry.amount,
        currency: entry.currency.clone(),
        failure_reason: entry.failure_reason.clone().unwrap_or_default(),
        updated_at: Some(to_timestamp(entry.updated_at)),
        stale,
    }
}
