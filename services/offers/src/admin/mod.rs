//! Administrative operations, done over the internal gRPC listener with the
//! service credential, exactly as any other internal caller would; `cli`
//! is the `offers admin` command on top of them.

pub mod cli;

use anyhow::Context;
use offers_kit::audit::Act;
use offers_kit::{Error, ErrorCode};
use offers_proto::account::v1 as account_pb;
use offers_proto::audit::v1 as audit_pb;
use offers_proto::auth::v1 as auth_pb;
use offers_proto::catalog::v1 as catalog_pb;
use offers_proto::jobs::v1 as jobs_pb;
use offers_proto::partner::v1 as partner_pb;

use crate::clients::InternalClients;
use crate::settings::Settings;

/// The administrative calls, over the same internal clients the roles use.
/// Every write states who acts (and may say why): the services refuse a
/// write without its actor, and record each in their audit trail.
pub struct AdminClient {
    pub clients: InternalClients,
    act: Option<Act>,
}

/// The outcome of a create that may find its object already there.
pub enum Created<T> {
    New(T),
    Existing,
}

fn created<T>(result: Result<tonic::Response<T>, tonic::Status>) -> anyhow::Result<Created<T>> {
    match result {
        Ok(response) => Ok(Created::New(response.into_inner())),
        Err(status) => match Error::from_status(status) {
            e if e.code == ErrorCode::AlreadyExists => Ok(Created::Existing),
            e => Err(e.into()),
        },
    }
}

impl AdminClient {
    pub fn connect(settings: &Settings, token: &str) -> anyhow::Result<Self> {
        Ok(Self { clients: InternalClients::admin(settings, token)?, act: None })
    }

    /// Over clients the caller has already (the console's).
    pub fn over(clients: InternalClients) -> Self {
        Self { clients, act: None }
    }

    /// Writes from here on are `actor`'s, with `note` saying why.
    pub fn act_as(&mut self, actor: &str, note: &str) -> &mut Self {
        let request_id = uuid::Uuid::now_v7().to_string();
        self.act = Some(Act { actor: actor.trim().into(), note: note.trim().into(), request_id });
        self
    }

    /// `message` stamped with the act (a fresh request id for each call).
    fn stamped<T>(&self, message: T) -> anyhow::Result<tonic::Request<T>> {
        self.stamped_noting(message, None)
    }

    /// `message` stamped with the act, with `note` (when given) as this
    /// call's reason instead of the client's.
    fn stamped_noting<T>(&self, message: T, note: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
        let mut request = tonic::Request::new(message);
        if let Some(act) = &self.act {
            let note = note.map_or_else(|| act.note.clone(), str::to_string);
            let act = Act { note, request_id: uuid::Uuid::now_v7().to_string(), ..act.clone() };
            act.stamp(request.metadata_mut())?;
        }
        Ok(request)
    }

    /// Creates a user and opens their balance.
    pub async fn create_user(&mut self, request: auth_pb::CreateUserRequest) -> anyhow::Result<Created<auth_pb::User>> {
        Ok(match created(self.clients.users.create_user(self.stamped(request)?).await)? {
            Created::New(r) => {
                let user = r.user.context("no user in the answer")?;
                self.open_account(&user.id, account_pb::AccountKind::User).await?;
                Created::New(user)
            }
            Created::Existing => Created::Existing,
        })
    }

    /// A user by id or username.
    pub async fn user(&mut self, id_or_username: &str) -> anyhow::Result<auth_pb::User> {
        let lookup = match uuid::Uuid::parse_str(id_or_username) {
            Ok(id) => auth_pb::get_user_request::Lookup::Id(id.to_string()),
            Err(_) => auth_pb::get_user_request::Lookup::Username(id_or_username.to_string()),
        };
        let answer = self
            .clients
            .users
            .get_user(auth_pb::GetUserRequest { lookup: Some(lookup) })
            .await
            .map_err(Error::from_status)?;
        answer.into_inner().user.context("no user in the answer")
    }

    /// Gives a user the operator console, or takes it away.
    pub async fn set_console_role(
        &mut self,
        user_id: &str,
        role: auth_pb::ConsoleRole,
    ) -> anyhow::Result<auth_pb::User> {
        let request = auth_pb::SetConsoleRoleRequest { user_id: user_id.into(), console_role: role.into() };
        let answer = self.clients.users.set_console_role(self.stamped(request)?).await.map_err(Error::from_status)?;
        answer.into_inner().user.context("no user in the answer")
    }

