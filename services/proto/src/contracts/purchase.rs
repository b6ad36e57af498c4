//! A purchase as one type: who receives it, what is bought, what kind of
//! purchase it is (which decides who pays) and how a retry of it is
//! recognised. Activation and partner build it with [`PurchaseOrder::new`];
//! it crosses to the ledger as `LedgerService/Purchase`, and the two
//! conversions below are the only place that knows the wire's flat fields.
//! A new kind of purchase is a new [`PurchaseKind`] variant: the compiler
//! then points at every place that must handle it (docs/ARCHITECTURE.md,
//! "How to add a kind of purchase").

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::account::v1::{self as account, TransactionKind};
use crate::catalog::v1 as catalog;
use crate::ids::{Id, InvalidId, OfferId, PartnerId, SubscriptionId, UserId};
use crate::timestamps::{from_timestamp, to_timestamp};

/// A purchase the ledger is asked to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseOrder {
    /// Whose subscription it starts or extends.
    pub recipient: UserId,
    pub offer: OfferSnapshot,
    pub kind: PurchaseKind,
    /// `None` when the caller sent no idempotency key.
    pub idempotency: Option<Idempotency>,
    /// Once it succeeds, the subscription renews itself from the
    /// recipient's balance (activations only: see [`PurchaseOrder::renewing`]).
    pub auto_renew: bool,
}

/// What kind of purchase, with what only that kind carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseKind {
    /// The user buys an offer for themselves.
    Activation,
    /// The user extends one of their subscriptions.
    Renewal { subscription: SubscriptionId },
    /// The renewal pass extends a subscription whose owner asked for it,
    /// from `period_end`, the expiry it saw: only if the subscription still
    /// ends there.
    AutoRenewal { subscription: SubscriptionId, period_end: DateTime<Utc> },
    /// A partner buys an offer for a user, from its own account; `reference`
    /// is what the partner and the user quote for it.
    Partner { partner: PartnerId, reference: String },
    /// A user buys an offer for another user (the recipient), from their
    /// own balance; the transaction is the payer's.
    Gift { payer: UserId },
}

/// Whose account the price is held from (and goes back to on failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payer {
    User(UserId),
    Partner(PartnerId),
}

/// The offer as bought; the transaction keeps this copy, whatever the
/// catalog later does to the offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSnapshot {
    pub id: OfferId,
    pub code: String,
    pub name: String,
    pub price: i64,
    pub currency: String,
    pub duration_days: i32,
}

/// The caller's idempotency key within its scope (one user's or one
/// partner's keys never meet another's), and a fingerprint of what it
/// asked: the same key with another fingerprint is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// Whose keys an idempotency key is among.
#[derive(Debug, Clone, Copy)]
pub enum KeyScope {
    User(UserId),
    Partner(PartnerId),
}

/// Why a purchase order cannot be made or read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    InvalidId(#[from] InvalidId),
    #[error("{0}")]
    Malformed(&'static str),
    /// The offer exists but is not on sale.
    #[error("offer {0} is not on sale")]
    NotOnSale(String),
}

impl Idempotency {
    /// `key` in `scope`, for the request `asked` describes (its fingerprint
    /// is the SHA-256 of that description).
    pub fn new(scope: KeyScope, key: &str, asked: &str) -> Self {
        let scope = match scope {
            KeyScope::User(user) => format!("user:{user}"),
            KeyScope::Partner(partner) => format!("partner:{partner}"),
        };
        Self { scope, key: key.to_string(), fingerprint: hex::encode(Sha256::digest(asked.as_bytes())) }
    }

    fn from_wire(scope: String, key: String, fingerprint: String) -> Result<Option<Self>, OrderError> {
        match (key.is_empty(), scope.is_empty()) {
            (true, _) => Ok(None),
            (false, true) => Err(OrderError::Malformed("an idempotency key needs its scope")),
            (false, false) => Ok(Some(Self { scope, key, fingerprint })),
        }
    }
}

impl PurchaseOrder {
    /// The one way a purchase is put together: `offer` as the catalog
    /// answered it, which must be on sale.
    pub fn new(
        recipient: UserId,
        kind: PurchaseKind,
        offer: &catalog::Offer,
        idempotency: Option<Idempotency>,
    ) -> Result<Self, OrderError> {
        if !offer.is_active {
            return Err(OrderError::NotOnSale(offer.code.clone()));
        }
        let offer = OfferSnapshot::try_from(offer)?;
        Ok(Self { recipient, offer, kind, idempotency, auto_renew: false })
    }

