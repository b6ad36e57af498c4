//! The account gRPC services: thin translations to and from [`Ledger`].

use std::sync::Arc;

use offers_kit::Error;
use offers_kit::audit::Act;
use offers_kit::credentials::user;
use offers_kit::grpc::{page, page_after, page_size, parse_id, required_time, to_timestamp};
use offers_proto::account::v1 as pb;
use offers_proto::contracts::{Idempotency, PurchaseOrder, Step};
use offers_proto::ids::{OfferId, SubscriptionId, UserId};
use tonic::{Request, Response, Status};

use crate::entity::account::{self, Kind as AccountKind};
use crate::entity::transaction::Status as TxStatus;
use crate::entity::{subscription, transaction};
use crate::error::LedgerError;
use crate::ledger::{Announcement, Books, Ledger, Owner};

pub struct AccountApi(pub Arc<Ledger>);
pub struct LedgerApi(pub Arc<Ledger>);

fn account_kind_proto(kind: Option<AccountKind>) -> pb::AccountKind {
    match kind {
        Some(AccountKind::User) => pb::AccountKind::User,
        Some(AccountKind::Partner) => pb::AccountKind::Partner,
        None => pb::AccountKind::System,
    }
}

fn account_proto(a: account::Model) -> pb::Account {
    pb::Account {
        id: a.id.to_string(),
        kind: account_kind_proto(Some(a.kind)).into(),
        balance: a.balance,
        credit_limit: a.credit_limit,
        currency_code: a.currency,
        update_time: Some(to_timestamp(a.updated_at)),
        name: String::new(),
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
        auto_renew: s.auto_renew,
        // A renewal takes effect where the subscription ends.
        next_renewal_time: s.auto_renew.then(|| to_timestamp(s.expires_at)),
        last_renewal: match (s.last_renewal_status.as_deref(), s.last_renewal_at) {
            (Some(status), Some(at)) => Some(pb::RenewalOutcome {
                status: pb::TransactionStatus::from_str_name(&format!("TRANSACTION_STATUS_{status}"))
                    .unwrap_or_default()
                    .into(),
                time: Some(to_timestamp(at)),
                reason: s.last_renewal_reason.unwrap_or_default(),
            }),
            _ => None,
        },
        announced_price: s.announced_price.unwrap_or_default(),
        price_announce_time: s.price_announced_at.map(to_timestamp),
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
        needs_review: t.needs_review,
        payer_account_id: t.payer_account_id.to_string(),
        recipient_id: t.recipient_id.map(|r| r.to_string()).unwrap_or_default(),
    }
}

fn books_proto(books: Books) -> pb::CheckLedgerResponse {
    let totals = books
        .totals
        .into_iter()
        .map(|t| pb::AccountTotal {
            account: Some(pb::Account {
                id: t.id.to_string(),
                kind: account_kind_proto(t.kind).into(),
                balance: t.balance,
                credit_limit: t.credit_limit,
                currency_code: String::new(),
                update_time: None,
                name: t.name.into(),
            }),
            from_transfers: t.from_transfers,
        })
        .collect();
    pb::CheckLedgerResponse { totals, sum: books.sum, violations: books.violations }
}

/// A page of items keyed by UUIDv7 ids, read with one item more than the
/// page holds, and the token for the next page: empty when that extra item
/// was not there, so a page that happens to be exactly full is the last.
/// A user's or partner's account, as a request names it.
fn owner(id: &str, kind: i32) -> Result<Owner, Error> {
    match pb::AccountKind::try_from(kind) {
        Ok(pb::AccountKind::User) => Ok(Owner::User(parse_id(id)?)),
        Ok(pb::AccountKind::Partner) => Ok(Owner::Partner(parse_id(id)?)),
        _ => Err(Error::invalid_request("kind must be USER or PARTNER")),
    }
}

fn outcome(status: i32) -> Result<TxStatus, Error> {
    match pb::TransactionStatus::try_from(status) {
        Ok(pb::TransactionStatus::Success) => Ok(TxStatus::Success),
        Ok(pb::TransactionStatus::Failed) => Ok(TxStatus::Failed),
        _ => Err(Error::invalid_request("status must be SUCCESS or FAILED")),
    }
}

