use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use offers_proto::activation::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{IdempotencyKey, MaybeStale, rfc3339, status_name, with_key};
use crate::Upstreams;
use crate::context::UserCaller;
use crate::error::{ApiError, Json, Path, Problem};

#[derive(Deserialize, ToSchema)]
pub struct ActivateBody {
    pub offer_id: String,
}

/// Exactly one of the two.
#[derive(Deserialize, ToSchema)]
pub struct RenewBody {
    pub subscription_id: Option<String>,
    pub offer_id: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    pub transaction_id: String,
    /// Always `PENDING`: provisioning goes on in the background.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct ActivationStatus {
    pub transaction_id: String,
    pub status: String,
    pub offer_id: String,
    pub amount: i64,
    pub currency: String,
    pub failure_reason: Option<String>,
    pub updated_at: Option<String>,
}

/// What a purchase (activation or renewal) answers.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // Only its OpenAPI description is used.
enum PurchaseAnswers {
    /// Accepted and charged; provisioning continues in the background.
    #[response(status = 202)]
    Accepted(Accepted),
    /// `insufficient_balance`, `offer_inactive`, `invalid_request`, `invalid_id`: nothing charged.
    #[response(status = 400, content_type = "application/problem+json")]
    BadRequest(Problem),
    /// `unauthenticated`, `invalid_token`.
    #[response(status = 401, content_type = "application/problem+json")]
    Unauthenticated(Problem),
    /// `not_found`: no such offer, or not the caller's subscription.
    #[response(status = 404, content_type = "application/problem+json")]
    NotFound(Problem),
    /// `idempotency_key_reused`: the key came with another body.
    #[response(status = 422, content_type = "application/problem+json")]
    KeyReused(Problem),
}

fn accepted(transaction_id: String, status: i32) -> (StatusCode, Json<Accepted>) {
    let status = offers_proto::account::v1::TransactionStatus::try_from(status).unwrap_or_default();
    (StatusCode::ACCEPTED, Json(Accepted { transaction_id, status: status_name(status) }))
}

/// Buy an offer from the balance; provisioning continues in the background.
#[utoipa::path(post, path = "/api/v1/activation/", tag = "activation", security(("bearer" = [])),
    request_body = ActivateBody, params(IdempotencyKey), responses(PurchaseAnswers))]
pub async fn activate(
    State(up): State<Upstreams>,
    user: UserCaller,
    headers: HeaderMap,
    Json(body): Json<ActivateBody>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let request = with_key(user.grpc(pb::ActivateOfferRequest { offer_id: body.offer_id })?, &headers)?;
    let answer = up.activation.clone().activate_offer(request).await?.into_inner();
    Ok(accepted(answer.transaction_id, answer.status))
}

/// Renew one of the caller's subscriptions.
#[utoipa::path(post, path = "/api/v1/offers/renew/", tag = "activation", security(("bearer" = [])),
    request_body = RenewBody, params(IdempotencyKey), responses(PurchaseAnswers))]
pub async fn renew(
    State(up): State<Upstreams>,
    user: UserCaller,
    headers: HeaderMap,
    Json(body): Json<RenewBody>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    use pb::renew_subscription_request::Target;
    let target = match (body.subscription_id, body.offer_id) {
        (Some(id), None) => Target::SubscriptionId(id),
        (None, Some(id)) => Target::OfferId(id),
        _ => return Err(offers_kit::Error::invalid_request("give exactly one of subscription_id and offer_id").into()),
    };
    let request = with_key(user.grpc(pb::RenewSubscriptionRequest { target: Some(target) })?, &headers)?;
    let answer = up.activation.clone().renew_subscription(request).await?.into_inner();
    Ok(accepted(answer.transaction_id, answer.status))
}

/// Where one of the caller's transactions stands.
#[utoipa::path(get, path = "/api/v1/activation/status/{transaction_id}/", tag = "activation", security(("bearer" = [])),
    params(("transaction_id" = String, Path, description = "Transaction id (UUID)")),
    responses((status = 200, body = ActivationStatus), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
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
