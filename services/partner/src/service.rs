//! Partners: who they are, their keys, and what they may do — activate an
//! offer they sold to a user, look up their own references.

use std::time::Duration;

use chrono::Utc;
use offers_kit::audit::{Act, Deed, Trail};
use offers_kit::cache::{self, SharedCache};
use offers_kit::grpc::{self, InternalChannel};
use offers_kit::rate_limit::RateLimiter;
use offers_kit::{Error, ErrorCode};
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::auth::v1::{self as auth, user_admin_service_client::UserAdminServiceClient};
use offers_proto::catalog::v1::{self as catalog, catalog_admin_service_client::CatalogAdminServiceClient};
use offers_proto::contracts::{Idempotency, KeyScope, OrderError, PurchaseKind, PurchaseOrder};
use offers_proto::ids::{ApiKeyId, OfferId, PartnerId, UserId};
use offers_proto::wire;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, JoinType, QueryFilter, QueryOrder,
    QuerySelect, RelationTrait, TransactionTrait,
};
use uuid::Uuid;

use crate::entity::partner::Status;
use crate::entity::{api_key, partner};
use crate::error::PartnerError;
use crate::settings::PartnerSettings;
use crate::{destination, keys};

/// The longest callback URL kept (the REST document says the same).
const MAX_CALLBACK_URL: usize = 2048;

pub struct Clients {
    pub users: UserAdminServiceClient<InternalChannel>,
    pub catalog: CatalogAdminServiceClient<InternalChannel>,
    pub ledger: LedgerServiceClient<InternalChannel>,
}

/// The partner service's audit trail.
pub const TRAIL: &str = "partner";

pub struct Partners {
    db: DatabaseConnection,
    limiter: RateLimiter,
    settings: PartnerSettings,
    clients: Clients,
    /// The administrative acts on partners and their keys.
    trail: Trail,
}

pub struct ActivationRequest {
    pub user_id: UserId,
    pub offer_id: OfferId,
    pub amount: i64,
    pub idempotency_key: Option<String>,
}

/// A new key: what is stored of it, and the secret shown once.
pub struct IssuedKey {
    pub key: api_key::Model,
    pub secret: String,
}

fn no_transaction() -> PartnerError {
    PartnerError::Upstream(Error::internal("the ledger returned no transaction"))
}

fn not_found_is(err: Error, instead: PartnerError) -> PartnerError {
    match err.code {
        ErrorCode::NotFound | ErrorCode::InvalidId => instead,
        _ => PartnerError::Upstream(err),
    }
}

impl Partners {
    pub fn new(db: DatabaseConnection, cache: SharedCache, settings: PartnerSettings, clients: Clients) -> Self {
        let trail = Trail::new(TRAIL, db.clone());
        Self { db, limiter: RateLimiter::new(cache), settings, clients, trail }
    }

    /// The active partner a key belongs to; revoked keys and suspended
    /// partners are refused alike. One query: every partner request pays it.
    pub async fn authenticate(&self, key: &str) -> Result<partner::Model, PartnerError> {
        let partner = partner::Entity::find()
            .join(JoinType::InnerJoin, api_key::Relation::Partner.def().rev())
            .filter(api_key::Column::KeyHash.eq(keys::hash(key)))
            .filter(api_key::Column::RevokedAt.is_null())
            .filter(partner::Column::Status.eq(Status::Active))
            .one(&self.db)
            .await?
            .ok_or(PartnerError::Unauthorized)?;
        self.rate_limit(&partner).await?;
        Ok(partner)
    }

    /// A fixed one-second window per partner, shared by all its keys and all
    /// replicas (each replica on its own while the cache is down).
    async fn rate_limit(&self, partner: &partner::Model) -> Result<(), PartnerError> {
        let key = cache::key(&["ratelimit", "partner", &partner.id.to_string()]);
        self.limiter.check(&key, self.settings.requests_per_second, Duration::from_secs(1)).await.map_err(
            |retry_after_secs| {
                metrics::counter!("offers_partner_rate_limited_total", "partner" => partner.name.clone()).increment(1);
                PartnerError::RateLimited { retry_after_secs }
            },
        )
    }

