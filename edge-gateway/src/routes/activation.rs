use axum::extract::State;
use axum::http::StatusCode;
use offers_proto::activation::v1 as pb;
use serde::Serialize;
use utoipa::ToSchema;

use offers_kit::ErrorCode;

use super::{IdempotencyKey, MaybeStale, rfc3339, status_name};
use crate::Upstreams;
use crate::bodies::{ActivateBody, Object, RenewBody};
use crate::context::UserCaller;
use crate::error::{ApiError, Json, Path};
use crate::formats::Id;
use crate::problems::{BODY, CREDENTIALS, UPSTREAM, problems};

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"transaction_id": "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05", "status": "PENDING"})))]
pub struct Accepted {
    #[schema(format = Uuid)]
    pub transaction_id: String,
    /// `PENDING`: provisioning goes on in the background (a replayed request
    /// says where its transaction stands now).
    #[schema(pattern = "^(PENDING|SUCCESS|FAILED)$")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "transaction_id": "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05", "status": "SUCCESS",
    "offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c", "amount": 1500, "currency": "EUR",
    "failure_reason": null, "updated_at": "2026-11-27T10:15:02.500000Z"
})))]
pub struct ActivationStatus {
    #[schema(format = Uuid)]
    pub transaction_id: String,
    #[schema(pattern = "^(PENDING|SUCCESS|FAILED)$")]
    pub status: String,
    #[schema(format = Uuid)]
    pub offer_id: String,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

/// What any purchase can be refused for; nothing is charged unless it is
/// accepted.
const PURCHASE: &[ErrorCode] = &[
    ErrorCode::InvalidId,
    ErrorCode::InsufficientBalance,
    ErrorCode::OfferInactive,
    ErrorCode::NotFound,
    ErrorCode::IdempotencyKeyReused,
];
problems!(
    /// A renewal also meets the one of the same period already made or on
    /// its way (409 `conflict`): a period is charged once.
    RenewProblems = BODY, CREDENTIALS, UPSTREAM, PURCHASE, &[ErrorCode::Conflict]
);
problems!(
    ActivateProblems = BODY,
    CREDENTIALS,
    UPSTREAM,
    PURCHASE,
    &[ErrorCode::InvalidRecipient, ErrorCode::GiftLimitReached]
);
problems!(StatusProblems = CREDENTIALS, UPSTREAM, &[ErrorCode::InvalidId, ErrorCode::NotFound]);

fn accepted(transaction_id: String, status: i32) -> (StatusCode, Json<Accepted>) {
    let status = offers_proto::account::v1::TransactionStatus::try_from(status).unwrap_or_default();
    (StatusCode::ACCEPTED, Json(Accepted { transaction_id, status: status_name(status) }))
}

/// Buy an offer from the balance, for oneself or as a gift to another user;
/// provisioning continues in the background.
#[utoipa::path(post, path = "/api/v1/activation/", tag = "activation", operation_id = "activate_offer",
    security(("bearer" = [])), request_body = ActivateBody, params(IdempotencyKey),
    responses((status = 202, description = "Accepted and charged; provisioning continues in the background", body = Accepted,
        links(("status" = (operation_id = "get_activation_status",
            parameters(("transaction_id" = "$response.body#/transaction_id")))))), ActivateProblems))]
pub async fn activate(
    State(up): State<Upstreams>,
    user: UserCaller,
    key: IdempotencyKey,
    Json(Object(body)): Json<Object<ActivateBody>>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    // An empty or malformed name is nobody: never "no recipient".
    if body.recipient.as_deref().is_some_and(|name| !offers_proto::username::is_valid(name)) {
        return Err(offers_kit::Error::new(ErrorCode::InvalidRecipient, offers_proto::username::RULE).into());
    }
    let recipient = body.recipient.unwrap_or_default();
    let auto_renew = body.auto_renew.unwrap_or(false);
    let request = key.attach(user.grpc(pb::ActivateOfferRequest { offer_id: body.offer_id, recipient, auto_renew })?);
    let answer = up.activation.clone().activate_offer(request).await?.into_inner();
    Ok(accepted(answer.transaction_id, answer.status))
}

/// Renew one of the caller's subscriptions.
#[utoipa::path(post, path = "/api/v1/offers/renew/", tag = "activation", operation_id = "renew_subscription",
    security(("bearer" = [])), request_body = RenewBody, params(IdempotencyKey),
    responses((status = 202, description = "Accepted and charged; provisioning continues in the background", body = Accepted,
        links(("status" = (operation_id = "get_activation_status",
            parameters(("transaction_id" = "$response.body#/transaction_id")))))), RenewProblems))]
pub async fn renew(
    State(up): State<Upstreams>,
    user: UserCaller,
    key: IdempotencyKey,
    Json(Object(body)): Json<Object<RenewBody>>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    use pb::renew_subscription_request::Target;
    let target = match body {
        RenewBody::Subscription(by) => Target::SubscriptionId(by.subscription_id),
        RenewBody::Offer(by) => Target::OfferId(by.offer_id),
    };
    let request = key.attach(user.grpc(pb::RenewSubscriptionRequest { target: Some(target) })?);
    let answer = up.activation.clone().renew_subscription(request).await?.into_inner();
    Ok(accepted(answer.transaction_id, answer.status))
}

/// Where one of the caller's transactions stands.
#[utoipa::path(get, path = "/api/v1/activation/status/{transaction_id}/", tag = "activation",
    operation_id = "get_activation_status", security(("bearer" = [])),
    params(("transaction_id" = Id, Path, description = "The transaction's id")),
    responses((status = 200, description = "Where the transaction stands", body = ActivationStatus, headers(
            ("Offers-Stale" = String, description = "`true` when served from the cache while the ledger is unreachable"))),
        StatusProblems))]
pub async fn status(
    State(up): State<Upstreams>,
    user: UserCaller,
    Path(transaction_id): Path<String>,
) -> Result<MaybeStale<ActivationStatus>, ApiError> {
    let request = user.grpc(pb::GetActivationStatusRequest { transaction_id })?;
    let answer = up.activation.clone().get_activation_status(request).await?;
    Ok(MaybeStale::from_upstream(answer, |s| ActivationStatus {
        status: status_name(s.status()),
        updated_at: rfc3339(s.update_time.as_ref()),
        transaction_id: s.transaction_id,
        offer_id: s.offer_id,
        amount: s.amount,
        currency: s.currency_code,
        failure_reason: (!s.failure_reason.is_empty()).then_some(s.failure_reason),
    }))
}
