//! The partner gRPC services: the public one authenticates partners by API
//! key; the admin one is internal.

use std::sync::Arc;

use offers_kit::Error;
use offers_kit::audit::Act;
use offers_kit::credentials::bearer;
use offers_kit::grpc::{idempotency_key, page, page_after, page_size, parse_id, to_timestamp};
use offers_proto::account::v1::TransactionStatus;
use offers_proto::contracts::PartnerEvent;
use offers_proto::ids::{Id, OfferId, UserId};
use offers_proto::partner::v1 as pb;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::callbacks::CallbackWorker;
use crate::entity::{api_key, delivery, partner};
use crate::error::PartnerError;
use crate::service::{ActivationRequest, IssuedKey, Partners};

pub struct PartnerApi(pub Arc<Partners>);
pub struct PartnerAdminApi(pub Arc<Partners>, pub Arc<CallbackWorker>);

fn partner_proto(p: partner::Model) -> pb::Partner {
    let status = match p.status {
        partner::Status::Active => pb::PartnerStatus::Active,
        partner::Status::Suspended => pb::PartnerStatus::Suspended,
    };
    pb::Partner {
        id: p.id.to_string(),
        name: p.name,
        status: status.into(),
        callback_url: p.callback_url.unwrap_or_default(),
        create_time: Some(to_timestamp(p.created_at)),
    }
}

fn delivery_proto(d: delivery::Model) -> pb::CallbackDelivery {
    // What the event told, from the job it was queued with (rows older than
    // recorded jobs show none).
    let event = d.job.as_deref().and_then(|job| serde_json::from_str::<PartnerEvent>(job).ok());
    pb::CallbackDelivery {
        event_id: d.event_id.to_string(),
        transaction_id: d.transaction_id.to_string(),
        reference: event.as_ref().map(|e| e.reference.clone()).unwrap_or_default(),
        status: event.map(|e| e.status).unwrap_or_default(),
        attempts: d.attempts,
        create_time: Some(to_timestamp(d.created_at)),
        deliver_time: d.delivered_at.map(to_timestamp),
        abandon_time: d.abandoned_at.map(to_timestamp),
        last_error: d.last_error.unwrap_or_default(),
    }
}

fn key_proto(k: api_key::Model) -> pb::ApiKey {
    pb::ApiKey {
        id: k.id.to_string(),
        partner_id: k.partner_id.to_string(),
        prefix: k.prefix,
        create_time: Some(to_timestamp(k.created_at)),
        revoke_time: k.revoked_at.map(to_timestamp),
    }
}

impl PartnerApi {
    /// The calling partner, from the API key in `authorization`.
    async fn caller<T>(&self, request: &Request<T>) -> Result<partner::Model, Status> {
        let key = bearer(request.metadata()).ok_or(PartnerError::Unauthorized)?;
        let partner = self.0.authenticate(key).await?;
        metrics::counter!("offers_partner_requests_total", "partner" => partner.name.clone()).increment(1);
        Ok(partner)
    }
}

#[tonic::async_trait]
impl pb::partner_service_server::PartnerService for PartnerApi {
    async fn activate_offer(
        &self,
        request: Request<pb::ActivateOfferRequest>,
    ) -> Result<Response<pb::ActivateOfferResponse>, Status> {
        let partner = self.caller(&request).await?;
        let span = tracing::info_span!("partner", partner_id = %partner.id, partner = %partner.name);
        let idempotency_key = idempotency_key(request.metadata())?;
        let body = request.into_inner();
        // A malformed id names no user or offer: the partner's contract
        // answers it as one that does not exist.
        let activation = ActivationRequest {
            user_id: UserId::parse(&body.user_id).map_err(|_| PartnerError::InvalidUser)?,
            offer_id: OfferId::parse(&body.offer_id).map_err(|_| PartnerError::InvalidOffer)?,
            amount: body.amount,
            idempotency_key,
        };
        let tx = self.0.activate(&partner, activation).instrument(span).await?;
        tracing::info!(partner_id = %partner.id, reference = %tx.reference, transaction_id = %tx.id, "partner activation accepted");
        Ok(Response::new(pb::ActivateOfferResponse {
            reference: tx.reference,
            transaction_id: tx.id,
            // A replay repeats the first answer: the transaction as created.
            status: TransactionStatus::Pending.into(),
        }))
    }

    async fn validate_reference(
        &self,
        request: Request<pb::ValidateReferenceRequest>,
    ) -> Result<Response<pb::ValidateReferenceResponse>, Status> {
        let partner = self.caller(&request).await?;
        let tx = self.0.validate(&partner, &request.get_ref().reference).await?;
        Ok(Response::new(pb::ValidateReferenceResponse {
            status: tx.status,
            reference: tx.reference,
            transaction_id: tx.id,
            user_id: tx.user_id,
            offer_id: tx.offer_id,
            is_valid: true,
        }))
    }