    /// The order, asking that what it buys renew itself: only a user's own
    /// activation can (a gift's or a partner's recipient did not agree to
    /// pay for the next period; a renewal leaves the setting as it is).
    pub fn renewing(self, auto_renew: bool) -> Result<Self, OrderError> {
        if auto_renew && self.kind != PurchaseKind::Activation {
            return Err(OrderError::Malformed("auto_renew is for a user's own activation"));
        }
        Ok(Self { auto_renew, ..self })
    }

    pub fn payer(&self) -> Payer {
        match &self.kind {
            PurchaseKind::Activation | PurchaseKind::Renewal { .. } | PurchaseKind::AutoRenewal { .. } => {
                Payer::User(self.recipient)
            }
            PurchaseKind::Partner { partner, .. } => Payer::Partner(*partner),
            PurchaseKind::Gift { payer } => Payer::User(*payer),
        }
    }

    pub fn transaction_kind(&self) -> TransactionKind {
        match self.kind {
            PurchaseKind::Activation => TransactionKind::Activation,
            PurchaseKind::Renewal { .. } => TransactionKind::Renewal,
            PurchaseKind::AutoRenewal { .. } => TransactionKind::AutoRenewal,
            PurchaseKind::Partner { .. } => TransactionKind::PartnerActivation,
            PurchaseKind::Gift { .. } => TransactionKind::Gift,
        }
    }
}

impl TryFrom<&catalog::Offer> for OfferSnapshot {
    type Error = OrderError;

    fn try_from(offer: &catalog::Offer) -> Result<Self, OrderError> {
        if offer.price <= 0 {
            return Err(OrderError::Malformed("the offer's price must be positive"));
        }
        if offer.duration_days <= 0 {
            return Err(OrderError::Malformed("the offer's duration must be positive"));
        }
        Ok(Self {
            id: OfferId::parse(&offer.id)?,
            code: offer.code.clone(),
            name: offer.name.clone(),
            price: offer.price,
            currency: offer.currency_code.clone(),
            duration_days: offer.duration_days,
        })
    }
}

impl From<PurchaseOrder> for account::PurchaseRequest {
    fn from(order: PurchaseOrder) -> Self {
        let kind = order.transaction_kind();
        // Each kind fills its own fields; every other stays empty.
        let (mut subscription_id, mut partner_id, mut reference, mut payer_id) = Default::default();
        let mut period_end = None;
        match order.kind {
            PurchaseKind::Activation => {}
            PurchaseKind::Renewal { subscription } => subscription_id = subscription.to_string(),
            PurchaseKind::AutoRenewal { subscription, period_end: end } => {
                (subscription_id, period_end) = (subscription.to_string(), Some(to_timestamp(end)));
            }
            PurchaseKind::Partner { partner, reference: quoted } => {
                (partner_id, reference) = (partner.to_string(), quoted);
            }
            PurchaseKind::Gift { payer } => payer_id = payer.to_string(),
        }
        let offer = order.offer;
        let (idempotency_scope, idempotency_key, request_hash) =
            order.idempotency.map(|i| (i.scope, i.key, i.fingerprint)).unwrap_or_default();
        Self {
            user_id: order.recipient.to_string(),
            kind: kind.into(),
            offer: Some(catalog::Offer {
                id: offer.id.to_string(),
                code: offer.code,
                name: offer.name,
                price: offer.price,
                currency_code: offer.currency,
                duration_days: offer.duration_days,
                is_active: true,
                ..Default::default()
            }),
            subscription_id,
            partner_id,
            reference,
            idempotency_scope,
            idempotency_key,
            request_hash,
            replay_only: false,
            payer_id,
            auto_renew: order.auto_renew,
            period_end,
        }
    }
}

/// A request as it arrives: each field that only some kinds carry must be
/// there for those kinds and absent for the others.
impl TryFrom<account::PurchaseRequest> for PurchaseOrder {
    type Error = OrderError;

