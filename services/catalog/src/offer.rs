//! The offer: one domain type (the table's row, [`Offer`]), converted once
//! each way to and from its gRPC message, and the one table of the fields an
//! update may change. The conversions destructure exhaustively, so a new
//! field is a compile error wherever it is not yet handled.

use chrono::{DateTime, Utc};
use offers_proto::catalog::v1 as pb;
use offers_proto::wire;
use uuid::Uuid;

pub use crate::entity::Model as Offer;
use crate::error::CatalogError;

/// Prices above this are mistakes (the ledger refuses such amounts too).
const MAX_PRICE: i64 = 1_000_000_000_000;
/// Allowances above this are mistakes.
const MAX_ALLOWANCE: i64 = 1_000_000_000;

type Copy = fn(&mut Offer, &pb::Offer);

/// The fields of a sent offer that are taken (on create, all; on update,
/// those the mask names), by their gRPC names, and how each is copied. The
/// id, the code (set once, on create) and the timestamps are ours.
pub const UPDATABLE: [(&str, Copy); 9] = [
    ("name", |to, from| to.name.clone_from(&from.name)),
    ("description", |to, from| to.description.clone_from(&from.description)),
    ("price", |to, from| to.price = from.price),
    ("currency_code", |to, from| to.currency.clone_from(&from.currency_code)),
    ("duration_days", |to, from| to.duration_days = from.duration_days),
    ("data_mb", |to, from| to.data_mb = from.data_mb),
    ("voice_minutes", |to, from| to.voice_minutes = from.voice_minutes),
    ("sms", |to, from| to.sms = from.sms),
    ("is_active", |to, from| to.is_active = from.is_active),
];

impl Offer {
    /// A new offer from what an administrator sent.
    pub fn from_proto(sent: &pb::Offer, id: Uuid, now: DateTime<Utc>) -> Self {
        let mut offer = Offer { id, code: sent.code.clone(), created_at: now, updated_at: now, ..Offer::default() };
        for (_, copy) in UPDATABLE {
            copy(&mut offer, sent);
        }
        offer
    }

    pub fn validate(&self, currency: &str) -> Result<(), CatalogError> {
        let code_ok = (2..=32).contains(&self.code.len())
            && self.code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
        let checks = [
            (code_ok, "code must be 2 to 32 characters of A-Z, 0-9 and '-'".to_string()),
            (
                !self.name.trim().is_empty() && wire::is_text(&self.name, 200) && !self.name.contains(['\n', '\r']),
                "name must be 1 to 200 characters on one line".into(),
            ),
            (wire::is_text(&self.description, 2000), "description must be at most 2000 characters of text".into()),
            (self.price > 0 && self.price <= MAX_PRICE, format!("price must be between 1 and {MAX_PRICE} minor units")),
            (self.currency == currency, format!("currency must be {currency}")),
            ((1..=3650).contains(&self.duration_days), "duration_days must be between 1 and 3650".into()),
            (
                [self.data_mb, self.voice_minutes, self.sms].iter().all(|a| (0..=MAX_ALLOWANCE).contains(a)),
                format!("allowances must be between 0 and {MAX_ALLOWANCE}"),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(CatalogError::Invalid(message)),
            None => Ok(()),
        }
    }

    /// This offer with the fields `paths` names (all when empty) taken from `new`.
    pub fn updated(mut self, new: &pb::Offer, paths: &[String]) -> Result<Offer, CatalogError> {
        if let Some(bad) = paths.iter().find(|p| !UPDATABLE.iter().any(|(name, _)| name == p)) {
            return Err(CatalogError::Invalid(format!("update_mask names a field that cannot change: {bad}")));
        }
        for (name, copy) in UPDATABLE {
            if paths.is_empty() || paths.iter().any(|p| p == name) {
                copy(&mut self, new);
            }
        }
        Ok(self)
    }
}

impl From<Offer> for pb::Offer {
    fn from(offer: Offer) -> Self {
        let Offer {
            id,
            code,
            name,
            description,
            price,
            currency,
            duration_days,
            data_mb,
            voice_minutes,
            sms,
            is_active,
            created_at: _,
            updated_at: _,
        } = offer;
        pb::Offer {
            id: id.to_string(),
            code,
            name,
            description,
            price,
            currency_code: currency,
            duration_days,
            data_mb,
            voice_minutes,
            sms,
            is_active,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Every field of the gRPC `Offer` is either updatable or fixed for
    /// good: a new field must be placed in one or the other.
    #[test]
    fn every_offer_field_has_an_update_rule() {
        let set = prost_types::FileDescriptorSet::decode(offers_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let offer = set
            .file
            .iter()
            .filter(|f| f.package() == "offers.catalog.v1")
            .flat_map(|f| &f.message_type)
            .find(|m| m.name() == "Offer")
            .expect("Offer message");
        for field in &offer.field {
            let name = field.name();
            assert!(
                ["id", "code"].contains(&name) || UPDATABLE.iter().any(|(n, _)| *n == name),
                "offer field {name} has no update rule in UPDATABLE"
            );
        }
    }

    #[test]
    fn an_update_takes_only_the_named_fields() {
        let sent = pb::Offer {
            code: "A-1".into(),
            name: "Old".into(),
            price: 100,
            currency_code: "EUR".into(),
            duration_days: 7,
            ..Default::default()
        };
        let old = Offer::from_proto(&sent, Uuid::now_v7(), Utc::now());
        let new = pb::Offer { code: "B-2".into(), name: "New".into(), price: 200, ..sent };
        let updated = old.clone().updated(&new, &["price".into()]).expect("update");
        assert_eq!((updated.price, updated.name.as_str(), updated.code.as_str()), (200, "Old", "A-1"));
        assert!(old.updated(&new, &["code".into()]).is_err(), "the code never changes");
    }
}