#[tonic::async_trait]
impl pb::account_service_server::AccountService for AccountApi {
    async fn get_balance(
        &self,
        request: Request<pb::GetBalanceRequest>,
    ) -> Result<Response<pb::GetBalanceResponse>, Status> {
        let principal = user(&request).await?;
        let a = self.0.account(Owner::User(principal.user_id.into())).await?;
        let balance = pb::Balance {
            user_id: a.id.to_string(),
            balance: a.balance,
            currency_code: a.currency,
            update_time: Some(to_timestamp(a.updated_at)),
        };
        Ok(Response::new(pb::GetBalanceResponse { balance: Some(balance) }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<pb::ListSubscriptionsRequest>,
    ) -> Result<Response<pb::ListSubscriptionsResponse>, Status> {
        let principal = user(&request).await?;
        let body = request.into_inner();
        let limit = page_size(body.page_size)?;
        let items = self.0.subscriptions(principal.user_id.into(), page_after(&body.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |s| s.id);
        Ok(Response::new(pb::ListSubscriptionsResponse {
            subscriptions: items.into_iter().map(subscription_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let principal = user(&request).await?;
        let body = request.into_inner();
        let limit = page_size(body.page_size)?;
        let items = self.0.transactions(principal.user_id.into(), page_after(&body.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |t| t.id);
        Ok(Response::new(pb::ListTransactionsResponse {
            transactions: items.into_iter().map(transaction_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::GetTransactionResponse>, Status> {
        let principal = user(&request).await?;
        let tx = self.0.transaction(parse_id(&request.get_ref().id)?).await?;
        // Someone else's transaction does not exist, as far as the caller can tell.
        if tx.user_id != principal.user_id {
            return Err(LedgerError::NotFound("transaction").into());
        }
        Ok(Response::new(pb::GetTransactionResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn update_subscription(
        &self,
        request: Request<pb::UpdateSubscriptionRequest>,
    ) -> Result<Response<pb::UpdateSubscriptionResponse>, Status> {
        let principal = user(&request).await?;
        let body = request.into_inner();
        let id = parse_id(&body.subscription_id)?;
        let updated = self.0.set_auto_renew(principal.user_id.into(), id, body.auto_renew).await?;
        Ok(Response::new(pb::UpdateSubscriptionResponse { subscription: Some(subscription_proto(updated)) }))
    }
}

#[tonic::async_trait]
impl pb::ledger_service_server::LedgerService for LedgerApi {
    async fn open_account(
        &self,
        request: Request<pb::OpenAccountRequest>,
    ) -> Result<Response<pb::OpenAccountResponse>, Status> {
        let account = self.0.open_account(owner(&request.get_ref().owner_id, request.get_ref().kind)?).await?;
        Ok(Response::new(pb::OpenAccountResponse { account: Some(account_proto(account)) }))
    }

    async fn get_account(
        &self,
        request: Request<pb::GetAccountRequest>,
    ) -> Result<Response<pb::GetAccountResponse>, Status> {
        let account = self.0.account(owner(&request.get_ref().owner_id, request.get_ref().kind)?).await?;
        Ok(Response::new(pb::GetAccountResponse { account: Some(account_proto(account)) }))
    }

    async fn purchase(&self, request: Request<pb::PurchaseRequest>) -> Result<Response<pb::PurchaseResponse>, Status> {
        let b = request.into_inner();
        // Callers older than ReplayPurchase ask for a replay this way (for
        // one release; see the field's comment).
        if b.replay_only {
            let idempotency = Idempotency::try_from(pb::ReplayPurchaseRequest {
                idempotency_scope: b.idempotency_scope,
                idempotency_key: b.idempotency_key,
                request_hash: b.request_hash,
            })
            .map_err(Error::from)?;
            let tx = self.0.replay(&idempotency).await?;
            return Ok(Response::new(pb::PurchaseResponse {
                transaction: Some(transaction_proto(tx)),
                replayed: true,
            }));
        }
        let done = self.0.purchase(PurchaseOrder::try_from(b).map_err(Error::from)?).await?;
        Ok(Response::new(pb::PurchaseResponse {
            transaction: Some(transaction_proto(done.transaction)),
            replayed: done.replayed,
        }))
    }

    async fn replay_purchase(
        &self,
        request: Request<pb::ReplayPurchaseRequest>,
    ) -> Result<Response<pb::ReplayPurchaseResponse>, Status> {
        let idempotency = Idempotency::try_from(request.into_inner()).map_err(Error::from)?;
        let tx = self.0.replay(&idempotency).await?;
        Ok(Response::new(pb::ReplayPurchaseResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn claim_attempt(
        &self,
        request: Request<pb::ClaimAttemptRequest>,
    ) -> Result<Response<pb::ClaimAttemptResponse>, Status> {
        let b = request.into_inner();
        let (claimed, tx) = self.0.claim_attempt(parse_id(&b.transaction_id)?, b.attempt).await?;
        Ok(Response::new(pb::ClaimAttemptResponse { claimed, transaction: Some(transaction_proto(tx)) }))
    }

    async fn schedule_retry(
        &self,
        request: Request<pb::ScheduleRetryRequest>,
    ) -> Result<Response<pb::ScheduleRetryResponse>, Status> {
        let b = request.into_inner();
        let id = parse_id(&b.transaction_id)?;
        let delay = std::time::Duration::from_millis(u64::try_from(b.delay_ms).unwrap_or(0));
        let step = if b.confirm { Step::Confirm } else { Step::Provision };
        self.0.schedule_retry(id, b.attempt, step, delay, &b.last_error).await?;
        Ok(Response::new(pb::ScheduleRetryResponse {}))
    }

    async fn settle_transaction(
        &self,
        request: Request<pb::SettleTransactionRequest>,
    ) -> Result<Response<pb::SettleTransactionResponse>, Status> {
        let b = request.into_inner();
        let id = parse_id(&b.transaction_id)?;
        let reason = (!b.failure_reason.is_empty()).then_some(b.failure_reason);
        let attempt = (b.attempt > 0).then_some(b.attempt);
        let settled = self.0.settle(id, outcome(b.status)?, reason, attempt).await?;
        Ok(Response::new(pb::SettleTransactionResponse {
            transaction: Some(transaction_proto(settled.transaction)),
            applied: settled.applied,
        }))
    }

    async fn mark_for_review(
        &self,
        request: Request<pb::MarkForReviewRequest>,
    ) -> Result<Response<pb::MarkForReviewResponse>, Status> {
        let b = request.into_inner();
        let id = parse_id(&b.transaction_id)?;
        let marked = self.0.mark_for_review(id, b.attempt, &b.reason).await?;
        Ok(Response::new(pb::MarkForReviewResponse {
            transaction: Some(transaction_proto(marked.transaction)),
            applied: marked.applied,
        }))
    }

    async fn list_reviews(
        &self,
        request: Request<pb::ListReviewsRequest>,
    ) -> Result<Response<pb::ListReviewsResponse>, Status> {
        let b = request.into_inner();
        let limit = page_size(b.page_size)?;
        let items = self.0.reviews(page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |t| t.id);
        let reasons = items.iter().map(|t| t.review_reason.clone().unwrap_or_default()).collect();
        Ok(Response::new(pb::ListReviewsResponse {
            transactions: items.into_iter().map(transaction_proto).collect(),
            reasons,
            next_page_token,
        }))
    }

    async fn resolve_transaction(
        &self,
        request: Request<pb::ResolveTransactionRequest>,
    ) -> Result<Response<pb::ResolveTransactionResponse>, Status> {
        // The act's actor and note travel in metadata; callers older than
        // the audit trail give them as fields, which still count.
        let legacy = !request.metadata().contains_key(offers_kit::audit::ACTOR_HEADER);
        let stated = if legacy { None } else { Some(Act::of(request.metadata())?) };
        let b = request.into_inner();
        let act = match stated {
            Some(act) => Act { note: if act.note.is_empty() { b.note } else { act.note }, ..act },
            None => Act { actor: b.actor, note: b.note, request_id: uuid::Uuid::now_v7().to_string() },
        };
        let id = parse_id(&b.transaction_id)?;
        let tx = self.0.resolve(id, outcome(b.outcome)?, &act).await?;
        Ok(Response::new(pb::ResolveTransactionResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn credit(&self, request: Request<pb::CreditRequest>) -> Result<Response<pb::CreditResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let b = request.into_inner();
        let whose = owner(&b.owner_id, b.kind)?;
        let (applied, account) =
            self.0.credit(whose, b.amount, &b.currency_code, &b.idempotency_key, &b.memo, &act).await?;
        Ok(Response::new(pb::CreditResponse { account: Some(account_proto(account)), applied }))
    }

    async fn set_credit_limit(
        &self,
        request: Request<pb::SetCreditLimitRequest>,
    ) -> Result<Response<pb::SetCreditLimitResponse>, Status> {
        let act = Act::of(request.metadata())?;
        let b = request.into_inner();
        let account = self.0.set_credit_limit(parse_id(&b.partner_id)?, b.credit_limit, &act).await?;
        Ok(Response::new(pb::SetCreditLimitResponse { account: Some(account_proto(account)) }))
    }

    async fn list_partner_transactions(
        &self,
        request: Request<pb::ListPartnerTransactionsRequest>,
    ) -> Result<Response<pb::ListPartnerTransactionsResponse>, Status> {
        let b = request.into_inner();
        let partner = parse_id(&b.partner_id)?;
        let limit = page_size(b.page_size)?;
        let items = self.0.partner_transactions(partner, page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |t| t.id);
        Ok(Response::new(pb::ListPartnerTransactionsResponse {
            transactions: items.into_iter().map(transaction_proto).collect(),
            next_page_token,
        }))
    }

    async fn check_ledger(
        &self,
        _request: Request<pb::CheckLedgerRequest>,
    ) -> Result<Response<pb::CheckLedgerResponse>, Status> {
        Ok(Response::new(books_proto(self.0.check().await?)))
    }

    async fn lookup_transaction(
        &self,
        request: Request<pb::LookupTransactionRequest>,
    ) -> Result<Response<pb::LookupTransactionResponse>, Status> {
        let tx = self.0.lookup(parse_id(&request.get_ref().id)?).await?;
        Ok(Response::new(pb::LookupTransactionResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn get_transaction_by_reference(
        &self,
        request: Request<pb::GetTransactionByReferenceRequest>,
    ) -> Result<Response<pb::GetTransactionByReferenceResponse>, Status> {
        let b = request.into_inner();
        let tx = self.0.by_reference(&b.reference, parse_id(&b.partner_id)?).await?;
        Ok(Response::new(pb::GetTransactionByReferenceResponse { transaction: Some(transaction_proto(tx)) }))
    }

    async fn lookup_subscription(
        &self,
        request: Request<pb::LookupSubscriptionRequest>,
    ) -> Result<Response<pb::LookupSubscriptionResponse>, Status> {
        let found = match request.into_inner().lookup {
            Some(pb::lookup_subscription_request::Lookup::Id(id)) => {
                self.0.subscription(parse_id::<SubscriptionId>(&id)?).await
            }
            Some(pb::lookup_subscription_request::Lookup::OfOffer(of)) => {
                self.0.subscription_of_offer(parse_id::<UserId>(&of.user_id)?, parse_id::<OfferId>(&of.offer_id)?).await
            }
            None => return Err(Error::invalid_request("id or of_offer is required").into()),
        }?;
        let last_price = self.0.last_price(found.id.into()).await?;
        Ok(Response::new(pb::LookupSubscriptionResponse { subscription: Some(subscription_proto(found)), last_price }))
    }

    async fn list_renewals_due(
        &self,
        request: Request<pb::ListRenewalsDueRequest>,
    ) -> Result<Response<pb::ListRenewalsDueResponse>, Status> {
        let b = request.into_inner();
        let due_before = required_time(b.due_before.as_ref(), "due_before")?;
        let limit = page_size(b.page_size)?;
        let items = self.0.renewals_due(due_before, page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |(s, _)| s.id);
        let renewals = items
            .into_iter()
            .map(|(s, last_price)| pb::DueRenewal { subscription: Some(subscription_proto(s)), last_price })
            .collect();
        Ok(Response::new(pb::ListRenewalsDueResponse { renewals, next_page_token }))
    }

    async fn note_renewal(
        &self,
        request: Request<pb::NoteRenewalRequest>,
    ) -> Result<Response<pb::NoteRenewalResponse>, Status> {
        let b = request.into_inner();
        let period_end = required_time(b.period_end.as_ref(), "period_end")?;
        if b.reason.is_empty() {
            return Err(Error::invalid_request("reason is required").into());
        }
        let (applied, s) = self.0.note_renewal(parse_id(&b.subscription_id)?, period_end, &b.reason, b.stop).await?;
        Ok(Response::new(pb::NoteRenewalResponse { subscription: Some(subscription_proto(s)), applied }))
    }

    async fn announce_renewal_price(
        &self,
        request: Request<pb::AnnounceRenewalPriceRequest>,
    ) -> Result<Response<pb::AnnounceRenewalPriceResponse>, Status> {
        let b = request.into_inner();
        let period_end = required_time(b.period_end.as_ref(), "period_end")?;
        let at = required_time(b.announce_time.as_ref(), "announce_time")?;
        if b.price <= 0 {
            return Err(Error::invalid_request("price must be positive").into());
        }
        let announcement = Announcement { period_end, price: b.price, currency: b.currency_code, at };
        let (applied, s) = self.0.announce_price(parse_id(&b.subscription_id)?, announcement).await?;
        Ok(Response::new(pb::AnnounceRenewalPriceResponse { subscription: Some(subscription_proto(s)), applied }))
    }

    async fn list_transaction_attempts(
        &self,
        request: Request<pb::ListTransactionAttemptsRequest>,
    ) -> Result<Response<pb::ListTransactionAttemptsResponse>, Status> {
        let attempts = self.0.attempts(parse_id(&request.get_ref().transaction_id)?).await?;
        let attempts = attempts.into_iter().map(|a| pb::TransactionAttempt {
            attempt: a.attempt,
            time: Some(to_timestamp(a.recorded_at)),
            outcome: a.outcome,
            answer: a.answer,
        });
        Ok(Response::new(pb::ListTransactionAttemptsResponse { attempts: attempts.collect() }))
    }

    async fn list_user_transactions(
        &self,
        request: Request<pb::ListUserTransactionsRequest>,
    ) -> Result<Response<pb::ListUserTransactionsResponse>, Status> {
        let b = request.into_inner();
        let limit = page_size(b.page_size)?;
        let items = self.0.transactions(parse_id(&b.user_id)?, page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |t| t.id);
        Ok(Response::new(pb::ListUserTransactionsResponse {
            transactions: items.into_iter().map(transaction_proto).collect(),
            next_page_token,
        }))
    }

    async fn list_user_subscriptions(
        &self,
        request: Request<pb::ListUserSubscriptionsRequest>,
    ) -> Result<Response<pb::ListUserSubscriptionsResponse>, Status> {
        let b = request.into_inner();
        let limit = page_size(b.page_size)?;
        let items = self.0.subscriptions(parse_id(&b.user_id)?, page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |s| s.id);
        Ok(Response::new(pb::ListUserSubscriptionsResponse {
            subscriptions: items.into_iter().map(subscription_proto).collect(),
            next_page_token,
        }))
    }

    async fn get_operations_overview(
        &self,
        request: Request<pb::GetOperationsOverviewRequest>,
    ) -> Result<Response<pb::GetOperationsOverviewResponse>, Status> {
        let hours = match request.get_ref().hours {
            0 => 24,
            n @ 1..=168 => n.unsigned_abs(),
            _ => return Err(Error::invalid_request("hours must be between 1 and 168").into()),
        };
        let overview = self.0.overview(hours, chrono::Utc::now()).await?;
        let hours = overview.by_hour.into_iter().map(|(start, counts)| {
            let count = |status: TxStatus| counts.iter().filter(|(s, _)| *s == status).map(|(_, n)| n).sum();
            pb::HourlyPurchases {
                start_time: Some(to_timestamp(start)),
                pending: count(TxStatus::Pending),
                succeeded: count(TxStatus::Success),
                failed: count(TxStatus::Failed),
            }
        });
        Ok(Response::new(pb::GetOperationsOverviewResponse {
            hours: hours.collect(),
            reviews_waiting: i64::try_from(overview.reviews_waiting).unwrap_or(i64::MAX),
            oldest_review_time: overview.oldest_review.map(to_timestamp),
            oldest_outbox_time: overview.oldest_outbox.map(to_timestamp),
        }))
    }

    async fn list_expiring_subscriptions(
        &self,
        request: Request<pb::ListExpiringSubscriptionsRequest>,
    ) -> Result<Response<pb::ListExpiringSubscriptionsResponse>, Status> {
        let b = request.into_inner();
        let after = required_time(b.expire_after.as_ref(), "expire_after")?;
        let before = required_time(b.expire_before.as_ref(), "expire_before")?;
        let limit = page_size(b.page_size)?;
        let items = self.0.expiring(after, before, page_after(&b.page_token)?, limit + 1).await?;
        let (items, next_page_token) = page(items, limit, |s| s.id);
        Ok(Response::new(pb::ListExpiringSubscriptionsResponse {
            subscriptions: items.into_iter().map(subscription_proto).collect(),
            next_page_token,
        }))
    }
}