    fn try_from(wire: account::PurchaseRequest) -> Result<Self, OrderError> {
        let offer = wire.offer.as_ref().ok_or(OrderError::Malformed("offer is required"))?;
        // Which of the kind-specific fields are set: exactly the kind's own.
        let set = (
            !wire.subscription_id.is_empty(),
            !wire.partner_id.is_empty(),
            !wire.reference.is_empty(),
            !wire.payer_id.is_empty(),
            wire.period_end.is_some(),
        );
        let kind = match (TransactionKind::try_from(wire.kind), set) {
            (Ok(TransactionKind::Activation), (false, false, false, false, false)) => PurchaseKind::Activation,
            (Ok(TransactionKind::Renewal), (true, false, false, false, false)) => {
                PurchaseKind::Renewal { subscription: SubscriptionId::parse(&wire.subscription_id)? }
            }
            (Ok(TransactionKind::AutoRenewal), (true, false, false, false, true)) => PurchaseKind::AutoRenewal {
                subscription: SubscriptionId::parse(&wire.subscription_id)?,
                period_end: wire
                    .period_end
                    .as_ref()
                    .and_then(from_timestamp)
                    .ok_or(OrderError::Malformed("period_end is not a time"))?,
            },
            (Ok(TransactionKind::PartnerActivation), (false, true, true, false, false)) => {
                PurchaseKind::Partner { partner: PartnerId::parse(&wire.partner_id)?, reference: wire.reference }
            }
            (Ok(TransactionKind::Gift), (false, false, false, true, false)) => {
                PurchaseKind::Gift { payer: UserId::parse(&wire.payer_id)? }
            }
            (Ok(TransactionKind::Unspecified) | Err(_), _) => return Err(OrderError::Malformed("kind is required")),
            (Ok(_), _) => {
                return Err(OrderError::Malformed(
                    "subscription_id is for renewals, partner_id and reference for partner activations, \
                     payer_id for gifts, period_end for automatic renewals: each required there and refused \
                     elsewhere",
                ));
            }
        };
        let recipient = UserId::parse(&wire.user_id)?;
        if kind == (PurchaseKind::Gift { payer: recipient }) {
            return Err(OrderError::Malformed("a gift is for someone other than its payer"));
        }
        let order = Self {
            recipient,
            offer: OfferSnapshot::try_from(offer)?,
            kind,
            idempotency: Idempotency::from_wire(wire.idempotency_scope, wire.idempotency_key, wire.request_hash)?,
            auto_renew: false,
        };
        order.renewing(wire.auto_renew)
    }
}

impl From<Idempotency> for account::ReplayPurchaseRequest {
    fn from(idempotency: Idempotency) -> Self {
        Self {
            idempotency_scope: idempotency.scope,
            idempotency_key: idempotency.key,
            request_hash: idempotency.fingerprint,
        }
    }
}

impl TryFrom<account::ReplayPurchaseRequest> for Idempotency {
    type Error = OrderError;

