#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("account service: {0}")]
    Upstream(#[from] offers_kit::Error),
    #[error(transparent)]
    Outbox(#[from] offers_kit::outbox::OutboxError),
    #[error(transparent)]
    Bus(#[from] offers_kit::bus::BusError),
}

impl From<tonic::Status> for NotifierError {
    fn from(status: tonic::Status) -> Self {
        NotifierError::Upstream(offers_kit::Error::from_status(status))
    }
}
