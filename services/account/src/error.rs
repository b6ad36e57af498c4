use offers_kit::{Error, ErrorCode};

use crate::entity::account::Kind;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("{} does not cover {needed} minor units", whose(.payer))]
    InsufficientFunds { needed: i64, payer: Kind },
    #[error("the offer is priced in {offer}, the balance is in {balance}")]
    CurrencyMismatch { offer: String, balance: String },
    #[error("the idempotency key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("at most {max} gifts in 24 hours (gifting.max_per_day)")]
    GiftLimitReached { max: u32 },
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("job payload: {0}")]
    Payload(#[from] serde_json::Error),
}

fn whose(payer: &Kind) -> &'static str {
    match payer {
        Kind::User => "the balance",
        Kind::Partner => "the partner's account",
    }
}

impl From<LedgerError> for Error {
    fn from(err: LedgerError) -> Self {
        if let LedgerError::Db(db) = err {
            return Error::from(db);
        }
        let code = match &err {
            LedgerError::InsufficientFunds { payer: Kind::User, .. } => ErrorCode::InsufficientBalance,
            LedgerError::InsufficientFunds { payer: Kind::Partner, .. } => ErrorCode::InsufficientPartnerFunds,
            LedgerError::CurrencyMismatch { .. } => ErrorCode::CurrencyMismatch,
            LedgerError::IdempotencyKeyReused => ErrorCode::IdempotencyKeyReused,
            LedgerError::NotFound(what) => return Error::not_found(what),
            LedgerError::Invalid(_) => ErrorCode::InvalidRequest,
            LedgerError::Conflict(_) => ErrorCode::Conflict,
            LedgerError::GiftLimitReached { .. } => ErrorCode::GiftLimitReached,
            LedgerError::Db(_) | LedgerError::Payload(_) => return Error::internal(err),
        };
        Error::new(code, err.to_string())
    }
}

impl From<LedgerError> for tonic::Status {
    fn from(err: LedgerError) -> Self {
        Error::from(err).into()
    }
}
