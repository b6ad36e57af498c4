//! How the edge answers errors: RFC 9457 problem+json with a stable `code`,
//! and extractors whose rejections are such problems too.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use offers_kit::{Error, ErrorCode};

/// RFC 9457 problem details (documented by `problems::problem_schema`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: String,
}

impl From<&Error> for Problem {
    fn from(err: &Error) -> Self {
        err.log();
        Problem {
            type_uri: type_uri(err.code),
            title: err.code.title().into(),
            status: err.code.http_status(),
            detail: err.message.clone(),
            code: err.code.as_str().into(),
        }
    }
}

/// The problem `type` of a code.
pub fn type_uri(code: ErrorCode) -> String {
    format!("urn:offers:problem:{code}")
}

/// Any failure a handler returns.
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(err: Error) -> Self {
        ApiError(err)
    }
}

impl From<tonic::Status> for ApiError {
    fn from(status: tonic::Status) -> Self {
        ApiError(Error::from_status(status))
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let err = match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Error::new(ErrorCode::PayloadTooLarge, "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                Error::invalid_request("the body must be JSON with Content-Type: application/json")
            }
            _ => Error::invalid_request(rejection.body_text()),
        };
        ApiError(err)
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError(Error::invalid_request(rejection.body_text()))
    }
}

/// A path segment that cannot be decoded is a malformed id.
impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError(Error::new(ErrorCode::InvalidId, rejection.body_text()))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = Problem::from(&self.0);
        let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.0.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// `axum::Json`, but a bad body is a problem+json 400 naming the field.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: serde::Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query`, but a bad query string is a problem+json 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// `axum::extract::Path`, but an undecodable segment is a problem+json 400.
#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

pub async fn method_not_allowed() -> ApiError {
    ApiError(Error::new(ErrorCode::MethodNotAllowed, "this method is not allowed on this path"))
}

pub async fn not_found() -> ApiError {
    ApiError(Error::new(ErrorCode::NotFound, "no such path"))
}
