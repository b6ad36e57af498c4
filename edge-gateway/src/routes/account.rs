use axum::extract::State;
use offers_proto::account::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use super::{Page, PageQuery, Transaction, rfc3339, short};
use crate::Upstreams;
use crate::context::UserCaller;
use crate::error::{ApiError, Json, Path, Problem, Query};

#[derive(Serialize, ToSchema)]
pub struct Balance {
    /// Minor units of `currency`.
    pub balance: i64,
    pub currency: String,
    pub updated_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Subscription {
    pub id: String,
    pub offer_id: String,
    pub offer_name: String,
    /// `ACTIVE` or `EXPIRED`.
    pub status: String,
    pub activated_at: Option<String>,
    pub expires_at: Option<String>,
}

impl From<pb::Subscription> for Subscription {
    fn from(s: pb::Subscription) -> Self {
        Subscription {
            status: short(s.status().as_str_name(), "SUBSCRIPTION_STATUS_"),
            activated_at: rfc3339(s.activate_time.as_ref()),
            expires_at: rfc3339(s.expire_time.as_ref()),
            id: s.id,
            offer_id: s.offer_id,
            offer_name: s.offer_name,
        }
    }
}

/// The caller's balance.
#[utoipa::path(get, path = "/api/v1/account/balance/", tag = "account", security(("bearer" = [])),
    responses((status = 200, body = Balance), (status = 401, body = Problem)))]
pub async fn balance(State(up): State<Upstreams>, user: UserCaller) -> Result<Json<Balance>, ApiError> {
    let answer = up.account.clone().get_balance(user.grpc(pb::GetBalanceRequest {})?).await?.into_inner();
    let b = answer.balance.unwrap_or_default();
    Ok(Json(Balance { balance: b.balance, currency: b.currency_code, updated_at: rfc3339(b.update_time.as_ref()) }))
}

/// The caller's subscriptions, newest first.
#[utoipa::path(get, path = "/api/v1/account/subscriptions/", tag = "account", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Subscription>), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn subscriptions(
    State(up): State<Upstreams>,
    user: UserCaller,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Subscription>>, ApiError> {
    let request =
        user.grpc(pb::ListSubscriptionsRequest { page_size: page.page_size(), page_token: page.page_token() })?;
    let answer = up.account.clone().list_subscriptions(request).await?.into_inner();
    Ok(Json(Page::new(answer.subscriptions.into_iter().map(Subscription::from).collect(), answer.next_page_token)))
}

/// The caller's transactions, newest first.
#[utoipa::path(get, path = "/api/v1/account/transactions/", tag = "account", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Transaction>), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn transactions(
    State(up): State<Upstreams>,
    user: UserCaller,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Transaction>>, ApiError> {
    let request =
        user.grpc(pb::ListTransactionsRequest { page_size: page.page_size(), page_token: page.page_token() })?;
    let answer = up.account.clone().list_transactions(request).await?.into_inner();
    Ok(Json(Page::new(answer.transactions.into_iter().map(Transaction::from).collect(), answer.next_page_token)))
}

/// One of the caller's transactions.
#[utoipa::path(get, path = "/api/v1/account/transactions/{transaction_id}/", tag = "account", security(("bearer" = [])),
    params(("transaction_id" = String, Path, description = "Transaction id (UUID)")),
    responses((status = 200, body = Transaction), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn transaction(
    State(up): State<Upstreams>,
    user: UserCaller,
    Path(transaction_id): Path<String>,
) -> Result<Json<Transaction>, ApiError> {
    let request = user.grpc(pb::GetTransactionRequest { id: transaction_id })?;
    let answer = up.account.clone().get_transaction(request).await?.into_inner();
    Ok(Json(answer.transaction.map(Transaction::from).ok_or_else(|| offers_kit::Error::not_found("transaction"))?))
}
