use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use offers_kit::ErrorCode;
use offers_proto::partner::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{IdempotencyKey, Page, PageQuery, Transaction, status_name};
use crate::Upstreams;
use crate::bodies::{Object, PartnerActivateBody};
use crate::context::PartnerCaller;
use crate::error::{ApiError, Json, Path, Query};
use crate::formats::Reference;
use crate::problems::{BODY, CREDENTIALS, UPSTREAM, problems};

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "reference": "REF-4F1A09C2B7DE", "transaction_id": "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05", "status": "PENDING"
})))]
pub struct PartnerAccepted {
    #[schema(value_type = Reference)]
    pub reference: String,
    #[schema(format = Uuid)]
    pub transaction_id: String,
    #[schema(pattern = "^(PENDING|SUCCESS|FAILED)$")]
    pub status: String,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "reference": "REF-4F1A09C2B7DE", "transaction_id": "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05",
    "user_id": "0193a5b0-0000-7000-8000-0000000000aa", "offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c",
    "status": "SUCCESS", "is_valid": true
})))]
pub struct Validation {
    #[schema(value_type = Reference)]
    pub reference: String,
    #[schema(format = Uuid)]
    pub transaction_id: String,
    #[schema(format = Uuid)]
    pub user_id: String,
    #[schema(format = Uuid)]
    pub offer_id: String,
    #[schema(pattern = "^(PENDING|SUCCESS|FAILED)$")]
    pub status: String,
    pub is_valid: bool,
}

/// The contract's own answer for a reference that is not the partner's.
#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"reference": "REF-4F1A09C2B7DE", "is_valid": false, "error": "Transaction not found"})))]
pub struct Invalid {
    #[schema(value_type = Reference)]
    pub reference: String,
    pub is_valid: bool,
    pub error: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"callback_url": "https://partner.example.com/offers/callback"})))]
pub struct CallbackBody {
    /// An https URL of a public host (plain http and private hosts only
    /// where the deployment allows them), or empty to stop callbacks.
    #[schema(
        max_length = 2048,
        pattern = "^(https?://[A-Za-z0-9-]+(\\.[A-Za-z0-9-]+)*(:[0-9]{1,4})?(/[A-Za-z0-9._~%!$&'()*+,;=:@/-]*)?)?$"
    )]
    pub callback_url: String,
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "callback_url": "https://partner.example.com/offers/callback", "signing_secret": "whsec_5f0c3a9e1b7d4c2a5f0c3a9e1b7d4c2a5f0c3a9e1b7d4c2a5f0c3a9e1b7d4c2a"
})))]
pub struct CallbackRegistered {
    pub callback_url: String,
    /// HMAC-SHA256 key for the `X-Offers-Signature` header (`whsec_` and 64
    /// hex digits); shown once, null when callbacks were cleared.
    pub signing_secret: Option<String>,
}

/// Every partner path has a per-partner rate limit.
const RATE_LIMITED: &[ErrorCode] = &[ErrorCode::RateLimited];

problems!(
    ActivateProblems = CREDENTIALS,
    RATE_LIMITED,
    BODY,
    UPSTREAM,
    &[
        ErrorCode::InvalidUser,
        ErrorCode::InvalidOffer,
        ErrorCode::AmountMismatch,
        ErrorCode::InsufficientPartnerFunds,
        ErrorCode::IdempotencyKeyReused,
    ]
);
problems!(ValidateProblems = CREDENTIALS, RATE_LIMITED, UPSTREAM, &[ErrorCode::InvalidId]);
problems!(CallbackProblems = CREDENTIALS, RATE_LIMITED, BODY, UPSTREAM);
problems!(BalanceProblems = CREDENTIALS, RATE_LIMITED, UPSTREAM);
problems!(TransactionsProblems = CREDENTIALS, RATE_LIMITED, UPSTREAM, &[ErrorCode::InvalidRequest]);

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
#[utoipa::path(post, path = "/api/v1/partner/activate/", tag = "partner", operation_id = "partner_activate_offer",
    security(("partner_key" = [])), request_body = PartnerActivateBody, params(IdempotencyKey),
    responses((status = 202, description = "Accepted and held from the partner's account", body = PartnerAccepted,
        links(("validate" = (operation_id = "partner_validate_reference",
            parameters(("reference" = "$response.body#/reference")))))), ActivateProblems))]
