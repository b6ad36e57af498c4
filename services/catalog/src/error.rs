use offers_kit::{Error, ErrorCode};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("offer not found")]
    NotFound,
    #[error("an offer with code {0} already exists")]
    CodeTaken(String),
    #[error("{0}")]
    Invalid(String),
    #[error("only administrators may list inactive offers")]
    AdminOnly,
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
}

impl From<CatalogError> for Error {
    fn from(err: CatalogError) -> Self {
        match err {
            CatalogError::NotFound => Error::not_found("offer"),
            CatalogError::CodeTaken(_) => Error::new(ErrorCode::AlreadyExists, err.to_string()),
            CatalogError::Invalid(message) => Error::invalid_request(message),
            CatalogError::AdminOnly => Error::new(ErrorCode::PermissionDenied, err.to_string()),
            CatalogError::Db(db) => Error::from(db),
        }
    }
}

impl From<CatalogError> for tonic::Status {
    fn from(err: CatalogError) -> Self {
        Error::from(err).into()
    }
}