    async fn open_account(&mut self, owner_id: &str, kind: account_pb::AccountKind) -> anyhow::Result<()> {
        let open = account_pb::OpenAccountRequest { owner_id: owner_id.into(), kind: kind.into() };
        self.clients.ledger.open_account(open).await.map_err(Error::from_status)?;
        Ok(())
    }

    /// Tops up a user's balance once per `key`; returns whether this call did.
    pub async fn credit(
        &mut self,
        user_id: &str,
        amount: i64,
        currency: &str,
        key: &str,
        memo: &str,
    ) -> anyhow::Result<(bool, account_pb::Account)> {
        let user = (user_id, account_pb::AccountKind::User);
        self.credit_account(user, amount, currency, key, memo).await
    }

    /// Adds to a partner's float once per `key`; returns whether this call did.
    pub async fn fund_partner(
        &mut self,
        partner_id: &str,
        amount: i64,
        currency: &str,
        key: &str,
    ) -> anyhow::Result<(bool, account_pb::Account)> {
        let partner = (partner_id, account_pb::AccountKind::Partner);
        self.credit_account(partner, amount, currency, key, "partner float").await
    }

    /// Moves `amount` from funding into an account, once per `key`.
    async fn credit_account(
        &mut self,
        owner: (&str, account_pb::AccountKind),
        amount: i64,
        currency: &str,
        key: &str,
        memo: &str,
    ) -> anyhow::Result<(bool, account_pb::Account)> {
        let request = account_pb::CreditRequest {
            owner_id: owner.0.into(),
            kind: owner.1.into(),
            amount,
            currency_code: currency.into(),
            idempotency_key: key.into(),
            memo: memo.into(),
        };
        let answer = self.clients.ledger.credit(self.stamped(request)?).await.map_err(Error::from_status)?.into_inner();
        Ok((answer.applied, answer.account.context("no account in the answer")?))
    }

    /// Sets how far below zero a partner's account may go.
    pub async fn set_credit_limit(&mut self, partner_id: &str, limit: i64) -> anyhow::Result<account_pb::Account> {
        let request = account_pb::SetCreditLimitRequest { partner_id: partner_id.into(), credit_limit: limit };
        let answer = self
            .clients
            .ledger
            .set_credit_limit(self.stamped(request)?)
            .await
            .map_err(Error::from_status)?
            .into_inner();
        answer.account.context("no account in the answer")
    }

    /// The transactions waiting for review, with why each waits.
    pub async fn reviews(&mut self) -> anyhow::Result<Vec<(account_pb::Transaction, String)>> {
        let mut all = Vec::new();
        let mut page_token = String::new();
        loop {
            let request = account_pb::ListReviewsRequest { page_size: 200, page_token };
            let page = self.clients.ledger.list_reviews(request).await.map_err(Error::from_status)?.into_inner();
            all.extend(page.transactions.into_iter().zip(page.reasons));
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            page_token = page.next_page_token;
        }
    }

    /// Settles a transaction waiting for review, recording who and why.
    pub async fn resolve(
        &mut self,
        transaction_id: &str,
        outcome: account_pb::TransactionStatus,
        note: &str,
    ) -> anyhow::Result<account_pb::Transaction> {
        let request = account_pb::ResolveTransactionRequest {
            transaction_id: transaction_id.into(),
            outcome: outcome.into(),
            actor: self.act.as_ref().map(|a| a.actor.clone()).unwrap_or_default(),
            note: note.into(),
        };
        let request = self.stamped_noting(request, Some(note))?;
        let answer = self.clients.ledger.resolve_transaction(request).await.map_err(Error::from_status)?.into_inner();
        answer.transaction.context("no transaction in the answer")
    }

    /// The ledger check: account totals, their sum, and what is wrong.
    pub async fn check_ledger(&mut self) -> anyhow::Result<account_pb::CheckLedgerResponse> {
        let answer =
            self.clients.ledger.check_ledger(account_pb::CheckLedgerRequest {}).await.map_err(Error::from_status)?;
        Ok(answer.into_inner())
    }

