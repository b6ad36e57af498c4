pub mod account;
pub mod activation;
pub mod auth;
pub mod offers;
pub mod partner;

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use offers_proto::account::v1 as account_pb;
use offers_proto::account::v1::TransactionStatus;
use serde::Serialize;
use tonic::metadata::{Ascii, MetadataValue};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::formats::{Cursor, Reference};
use crate::kept::Encoded;
use offers_kit::Error;
use offers_kit::grpc::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, checked_idempotency_key, page_after};

/// Header on an answer served from a cache because its source could not
/// be reached: it may be out of date.
pub const STALE_HEADER: &str = "offers-stale";

const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A JSON answer, marked with `Offers-Stale: true` when the service that
/// gave it says it came from its cache during an outage.
pub struct MaybeStale<T> {
    pub body: T,
    pub stale: bool,
}

impl<T> MaybeStale<T> {
    /// The upstream's answer made into `T`, keeping its staleness.
    pub fn from_upstream<M>(response: tonic::Response<M>, make: impl FnOnce(M) -> T) -> Self {
        let stale = offers_kit::grpc::is_stale(response.metadata());
        Self { body: make(response.into_inner()), stale }
    }
}

impl<T: Serialize> axum::response::IntoResponse for MaybeStale<T> {
    fn into_response(self) -> axum::response::Response {
        let mut response = axum::Json(self.body).into_response();
        if self.stale {
            response.headers_mut().insert(
                axum::http::HeaderName::from_static(STALE_HEADER),
                axum::http::HeaderValue::from_static("true"),
            );
        }
        response
    }
}

/// A catalog answer clients revalidate (`If-None-Match`, as mobile apps
/// do): its `ETag` is a digest of the body itself, so it changes exactly
/// when the answer does, whatever the catalog's generation counter did
/// meanwhile (one lost with Redis would start again and repeat old tags).
/// A match is `304 Not Modified` with no body. An answer served stale
/// during an outage carries no tag: it must not be confirmed as current.
pub struct Revalidated<T> {
    pub answer: MaybeStale<T>,
    pub if_none_match: Option<axum::http::HeaderValue>,
}

impl<T: Serialize> axum::response::IntoResponse for Revalidated<T> {
    fn into_response(self) -> axum::response::Response {
        if self.answer.stale {
            return self.answer.into_response();
        }
        match Encoded::of(&self.answer.body, String::new()) {
            Ok(encoded) => Tagged { encoded: Arc::new(encoded), if_none_match: self.if_none_match }.into_response(),
            Err(e) => ApiError::from(e).into_response(),
        }
    }
}

/// A current answer already encoded, with its tag: `304` when
/// `If-None-Match` names the tag, else the body.
pub struct Tagged {
    pub encoded: Arc<Encoded>,
    pub if_none_match: Option<axum::http::HeaderValue>,
}

impl axum::response::IntoResponse for Tagged {
    fn into_response(self) -> axum::response::Response {
        use axum::http::{HeaderValue, StatusCode, header};
        let tag = self.encoded.tag.to_str().unwrap_or_default();
        let matches = self.if_none_match.as_ref().and_then(|v| v.to_str().ok()).is_some_and(|v| matches_tag(v, tag));
        let mut response = if matches {
            StatusCode::NOT_MODIFIED.into_response()
        } else {
            let body = self.encoded.body.clone();
            ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response()
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.encoded.tag.clone());
        // Per caller (an administrator sees inactive offers), and checked
        // with us before each reuse.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache"));
        headers.insert(header::VARY, HeaderValue::from_static("authorization"));
        response
    }
}

/// Whether an `If-None-Match` value names `tag` (weak comparison, as RFC
/// 9110 asks for it: `W/` is ignored), or is `*`.
fn matches_tag(if_none_match: &str, tag: &str) -> bool {
    if_none_match.split(',').map(str::trim).any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == tag)
}

/// A page of a list, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub results: Vec<T>,
    /// Pass as `?cursor=` for the next page; null on the last one.
    #[schema(value_type = Option<Cursor>)]
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    pub fn new(results: Vec<T>, next_page_token: String) -> Self {
        Self { results, next_cursor: (!next_page_token.is_empty()).then_some(next_page_token) }
    }
}

/// `?limit=&cursor=` of every list.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page: 50 when not given. Outside 1 to 200 the request is
    /// refused (400 `invalid_request` naming `limit`), never cut down.
    #[param(minimum = 1, maximum = 200, default = 50, example = 20, nullable = false)]
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    #[param(value_type = Option<Cursor>, nullable = false)]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The page size for the service, or 400 naming `limit`.
    pub fn page_size(&self) -> Result<i32, ApiError> {
        let Some(limit) = self.limit else { return Ok(DEFAULT_PAGE_SIZE) };
        match i32::try_from(limit) {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => {
                Err(Error::invalid_request(format!("limit must be between 1 and {MAX_PAGE_SIZE}, not {limit}")).into())
            }
        }
    }

    /// The cursor for the service (empty for the first page); a cursor
    /// given empty is as malformed as any other that is no id.
    pub fn page_token(&self) -> Result<String, ApiError> {
        match self.cursor.as_deref() {
            None => Ok(String::new()),
            Some(cursor) => match page_after(cursor)? {
                Some(_) => Ok(cursor.to_string()),
                None => Err(Error::invalid_request("cursor must not be empty").into()),
            },
        }
    }
}

