//! The catalog gRPC services: thin translations to and from [`Catalog`].

use std::sync::Arc;

use offers_kit::Error;
use offers_kit::credentials::user;
use offers_kit::grpc::{page_after, page_size, parse_id};
use offers_proto::catalog::v1 as pb;
use tonic::{Request, Response, Status};

use crate::entity::Model as Offer;
use crate::error::CatalogError;
use crate::service::{Catalog, OfferFields};

pub struct CatalogApi(pub Arc<Catalog>);
pub struct CatalogAdminApi(pub Arc<Catalog>);

pub fn to_proto(o: Offer) -> pb::Offer {
    pb::Offer {
        id: o.id.to_string(),
        code: o.code,
        name: o.name,
        description: o.description,
        price: o.price,
        currency_code: o.currency,
        duration_days: o.duration_days,
        data_mb: o.data_mb,
        voice_minutes: o.voice_minutes,
        sms: o.sms,
        is_active: o.is_active,
    }
}

fn fields(o: pb::Offer) -> OfferFields {
    OfferFields {
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

#[tonic::async_trait]
impl pb::catalog_service_server::CatalogService for CatalogApi {
    async fn list_offers(
        &self,
        request: Request<pb::ListOffersRequest>,
    ) -> Result<Response<pb::ListOffersResponse>, Status> {
        let principal = user(&request)?;
        let body = request.into_inner();
        if body.show_inactive && !principal.is_admin {
            return Err(Error::from(CatalogError::AdminOnly).into());
        }
        let limit = usize::try_from(page_size(body.page_size)).unwrap_or(50);
        let after = page_after(&body.page_token)?;
        let offers = self.0.list(body.show_inactive).await.map_err(Error::from)?;
        let start = after.map_or(0, |after| offers.iter().take_while(|o| o.id >= after).count());
        let page: Vec<Offer> = offers.into_iter().skip(start).take(limit + 1).collect();
        let next_page_token = if page.len() > limit { page[limit - 1].id.to_string() } else { String::new() };
        Ok(Response::new(pb::ListOffersResponse {
            offers: page.into_iter().take(limit).map(to_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_offer(&self, request: Request<pb::GetOfferRequest>) -> Result<Response<pb::GetOfferResponse>, Status> {
        let principal = user(&request)?;
        let id = parse_id(&request.get_ref().id, "offer id")?;
        let offer = self.0.get(id).await.map_err(Error::from)?;
        // An inactive offer is invisible to everyone but administrators.
        if !offer.is_active && !principal.is_admin {
            return Err(Error::from(CatalogError::NotFound).into());
        }
        Ok(Response::new(pb::GetOfferResponse { offer: Some(to_proto(offer)) }))
    }
}

#[tonic::async_trait]
impl pb::catalog_admin_service_server::CatalogAdminService for CatalogAdminApi {
    async fn create_offer(
        &self,
        request: Request<pb::CreateOfferRequest>,
    ) -> Result<Response<pb::CreateOfferResponse>, Status> {
        let offer = request.into_inner().offer.ok_or_else(|| Error::invalid_request("offer is required"))?;
        let created = self.0.create(fields(offer)).await.map_err(Error::from)?;
        Ok(Response::new(pb::CreateOfferResponse { offer: Some(to_proto(created)) }))
    }

    async fn update_offer(
        &self,
        request: Request<pb::UpdateOfferRequest>,
    ) -> Result<Response<pb::UpdateOfferResponse>, Status> {
        let body = request.into_inner();
        let offer = body.offer.ok_or_else(|| Error::invalid_request("offer is required"))?;
        let id = parse_id(&offer.id, "offer id")?;
        let paths = body.update_mask.map(|m| m.paths).unwrap_or_default();
        const MUTABLE: [&str; 9] = [
            "name",
            "description",
            "price",
            "currency_code",
            "duration_days",
            "data_mb",
            "voice_minutes",
            "sms",
            "is_active",
        ];
        if let Some(bad) = paths.iter().find(|p| !MUTABLE.contains(&p.as_str())) {
            return Err(Error::invalid_request(format!("update_mask names a field that cannot change: {bad}")).into());
        }
        let wanted = |field: &str| paths.is_empty() || paths.iter().any(|p| p == field);
        let new = fields(offer);
        let updated = self
            .0
            .update(id, |f| {
                if wanted("name") {
                    f.name = new.name;
                }
                if wanted("description") {
                    f.description = new.description;
                }
                if wanted("price") {
                    f.price = new.price;
                }
                if wanted("currency_code") {
                    f.currency = new.currency;
                }
                if wanted("duration_days") {
                    f.duration_days = new.duration_days;
                }
                if wanted("data_mb") {
                    f.data_mb = new.data_mb;
                }
                if wanted("voice_minutes") {
                    f.voice_minutes = new.voice_minutes;
                }
                if wanted("sms") {
                    f.sms = new.sms;
                }
                if wanted("is_active") {
                    f.is_active = new.is_active;
                }
            })
            .await
            .map_err(Error::from)?;
        Ok(Response::new(pb::UpdateOfferResponse { offer: Some(to_proto(updated)) }))
    }

    async fn lookup_offer(
        &self,
        request: Request<pb::LookupOfferRequest>,
    ) -> Result<Response<pb::LookupOfferResponse>, Status> {
        let id = parse_id(&request.get_ref().id, "offer id")?;
        let offer = self.0.get(id).await.map_err(Error::from)?;
        Ok(Response::new(pb::LookupOfferResponse { offer: Some(to_proto(offer)) }))
    }
}
