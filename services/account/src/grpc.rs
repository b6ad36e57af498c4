//! The account gRPC services: thin translations to and from [`Ledger`].

use std::sync::Arc;

use offers_kit::Error;
use offers_kit::credentials::user;
use offers_kit::grpc::{from_timestamp, page_after, page_size, parse_id, to_timestamp};
use offers_proto::account::v1 as pb;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::entity::transaction::{Kind, Status as TxStatus};
use crate::entity::{balance, subscription, transaction};
use crate::error::LedgerError;
use crate::ledger::{Idempotency, Ledger, OfferSnapshot, Purchase};

pub struct AccountApi(pub Arc<Ledger>);
pub struct LedgerApi(pub Arc<Ledger>);

fn balance_proto(b: balance::Model) -> pb::Balance {
    pb::Balance {
        user_id: b.user_id.to_string(),
        balance: b.balance,
        currency_code: b.currency,
        update_time: Some(to_timestamp(b.updated_at)),
    }
}

fn subscription_proto(s: subscription::Model) -> pb::Subscription {
    let status =
        if s.is_active(chrono::Utc::now()) { pb::SubscriptionStatus::Active } else { pb::SubscriptionStatus::Expired };
    pb::Subscription {
        id: s.id.to_string(),
        user_id: s.user_id.to_string(),
        offer_id: s.offer_id.to_string(),
        offer_name: s.offer_name,
        status: status.into(),
        activate_time: Some(to_timestamp(s.activated_at)),
        expire_time: Some(to_timestamp(s.expires_at)),
    }
}

fn transaction_proto(t: transaction::Model) -> pb::Transaction {
    pb::Transaction {
        id: t.id.to_string(),
        user_id: t.user_id.to_string(),
        kind: pb::TransactionKind::from(t.kind).into(),
        offer_id: t.offer_id.to_string(),
        subscription_id: t.subscription_id.map(|s| s.to_string()).unwrap_or_default(),
        amount: t.amount,
        currency_code: t.currency,
        status: pb::TransactionStatus::from(t.status).into(),
        reference: t.reference.unwrap_or_default(),
        partner_id: t.partner_id.map(|p| p.to_string()).unwrap_or_default(),
        failure_reason: t.failure_reason.unwrap_or_default(),
        attempts: t.attempts,
        create_time: Some(to_timestamp(t.created_at)),
        update_time: Some(to_timestamp(t.updated_at)),
        offer_code: t.offer_code,
        offer_name: t.offer_name,
    }
}

fn optional_id(value: &str, what: &str) -> Result<Option<Uuid>, Error> {
    if value.is_empty() { Ok(None) } else { parse_id(value, what).map(Some) }
}

