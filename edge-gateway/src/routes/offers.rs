use axum::extract::State;
use offers_kit::error::Problem;
use offers_proto::catalog::v1 as pb;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Page, PageQuery};
use crate::Upstreams;
use crate::context::UserCaller;
use crate::error::{ApiError, Json, Path, Query};

#[derive(Serialize, ToSchema)]
pub struct Offer {
    pub id: String,
    pub code: String,
    pub name: String,
    pub description: String,
    /// Minor units of `currency`.
    pub price: i64,
    pub currency: String,
    pub duration_days: i32,
    pub data_mb: i64,
    pub voice_minutes: i64,
    pub sms: i64,
    pub is_active: bool,
}

impl From<pb::Offer> for Offer {
    fn from(o: pb::Offer) -> Self {
        Offer {
            id: o.id,
            code: o.code,
            name: o.name,
            description: o.description,
            price: o.price,
            currency: o.currency_code,
            duration_days: o.duration_days,
            data_mb: o.data_mb,
            voice_minutes: o.voice_minutes,
            sms: o.sms,
            is_active: o.is_active,
        }
    }
}

#[derive(Deserialize, utoipa::IntoParams)]
pub struct OffersQuery {
    /// Include inactive offers (administrators only).
    pub include_inactive: Option<bool>,
}

/// Offers on sale, newest first.
#[utoipa::path(get, path = "/api/v1/offers/", tag = "offers", security(("bearer" = [])),
    params(PageQuery, OffersQuery),
    responses((status = 200, body = Page<Offer>), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 403, body = Problem)))]
pub async fn list(
    State(up): State<Upstreams>,
    user: UserCaller,
    Query(page): Query<PageQuery>,
    Query(filter): Query<OffersQuery>,
) -> Result<Json<Page<Offer>>, ApiError> {
    let request = user.grpc(pb::ListOffersRequest {
        show_inactive: filter.include_inactive.unwrap_or(false),
        page_size: page.page_size(),
        page_token: page.page_token(),
    })?;
    let answer = up.catalog.clone().list_offers(request).await?.into_inner();
    Ok(Json(Page::new(answer.offers.into_iter().map(Offer::from).collect(), answer.next_page_token)))
}

/// One offer.
#[utoipa::path(get, path = "/api/v1/offers/{offer_id}/", tag = "offers", security(("bearer" = [])),
    params(("offer_id" = String, Path, description = "Offer id (UUID)")),
    responses((status = 200, body = Offer), (status = 400, body = Problem), (status = 401, body = Problem),
        (status = 404, body = Problem)))]
pub async fn get(
    State(up): State<Upstreams>,
    user: UserCaller,
    Path(offer_id): Path<String>,
) -> Result<Json<Offer>, ApiError> {
    let answer = up.catalog.clone().get_offer(user.grpc(pb::GetOfferRequest { id: offer_id })?).await?.into_inner();
    Ok(Json(answer.offer.map(Offer::from).ok_or_else(|| offers_kit::Error::not_found("offer"))?))
}
