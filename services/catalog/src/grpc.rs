//! The catalog gRPC services: thin translations to and from [`Catalog`].

use std::sync::Arc;

use offers_kit::audit::Act;
use offers_kit::credentials::user;
use offers_kit::grpc::{answer, page_after, page_size, parse_id};
use offers_kit::{Error, ErrorCode};
use offers_proto::catalog::v1 as pb;
use tonic::{Request, Response, Status};

use crate::error::CatalogError;
use crate::offer::Offer;
use crate::service::{Catalog, Served};

pub struct CatalogApi(pub Arc<Catalog>);

/// One page of the offers, newest first.
struct OfferPage {
    offers: Vec<pb::Offer>,
    next_page_token: String,
    stale: bool,
    version: String,
    not_modified: bool,
}

impl Catalog {
    /// One page of the offers; none when the list's version is
    /// `unless_version` (the caller holds the page already).
    async fn page(
        &self,
        include_inactive: bool,
        size: i32,
        token: &str,
        unless_version: &str,
    ) -> Result<OfferPage, Status> {
        let limit = usize::try_from(page_size(size)?).unwrap_or(50);
        let after = page_after(token)?;
        let Served { value: offers, stale, version } = self.list(include_inactive).await?;
        let version = version.to_string();
        if !version.is_empty() && version == unless_version {
            return Ok(OfferPage {
                offers: vec![],
                next_page_token: String::new(),
                stale,
                version,
                not_modified: true,
            });
        }
        let start = after.map_or(0, |after| offers.iter().take_while(|o| o.id >= after).count());
        let page: Vec<&Offer> = offers.iter().skip(start).take(limit + 1).collect();
        let next_page_token = if page.len() > limit { page[limit - 1].id.to_string() } else { String::new() };
        let offers = page.into_iter().take(limit).map(|o| pb::Offer::from(o.clone())).collect();
        Ok(OfferPage { offers, next_page_token, stale, version, not_modified: false })
    }
}
pub struct CatalogAdminApi(pub Arc<Catalog>);

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogApi {
    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        let principal = user(&request).await?;
        let body = request.into_inner();
        if body.show_inactive && !principal.is_admin {
            return Err(CatalogError::AdminOnly.into());
        }
        let OfferPage { offers, next_page_token, stale, version, not_modified } =
            self.0.page(body.show_inactive, body.page_size, &body.page_token, &body.unless_version).await?;
        Ok(answer(pb::ListOffersResponse { offers, next_page_token, version, not_modified }, stale))
    }

    async fn get_offer(&self, request: Request<pb::GetOfferRequest>) -> Result<Response<pb::GetOfferResponse>, Status> {
        let principal = user(&request).await?;
        let Served { value: offer, stale, .. } = self.0.get(parse_id(&request.get_ref().id)?).await?;
        // An inactive offer is invisible to everyone but administrators.
        if !offer.is_active && !principal.is_admin {
            return Err(CatalogError::NotFound.into());
        }
        Ok(answer(pb::GetOfferResponse { offer: Some(pb::Offer::from(Arc::unwrap_or_clone(offer))) }, stale))
    }
}

#[tonic::async_trait]
impl pb::catalog_admin_service_server::CatalogAdminService for CatalogAdminApi {
    async fn create_offer(
        &self,
        request: Request<pb::CreateOfferRequest>,
    ) -> Result<Response<pb::CreateOfferResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let offer = request.into_inner().offer.ok_or_else(|| Error::invalid_request("offer is required"))?;
        let created = self.0.create(offer, &act).await?;
        Ok(Response::new(pb::CreateOfferResponse { offer: Some(pb::Offer::from(created)) }))
    }

    async fn update_offer(
        &self,
        request: Request<pb::UpdateOfferRequest>,
    ) -> Result<Response<pb::UpdateOfferResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let body = request.into_inner();
        let offer = body.offer.ok_or_else(|| Error::invalid_request("offer is required"))?;
        let id = parse_id(&offer.id)?;
        let paths = body.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = self.0.update(id, offer, &paths, &act).await?;
        Ok(Response::new(pb::UpdateOfferResponse { offer: Some(pb::Offer::from(updated)) }))
    }

    async fn lookup_offer(
        &self,
        request: Request<pb::LookupOfferRequest>,
    ) -> Result<Response<pb::LookupOfferResponse>, Status> {
        // Purchases are priced from this answer: never from a stale copy.
        let Served { value: offer, stale, .. } = self.0.get(parse_id(&request.get_ref().id)?).await?;
        if stale {
            return Err(Error::new(ErrorCode::Unavailable, "the catalog cannot be read now; try again").into());
        }
        Ok(Response::new(pb::LookupOfferResponse { offer: Some(pb::Offer::from(Arc::unwrap_or_clone(offer))) }))
    }

    async fn list_all_offers(
        &self,
        request: Request<pb::ListAllOffersRequest>,
    ) -> Result<Response<pb::ListAllOffersResponse>, Status> {
        let body = request.into_inner();
        let OfferPage { offers, next_page_token, stale, .. } =
            self.0.page(true, body.page_size, &body.page_token, "").await?;
        Ok(answer(pb::ListAllOffersResponse { offers, next_page_token }, stale))
    }
}