    pub async fn activate(
        &self,
        partner: &partner::Model,
        request: ActivationRequest,
    ) -> Result<account::Transaction, PartnerError> {
        let partner_id = PartnerId::from(partner.id);
        let asked = format!("partner-activate:{}:{}:{}", request.user_id, request.offer_id, request.amount);
        let idempotency =
            request.idempotency_key.as_ref().map(|key| Idempotency::new(KeyScope::Partner(partner_id), key, &asked));
        // The ledger replays a retry of an accepted request itself. One that
        // the checks refuse now (the user, the offer or its price changed
        // since) still gets its first answer: only a new purchase is refused.
        let order = match self.order(partner_id, &request, idempotency.clone()).await {
            Ok(order) => order,
            Err(refused) => {
                let Some(idempotency) = idempotency else { return Err(refused) };
                return grpc::earlier_purchase(&self.clients.ledger, idempotency).await?.ok_or(refused);
            }
        };
        let done = self.clients.ledger.clone().purchase(account::PurchaseRequest::from(order)).await?.into_inner();
        if !done.replayed {
            metrics::counter!("offers_partner_activations_total", "partner" => partner.name.clone()).increment(1);
        }
        done.transaction.ok_or_else(no_transaction)
    }

    /// The purchase a partner asks for, checked against the user and the
    /// offer as they are now (both looked up at once).
    async fn order(
        &self,
        partner_id: PartnerId,
        request: &ActivationRequest,
        idempotency: Option<Idempotency>,
    ) -> Result<PurchaseOrder, PartnerError> {
        let lookup =
            auth::GetUserRequest { lookup: Some(auth::get_user_request::Lookup::Id(request.user_id.to_string())) };
        let offer = catalog::LookupOfferRequest { id: request.offer_id.to_string() };
        let (mut users, mut catalog) = (self.clients.users.clone(), self.clients.catalog.clone());
        let (user, offer) = tokio::join!(users.get_user(lookup), catalog.lookup_offer(offer));
        let user = match user {
            Ok(answer) => answer.into_inner().user,
            Err(status) => return Err(not_found_is(Error::from_internal_call(status), PartnerError::InvalidUser)),
        };
        if !user.is_some_and(|u| u.is_active) {
            return Err(PartnerError::InvalidUser);
        }
        let offer = match offer {
            Ok(answer) => answer.into_inner().offer.ok_or(PartnerError::InvalidOffer)?,
            Err(status) => return Err(not_found_is(Error::from_internal_call(status), PartnerError::InvalidOffer)),
        };
        if request.amount != offer.price {
            return Err(PartnerError::AmountMismatch { price: offer.price });
        }
        let kind = PurchaseKind::Partner { partner: partner_id, reference: keys::new_reference() };
        PurchaseOrder::new(request.user_id, kind, &offer, idempotency).map_err(|e| match e {
            OrderError::NotOnSale(_) => PartnerError::InvalidOffer,
            other => PartnerError::Upstream(Error::internal(other)),
        })
    }

    /// One of this partner's transactions by reference; another partner's is
    /// not found.
    pub async fn validate(
        &self,
        partner: &partner::Model,
        reference: &str,
    ) -> Result<account::Transaction, PartnerError> {
        if !keys::is_reference(reference) {
            return Err(PartnerError::MalformedReference);
        }
        let request = account::GetTransactionByReferenceRequest {
            reference: reference.into(),
            partner_id: partner.id.to_string(),
        };
        match self.clients.ledger.clone().get_transaction_by_reference(request).await {
            Ok(answer) => answer.into_inner().transaction.ok_or(PartnerError::NotFound("transaction")),
            Err(status) => Err(not_found_is(Error::from_internal_call(status), PartnerError::NotFound("transaction"))),
        }
    }

    /// The partner's account with us: float, credit limit, what is left.
    pub async fn balance(&self, partner: &partner::Model) -> Result<account::Account, PartnerError> {
        let request =
            account::GetAccountRequest { owner_id: partner.id.to_string(), kind: account::AccountKind::Partner.into() };
        let answer = self.clients.ledger.clone().get_account(request).await?.into_inner();
        answer.account.ok_or_else(|| PartnerError::Upstream(Error::internal("the ledger returned no account")))
    }

