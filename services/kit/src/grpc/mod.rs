//! gRPC plumbing: channels to other services, what every call carries
//! and records, and small request helpers.

mod connect;
mod observe;

pub use connect::{Connector, InternalChannel, parse_upstream};
pub use observe::{Channel, KnownMethods, ServerLayer, UNKNOWN, code_name};
pub use offers_proto::timestamps::{from_timestamp, to_timestamp};
pub use offers_proto::wire;

use chrono::{DateTime, Utc};
use offers_proto::account::v1::{self as account, ledger_service_client::LedgerServiceClient};
use offers_proto::contracts::Idempotency;
use offers_proto::ids::Id;
use uuid::Uuid;

use crate::error::Error;

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

/// The transaction a keyed purchase made before, if the ledger took one
/// with this key: asked by a caller whose checks refuse the request now,
/// since only a new purchase may be refused.
pub async fn earlier_purchase(
    ledger: &LedgerServiceClient<InternalChannel>,
    idempotency: Idempotency,
) -> Result<Option<account::Transaction>, tonic::Status> {
    match ledger.clone().replay_purchase(account::ReplayPurchaseRequest::from(idempotency)).await {
        Ok(done) => done
            .into_inner()
            .transaction
            .map(Some)
            .ok_or_else(|| tonic::Status::internal("the ledger replayed no transaction")),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// The caller's `Idempotency-Key` (metadata `idempotency-key`), if any,
/// checked by [`checked_idempotency_key`].
pub fn idempotency_key(metadata: &tonic::metadata::MetadataMap) -> Result<Option<String>, Error> {
    let Some(value) = metadata.get("idempotency-key") else { return Ok(None) };
    checked_idempotency_key(value.to_str().ok()).map(|key| Some(key.to_string()))
}

/// An idempotency key as a client sent it (`None`: not text at all): 1 to
/// 255 visible ASCII characters, or `invalid_request`. The edge refuses with
/// it before any upstream call, the services again for gRPC clients.
pub fn checked_idempotency_key(key: Option<&str>) -> Result<&str, Error> {
    match key {
        Some(key) if wire::is_idempotency_key(key) => Ok(key),
        _ => Err(Error::invalid_request("Idempotency-Key must be 1 to 255 visible ASCII characters")),
    }
}

/// The typed id a request carries; a malformed one is `invalid_id`. Only
/// the adapters where requests enter call it: past them ids are typed.
pub fn parse_id<T: Id>(value: &str) -> Result<T, Error> {
    Ok(T::parse(value)?)
}

/// The moment a request's `field` must carry; missing or out of range is
/// `invalid_request`.
pub fn required_time(value: Option<&prost_types::Timestamp>, field: &str) -> Result<DateTime<Utc>, Error> {
    value.and_then(from_timestamp).ok_or_else(|| Error::invalid_request(format!("{field} is required")))
}

/// The most items one page holds, and how many when the caller leaves it (0).
pub const MAX_PAGE_SIZE: i32 = 200;
pub const DEFAULT_PAGE_SIZE: i32 = 50;

/// The `page_size` asked for: 0 for the default, else 1 to
/// [`MAX_PAGE_SIZE`]; anything else is refused, never silently clamped (a
/// client asking for more must learn it gets less).
pub fn page_size(requested: i32) -> Result<u64, Error> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE.unsigned_abs().into()),
        n if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n.unsigned_abs().into()),
        _ => Err(Error::invalid_request(format!("page_size must be between 1 and {MAX_PAGE_SIZE}"))),
    }
}

/// A page token is the id of the last item of the previous page (ids are
/// UUIDv7, so they order by creation time).
pub fn page_after(token: &str) -> Result<Option<Uuid>, Error> {
    if token.is_empty() {
        return Ok(None);
    }
    wire::hyphenated(token).map(Some).ok_or_else(|| Error::invalid_request("cursor is not valid"))
}

/// The page a query for `limit + 1` items makes: the first `limit`, and
/// the token of the next page (the last kept item's id) when there was one
/// more.
pub fn page<T>(mut items: Vec<T>, limit: u64, id: impl Fn(&T) -> Uuid) -> (Vec<T>, String) {
    let size = usize::try_from(limit).unwrap_or(usize::MAX);
    if items.len() <= size {
        return (items, String::new());
    }
    items.truncate(size);
    let token = items.last().map(|i| id(i).to_string()).unwrap_or_default();
    (items, token)
}

#[cfg(test)]
mod tests {
    use offers_proto::ids::OfferId;

    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn page_sizes_out_of_range_are_refused_not_clamped() {
        assert_eq!(page_size(0).ok(), Some(50));
        assert_eq!(page_size(200).ok(), Some(200));
        for bad in [-1, 201, i32::MAX] {
            let err = page_size(bad).expect_err("out of range");
            assert!(err.message.contains("page_size"), "{}", err.message);
        }
    }

    #[test]
    fn ids_are_hyphenated_uuids_only() {
        let id = Uuid::now_v7();
        assert_eq!(parse_id::<OfferId>(&id.to_string()).ok().map(OfferId::uuid), Some(id));
        assert_eq!(parse_id::<OfferId>(&id.to_string().to_uppercase()).ok().map(OfferId::uuid), Some(id));
        for other in [id.simple().to_string(), id.urn().to_string(), format!("{{{id}}}")] {
            assert_eq!(parse_id::<OfferId>(&other).expect_err(&other).code, ErrorCode::InvalidId);
            assert!(page_after(&other).is_err(), "{other}");
        }
    }
}
