use axum::extract::State;
use offers_proto::account::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use offers_kit::ErrorCode;

use super::{Page, PageQuery, Transaction, rfc3339, short, status_name};
use crate::Upstreams;
use crate::bodies::{Object, SubscriptionChange};
use crate::context::UserCaller;
use crate::error::{ApiError, Json, Path, Query};
use crate::formats::Id;
use crate::problems::{BODY, CREDENTIALS, UPSTREAM, problems};

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"balance": 98500, "currency": "EUR", "updated_at": "2026-11-27T10:15:00.000000Z"})))]
pub struct Balance {
    /// Minor units of `currency`.
    pub balance: i64,
    pub currency: String,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "id": "0193a5b2-0c0c-7d0d-8e0e-0f1a2b3c4d5e", "offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c",
    "offer_name": "Data 1 GB", "status": "ACTIVE", "activated_at": "2026-11-27T10:15:02.500000Z",
    "expires_at": "2026-12-27T10:15:02.500000Z", "auto_renew": true,
    "next_renewal_at": "2026-12-27T10:15:02.500000Z",
    "last_renewal": {"status": "FAILED", "at": "2026-12-26T10:20:00.000000Z", "reason": "insufficient_balance"}
})))]
pub struct Subscription {
    #[schema(format = Uuid)]
    pub id: String,
    #[schema(format = Uuid)]
    pub offer_id: String,
    pub offer_name: String,
    #[schema(pattern = "^(ACTIVE|EXPIRED)$")]
    pub status: String,
    #[schema(format = DateTime)]
    pub activated_at: Option<String>,
    #[schema(format = DateTime)]
    pub expires_at: Option<String>,
    /// Renewed from the balance before it ends.
    pub auto_renew: bool,
    /// When the next automatic renewal takes effect (it extends the
    /// subscription from its expiry); null unless `auto_renew`.
    #[schema(format = DateTime)]
    pub next_renewal_at: Option<String>,
    /// How the latest automatic renewal went; null before the first.
    pub last_renewal: Option<LastRenewal>,
}

/// An automatic renewal's state or outcome.
#[derive(Serialize, ToSchema)]
pub struct LastRenewal {
    /// `PENDING` while it provisions; `FAILED` when it charged nothing or
    /// was refunded.
    #[schema(pattern = "^(PENDING|SUCCESS|FAILED)$")]
    pub status: String,
    #[schema(format = DateTime)]
    pub at: Option<String>,
    /// Why it failed: `insufficient_balance` (top up before the end; it is
    /// tried again), `offer_inactive` and `lapsed` (automatic renewal is
    /// off), `price_changed` (not charged at a price not announced), or the
    /// provider's reason.
    pub reason: Option<String>,
}

problems!(BalanceProblems = CREDENTIALS, UPSTREAM);
problems!(ListProblems = &[ErrorCode::InvalidRequest], CREDENTIALS, UPSTREAM);
problems!(TransactionProblems = &[ErrorCode::InvalidId, ErrorCode::NotFound], CREDENTIALS, UPSTREAM);
problems!(UpdateProblems = BODY, &[ErrorCode::InvalidId, ErrorCode::NotFound], CREDENTIALS, UPSTREAM);

impl From<pb::Subscription> for Subscription {
    fn from(s: pb::Subscription) -> Self {
        Subscription {
            status: short(s.status().as_str_name(), "SUBSCRIPTION_STATUS_"),
            activated_at: rfc3339(s.activate_time.as_ref()),
            expires_at: rfc3339(s.expire_time.as_ref()),
            auto_renew: s.auto_renew,
            next_renewal_at: rfc3339(s.next_renewal_time.as_ref()),
            last_renewal: s.last_renewal.map(|r| LastRenewal {
                status: status_name(r.status()),
                at: rfc3339(r.time.as_ref()),
                reason: (!r.reason.is_empty()).then_some(r.reason),
            }),
            id: s.id,
            offer_id: s.offer_id,
            offer_name: s.offer_name,
        }
    }
}

