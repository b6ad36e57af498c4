//! Generated gRPC types, clients and servers for every Offers service.
#![allow(clippy::all, clippy::pedantic, missing_docs)]

/// Encoded `FileDescriptorSet` of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

pub mod auth {
    pub mod v1 {
        tonic::include_proto!("offers.auth.v1");
    }
}
pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("offers.catalog.v1");
    }
}
pub mod account {
    pub mod v1 {
        tonic::include_proto!("offers.account.v1");
    }
}
pub mod activation {
    pub mod v1 {
        tonic::include_proto!("offers.activation.v1");
    }
}
pub mod partner {
    pub mod v1 {
        tonic::include_proto!("offers.partner.v1");
    }
}

/// What the ledger keeps of an offer when it is bought.
impl From<catalog::v1::Offer> for account::v1::OfferSnapshot {
    fn from(offer: catalog::v1::Offer) -> Self {
        account::v1::OfferSnapshot {
            offer_id: offer.id,
            code: offer.code,
            name: offer.name,
            price: offer.price,
            currency_code: offer.currency_code,
            duration_days: offer.duration_days,
        }
    }
}