/// A page of items keyed by UUIDv7 ids and the token for the next one.
fn next_token<T>(items: &[T], limit: u64, id: impl Fn(&T) -> Uuid) -> String {
    if items.len() as u64 == limit {
        items.last().map(|i| id(i).to_string()).unwrap_or_default()
    } else {
        String::new()
    }
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountApi {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let principal = user(&request)?;
        let balance = self.0.balance(principal.user_id).await?;
        Ok(Response::new(pb::GetBalanceResponse { balance: Some(balance_proto(balance)) }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let principal = user(&request)?;
        let body = request.into_inner();
        let limit = page_size(body.page_size);
        let items = self.0.subscriptions(principal.user_id, page_after(&body.page_token)?, limit).await?;
        let next_page_token = next_token(&items, limit, |s| s.id);
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: items.into_iter().map(subscription_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let principal = user(&request)?;
        let body = request.into_inner();
        let limit = page_size(body.page_size);
        let items = self.0.transactions(principal.user_id, page_after(&body.page_token)?, limit).await?;
        let next_page_token = next_token(&items, limit, |t| t.id);
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: items.into_iter().map(transaction_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let principal = user(&request)?;
        let id = parse_id(&request.get_ref().id, "transaction id")?;
        let tx = self.0.transaction(id).await?;
        // Someone else's transaction does not exist, as far as the caller can tell.
        if tx.user_id != principal.user_id {
            return Err(LedgerError::NotFound("transaction").into());
        }
        Ok(Response::new(pb::GetTransactionResponse { transaction: Some(transaction_proto(tx)) }))
    }
}

fn kind_from(value: i32) -> Result<Kind, Error> {
    match pb::TransactionKind::try_from(value) {
        Ok(pb::TransactionKind::Activation) => Ok(Kind::Activation),
        Ok(pb::TransactionKind::Renewal) => Ok(Kind::Renewal),
        Ok(pb::TransactionKind::PartnerActivation) => Ok(Kind::PartnerActivation),
        _ => Err(Error::invalid_request("kind is required")),
    }
}

#[tonic::async_trait]
impl pb::ledger_service_server::LedgerService for LedgerApi {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::OpenAccountResponse>, Status> {
        let user_id = parse_id(&request.get_ref().user_id, "user id")?;
        let balance = self.0.open_account(user_id).await?;
        Ok(Response::new(pb::OpenAccountResponse { balance: Some(balance_proto(balance)) }))
    }

    async fn purchase(&self, request: Request<pb::PurchaseRequest>) -> Result<Response<pb::PurchaseResponse>, Status> {
        let b = request.into_inner();
        let offer = b.offer.ok_or_else(|| Error::invalid_request("offer is required"))?;
        let kind = kind_from(b.kind)?;
        let idempotency = (!b.idempotency_key.is_empty()).then(|| Idempotency {
            scope: b.idempotency_scope.clone(),
            key: b.idempotency_key.clone(),
            request_hash: b.request_hash.clone(),
        });
        let purchase = Purchase {
            user_id: parse_id(&b.user_id, "user id")?,
            kind,
            offer: OfferSnapshot {
                id: parse_id(&offer.id, "offer id")?,
                code: offer.code,
                name: offer.name,
                price: offer.price,
                currency: offer.currency_code,
                duration_days: offer.duration_days,
            },
            subscription_id: optional_id(&b.subscription_id, "subscription id")?,
            partner_id: optional_id(&b.partner_id, "partner id")?,
            reference: (!b.reference.is_empty()).then_some(b.reference),
            idempotency,
            replay_only: b.replay_only,
        };
        if purchase.replay_only && purchase.idempotency.is_none() {
            return Err(Error::invalid_request("replay_only needs an idempotency key").into());
        }
        if kind == Kind::Renewal && purchase.subscription_id.is_none() {
            return Err(Error::invalid_request("a renewal needs subscription_id").into());
        }
        let done = self.0.purchase(purchase).await?;
        Ok(Response::new(pb::PurchaseResponse {
            transaction: Some(transaction_proto(done.transaction)),
            replayed: done.replayed,
        }))
    }

    async fn claim_attempt(
        &self,
        request: Request<pb::ClaimAttemptRequest>,
    ) -> Result<Response<pb::ClaimAttemptResponse>, Status> {
        let b = request.into_inner();
        let id = parse_id(&b.transaction_id, "transaction id")?;
        let (claimed, tx) = self.0.claim_attempt(id, b.attempt).await?;
        Ok(Response::new(pb::ClaimAttemptResponse { claimed, transaction: Some(transaction_proto(tx)) }))
    }

    async fn schedule_retry(
        &self,
        request: Request<pb::ScheduleRetryRequest>,
    ) -> Result<Response<pb::ScheduleRetryResponse>, Status> {
        let b = request.into_inner();
        let id = parse_id(&b.transaction_id, "transaction id")?;
        let delay = std::time::Duration::from_millis(u64::try_from(b.delay_ms).unwrap_or(0));
        self.0.schedule_retry(id, b.attempt, delay, &b.last_error).await?;
        Ok(Response::new(pb::ScheduleRetryResponse {}))
    }

    async fn settle_transaction(
        &self,
        request: Request<pb::SettleTransactionRequest>,
    ) -> Result<Response<pb::SettleTransactionResponse>, Status> {
        let b = request.into_inner();
        let id = parse_id(&b.transaction_id, "transaction id")?;
        let outcome = match pb::TransactionStatus::try_from(b.status) {
            Ok(pb::TransactionStatus::Success) => TxStatus::Success,
            Ok(pb::TransactionStatus::Failed) => TxStatus::Failed,
            _ => return Err(Error::invalid_request("status must be SUCCESS or FAILED").into()),
        };
        let reason = (!b.failure_reason.is_empty()).then_some(b.failure_reason);
        let attempt = (b.attempt > 0).then_some(b.attempt);
        let settled = self.0.settle(id, outcome, reason, attempt).await?;
        Ok(Response::new(pb::SettleTransactionResponse {
            transaction: Some(transaction_proto(settled.transaction)),
            applied: settled.applied,
        }))
    }

    async fn credit(&self, request: Request<pb::CreditRequest>) -> Result<Response<pb::CreditResponse>, Status> {
        let b = request.into_inner();
        let user_id = parse_id(&b.user_id, "user id")?;
        let (applied, balance) =
            self.0.credit(user_id, b.amount, &b.currency_code, &b.idempotency_key, &b.memo).await?;
        Ok(Response::new(pb::CreditResponse { balance: Some(balance_proto(balance)), applied }))
    }

    async fn lookup_transaction(
        &self,
        request: Request<pb::LookupTransactionRequest>,
    ) -> Result<Response<pb::LookupTransactionResponse>, Status> {
        let id = parse_id(&request.get_ref().id, "transaction id")?;
        let tx = self.0.lookup(id).await?;
        Ok(Response::new(pb::LookupTransactionResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn get_transaction_by_reference(
        &self,
        request: Request<pb::GetTransactionByReferenceRequest>,
    ) -> Result<Response<pb::GetTransactionByReferenceResponse>, Status> {
        let b = request.into_inner();
        let partner_id = parse_id(&b.partner_id, "partner id")?;
        let tx = self.0.by_reference(&b.reference, partner_id).await?;
        Ok(Response::new(pb::GetTransactionByReferenceResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn lookup_subscription(
        &self,
        request: Request<pb::LookupSubscriptionRequest>,
    ) -> Result<Response<pb::LookupSubscriptionResponse>, Status> {
        let found = match request.into_inner().lookup {
            Some(pb::lookup_subscription_request::Lookup::Id(id)) => {
                self.0.subscription(parse_id(&id, "subscription id")?).await
            }
            Some(pb::lookup_subscription_request::Lookup::OfOffer(of)) => {
                self.0
                    .subscription_of_offer(parse_id(&of.user_id, "user id")?, parse_id(&of.offer_id, "offer id")?)
                    .await
            }
            None => return Err(Error::invalid_request("id or of_offer is required").into()),
        }?;
        Ok(Response::new(pb::LookupSubscriptionResponse { subscription: Some(subscription_proto(found)) }))
    }

    async fn list_expiring_subscriptions(
        &self,
        request: Request<pb::ListExpiringSubscriptionsRequest>,
    ) -> Result<Response<pb::ListExpiringSubscriptionsResponse>, Status> {
        let b = request.into_inner();
        let after = b
            .expire_after
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| Error::invalid_request("expire_after is required"))?;
        let before = b
            .expire_before
            .as_ref()
            .and_then(from_timestamp)
            .ok_or_else(|| Error::invalid_request("expire_before is required"))?;
        let limit = page_size(b.page_size);
        let items = self.0.expiring(after, before, page_after(&b.page_token)?, limit).await?;
        let next_page_token = next_token(&items, limit, |s| s.id);
        Ok(Response::new(pb::ListExpiringSubscriptionsResponse {
            subscriptions: items.into_iter().map(subscription_proto).collect(),
            next_page_token,
        }))
    }
}