/// The caller's balance.
#[utoipa::path(get, path = "/api/v1/account/balance/", tag = "account", operation_id = "get_balance",
    security(("bearer" = [])), responses((status = 200, description = "The caller's balance", body = Balance), BalanceProblems))]
pub async fn balance(State(up): State<Upstreams>, user: UserCaller) -> Result<Json<Balance>, ApiError> {
    let answer = up.account.clone().get_balance(user.grpc(pb::GetBalanceRequest {})?).await?.into_inner();
    let b = answer.balance.unwrap_or_default();
    Ok(Json(Balance { balance: b.balance, currency: b.currency_code, updated_at: rfc3339(b.update_time.as_ref()) }))
}

/// The caller's subscriptions, newest first.
#[utoipa::path(get, path = "/api/v1/account/subscriptions/", tag = "account", operation_id = "list_subscriptions",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, description = "A page of subscriptions", body = Page<Subscription>), ListProblems))]
pub async fn subscriptions(
    State(up): State<Upstreams>,
    user: UserCaller,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let request =
        user.grpc(pb::ListSubscriptionsRequest { page_size: page.page_size()?, page_token: page.page_token()? })?;
    let answer = up.account.clone().list_subscriptions(request).await?.into_inner();
    Ok(Json(Page::new(answer.subscriptions.into_iter().map(Subscription::from).collect(), answer.next_page_token)))
}

/// Turn automatic renewal of one of the caller's subscriptions on or off.
#[utoipa::path(patch, path = "/api/v1/account/subscriptions/{subscription_id}/", tag = "account",
    operation_id = "update_subscription", security(("bearer" = [])), request_body = SubscriptionChange,
    params(("subscription_id" = Id, Path, description = "The subscription's id")),
    responses((status = 200, description = "The subscription as it stands now", body = Subscription), UpdateProblems))]
pub async fn update_subscription(
    State(up): State<Upstreams>,
    user: UserCaller,
    Path(subscription_id): Path<String>,
    Json(Object(change)): Json<Object<SubscriptionChange>>,
) -> Result<Json<Subscription>, ApiError> {
    let request = user.grpc(pb::UpdateSubscriptionRequest { subscription_id, auto_renew: change.auto_renew })?;
    let answer = up.account.clone().update_subscription(request).await?.into_inner();
    Ok(Json(answer.subscription.map(Subscription::from).ok_or_else(|| offers_kit::Error::not_found("subscription"))?))
}

/// The caller's transactions, newest first.
#[utoipa::path(get, path = "/api/v1/account/transactions/", tag = "account", operation_id = "list_transactions",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, description = "A page of transactions", body = Page<Transaction>), ListProblems))]
pub async fn transactions(
    State(up): State<Upstreams>,
    user: UserCaller,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Transaction>>, ApiError> {
    let request =
        user.grpc(pb::ListTransactionsRequest { page_size: page.page_size()?, page_token: page.page_token()? })?;
    let answer = up.account.clone().list_transactions(request).await?.into_inner();
    Ok(Json(Page::new(answer.transactions.into_iter().map(Transaction::from).collect(), answer.next_page_token)))
}

/// One of the caller's transactions.
#[utoipa::path(get, path = "/api/v1/account/transactions/{transaction_id}/", tag = "account",
    operation_id = "get_transaction", security(("bearer" = [])),
    params(("transaction_id" = Id, Path, description = "The transaction's id")),
    responses((status = 200, description = "The transaction", body = Transaction), TransactionProblems))]
pub async fn transaction(
    State(up): State<Upstreams>,
    user: UserCaller,
    Path(transaction_id): Path<String>,
) -> Result<Json<Transaction>, ApiError> {
    let request = user.grpc(pb::GetTransactionRequest { id: transaction_id })?;
    let answer = up.account.clone().get_transaction(request).await?.into_inner();
    Ok(Json(answer.transaction.map(Transaction::from).ok_or_else(|| offers_kit::Error::not_found("transaction"))?))
}
