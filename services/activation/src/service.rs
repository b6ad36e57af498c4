//! Activate, renew and report status: validation through the catalog,
//! money through the ledger, status from the cache first.

use offers_kit::Error;
use offers_kit::cache::SharedCache;
use offers_kit::grpc::{self, InternalChannel, to_timestamp};
use offers_kit::token::Principal;
use offers_proto::account::v1::lookup_subscription_request::Lookup;
use offers_proto::account::v1::{self as account, SubscriptionOfOffer, ledger_service_client::LedgerServiceClient};
use offers_proto::auth::v1::{self as auth, user_admin_service_client::UserAdminServiceClient};
use offers_proto::catalog::v1::{self as catalog, catalog_admin_service_client::CatalogAdminServiceClient};
use offers_proto::contracts::{Idempotency, KeyScope, PurchaseKind, PurchaseOrder, StatusEntry};
use offers_proto::ids::{Id, OfferId, SubscriptionId, TransactionId, UserId};
use tonic::Code;

use crate::error::ActivationError;

pub struct Activation {
    pub users: UserAdminServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    pub ledger: LedgerServiceClient<InternalChannel>,
    pub cache: SharedCache,
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

/// Which subscription a renewal extends: named, or the caller's
/// longest-running one to an offer.
#[derive(Debug, Clone, Copy)]
pub enum RenewTarget {
    Subscription(SubscriptionId),
    OfferOf(OfferId),
}

impl Activation {
    /// An offer that exists (on sale or not).
    async fn offer(&self, id: OfferId) -> Result<catalog::Offer, ActivationError> {
        self.catalog
            .clone()
            .lookup_offer(catalog::LookupOfferRequest { id: id.to_string() })
            .await?
            .into_inner()
            .offer
            .ok_or(ActivationError::NotFound("offer"))
    }

    /// Buys `offer` for `recipient` as `kind`, with the caller's key in the
    /// caller's scope; `asked` describes the request for its fingerprint.
    async fn buy(
        &self,
        (caller, recipient): (UserId, UserId),
        (kind, auto_renew): (PurchaseKind, bool),
        offer: &catalog::Offer,
        key: Option<&str>,
        asked: &str,
    ) -> Result<account::Transaction, ActivationError> {
        let idempotency = key.map(|key| Idempotency::new(KeyScope::User(caller), key, asked));
        let order = match PurchaseOrder::new(recipient, kind, offer, idempotency.clone()) {
            Ok(order) => order.renewing(auto_renew)?,
            Err(refused) => return self.replay_or(idempotency, refused.into()).await,
        };
        let done = self.ledger.clone().purchase(account::PurchaseRequest::from(order)).await?.into_inner();
        done.transaction.ok_or_else(no_transaction)
    }

    /// A request refused now (the offer left sale, the recipient left)
    /// still replays one made with its key before: only a new purchase is
    /// refused.
    async fn replay_or(
        &self,
        idempotency: Option<Idempotency>,
        refusal: ActivationError,
    ) -> Result<account::Transaction, ActivationError> {
        let Some(idempotency) = idempotency else { return Err(refusal) };
        grpc::earlier_purchase(&self.ledger, idempotency).await?.ok_or(refusal)
    }

    /// A gift's recipient: another active user, by username.
    async fn recipient(&self, caller: UserId, username: &str) -> Result<UserId, ActivationError> {
        if !offers_proto::username::is_valid(username) {
            return Err(ActivationError::InvalidRecipient);
        }
        let lookup = auth::GetUserRequest { lookup: Some(auth::get_user_request::Lookup::Username(username.into())) };
        let found = match self.users.clone().get_user(lookup).await {
            Ok(answer) => answer.into_inner().user,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(status.into()),
        };
        let user = found.filter(|u| u.is_active).ok_or(ActivationError::InvalidRecipient)?;
        let id = UserId::parse(&user.id).map_err(Error::internal)?;
        if id == caller {
            return Err(ActivationError::InvalidRecipient);
        }
        Ok(id)
    }