    /// A page of the partner's own transactions, newest first.
    pub async fn transactions(
        &self,
        partner: &partner::Model,
        page_size: i32,
        page_token: String,
    ) -> Result<account::ListPartnerTransactionsResponse, PartnerError> {
        let request =
            account::ListPartnerTransactionsRequest { partner_id: partner.id.to_string(), page_size, page_token };
        Ok(self.clients.ledger.clone().list_partner_transactions(request).await?.into_inner())
    }

    /// Sets (or, with an empty URL, clears) the callback URL, and returns a
    /// new signing secret for it.
    pub async fn set_callback(&self, partner: &partner::Model, url: &str) -> Result<Option<String>, PartnerError> {
        let (url, secret) = if url.is_empty() {
            (None, None)
        } else if url.len() > MAX_CALLBACK_URL {
            return Err(PartnerError::Invalid(format!("callback_url is longer than {MAX_CALLBACK_URL} characters")));
        } else {
            // Stored as the client will read it, so what was checked is what is called.
            let target = destination::callback_url(url, self.settings.allow_private_callbacks)?;
            (Some(String::from(target)), Some(keys::new_signing_secret()))
        };
        partner::Entity::update_many()
            .col_expr(partner::Column::CallbackUrl, Expr::value(url))
            .col_expr(partner::Column::CallbackSecret, Expr::value(secret.clone()))
            .filter(partner::Column::Id.eq(partner.id))
            .exec(&self.db)
            .await?;
        Ok(secret)
    }

