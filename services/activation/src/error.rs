//! What activation refuses, as its own errors; mapped to the wire's codes
//! in one place below.

use offers_kit::{Error, ErrorCode};
use offers_proto::contracts::OrderError;

#[derive(Debug, thiserror::Error)]
pub enum ActivationError {
    /// The offer exists but is not on sale (and no earlier request with
    /// the caller's key bought it).
    #[error("offer {0} is not on sale")]
    OfferInactive(String),
    /// Not there, or not the caller's: the caller cannot tell which.
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request asks for something that cannot be.
    #[error("{0}")]
    Invalid(&'static str),
    /// A gift's recipient is the buyer, or no active user.
    #[error("the recipient must be another active user")]
    InvalidRecipient,
    /// What the catalog answered is not something that can be bought.
    #[error(transparent)]
    Order(OrderError),
    /// A service activation called refused or failed.
    #[error(transparent)]
    Upstream(#[from] Error),
}

impl From<tonic::Status> for ActivationError {
    fn from(status: tonic::Status) -> Self {
        ActivationError::Upstream(Error::from_internal_call(status))
    }
}

impl From<OrderError> for ActivationError {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::NotOnSale(code) => ActivationError::OfferInactive(code),
            // The catalog's own answer did not make an order: its fault,
            // not the caller's.
            other => ActivationError::Order(other),
        }
    }
}

impl From<ActivationError> for Error {
    fn from(err: ActivationError) -> Self {
        match err {
            ActivationError::OfferInactive(_) => Error::new(ErrorCode::OfferInactive, err.to_string()),
            ActivationError::NotFound(what) => Error::not_found(what),
            ActivationError::Invalid(why) => Error::invalid_request(why),
            ActivationError::InvalidRecipient => Error::new(ErrorCode::InvalidRecipient, err.to_string()),
            ActivationError::Order(order) => Error::internal(order),
            ActivationError::Upstream(inner) => inner,
        }
    }
}

impl From<ActivationError> for tonic::Status {
    fn from(err: ActivationError) -> Self {
        Error::from(err).into()
    }
}