    fn try_from(wire: account::ReplayPurchaseRequest) -> Result<Self, OrderError> {
        Self::from_wire(wire.idempotency_scope, wire.idempotency_key, wire.request_hash)?
            .ok_or(OrderError::Malformed("a replay needs its idempotency key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer() -> catalog::Offer {
        catalog::Offer {
            id: OfferId::generate().to_string(),
            code: "DATA-1GB".into(),
            name: "Data 1 GB".into(),
            price: 500,
            currency_code: "XAF".into(),
            duration_days: 7,
            is_active: true,
            ..Default::default()
        }
    }

    fn kinds() -> Vec<PurchaseKind> {
        vec![
            PurchaseKind::Activation,
            PurchaseKind::Renewal { subscription: SubscriptionId::generate() },
            PurchaseKind::Partner { partner: PartnerId::generate(), reference: "ACT-1".into() },
            PurchaseKind::Gift { payer: UserId::generate() },
            PurchaseKind::AutoRenewal {
                subscription: SubscriptionId::generate(),
                period_end: DateTime::from_timestamp(1_800_000_000, 123_456_000).expect("a time"),
            },
        ]
    }

    #[test]
    fn every_kind_round_trips_through_the_wire() {
        let user = UserId::generate();
        for kind in kinds() {
            for idempotency in [None, Some(Idempotency::new(KeyScope::User(user), "k-1", "activate:x"))] {
                let order = PurchaseOrder::new(user, kind.clone(), &offer(), idempotency).expect("order");
                let wire = account::PurchaseRequest::from(order.clone());
                assert_eq!(PurchaseOrder::try_from(wire), Ok(order));
            }
        }
    }

    #[test]
    fn only_a_users_own_activation_renews_itself() {
        let user = UserId::generate();
        for kind in kinds() {
            let order = PurchaseOrder::new(user, kind.clone(), &offer(), None).expect("order");
            let renewing = order.clone().renewing(true);
            if kind == PurchaseKind::Activation {
                let renewing = renewing.expect("an activation may renew itself");
                let wire = account::PurchaseRequest::from(renewing.clone());
                assert_eq!(PurchaseOrder::try_from(wire), Ok(renewing));
            } else {
                assert!(matches!(renewing, Err(OrderError::Malformed(_))), "{kind:?}");
                let wire = account::PurchaseRequest { auto_renew: true, ..account::PurchaseRequest::from(order) };
                assert!(PurchaseOrder::try_from(wire).is_err(), "{kind:?} on the wire");
            }
        }
    }

    #[test]
    fn a_partner_pays_for_its_activations_and_users_for_the_rest() {
        let user = UserId::generate();
        for kind in kinds() {
            let order = PurchaseOrder::new(user, kind.clone(), &offer(), None).expect("order");
            let expected = match kind {
                PurchaseKind::Partner { partner, .. } => Payer::Partner(partner),
                PurchaseKind::Gift { payer } => Payer::User(payer),
                PurchaseKind::Activation | PurchaseKind::Renewal { .. } | PurchaseKind::AutoRenewal { .. } => {
                    Payer::User(user)
                }
            };
            assert_eq!(order.payer(), expected);
        }
    }

    #[test]
    fn fields_of_another_kind_are_refused() {
        let order = PurchaseOrder::new(UserId::generate(), PurchaseKind::Activation, &offer(), None).expect("order");
        let wire = account::PurchaseRequest::from(order);
        let partner = PartnerId::generate().to_string();
        let subscription = SubscriptionId::generate().to_string();
        let payer = UserId::generate().to_string();
        let cases = [
            account::PurchaseRequest { partner_id: partner.clone(), ..wire.clone() },
            account::PurchaseRequest { subscription_id: subscription.clone(), ..wire.clone() },
            account::PurchaseRequest { reference: "ACT-1".into(), ..wire.clone() },
            account::PurchaseRequest { kind: TransactionKind::Renewal.into(), ..wire.clone() },
            account::PurchaseRequest { kind: TransactionKind::PartnerActivation.into(), ..wire.clone() },
            account::PurchaseRequest {
                kind: TransactionKind::PartnerActivation.into(),
                partner_id: partner.clone(),
                ..wire.clone()
            },
            account::PurchaseRequest { kind: TransactionKind::Unspecified.into(), ..wire.clone() },
            account::PurchaseRequest { kind: 42, ..wire.clone() },
            account::PurchaseRequest { offer: None, ..wire.clone() },
            account::PurchaseRequest { idempotency_key: "k".into(), ..wire.clone() },
            account::PurchaseRequest { payer_id: payer.clone(), ..wire.clone() },
            account::PurchaseRequest { period_end: Some(prost_types::Timestamp::default()), ..wire.clone() },
            account::PurchaseRequest {
                kind: TransactionKind::AutoRenewal.into(),
                subscription_id: subscription.clone(),
                ..wire.clone()
            },
            account::PurchaseRequest { kind: TransactionKind::Gift.into(), ..wire.clone() },
            account::PurchaseRequest {
                kind: TransactionKind::Gift.into(),
                payer_id: wire.user_id.clone(),
                ..wire.clone()
            },
            account::PurchaseRequest {
                kind: TransactionKind::Gift.into(),
                payer_id: payer.clone(),
                partner_id: partner.clone(),
                ..wire.clone()
            },
        ];
        for case in cases {
            assert!(matches!(PurchaseOrder::try_from(case.clone()), Err(OrderError::Malformed(_))), "{case:?}");
        }
        let bad_user = account::PurchaseRequest { user_id: "someone".into(), ..wire };
        assert_eq!(PurchaseOrder::try_from(bad_user), Err(OrderError::InvalidId(InvalidId { what: "user id" })));
    }

    #[test]
    fn an_offer_off_sale_or_free_makes_no_order() {
        let user = UserId::generate();
        let off = catalog::Offer { is_active: false, ..offer() };
        assert_eq!(
            PurchaseOrder::new(user, PurchaseKind::Activation, &off, None),
            Err(OrderError::NotOnSale("DATA-1GB".into()))
        );
        for free in [catalog::Offer { price: 0, ..offer() }, catalog::Offer { duration_days: 0, ..offer() }] {
            assert!(matches!(
                PurchaseOrder::new(user, PurchaseKind::Activation, &free, None),
                Err(OrderError::Malformed(_))
            ));
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart_and_scopes_keep_callers_apart() {
        let (user, partner) = (UserId::generate(), PartnerId::generate());
        let a = Idempotency::new(KeyScope::User(user), "k", "activate:1");
        assert_eq!(a, Idempotency::new(KeyScope::User(user), "k", "activate:1"));
        assert_ne!(a.fingerprint, Idempotency::new(KeyScope::User(user), "k", "activate:2").fingerprint);
        assert_ne!(a.scope, Idempotency::new(KeyScope::Partner(partner), "k", "activate:1").scope);
        let replay = account::ReplayPurchaseRequest::from(a.clone());
        assert_eq!(Idempotency::try_from(replay), Ok(a));
        assert!(Idempotency::try_from(account::ReplayPurchaseRequest::default()).is_err());
    }
}
