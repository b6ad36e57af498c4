use offers_kit::{Error, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    #[error("a valid partner API key is required")]
    Unauthorized,
    #[error("too many requests")]
    RateLimited { retry_after_secs: u64 },
    #[error("the user does not exist or is not active")]
    InvalidUser,
    #[error("the offer does not exist or is not active")]
    InvalidOffer,
    #[error("amount must equal the offer's price ({price})")]
    AmountMismatch { price: i64 },
    #[error("a reference is REF- followed by 12 upper-case hex digits")]
    MalformedReference,
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    CallbackUrl(#[from] crate::destination::Refused),
    #[error("a partner with that name exists")]
    NameTaken,
    #[error("{0}")]
    Conflict(String),
    #[error("preset keys are allowed in the embedded mode only")]
    PresetRefused,
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Upstream(#[from] Error),
    #[error("callback client: {0}")]
    Client(#[from] reqwest::Error),
}

impl From<tonic::Status> for PartnerError {
    fn from(status: tonic::Status) -> Self {
        PartnerError::Upstream(Error::from_internal_call(status))
    }
}

impl From<PartnerError> for Error {
    fn from(err: PartnerError) -> Self {
        let code = match err {
            PartnerError::Upstream(inner) => return inner,
            PartnerError::Db(db) => return Error::from(db),
            PartnerError::Client(_) => return Error::internal(err),
            PartnerError::RateLimited { retry_after_secs } => return Error::rate_limited(retry_after_secs),
            PartnerError::NotFound(what) => return Error::not_found(what),
            PartnerError::Unauthorized => ErrorCode::Unauthenticated,
            PartnerError::InvalidUser => ErrorCode::InvalidUser,
            PartnerError::InvalidOffer => ErrorCode::InvalidOffer,
            PartnerError::AmountMismatch { .. } => ErrorCode::AmountMismatch,
            PartnerError::MalformedReference => ErrorCode::InvalidId,
            PartnerError::Invalid(_) | PartnerError::CallbackUrl(_) => ErrorCode::InvalidRequest,
            PartnerError::NameTaken => ErrorCode::AlreadyExists,
            PartnerError::Conflict(_) => ErrorCode::Conflict,
            PartnerError::PresetRefused => ErrorCode::PermissionDenied,
        };
        Error::new(code, err.to_string())
    }
}

impl From<PartnerError> for tonic::Status {
    fn from(err: PartnerError) -> Self {
        Error::from(err).into()
    }
}