pub async fn activate(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    key: Result<IdempotencyKey, ApiError>,
    body: Result<Json<Object<PartnerActivateBody>>, ApiError>,
) -> Result<(StatusCode, Json<PartnerAccepted>), ApiError> {
    let (Json(Object(body)), key) = credentials_first(&up, &partner, body.and_then(|body| Ok((body, key?)))).await?;
    let request = pb::ActivateOfferRequest { user_id: body.user_id, offer_id: body.offer_id, amount: body.amount };
    let answer = up.partner.clone().activate_offer(key.attach(partner.grpc(request)?)).await?.into_inner();
    let status = status_name(answer.status());
    Ok((
        StatusCode::ACCEPTED,
        Json(PartnerAccepted { reference: answer.reference, transaction_id: answer.transaction_id, status }),
    ))
}

/// Look up one of the partner's transactions by reference.
#[utoipa::path(get, path = "/api/v1/partner/validate/{reference}/", tag = "partner",
    operation_id = "partner_validate_reference", security(("partner_key" = [])),
    params(("reference" = Reference, Path, description = "The reference the activation answered")),
    responses((status = 200, description = "The partner's transaction", body = Validation),
        (status = 404, description = "Unknown, or another partner's", body = Invalid), ValidateProblems))]
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
#[utoipa::path(post, path = "/api/v1/partner/callback/", tag = "partner", operation_id = "partner_set_callback",
    security(("partner_key" = [])), request_body = CallbackBody,
    responses((status = 200, description = "Registered (or cleared)", body = CallbackRegistered), CallbackProblems))]
pub async fn callback(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    body: Result<Json<Object<CallbackBody>>, ApiError>,
) -> Result<Json<CallbackRegistered>, ApiError> {
    let Json(Object(body)) = credentials_first(&up, &partner, body).await?;
    let request = partner.grpc(pb::SetCallbackRequest { callback_url: body.callback_url.clone() })?;
    let answer = up.partner.clone().set_callback(request).await?.into_inner();
    let signing_secret = (!answer.signing_secret.is_empty()).then_some(answer.signing_secret);
    Ok(Json(CallbackRegistered { callback_url: body.callback_url, signing_secret }))
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({"balance": 998500, "credit_limit": 0, "available": 998500, "currency": "EUR"})))]
pub struct PartnerBalance {
    /// Minor units of `currency`; negative while drawing on the credit limit.
    pub balance: i64,
    pub credit_limit: i64,
    /// What activations may still take: balance plus credit limit.
    pub available: i64,
    pub currency: String,
}

/// The partner's account with Offers.
#[utoipa::path(get, path = "/api/v1/partner/balance/", tag = "partner", operation_id = "partner_get_balance",
    security(("partner_key" = [])),
    responses((status = 200, description = "The partner's account", body = PartnerBalance), BalanceProblems))]
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
#[utoipa::path(get, path = "/api/v1/partner/transactions/", tag = "partner", operation_id = "partner_list_transactions",
    security(("partner_key" = [])), params(PageQuery),
    responses((status = 200, description = "A page of the partner's transactions", body = Page<Transaction>),
        TransactionsProblems))]
pub async fn transactions(
    State(up): State<Upstreams>,
    partner: PartnerCaller,
    Query(page): Query<PageQuery>,
) -> Result<Json<Page<Transaction>>, ApiError> {
    let request =
        partner.grpc(pb::ListTransactionsRequest { page_size: page.page_size()?, page_token: page.page_token()? })?;
    let answer = up.partner.clone().list_transactions(request).await?.into_inner();
    Ok(Json(Page::new(answer.transactions.into_iter().map(Transaction::from).collect(), answer.next_page_token)))
}
