//! gRPC plumbing: channels to other services, what every call carries
//! and records, and small request helpers.

mod connect;
mod observe;

pub use connect::{Connector, InternalChannel, parse_upstream};
pub use observe::{Channel, ServerLayer, code_name};

use uuid::Uuid;

use crate::error::{Error, ErrorCode};

/// Response metadata saying the answer came from the cache because its
/// source could not be reached (the edge turns it into `Offers-Stale`).
pub const STALE_METADATA: &str = "offers-stale";

/// A response, marked stale when it is.
pub fn answer<T>(message: T, stale: bool) -> tonic::Response<T> {
    let mut response = tonic::Response::new(message);
    if stale {
        response.metadata_mut().insert(STALE_METADATA, tonic::metadata::MetadataValue::from_static("true"));
    }
    response
}

/// Whether another service marked its answer stale.
pub fn is_stale(metadata: &tonic::metadata::MetadataMap) -> bool {
    metadata.get(STALE_METADATA).is_some_and(|v| v == "true")
}

/// The caller's `Idempotency-Key` (metadata `idempotency-key`), if any: 1 to
/// 255 visible ASCII characters, or `invalid_request`.
pub fn idempotency_key(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, Error> {
    let Some(value) = metadata.get("idempotency-key") else { return Ok(None) };
    match value.to_str() {
        Ok(key) if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) => {
            Ok(Some(key.to_string()))
        }
        _ => Err(Error::invalid_request("Idempotency-Key must be 1 to 255 visible ASCII characters")),
    }
}

/// Parses a UUID from a request; a malformed one is `invalid_id`.
pub fn parse_id(value: &str, what: &str) -> Result<Uuid, Error> {
    Uuid::parse_str(value).map_err(|_| Error::new(ErrorCode::InvalidId, format!("{what} is not a valid id")))
}

/// Page sizes: 50 unless asked, never more than 200.
pub fn page_size(requested: i32) -> u64 {
    match requested {
        n if n <= 0 => 50,
        n => u64::try_from(n.min(200)).unwrap_or(50),
    }
}

/// A page token is the id of the last item of the previous page (ids are
/// UUIDv7, so they order by creation time).
pub fn page_after(token: &str) -> Result<Option<Uuid>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    Uuid::parse_str(token).map(Some).map_err(|_| Error::invalid_request("cursor is not valid"))
}

pub fn to_timestamp(t: chrono::DateTime<chrono::Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp { seconds: t.timestamp(), nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0) }
}

pub fn from_timestamp(t: &prost_types::Timestamp) -> Option<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::from_timestamp(t.seconds, u32::try_from(t.nanos).ok()?)
}