    /// Buys an offer for the caller (renewing itself with `auto_renew`), or
    /// with `recipient` (a username) for another user as a gift the caller
    /// pays for.
    pub async fn activate(
        &self,
        who: &Principal,
        (offer_id, auto_renew): (OfferId, bool),
        recipient: Option<&str>,
        key: Option<&str>,
    ) -> Result<account::Transaction, ActivationError> {
        let caller = UserId::from(who.user_id);
        let Some(username) = recipient else {
            let offer = self.offer(offer_id).await?;
            // The fingerprint of a plain activation stays what it was before
            // auto-renewal existed, so keys sent then still replay.
            let asked =
                if auto_renew { format!("activate:{offer_id}:auto-renew") } else { format!("activate:{offer_id}") };
            return self.buy((caller, caller), (PurchaseKind::Activation, auto_renew), &offer, key, &asked).await;
        };
        if auto_renew {
            return Err(ActivationError::Invalid("auto_renew is for your own purchases; the recipient can turn it on"));
        }
        let asked = format!("gift:{offer_id}:{username}");
        let recipient = match self.recipient(caller, username).await {
            Ok(recipient) => recipient,
            Err(ActivationError::InvalidRecipient) => {
                let idempotency = key.map(|key| Idempotency::new(KeyScope::User(caller), key, &asked));
                return self.replay_or(idempotency, ActivationError::InvalidRecipient).await;
            }
            Err(other) => return Err(other),
        };
        let offer = self.offer(offer_id).await?;
        self.buy((caller, recipient), (PurchaseKind::Gift { payer: caller }, false), &offer, key, &asked).await
    }

    pub async fn renew(
        &self,
        who: &Principal,
        target: RenewTarget,
        key: Option<&str>,
    ) -> Result<account::Transaction, ActivationError> {
        let user = UserId::from(who.user_id);
        let (lookup, asked) = match target {
            RenewTarget::Subscription(id) => (Lookup::Id(id.to_string()), format!("renew:{id}")),
            RenewTarget::OfferOf(offer_id) => (
                Lookup::OfOffer(SubscriptionOfOffer { user_id: user.to_string(), offer_id: offer_id.to_string() }),
                format!("renew-offer:{offer_id}"),
            ),
        };
        let subscription = match self
            .ledger
            .clone()
            .lookup_subscription(account::LookupSubscriptionRequest { lookup: Some(lookup) })
            .await
        {
            Ok(answer) => answer.into_inner().subscription,
            Err(status) if status.code() == Code::NotFound => None,
            Err(status) => return Err(status.into()),
        };
        // Someone else's subscription does not exist, as far as the caller can tell.
        let subscription =
            subscription.filter(|s| s.user_id == user.to_string()).ok_or(ActivationError::NotFound("subscription"))?;
        // The ledger wrote both ids; they are read back as the ids they are.
        let (subscription_id, offer_id) = (
            SubscriptionId::parse(&subscription.id).map_err(Error::internal)?,
            OfferId::parse(&subscription.offer_id).map_err(Error::internal)?,
        );
        let offer = self.offer(offer_id).await?;
        let kind = PurchaseKind::Renewal { subscription: subscription_id };
        self.buy((user, user), (kind, false), &offer, key, &asked).await
    }

    /// The caller's transaction status: the cache while its entry is fresh,
    /// then the ledger (which reads the database and refills the cache);
    /// the cached entry again, marked stale, when the ledger cannot answer.
    pub async fn status(&self, who: &Principal, id: TransactionId) -> Result<StatusView, ActivationError> {
        let cached = match self.cache.hash_get(&StatusEntry::key(id)).await {
            Ok(fields) => StatusEntry::from_fields(&fields),
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; reading the status from the ledger");
                None
            }
        };
        if let Some(entry) = &cached
            && entry.user_id.uuid() != who.user_id
        {
            return Err(ActivationError::NotFound("transaction"));
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
            (Ok(answer), _) => answer.into_inner().transaction.ok_or(ActivationError::NotFound("transaction"))?,
            (Err(status), Some(entry)) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) => {
                tracing::warn!(error = %status, "ledger unavailable; answering from the cache, marked stale");
                return Ok(entry_view(&entry, true));
            }
            (Err(status), _) => return Err(status.into()),
        };
        if tx.user_id != who.user_id.to_string() {
            return Err(ActivationError::NotFound("transaction"));
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

fn no_transaction() -> ActivationError {
    ActivationError::Upstream(Error::internal("the ledger returned no transaction"))
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
