use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use offers_proto::catalog::v1 as pb;
use serde::Deserialize;

use offers_kit::ErrorCode;

use super::{IfNoneMatch, MaybeStale, Page, PageQuery, Revalidated, Tagged};
use crate::Upstreams;
use crate::context::UserCaller;
use crate::error::{ApiError, Path, Query};
use crate::formats::Id;
use crate::kept::{Encoded, KeptPages, PageRequest};
use crate::problems::{CREDENTIALS, UPSTREAM, problems};

problems!(ListProblems = &[ErrorCode::InvalidRequest, ErrorCode::PermissionDenied], CREDENTIALS, UPSTREAM);
problems!(GetProblems = &[ErrorCode::InvalidId, ErrorCode::NotFound], CREDENTIALS, UPSTREAM);

#[derive(Deserialize, utoipa::IntoParams)]
pub struct OffersQuery {
    /// Include inactive offers (administrators only: 403 for anyone else).
    #[param(nullable = false)]
    pub include_inactive: Option<bool>,
}

/// Offers on sale, newest first.
#[utoipa::path(get, path = "/api/v1/offers/", tag = "offers", operation_id = "list_offers", security(("bearer" = [])),
    params(PageQuery, OffersQuery),
    responses((status = 200, description = "A page of offers", body = Page<pb::Offer>, headers(
            ("Offers-Stale" = String, description = "`true` when served from the cache while the catalog is unreachable"),
            ("ETag" = String, description = "The answer's tag (absent on a stale answer): send it back as `If-None-Match`"))),
            (status = 304, description = "Not modified: the answer is still the one `If-None-Match` names"),
        ListProblems))]
pub async fn list(
    State(up): State<Upstreams>,
    State(kept): State<KeptPages>,
    user: UserCaller,
    if_none_match: IfNoneMatch,
    Query(page): Query<PageQuery>,
    Query(filter): Query<OffersQuery>,
) -> Result<Response, ApiError> {
    let asked = PageRequest {
        show_inactive: filter.include_inactive.unwrap_or(false),
        page_size: page.page_size()?,
        page_token: page.page_token()?,
    };
    let held = kept.get(&asked);
    let request = user.grpc(pb::ListOffersRequest {
        show_inactive: asked.show_inactive,
        page_size: asked.page_size,
        page_token: asked.page_token.clone(),
        unless_version: held.as_ref().map(|h| h.version.clone()).unwrap_or_default(),
    })?;
    let answer = up.catalog.clone().list_offers(request).await?;
    let stale = offers_kit::grpc::is_stale(answer.metadata());
    let answer = answer.into_inner();
    let if_none_match = if_none_match.0;
    if answer.not_modified {
        // The catalog confirms only the version it was sent, which is the
        // held page's.
        let encoded = held
            .filter(|h| h.version == answer.version)
            .ok_or_else(|| offers_kit::Error::internal("the catalog confirmed a page this edge does not hold"))?;
        return Ok(Tagged { encoded, if_none_match }.into_response());
    }
    let body = Page::new(answer.offers, answer.next_page_token);
    if stale {
        return Ok(Revalidated { answer: MaybeStale { body, stale }, if_none_match }.into_response());
    }
    let encoded = Arc::new(Encoded::of(&body, answer.version)?);
    kept.keep(asked, encoded.clone());
    Ok(Tagged { encoded, if_none_match }.into_response())
}

/// One offer.
#[utoipa::path(get, path = "/api/v1/offers/{offer_id}/", tag = "offers", operation_id = "get_offer", security(("bearer" = [])),
    params(("offer_id" = Id, Path, description = "The offer's id")),
    responses((status = 200, description = "The offer", body = pb::Offer, headers(
            ("Offers-Stale" = String, description = "`true` when served from the cache while the catalog is unreachable"),
            ("ETag" = String, description = "The answer's tag (absent on a stale answer): send it back as `If-None-Match`"))),
            (status = 304, description = "Not modified: the answer is still the one `If-None-Match` names"),
        GetProblems))]
pub async fn get(
    State(up): State<Upstreams>,
    user: UserCaller,
    if_none_match: IfNoneMatch,
    Path(offer_id): Path<String>,
) -> Result<Revalidated<pb::Offer>, ApiError> {
    let answer = up.catalog.clone().get_offer(user.grpc(pb::GetOfferRequest { id: offer_id })?).await?;
    let stale = offers_kit::grpc::is_stale(answer.metadata());
    let offer = answer.into_inner().offer.ok_or_else(|| offers_kit::Error::not_found("offer"))?;
    Ok(Revalidated { answer: MaybeStale { body: offer, stale }, if_none_match: if_none_match.0 })
}
