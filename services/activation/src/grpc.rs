//! The public activation gRPC service.

use std::sync::Arc;

use offers_kit::Error;
use offers_kit::credentials::user;
use offers_kit::grpc::{idempotency_key, parse_id};
use offers_proto::activation::v1 as pb;
use tonic::{Request, Response, Status};

use crate::service::{Activation, RenewTarget};

pub struct ActivationApi(pub Arc<Activation>);

#[tonic::async_trait]
impl pb::activation_service_server::ActivationService for ActivationApi {
    async fn activate_offer(
        &self,
        request: Request<pb::ActivateOfferRequest>,
    ) -> Result<Response<pb::ActivateOfferResponse>, Status> {
        let who = user(&request).await?;
        let key = idempotency_key(request.metadata())?;
        let body = request.get_ref();
        let recipient = (!body.recipient.is_empty()).then_some(body.recipient.as_str());
        let offer = (parse_id(&body.offer_id)?, body.auto_renew);
        let tx = self.0.activate(&who, offer, recipient, key.as_deref()).await?;
        // A replay repeats the first answer, which was the transaction as
        // created: PENDING, whatever it has become since.
        Ok(Response::new(pb::ActivateOfferResponse {
            transaction_id: tx.id,
            status: offers_proto::account::v1::TransactionStatus::Pending.into(),
        }))
    }

    async fn renew_subscription(
        &self,
        request: Request<pb::RenewSubscriptionRequest>,
    ) -> Result<Response<pb::RenewSubscriptionResponse>, Status> {
        let who = user(&request).await?;
        let key = idempotency_key(request.metadata())?;
        let target = match request.into_inner().target {
            Some(pb::renew_subscription_request::Target::SubscriptionId(id)) => {
                RenewTarget::Subscription(parse_id(&id)?)
            }
            Some(pb::renew_subscription_request::Target::OfferId(offer_id)) => {
                RenewTarget::OfferOf(parse_id(&offer_id)?)
            }
            None => return Err(Error::invalid_request("subscription_id or offer_id is required").into()),
        };
        let tx = self.0.renew(&who, target, key.as_deref()).await?;
        Ok(Response::new(pb::RenewSubscriptionResponse {
            transaction_id: tx.id,
            status: offers_proto::account::v1::TransactionStatus::Pending.into(),
        }))
    }

    async fn get_activation_status(
        &self,
        request: Request<pb::GetActivationStatusRequest>,
    ) -> Result<Response<pb::GetActivationStatusResponse>, Status> {
        let who = user(&request).await?;
        let id = parse_id(&request.get_ref().transaction_id)?;
        let view = self.0.status(&who, id).await?;
        let message = pb::GetActivationStatusResponse {
            transaction_id: id.to_string(),
            status: view.status.into(),
            offer_id: view.offer_id,
            amount: view.amount,
            currency_code: view.currency,
            failure_reason: view.failure_reason,
            update_time: view.updated_at,
        };
        Ok(offers_kit::grpc::answer(message, view.stale))
    }
}
