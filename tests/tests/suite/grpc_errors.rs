//! gRPC failures as a client built from any proto toolchain reads them: the
//! standard rich error model (`google.rpc.Status` with `ErrorInfo`) in
//! `grpc-status-details-bin`, next to the `offers-error-code` metadata.

use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use offers_proto::catalog::v1::{GetOfferRequest, ListOffersRequest};
use offers_tests::{TestSuite, both};
use tonic_types::StatusExt;

fn with_bearer<T>(body: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(body);
    request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    request
}

/// The code a failed call carries in its `ErrorInfo` (domain `offers`),
/// checked against its metadata entry.
fn reason(status: &tonic::Status) -> String {
    let info = status.get_details_error_info().unwrap_or_else(|| panic!("no ErrorInfo in {status:?}"));
    assert_eq!(info.domain, "offers");
    let metadata = status.metadata().get("offers-error-code").and_then(|v| v.to_str().ok());
    assert_eq!(metadata, Some(info.reason.as_str()), "ErrorInfo and metadata disagree");
    info.reason
}

async fn failed_calls_carry_error_info(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let mut catalog = CatalogServiceClient::new(suite.public_channel().await);
    let unknown = GetOfferRequest { id: uuid::Uuid::now_v7().to_string() };
    let status = catalog.get_offer(with_bearer(unknown, &token)).await.expect_err("no such offer");
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert_eq!(reason(&status), "not_found");

    let malformed = GetOfferRequest { id: "not-a-uuid".into() };
    let status = catalog.get_offer(with_bearer(malformed, &token)).await.expect_err("malformed id");
    assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::InvalidArgument, "invalid_id"));

    let status = catalog.get_offer(GetOfferRequest { id: String::new() }).await.expect_err("no token");
    assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::Unauthenticated, "unauthenticated"));
}

/// A bearer value that is not a JWT at all is an invalid token, over gRPC
/// and at the REST edge alike, never "no token".
async fn a_token_without_dots_is_an_invalid_token(suite: &TestSuite) {
    let mut catalog = CatalogServiceClient::new(suite.public_channel().await);
    let request = with_bearer(ListOffersRequest::default(), "nodotsatall");
    let status = catalog.list_offers(request).await.expect_err("not a token");
    assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::Unauthenticated, "invalid_token"));
    suite.api.get("/api/v1/offers/", Some("nodotsatall")).await.assert_problem(401, "invalid_token");
}

/// A page size outside 0 (the default) to 200 is refused, not cut down.
async fn page_sizes_out_of_range_are_refused(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let mut catalog = CatalogServiceClient::new(suite.public_channel().await);
    for page_size in [-1, 201, i32::MAX] {
        let request = with_bearer(ListOffersRequest { page_size, ..Default::default() }, &token);
        let status = catalog.list_offers(request).await.expect_err("out of range");
        assert_eq!((status.code(), reason(&status).as_str()), (tonic::Code::InvalidArgument, "invalid_request"));
        assert!(status.message().contains("page_size"), "{}", status.message());
    }
    let request = with_bearer(ListOffersRequest { page_size: 200, ..Default::default() }, &token);
    assert!(!catalog.list_offers(request).await.expect("in range").into_inner().offers.is_empty());
}

both!(
    failed_calls_carry_error_info,
    a_token_without_dots_is_an_invalid_token,
    page_sizes_out_of_range_are_refused,
    text_with_a_nul_is_the_callers_mistake
);

/// PostgreSQL cannot store a NUL in text: every administrative field a
/// caller types is checked for it (and for other control characters)
/// before the database sees it, so it is a 4xx on both backends, never
/// an internal error. (The console's `%00` in a user search found this.)
async fn text_with_a_nul_is_the_callers_mistake(suite: &TestSuite) {
    use offers_proto::audit::v1::ListAuditEntriesRequest;
    use offers_proto::auth::v1 as auth_pb;
    use offers_proto::catalog::v1 as catalog_pb;
    let mut admin = suite.admin();
    let code = |e: anyhow::Error| e.downcast::<offers_kit::Error>().expect("a service error").code;
    let lookup = admin.user("de\0mo").await.expect_err("no user has that name");
    assert_eq!(code(lookup), offers_kit::ErrorCode::NotFound);
    let missing = admin.partner("demo\0partner").await.expect_err("no partner has that name");
    assert_eq!(code(missing), offers_kit::ErrorCode::NotFound);
    let made = admin.create_partner("nul\0partner").await.err().expect("refused");
    assert_eq!(code(made), offers_kit::ErrorCode::InvalidRequest);
    let user = admin.user("demo").await.expect("demo");
    let memo = admin.credit(&user.id, 10, "EUR", "nul-memo", "a\0memo").await.expect_err("refused");
    assert_eq!(code(memo), offers_kit::ErrorCode::InvalidRequest);
    let key = admin.credit(&user.id, 10, "EUR", "nul\0key", "memo").await.expect_err("refused");
    assert_eq!(code(key), offers_kit::ErrorCode::InvalidRequest);
    let offer = catalog_pb::Offer {
        code: "NUL-1".into(),
        name: "Nul\0offer".into(),
        price: 100,
        currency_code: "EUR".into(),
        duration_days: 1,
        is_active: true,
        ..Default::default()
    };
    let created = admin.create_offer(offer).await.err().expect("refused");
    assert_eq!(code(created), offers_kit::ErrorCode::InvalidRequest);
    let filter = ListAuditEntriesRequest { actor: "a\0".into(), ..Default::default() };
    let listed = admin.audit_entries(&filter, 10).await.expect_err("refused");
    assert_eq!(code(listed), offers_kit::ErrorCode::InvalidRequest);
    admin.act_as("ops", "a note with a NUL\0 in it");
    let noted = admin.set_console_role(&user.id, auth_pb::ConsoleRole::Unspecified).await.expect_err("refused");
    assert_eq!(code(noted), offers_kit::ErrorCode::InvalidRequest);
}
