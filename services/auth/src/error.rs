use offers_kit::{Error, ErrorCode};

use crate::password::PasswordError;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("invalid username or password")]
    InvalidCredentials,
    #[error("refresh token is invalid, spent, revoked or expired")]
    InvalidRefreshToken,
    #[error("user not found")]
    UserNotFound,
    #[error("{0} may not use the operator console")]
    NotAnOperator(String),
    #[error("username is already taken")]
    UsernameTaken,
    #[error("{0}")]
    InvalidInput(String),
    #[error("too many login attempts; retry in {retry_after_secs}s")]
    RateLimited { retry_after_secs: u64 },
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("token signing failed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Key(#[from] offers_kit::token::KeyError),
    #[error("a signing key could not be sealed or opened (is auth.key_encryption_key the one it was sealed with?)")]
    Sealing,
    #[error(
        "the signing keys {} open with none of auth.key_encryption_key: they were sealed under another key \
         encryption key. Set auth.key_encryption_key to the key they were sealed with (or a list, the new key \
         first and that one after it, then run `offers admin keys reseal`); for a throwaway local deployment, \
         `offers local down --purge` starts afresh",
        kids.join(", ")
    )]
    ForeignKeys { kids: Vec<String> },
    #[error("another rotation added a key at the same moment; list the keys before rotating again")]
    RotationRaced,
    #[error("no such signing key")]
    UnknownKey,
    #[error("no signing key is in service yet; try again")]
    NoSigningKey,
    #[error("{0}")]
    Config(&'static str),
}

impl From<AuthError> for Error {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidCredentials => Error::new(ErrorCode::InvalidCredentials, err.to_string()),
            AuthError::InvalidRefreshToken => Error::new(ErrorCode::InvalidToken, err.to_string()),
            AuthError::UserNotFound => Error::not_found("user"),
            AuthError::NotAnOperator(_) => Error::new(ErrorCode::PermissionDenied, err.to_string()),
            AuthError::UnknownKey => Error::not_found("signing key"),
            AuthError::RotationRaced => Error::new(ErrorCode::Conflict, err.to_string()),
            AuthError::NoSigningKey => Error::busy(1),
            AuthError::UsernameTaken => Error::new(ErrorCode::AlreadyExists, err.to_string()),
            AuthError::InvalidInput(message) => Error::invalid_request(message),
            AuthError::RateLimited { retry_after_secs } => Error::rate_limited(retry_after_secs),
            AuthError::Password(PasswordError::Busy) => Error::busy(1),
            AuthError::Db(db) => Error::from(db),
            AuthError::Password(_)
            | AuthError::Signing(_)
            | AuthError::Key(_)
            | AuthError::Sealing
            | AuthError::ForeignKeys { .. }
            | AuthError::Config(_) => Error::internal(err),
        }
    }
}

impl From<AuthError> for tonic::Status {
    fn from(err: AuthError) -> Self {
        Error::from(err).into()
    }
}
