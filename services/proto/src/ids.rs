//! The ids the domain code takes. Each is parsed once, where a request
//! enters (a REST route or a gRPC adapter), from the hyphenated form that is
//! the only one on the wire; past that point an id is typed, so a user's id
//! cannot be passed where an offer's is expected, and nothing parses again.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::wire;

/// An id that is not a hyphenated UUID; `what` names the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{what} is not a valid id")]
pub struct InvalidId {
    pub what: &'static str,
}

/// What every id type does: parse from the wire, naming itself when the
/// value is malformed.
pub trait Id: Sized + Copy + fmt::Display + Into<Uuid> {
    /// What the id is called in error messages.
    const WHAT: &'static str;

    fn from_uuid(id: Uuid) -> Self;

    /// The id a request carries, or `invalid_id` naming it.
    fn parse(value: &str) -> Result<Self, InvalidId> {
        wire::hyphenated(value).map(Self::from_uuid).ok_or(InvalidId { what: Self::WHAT })
    }
}

macro_rules! ids {
    ($($(#[$doc:meta])* $name:ident => $what:literal),+ $(,)?) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new id (UUIDv7: ids order by creation time).
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// The UUID, for the database.
            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl Id for $name {
            const WHAT: &'static str = $what;

            fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }
        }

        /// Ids read back from our own database are trusted as typed.
        impl From<Uuid> for $name {
            fn from(id: Uuid) -> Self {
                Self(id)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Self {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    )+};
}

ids! {
    /// A user (the subject of their tokens; their account has the same id).
    UserId => "user id",
    /// An offer in the catalog.
    OfferId => "offer id",
    /// A purchase's transaction in the ledger.
    TransactionId => "transaction id",
    /// A user's subscription to an offer.
    SubscriptionId => "subscription id",
    /// A partner (its account with us has the same id).
    PartnerId => "partner id",
    /// One of a partner's API keys.
    ApiKeyId => "API key id",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_only_from_the_hyphenated_form_and_name_themselves() {
        let id = Uuid::now_v7();
        assert_eq!(OfferId::parse(&id.to_string()).map(OfferId::uuid), Ok(id));
        assert_eq!(OfferId::parse(&id.to_string().to_uppercase()).map(OfferId::uuid), Ok(id));
        for bad in ["", "1", &id.simple().to_string(), &format!("{{{id}}}"), &format!("urn:uuid:{id}")] {
            assert_eq!(UserId::parse(bad), Err(InvalidId { what: "user id" }), "{bad}");
        }
        assert_eq!(
            TransactionId::parse("x").map_err(|e| e.to_string()),
            Err("transaction id is not a valid id".into())
        );
        assert_eq!(PartnerId::from(id).to_string(), id.to_string());
    }

    #[test]
    fn ids_travel_as_bare_strings_in_json() {
        let id = TransactionId::generate();
        let json = serde_json::to_string(&id).expect("json");
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<TransactionId>(&json).ok(), Some(id));
    }
}