    pub async fn create_offer(&mut self, offer: catalog_pb::Offer) -> anyhow::Result<Created<catalog_pb::Offer>> {
        let request = catalog_pb::CreateOfferRequest { offer: Some(offer) };
        Ok(match created(self.clients.catalog.create_offer(self.stamped(request)?).await)? {
            Created::New(r) => Created::New(r.offer.context("no offer in the answer")?),
            Created::Existing => Created::Existing,
        })
    }

    pub async fn update_offer(
        &mut self,
        offer: catalog_pb::Offer,
        paths: Vec<String>,
    ) -> anyhow::Result<catalog_pb::Offer> {
        let request =
            catalog_pb::UpdateOfferRequest { offer: Some(offer), update_mask: Some(prost_types::FieldMask { paths }) };
        let answer = self.clients.catalog.update_offer(self.stamped(request)?).await.map_err(Error::from_status)?;
        answer.into_inner().offer.context("no offer in the answer")
    }

    /// Creates a partner and opens its account; the answer holds its first
    /// key's secret, once.
    pub async fn create_partner(&mut self, name: &str) -> anyhow::Result<Created<partner_pb::CreatePartnerResponse>> {
        let made = created(
            self.clients
                .partners
                .create_partner(self.stamped(partner_pb::CreatePartnerRequest { name: name.into() })?)
                .await,
        )?;
        if let Created::New(response) = &made {
            let partner = response.partner.as_ref().context("no partner in the answer")?;
            self.open_account(&partner.id, account_pb::AccountKind::Partner).await?;
        }
        Ok(made)
    }

    pub async fn partner(&mut self, name: &str) -> anyhow::Result<partner_pb::Partner> {
        let answer = self
            .clients
            .partners
            .get_partner(partner_pb::GetPartnerRequest { name: name.into() })
            .await
            .map_err(Error::from_status)?;
        answer.into_inner().partner.context("no partner in the answer")
    }

    /// Adds a key to a partner (a preset secret only where allowed).
    pub async fn create_key(
        &mut self,
        partner_id: &str,
        preset: Option<&str>,
    ) -> anyhow::Result<partner_pb::CreateApiKeyResponse> {
        let request = partner_pb::CreateApiKeyRequest {
            partner_id: partner_id.into(),
            preset_secret: preset.unwrap_or_default().into(),
        };
        Ok(self.clients.partners.create_api_key(self.stamped(request)?).await.map_err(Error::from_status)?.into_inner())
    }

    pub async fn revoke_key(&mut self, key_id: &str) -> anyhow::Result<partner_pb::ApiKey> {
        let request = partner_pb::RevokeApiKeyRequest { api_key_id: key_id.into() };
        let answer = self.clients.partners.revoke_api_key(self.stamped(request)?).await.map_err(Error::from_status)?;
        answer.into_inner().api_key.context("no key in the answer")
    }

    /// A partner's newest `limit` completion-callback deliveries.
    pub async fn callback_deliveries(
        &mut self,
        partner_id: &str,
        limit: i32,
    ) -> anyhow::Result<Vec<partner_pb::CallbackDelivery>> {
        let request = partner_pb::ListCallbackDeliveriesRequest {
            partner_id: partner_id.into(),
            page_size: limit,
            page_token: String::new(),
        };
        let answer = self.clients.partners.list_callback_deliveries(request).await.map_err(Error::from_status)?;
        Ok(answer.into_inner().deliveries)
    }

    /// Sends an abandoned completion callback again.
    pub async fn redeliver_callback(&mut self, event_id: &str) -> anyhow::Result<partner_pb::CallbackDelivery> {
        let request = partner_pb::RedeliverCallbackRequest { event_id: event_id.into() };
        let answer =
            self.clients.partners.redeliver_callback(self.stamped(request)?).await.map_err(Error::from_status)?;
        answer.into_inner().delivery.context("no delivery in the answer")
    }

    pub async fn set_partner_status(
        &mut self,
        partner_id: &str,
        status: partner_pb::PartnerStatus,
    ) -> anyhow::Result<partner_pb::Partner> {
        let request = partner_pb::SetPartnerStatusRequest { partner_id: partner_id.into(), status: status.into() };
        let answer =
            self.clients.partners.set_partner_status(self.stamped(request)?).await.map_err(Error::from_status)?;
        answer.into_inner().partner.context("no partner in the answer")
    }

    /// Publishes the next signing key; it signs from the time it names.
    pub async fn rotate_key(&mut self) -> anyhow::Result<auth_pb::SigningKey> {
        let answer = self
            .clients
            .keys
            .rotate_signing_key(self.stamped(auth_pb::RotateSigningKeyRequest {})?)
            .await
            .map_err(Error::from_status)?;
        answer.into_inner().key.context("no key in the answer")
    }

