//! The bodies of the POSTs that move money, as clients send them. They
//! depend on serde and the document's formats only, so the fuzz targets
//! compile them alone (`fuzz/fuzz_targets/money_bodies.rs`).

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess};
use utoipa::ToSchema;

use crate::formats::Id;

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({"offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c"}),
    json!({"offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c", "recipient": "demo2"})))]
pub struct ActivateBody {
    #[schema(value_type = Id)]
    pub offer_id: String,
    /// A gift: the username of another active user, who gets the
    /// subscription while the caller pays (and alone sees the transaction
    /// and its status). Absent: the caller buys for themselves.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false, pattern = "^[A-Za-z0-9_.-]{3,64}$")]
    pub recipient: Option<String>,
    /// Renew the subscription automatically from the balance before it
    /// ends, at the offer's price then (not with `recipient`: the recipient
    /// turns it on themselves). Off when absent.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    pub auto_renew: Option<bool>,
}

/// The one thing a subscription's owner changes.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"auto_renew": true})))]
pub struct SubscriptionChange {
    /// Renew it automatically from the balance before it ends.
    pub auto_renew: bool,
}

/// Exactly one of the two: the subscription, or the offer the caller's
/// most recent subscription is for.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum RenewBody {
    Subscription(RenewSubscription),
    Offer(RenewOffer),
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"subscription_id": "0193a5b2-0c0c-7d0d-8e0e-0f1a2b3c4d5e"})))]
pub struct RenewSubscription {
    #[schema(value_type = Id)]
    pub subscription_id: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(examples(json!({"offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c"})))]
pub struct RenewOffer {
    #[schema(value_type = Id)]
    pub offer_id: String,
}

#[derive(Deserialize, ToSchema)]
#[schema(examples(json!({
    "user_id": "0193a5b0-0000-7000-8000-0000000000aa", "offer_id": "0193a5a0-11aa-7bbb-8ccc-0d1e2f3a4b5c", "amount": 1500
})))]
pub struct PartnerActivateBody {
    #[schema(value_type = Id)]
    pub user_id: String,
    #[schema(value_type = Id)]
    pub offer_id: String,
    /// Must equal the offer's price, in minor units.
    #[schema(minimum = 1)]
    #[serde(deserialize_with = "whole_number")]
    pub amount: i64,
}

/// An optional field that, when present, must hold a value: the document
/// says it is not nullable, so `null` is refused rather than read as absent.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// An integer as JSON Schema counts them: `1500.0` is one too (clients
/// whose numbers are all doubles send it so).
fn whole_number<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    // Doubles are exact up to 2^53; past that `1e300` is no amount anyway.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    let number = serde_json::Number::deserialize(deserializer)?;
    let whole = number.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= EXACT).map(|f| f as i64);
    number.as_i64().or(whole).ok_or_else(|| serde::de::Error::custom(format!("expected a whole number, got {number}")))
}

/// A body that must be a JSON object, as the document says of every body:
/// serde's derive alone also takes a struct's fields as an array
/// (`["<offer id>"]`), which fuzzing found the money POSTs accepting.
pub struct Object<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields<T>(PhantomData<T>);

        impl<'de, T: Deserialize<'de>> de::Visitor<'de> for Fields<T> {
            type Value = T;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }

        deserializer.deserialize_map(Fields(PhantomData)).map(Object)
    }
}