    async fn set_callback(
        &self,
        request: Request<pb::SetCallbackRequest>,
    ) -> Result<Response<pb::SetCallbackResponse>, Status> {
        let partner = self.caller(&request).await?;
        let secret = self.0.set_callback(&partner, &request.get_ref().callback_url).await?;
        Ok(Response::new(pb::SetCallbackResponse { signing_secret: secret.unwrap_or_default() }))
    }

    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let partner = self.caller(&request).await?;
        let account = self.0.balance(&partner).await?;
        Ok(Response::new(pb::GetBalanceResponse {
            balance: account.balance,
            credit_limit: account.credit_limit,
            available: account.balance + account.credit_limit,
            currency_code: account.currency_code,
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let partner = self.caller(&request).await?;
        let body = request.into_inner();
        let page = self.0.transactions(&partner, body.page_size, body.page_token).await?;
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: page.transactions,
            next_page_token: page.next_page_token,
        }))
    }
}

#[tonic::async_trait]
impl pb::partner_admin_service_server::PartnerAdminService for PartnerAdminApi {
    async fn create_partner(
        &self,
        request: Request<pb::CreatePartnerRequest>,
    ) -> Result<Response<pb::CreatePartnerResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let (partner, IssuedKey { key, secret }) = self.0.create_partner(&request.get_ref().name, &act).await?;
        Ok(Response::new(pb::CreatePartnerResponse {
            partner: Some(partner_proto(partner)),
            api_key: Some(key_proto(key)),
            secret,
        }))
    }

    async fn set_partner_status(
        &self,
        request: Request<pb::SetPartnerStatusRequest>,
    ) -> Result<Response<pb::SetPartnerStatusResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let body = request.into_inner();
        let id = parse_id(&body.partner_id)?;
        let status = match pb::PartnerStatus::try_from(body.status) {
            Ok(pb::PartnerStatus::Active) => partner::Status::Active,
            Ok(pb::PartnerStatus::Suspended) => partner::Status::Suspended,
            _ => return Err(Error::invalid_request("status must be ACTIVE or SUSPENDED").into()),
        };
        let partner = self.0.set_status(id, status, &act).await?;
        Ok(Response::new(pb::SetPartnerStatusResponse { partner: Some(partner_proto(partner)) }))
    }

    async fn create_api_key(
        &self,
        request: Request<pb::CreateApiKeyRequest>,
    ) -> Result<Response<pb::CreateApiKeyResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let body = request.into_inner();
        let id = parse_id(&body.partner_id)?;
        let preset = (!body.preset_secret.is_empty()).then_some(body.preset_secret);
        let IssuedKey { key, secret } = self.0.create_key(id, preset, &act).await?;
        Ok(Response::new(pb::CreateApiKeyResponse { api_key: Some(key_proto(key)), secret }))
    }

    async fn revoke_api_key(
        &self,
        request: Request<pb::RevokeApiKeyRequest>,
    ) -> Result<Response<pb::RevokeApiKeyResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let id = parse_id(&request.get_ref().api_key_id)?;
        let key = self.0.revoke_key(id, &act).await?;
        Ok(Response::new(pb::RevokeApiKeyResponse { api_key: Some(key_proto(key)) }))
    }

    async fn get_partner(
        &self,
        request: Request<pb::GetPartnerRequest>,
    ) -> Result<Response<pb::GetPartnerResponse>, Status> {
        let partner = self.0.partner_by_name(&request.get_ref().name).await?;
        Ok(Response::new(pb::GetPartnerResponse { partner: Some(partner_proto(partner)) }))
    }

    async fn list_partners(
        &self,
        request: Request<pb::ListPartnersRequest>,
    ) -> Result<Response<pb::ListPartnersResponse>, Status> {
        let b = request.into_inner();
        let limit = page_size(b.page_size)?;
        let items = self.0.partners(b.name_contains.trim(), page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |p| p.id);
        Ok(Response::new(pb::ListPartnersResponse {
            partners: items.into_iter().map(partner_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_callback_deliveries(
        &self,
        request: Request<pb::ListCallbackDeliveriesRequest>,
    ) -> Result<Response<pb::ListCallbackDeliveriesResponse>, Status> {
        let b = request.into_inner();
        let limit = page_size(b.page_size)?;
        let partner = parse_id(&b.partner_id)?;
        let items = self.1.deliveries(partner, page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |d| d.event_id);
        Ok(Response::new(pb::ListCallbackDeliveriesResponse {
            deliveries: items.into_iter().map(delivery_proto).collect(),
            next_page_token,
        }))
    }

    async fn redeliver_callback(
        &self,
        request: Request<pb::RedeliverCallbackRequest>,
    ) -> Result<Response<pb::RedeliverCallbackResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let event_id = offers_proto::wire::hyphenated(&request.get_ref().event_id)
            .ok_or_else(|| Error::new(offers_kit::ErrorCode::InvalidId, "event_id is not a UUID"))?;
        let redelivered = self.1.redeliver(event_id, &act).await?;
        Ok(Response::new(pb::RedeliverCallbackResponse { delivery: Some(delivery_proto(redelivered)) }))
    }

    async fn list_api_keys(
        &self,
        request: Request<pb::ListApiKeysRequest>,
    ) -> Result<Response<pb::ListApiKeysResponse>, Status> {
        let keys = self.0.keys(parse_id(&request.get_ref().partner_id)?).await?;
        Ok(Response::new(pb::ListApiKeysResponse { api_keys: keys.into_iter().map(key_proto).collect() }))
    }
}