    pub async fn create_partner(&self, name: &str, act: &Act) -> Result<(partner::Model, IssuedKey), PartnerError> {
        let name = name.trim();
        if name.is_empty() || !wire::is_text(name, 100) || name.contains(['\n', '\r', '\t']) {
            return Err(PartnerError::Invalid("name must be 1 to 100 printable characters".into()));
        }
        let row = partner::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(name.into()),
            status: Set(Status::Active),
            callback_url: Set(None),
            callback_secret: Set(None),
            created_at: Set(Utc::now()),
        };
        let txn = self.db.begin().await?;
        let created = partner::Entity::insert(row)
            .exec_with_returning(&txn)
            .await
            .map_err(|e| if offers_kit::db::is_unique_violation(&e) { PartnerError::NameTaken } else { e.into() })?;
        let deed = Deed {
            action: "partner.create",
            target: format!("partner:{}", created.id),
            detail: format!("name={name}"),
        };
        self.trail.record(&txn, act, deed).await?;
        let key = self.issue_key(&txn, created.id.into(), None, act).await?;
        txn.commit().await?;
        Ok((created, key))
    }

    pub async fn partner(&self, id: PartnerId) -> Result<partner::Model, PartnerError> {
        partner::Entity::find_by_id(id.uuid()).one(&self.db).await?.ok_or(PartnerError::NotFound("partner"))
    }

    pub async fn partner_by_name(&self, name: &str) -> Result<partner::Model, PartnerError> {
        if !wire::is_text(name, 100) {
            return Err(PartnerError::NotFound("partner"));
        }
        partner::Entity::find()
            .filter(partner::Column::Name.eq(name))
            .one(&self.db)
            .await?
            .ok_or(PartnerError::NotFound("partner"))
    }

    /// Partners newest first, those whose name contains `name_contains`
    /// (any case) when it is not empty.
    pub async fn partners(
        &self,
        name_contains: &str,
        after: Option<Uuid>,
        limit: u64,
    ) -> Result<Vec<partner::Model>, PartnerError> {
        use sea_orm::sea_query::{ExprTrait, Func, LikeExpr};
        if !wire::is_text(name_contains, 100) {
            return Err(PartnerError::Invalid("name_contains must be at most 100 printable characters".into()));
        }
        let mut query = partner::Entity::find();
        if !name_contains.is_empty() {
            let escaped: String = name_contains
                .to_lowercase()
                .chars()
                .flat_map(|c| if matches!(c, '%' | '_' | '\\') { vec!['\\', c] } else { vec![c] })
                .collect();
            let pattern = LikeExpr::new(format!("%{escaped}%")).escape('\\');
            query = query.filter(Expr::expr(Func::lower(Expr::col(partner::Column::Name))).like(pattern));
        }
        if let Some(after) = after {
            query = query.filter(partner::Column::Id.lt(after));
        }
        Ok(query.order_by_desc(partner::Column::Id).limit(limit).all(&self.db).await?)
    }

    /// Every key of a partner, newest first.
    pub async fn keys(&self, partner_id: PartnerId) -> Result<Vec<api_key::Model>, PartnerError> {
        self.partner(partner_id).await?;
        Ok(api_key::Entity::find()
            .filter(api_key::Column::PartnerId.eq(partner_id.uuid()))
            .order_by_desc(api_key::Column::CreatedAt)
            .all(&self.db)
            .await?)
    }

    pub async fn set_status(&self, id: PartnerId, status: Status, act: &Act) -> Result<partner::Model, PartnerError> {
        let txn = self.db.begin().await?;
        let set = partner::Entity::update_many()
            .col_expr(partner::Column::Status, Expr::value(status))
            .filter(partner::Column::Id.eq(id.uuid()))
            .exec(&txn)
            .await?;
        if set.rows_affected != 1 {
            return Err(PartnerError::NotFound("partner"));
        }
        let deed =
            Deed { action: "partner.status", target: format!("partner:{id}"), detail: format!("status={status:?}") };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        self.partner(id).await
    }

    /// A new key for a partner; its other keys keep working, so keys rotate
    /// without downtime.
    pub async fn create_key(
        &self,
        partner_id: PartnerId,
        preset: Option<String>,
        act: &Act,
    ) -> Result<IssuedKey, PartnerError> {
        self.partner(partner_id).await?;
        let txn = self.db.begin().await?;
        let key = self.issue_key(&txn, partner_id, preset, act).await?;
        txn.commit().await?;
        Ok(key)
    }

    /// Inserts a new key and its audit entry in the caller's transaction.
    async fn issue_key(
        &self,
        txn: &impl ConnectionTrait,
        partner_id: PartnerId,
        preset: Option<String>,
        act: &Act,
    ) -> Result<IssuedKey, PartnerError> {
        if preset.is_some() && !self.settings.allow_preset_keys {
            return Err(PartnerError::PresetRefused);
        }
        let secret = preset.unwrap_or_else(keys::new_key);
        if secret.len() < 16 {
            return Err(PartnerError::Invalid("a key must be at least 16 characters".into()));
        }
        let row = api_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            partner_id: Set(partner_id.uuid()),
            prefix: Set(keys::prefix(&secret)),
            key_hash: Set(keys::hash(&secret)),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
        };
        let key = api_key::Entity::insert(row).exec_with_returning(txn).await.map_err(|e| {
            if offers_kit::db::is_unique_violation(&e) {
                PartnerError::Invalid("that key exists".into())
            } else {
                e.into()
            }
        })?;
        // The prefix only: the secret is shown once, to the caller.
        let deed = Deed {
            action: "api_key.create",
            target: format!("api_key:{}", key.id),
            detail: format!("partner={partner_id} prefix={}", key.prefix),
        };
        self.trail.record(txn, act, deed).await?;
        Ok(IssuedKey { key, secret })
    }

    pub async fn revoke_key(&self, key_id: ApiKeyId, act: &Act) -> Result<api_key::Model, PartnerError> {
        let key_id = key_id.uuid();
        let txn = self.db.begin().await?;
        let revoked = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(Utc::now()))
            .filter(api_key::Column::Id.eq(key_id))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&txn)
            .await?;
        let key = api_key::Entity::find_by_id(key_id).one(&txn).await?.ok_or(PartnerError::NotFound("API key"))?;
        // Revoking a revoked key changes nothing and records nothing.
        if revoked.rows_affected == 1 {
            let deed = Deed {
                action: "api_key.revoke",
                target: format!("api_key:{key_id}"),
                detail: format!("partner={} prefix={}", key.partner_id, key.prefix),
            };
            self.trail.record(&txn, act, deed).await?;
        }
        txn.commit().await?;
        Ok(key)
    }
}
