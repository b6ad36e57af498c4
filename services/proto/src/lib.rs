//! The contracts between the Offers services: the gRPC types, clients and
//! servers generated from `proto/`; a purchase, the jobs and the cache
//! entries in [`contracts`]; the typed ids in [`ids`]; every error code in
//! [`error_codes`]; and the rules for what callers write ([`wire`],
//! [`username`]).

pub mod contracts;
pub mod error_codes;
pub mod ids;
pub mod timestamps;
pub mod username;
pub mod wire;

/// Encoded `FileDescriptorSet` of every proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod auth {
    pub mod v1 {
        tonic::include_proto!("offers.auth.v1");
    }
}
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("offers.catalog.v1");
    }
}
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod account {
    pub mod v1 {
        tonic::include_proto!("offers.account.v1");
    }
}
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod activation {
    pub mod v1 {
        tonic::include_proto!("offers.activation.v1");
    }
}
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod partner {
    pub mod v1 {
        tonic::include_proto!("offers.partner.v1");
    }
}
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod jobs {
    pub mod v1 {
        tonic::include_proto!("offers.jobs.v1");
    }
}
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod audit {
    pub mod v1 {
        tonic::include_proto!("offers.audit.v1");
    }
}
/// The error codes every failure carries (`ErrorInfo.reason`), as a
/// documented enum for clients built from the protos.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod errors {
    pub mod v1 {
        tonic::include_proto!("offers.errors.v1");
    }
}