pub fn rfc3339(t: Option<&prost_types::Timestamp>) -> Option<String> {
    t.and_then(offers_kit::grpc::from_timestamp).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

/// The name of an enum value without its proto prefix (`TRANSACTION_STATUS_PENDING` → `PENDING`).
pub fn short(name: &str, prefix: &str) -> String {
    name.strip_prefix(prefix).unwrap_or(name).to_string()
}

pub fn status_name(status: TransactionStatus) -> String {
    short(status.as_str_name(), "TRANSACTION_STATUS_")
}

/// The `Idempotency-Key` header of the requests that move money, refused
/// here (400 `invalid_request`) when malformed, as the services would.
/// Take it after the caller's credentials, so a bad credential is a 401
/// whatever the key.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKey {
    /// 1 to 255 visible ASCII characters. Same key and body: the first
    /// answer again, and no second charge; same key with another body: 422
    /// `idempotency_key_reused`. Keys are kept for at least 24 hours.
    #[param(rename = "Idempotency-Key", value_type = Option<String>, pattern = "^[!-~]{1,255}$",
        example = "order-2024-0001", nullable = false)]
    key: Option<MetadataValue<Ascii>>,
}

/// The request's `If-None-Match`, if any.
pub struct IfNoneMatch(pub Option<axum::http::HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(axum::http::header::IF_NONE_MATCH).cloned()))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(IDEMPOTENCY_KEY) else { return Ok(Self { key: None }) };
        let key = checked_idempotency_key(value.to_str().ok())?;
        let key = MetadataValue::try_from(key).map_err(|e| Error::invalid_request(e.to_string()))?;
        Ok(Self { key: Some(key) })
    }
}

impl IdempotencyKey {
    /// `request` carrying the key on to the service as gRPC metadata.
    pub fn attach<T>(self, mut request: tonic::Request<T>) -> tonic::Request<T> {
        if let Some(key) = self.key {
            request.metadata_mut().insert(IDEMPOTENCY_KEY, key);
        }
        request
    }
}

#[derive(Serialize, ToSchema)]
#[schema(examples(json!({
    "id": "0193a5b0-7e1c-7cc2-9f3e-4b8a2d6c1e05", "kind": "ACTIVATION",
    "offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c", "subscription_id": null, "amount": 1500,
    "currency": "EUR", "status": "SUCCESS", "reference": null, "failure_reason": null, "attempts": 1,
    "created_at": "2026-11-27T10:15:00.000000Z", "updated_at": "2026-11-27T10:15:02.500000Z"
})))]
pub struct Transaction {
    #[schema(format = Uuid)]
    pub id: String,
    /// `GIFT`: bought by the caller for another user, who has the
    /// subscription; `AUTO_RENEWAL`: the renewal pass renewed the caller's
    /// subscription, as they asked.
    #[schema(pattern = "^(ACTIVATION|RENEWAL|PARTNER_ACTIVATION|GIFT|AUTO_RENEWAL)$")]
    pub kind: String,
    #[schema(format = Uuid)]
    pub offer_id: String,
    #[schema(format = Uuid)]
    pub subscription_id: Option<String>,
    /// Minor units of `currency`.
    pub amount: i64,
    pub currency: String,
    #[schema(pattern = "^(PENDING|SUCCESS|FAILED)$")]
    pub status: String,
    /// The partner reference of a partner activation.
    #[schema(value_type = Option<Reference>)]
    pub reference: Option<String>,
    pub failure_reason: Option<String>,
    /// Provisioning attempts so far.
    pub attempts: i32,
    #[schema(format = DateTime)]
    pub created_at: Option<String>,
    #[schema(format = DateTime)]
    pub updated_at: Option<String>,
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

impl From<account_pb::Transaction> for Transaction {
    fn from(t: account_pb::Transaction) -> Self {
        Transaction {
            kind: short(t.kind().as_str_name(), "TRANSACTION_KIND_"),
            status: status_name(t.status()),
            created_at: rfc3339(t.create_time.as_ref()),
            updated_at: rfc3339(t.update_time.as_ref()),
            id: t.id,
            offer_id: t.offer_id,
            subscription_id: non_empty(t.subscription_id),
            amount: t.amount,
            currency: t.currency_code,
            reference: non_empty(t.reference),
            failure_reason: non_empty(t.failure_reason),
            attempts: t.attempts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches_tag;

    #[test]
    fn if_none_match_is_compared_weakly_in_any_list() {
        let tag = "\"abc\"";
        for yes in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "\"x\",W/\"abc\"", "*"] {
            assert!(matches_tag(yes, tag), "{yes}");
        }
        for no in ["", "abc", "\"abcd\"", "\"ab\"", "W/abc", "\"x\", \"y\""] {
            assert!(!matches_tag(no, tag), "{no}");
        }
    }
}
