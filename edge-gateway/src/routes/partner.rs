use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use offers_kit::ErrorCode;
use offers_proto::partner::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{IdempotencyKey, Page, PageQuery, Transaction, status_name, with_key};
use crate::Upstreams;
use crate::context::PartnerCaller;
use crate::error::{ApiError, Json, Path, Problem, Query};

#[derive(Deserialize, ToSchema)]
pub struct PartnerActivateBody {
    pub user_id: String,
    pub offer_id: String,
    /// Must equal the offer's price, in minor units.
    pub amount: i64,
}

#[derive(Serialize, ToSchema)]
pub struct PartnerAccepted {
    pub reference: String,
    pub transaction_id: String,
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct Validation {
    pub reference: String,
    pub transaction_id: String,
    pub user_id: String,
    pub offer_id: String,
    pub status: String,
    pub is_valid: bool,
}

#[derive(Serialize, ToSchema)]
pub struct Invalid {
    pub reference: String,
    pub is_valid: bool,
    pub error: String,
}

#[derive(Deserialize, ToSchema)]
pub struct CallbackBody {
    /// An http(s) URL, or empty to stop callbacks.
    pub callback_url: String,
}

#[derive(Serialize, ToSchema)]
pub struct CallbackRegistered {
    pub callback_url: String,
    /// HMAC-SHA256 key for the `X-Offers-Signature` header; shown once.
    pub signing_secret: Option<String>,
}

/// A bad body from a caller whose key is also bad gets the 401, as it
/// would anywhere else: the key is checked (by a lookup that needs nothing
/// else) before the body's problem is reported.
async fn credentials_first<T>(
    up: &Upstreams,
    partner: &PartnerCaller,
    body: Result<T, ApiError>,
) -> Result<T, ApiError> {
    let Err(problem) = body else { return body };
    let probe = partner.grpc(pb::ValidateReferenceRequest { reference: "REF-000000000000".into() })?;
    match up.partner.clone().validate_reference(probe).await {
        Err(status) if matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::ResourceExhausted) => {
            Err(status.into())
        }
        _ => Err(problem),
    }
}

/// Activate an offer the partner sold to a user, paid from the partner's account.
#[utoipa::path(post, path = "/api/v1/partner/activate/", tag = "partner", security(("partner_key" = [])),
    request_body = PartnerActivateBody,
    params(IdempotencyKey),
    responses((status = 202, body = PartnerAccepted),
        (status = 400, body = Problem, description = "invalid_user, invalid_offer, amount_mismatch, insufficient_partner_funds, invalid_request"),
        (status = 401, body = Problem), (status = 422, body = Problem), (status = 429, body = Problem)))]
pub async fn activate(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    headers: HeaderMap,
    body: Result<Json<PartnerActivateBody>, ApiError>,
) -> Result<(StatusCode, Json<PartnerAccepted>), ApiError> {
    let Json(body) = credentials_first(&up, &partner, body).await?;
    let request = pb::ActivateOfferRequest { user_id: body.user_id, offer_id: body.offer_id, amount: body.amount };
    let answer = up.partner.clone().activate_offer(with_key(partner.grpc(request)?, &headers)?).await?.into_inner();
    let status = status_name(answer.status());
    Ok((
        StatusCode::ACCEPTED,
        Json(PartnerAccepted { reference: answer.reference, transaction_id: answer.transaction_id, status }),
    ))
}

/// Look up one of the partner's transactions by reference.
#[utoipa::path(get, path = "/api/v1/partner/validate/{reference}/", tag = "partner", security(("partner_key" = [])),
    params(("reference" = String, Path, description = "REF- and 12 upper-case hex digits")),
    responses((status = 200, body = Validation), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Invalid, description = "Unknown, or another partner's")))]
pub async fn validate(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    Path(reference): Path<String>,
) -> Result<Response, ApiError> {
    let request = partner.grpc(pb::ValidateReferenceRequest { reference: reference.clone() })?;
    match up.partner.clone().validate_reference(request).await {
        Ok(answer) => {
            let v = answer.into_inner();
            Ok(Json(Validation {
                status: status_name(v.status()),
                reference: v.reference,
                transaction_id: v.transaction_id,
                user_id: v.user_id,
                offer_id: v.offer_id,
                is_valid: v.is_valid,
            })
            .into_response())
        }
        Err(status) => {
            let err = offers_kit::Error::from_status(status);
            if err.code != ErrorCode::NotFound {
                return Err(err.into());
            }
            // The contract's own shape for "no such reference", not a problem document.
            let body = Invalid { reference, is_valid: false, error: "Transaction not found".into() };
            Ok((StatusCode::NOT_FOUND, Json(body)).into_response())
        }
    }
}

/// Register (or clear) the URL told when a transaction completes.
#[utoipa::path(post, path = "/api/v1/partner/callback/", tag = "partner", security(("partner_key" = [])),
    request_body = CallbackBody,
    responses((status = 200, body = CallbackRegistered), (status = 400, body = Problem), (status = 401, body = Problem)))]
pub async fn callback(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    body: Result<Json<CallbackBody>, ApiError>,
) -> Result<Json<CallbackRegistered>, ApiError> {
    let Json(body) = credentials_first(&up, &partner, body).await?;
    let request = partner.grpc(pb::SetCallbackRequest { callback_url: body.callback_url.clone() })?;
    let answer = up.partner.clone().set_callback(request).await?.into_inner();
    let signing_secret = (!answer.signing_secret.is_empty()).then_some(answer.signing_secret);
    Ok(Json(CallbackRegistered { callback_url: body.callback_url, signing_secret }))
}

#[derive(Serialize, ToSchema)]
pub struct PartnerBalance {
    /// Minor units of `currency`; negative while drawing on the credit limit.
    pub balance: i64,
    pub credit_limit: i64,
    /// What activations may still take: balance plus credit limit.
    pub available: i64,
    pub currency: String,
}

/// The partner's account with Offers.
#[utoipa::path(get, path = "/api/v1/partner/balance/", tag = "partner", security(("partner_key" = [])),
    responses((status = 200, body = PartnerBalance), (status = 401, body = Problem), (status = 429, body = Problem)))]
pub async fn balance(State(up): State<Upstreams>, partner: PartnerCaller) -> Result<Json<PartnerBalance>, ApiError> {
    let b = up.partner.clone().get_balance(partner.grpc(pb::GetBalanceRequest {})?).await?.into_inner();
    Ok(Json(PartnerBalance {
        balance: b.balance,
        credit_limit: b.credit_limit,
        available: b.available,
        currency: b.currency_code,
    }))
}

/// The partner's own transactions, newest first.
#[utoipa::path(get, path = "/api/v1/partner/transactions/", tag = "partner", security(("partner_key" = [])),
    params(PageQuery),
    responses((status = 200, body = Page<Transaction>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 429, body = Problem)))]
pub async fn transactions(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Transaction>>, ApiError> {
    let request =
        partner.grpc(pb::ListTransactionsRequest { page_size: page.page_size(), page_token: page.page_token() })?;
    let answer = up.partner.clone().list_transactions(request).await?.into_inner();
    Ok(Json(Page::new(answer.transactions.into_iter().map(Transaction::from).collect(), answer.next_page_token)))
}