    /// Takes a signing key out of service at once.
    pub async fn retire_key(&mut self, kid: &str) -> anyhow::Result<auth_pb::SigningKey> {
        let request = auth_pb::RetireSigningKeyRequest { kid: kid.into() };
        let answer = self.clients.keys.retire_signing_key(self.stamped(request)?).await.map_err(Error::from_status)?;
        answer.into_inner().key.context("no key in the answer")
    }

    /// Seals every signing key under the first key encryption key.
    pub async fn reseal_keys(&mut self) -> anyhow::Result<i32> {
        let request = auth_pb::ResealSigningKeysRequest {};
        let answer = self.clients.keys.reseal_signing_keys(self.stamped(request)?).await.map_err(Error::from_status)?;
        Ok(answer.into_inner().resealed)
    }

    pub async fn keys(&mut self) -> anyhow::Result<Vec<auth_pb::SigningKey>> {
        let answer = self
            .clients
            .keys
            .list_signing_keys(auth_pb::ListSigningKeysRequest {})
            .await
            .map_err(Error::from_status)?;
        Ok(answer.into_inner().keys)
    }

    /// The parked jobs of `topic`, or of every topic: how many, and up to
    /// `page_size` of each (0 for the service's default).
    pub async fn parked_jobs(
        &mut self,
        topic: Option<&str>,
        page_size: u32,
    ) -> anyhow::Result<Vec<jobs_pb::ParkedTopic>> {
        let request = jobs_pb::ListParkedJobsRequest {
            topic: topic.unwrap_or_default().into(),
            page_size: i32::try_from(page_size).context("page size too large")?,
        };
        let answer = self.clients.jobs.list_parked_jobs(request).await.map_err(Error::from_status)?;
        Ok(answer.into_inner().topics)
    }

    /// Moves up to `max` (all when `None`) of `topic`'s parked jobs back to
    /// its queue; returns how many moved.
    pub async fn replay_parked_jobs(&mut self, topic: &str, max: Option<u32>) -> anyhow::Result<u32> {
        let max_jobs = i32::try_from(max.unwrap_or(0)).context("--max too large")?;
        let request = jobs_pb::ReplayParkedJobsRequest { topic: topic.into(), max_jobs };
        let answer = self.clients.jobs.replay_parked_jobs(self.stamped(request)?).await.map_err(Error::from_status)?;
        Ok(u32::try_from(answer.into_inner().replayed).unwrap_or_default())
    }

    /// The newest `limit` entries of every audit trail that match, newest
    /// first.
    pub async fn audit_entries(
        &mut self,
        filter: &audit_pb::ListAuditEntriesRequest,
        limit: usize,
    ) -> anyhow::Result<Vec<audit_pb::AuditEntry>> {
        let mut all = Vec::new();
        for client in &mut self.clients.audit {
            let mut request = audit_pb::ListAuditEntriesRequest { page_size: 200, ..filter.clone() };
            let mut taken = 0;
            loop {
                let page = client.list_audit_entries(request.clone()).await.map_err(Error::from_status)?.into_inner();
                taken += page.entries.len();
                all.extend(page.entries);
                if page.next_page_token.is_empty() || taken >= limit {
                    break;
                }
                request.page_token = page.next_page_token;
            }
        }
        let order = |e: &audit_pb::AuditEntry| {
            let time = e.time.map(|t| (t.seconds, t.nanos)).unwrap_or_default();
            (std::cmp::Reverse(time), std::cmp::Reverse(e.trail.clone()), std::cmp::Reverse(e.seq))
        };
        all.sort_by_key(order);
        all.truncate(limit);
        Ok(all)
    }

    /// Walks every audit trail: how many entries, and where a chain breaks.
    pub async fn check_audit(&mut self) -> anyhow::Result<(i64, Vec<String>)> {
        let (mut entries, mut breaks) = (0, Vec::new());
        for client in &mut self.clients.audit {
            let answer = client
                .check_audit_trails(audit_pb::CheckAuditTrailsRequest {})
                .await
                .map_err(Error::from_status)?
                .into_inner();
            entries += answer.entries;
            breaks.extend(answer.breaks);
        }
        Ok((entries, breaks))
    }
}
