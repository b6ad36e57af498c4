//! The one error type that crosses service boundaries, carrying a stable
//! code from the contracts' table, and the single place where it becomes a
//! `tonic::Status` or an HTTP problem.

use std::fmt;
use std::time::Duration;

use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

pub use offers_proto::error_codes::ErrorCode;

/// Metadata key carrying the stable error code on a gRPC status.
pub const CODE_METADATA: &str = "offers-error-code";
/// `ErrorInfo.domain` of every status we send (its `reason` is the code).
pub const ERROR_DOMAIN: &str = "offers";
/// Metadata key carrying a retry delay in seconds (rate limits).
pub const RETRY_AFTER_METADATA: &str = "retry-after";

/// A client-visible failure: a stable code, a message safe to show, and
/// (for internal errors) a cause that only reaches the log.
#[derive(Debug)]
pub struct Error {
    pub code: ErrorCode,
    pub message: String,
    pub retry_after_secs: Option<u64>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None, source: None }
    }

    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    /// An internal failure: the client sees only "internal error"; the cause
    /// is logged where the error becomes a response.
    pub fn internal(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            code: ErrorCode::Internal,
            message: "internal error".into(),
            retry_after_secs: None,
            source: Some(source.into()),
        }
    }

    pub fn unavailable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: ErrorCode::Unavailable.title().into(),
            retry_after_secs: None,
            source: Some(source.into()),
        }
    }

    /// Too busy to take this request now (not a fault): 503 with Retry-After.
    pub fn busy(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(ErrorCode::Unavailable, "the service is busy; retry shortly")
        }
    }

    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, "too many requests; retry later")
        }
    }

    /// Rebuilds the error another service answered with, keeping its code
    /// (from its `ErrorInfo`, else its metadata, else its gRPC code).
    pub fn from_status(status: Status) -> Self {
        let reason = status.get_details_error_info().filter(|info| info.domain == ERROR_DOMAIN).map(|info| info.reason);
        let code = reason
            .as_deref()
            .or_else(|| status.metadata().get(CODE_METADATA).and_then(|v| v.to_str().ok()))
            .and_then(ErrorCode::parse)
            .unwrap_or_else(|| code_for_grpc(status.code()));
        let retry_after_secs =
            status.metadata().get(RETRY_AFTER_METADATA).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let message = if code == ErrorCode::Internal { "internal error".into() } else { status.message().to_string() };
        let source: Option<Box<dyn std::error::Error + Send + Sync>> = match code {
            ErrorCode::Internal | ErrorCode::Unavailable | ErrorCode::Timeout => Some(Box::new(status)),
            _ => None,
        };
        Self { code, message, retry_after_secs, source }
    }

    /// What another service answered to one of our internal calls, made
    /// with the service credential: its refusal of that credential is our
    /// misconfiguration, an internal error, never the caller's 401 or 403.
    pub fn from_internal_call(status: Status) -> Self {
        match status.code() {
            Code::Unauthenticated | Code::PermissionDenied => Error::internal(status),
            _ => Error::from_status(status),
        }
    }

    /// Logs the cause of an error that has one (internal, unavailable,
    /// timeout): at ERROR for a server fault; anything a caller caused
    /// stays at DEBUG, so an error log means something for operators.
    pub fn log(&self) {
        let Some(source) = &self.source else { return };
        if self.code.is_fault() {
            tracing::error!(code = %self.code, error = %source, chain = ?source, "request failed");
        } else {
            tracing::debug!(code = %self.code, error = %source, "request refused");
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The standard rich error model (`google.rpc.Status` in
/// `grpc-status-details-bin`: `ErrorInfo`, and `RetryInfo` when there is a
/// delay) for clients generated from any proto toolchain, and the same code
/// and delay as plain metadata for those reading headers.
impl From<Error> for Status {
    fn from(err: Error) -> Self {
        err.log();
        let mut details = ErrorDetails::with_error_info(err.code.as_str(), ERROR_DOMAIN, []);
        let mut metadata = MetadataMap::new();
        metadata.insert(CODE_METADATA, MetadataValue::from_static(err.code.as_str()));
        if let Some(secs) = err.retry_after_secs {
            details.set_retry_info(Some(Duration::from_secs(secs)));
            metadata.insert(RETRY_AFTER_METADATA, MetadataValue::from(secs));
        }
        Status::with_error_details_and_metadata(err.code.grpc(), err.message, details, metadata)
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        Error::from_status(status)
    }
}

impl From<offers_proto::ids::InvalidId> for Error {
    fn from(err: offers_proto::ids::InvalidId) -> Self {
        Error::new(ErrorCode::InvalidId, err.to_string())
    }
}

impl From<offers_proto::contracts::OrderError> for Error {
    fn from(err: offers_proto::contracts::OrderError) -> Self {
        use offers_proto::contracts::OrderError;
        match err {
            OrderError::InvalidId(e) => e.into(),
            OrderError::Malformed(why) => Error::invalid_request(why),
            OrderError::NotOnSale(_) => Error::new(ErrorCode::OfferInactive, err.to_string()),
        }
    }
}

/// A database that cannot be reached is `service_unavailable` (the caller
/// may retry; nothing was written); any other database failure is internal.
impl From<sea_orm::DbErr> for Error {
    fn from(err: sea_orm::DbErr) -> Self {
        if crate::db::is_unreachable(&err) { Error::unavailable(err) } else { Error::internal(err) }
    }
}

/// Fallback for statuses that carry no code of ours (transport failures,
/// other servers): the one table from gRPC code to our codes.
fn code_for_grpc(code: Code) -> ErrorCode {
    match code {
        Code::InvalidArgument | Code::OutOfRange => ErrorCode::InvalidRequest,
        Code::NotFound => ErrorCode::NotFound,
        Code::Unauthenticated => ErrorCode::Unauthenticated,
        Code::PermissionDenied => ErrorCode::PermissionDenied,
        Code::ResourceExhausted => ErrorCode::RateLimited,
        Code::AlreadyExists => ErrorCode::AlreadyExists,
        Code::Aborted | Code::FailedPrecondition => ErrorCode::Conflict,
        Code::Unavailable | Code::Cancelled => ErrorCode::Unavailable,
        Code::DeadlineExceeded => ErrorCode::Timeout,
        Code::Ok | Code::Unknown | Code::Internal | Code::Unimplemented | Code::DataLoss => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_grpc_status() {
        for &code in ErrorCode::ALL {
            let status: Status = Error::new(code, "x").into();
            assert_eq!(status.code(), code.grpc());
            assert_eq!(Error::from_status(status).code, code);
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let status: Status = Error::internal(std::io::Error::other("disk on fire")).into();
        assert_eq!(status.message(), "internal error");
        let err = Error::from_status(status);
        assert_eq!(err.code, ErrorCode::Internal);
        assert!(!err.message.contains("disk"));
    }

    #[test]
    fn internal_calls_refused_are_our_fault_not_the_callers() {
        for refused in [Status::unauthenticated("bad credential"), Status::permission_denied("no")] {
            let err = Error::from_internal_call(refused);
            assert_eq!(err.code, ErrorCode::Internal);
            assert_eq!(err.message, "internal error");
        }
        let refusal: Status = Error::new(ErrorCode::InsufficientBalance, "x").into();
        assert_eq!(Error::from_internal_call(refusal).code, ErrorCode::InsufficientBalance);
    }

    #[test]
    fn foreign_statuses_map_by_grpc_code() {
        let err = Error::from_status(Status::unavailable("connection refused"));
        assert_eq!(err.code, ErrorCode::Unavailable);
        assert_eq!(err.code.http_status(), 503);
    }

    #[test]
    fn rate_limits_carry_retry_after() {
        let status: Status = Error::rate_limited(7).into();
        assert_eq!(status.get_details_retry_info().and_then(|r| r.retry_delay), Some(Duration::from_secs(7)));
        assert_eq!(Error::from_status(status).retry_after_secs, Some(7));
    }

    /// Counts the events logged at ERROR.
    #[derive(Default, Clone)]
    struct Errors(std::sync::Arc<std::sync::atomic::AtomicUsize>);

    impl tracing::Subscriber for Errors {
        fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
            tracing::span::Id::from_u64(1)
        }
        fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
        fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            if *event.metadata().level() == tracing::Level::ERROR {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        fn enter(&self, _: &tracing::span::Id) {}
        fn exit(&self, _: &tracing::span::Id) {}
    }

    #[test]
    fn only_server_faults_are_logged_as_errors() {
        let errors = Errors::default();
        tracing::subscriber::with_default(errors.clone(), || {
            for &code in ErrorCode::ALL {
                let caused = Error { source: Some("a cause".into()), ..Error::new(code, "x") };
                let _: Status = caused.into();
            }
        });
        let faults = ErrorCode::ALL.iter().filter(|c| c.is_fault()).count();
        assert_eq!(errors.0.load(std::sync::atomic::Ordering::SeqCst), faults);
        assert!(!ErrorCode::NotFound.is_fault() && !ErrorCode::Unauthenticated.is_fault());
        assert!(ErrorCode::Internal.is_fault() && ErrorCode::Unavailable.is_fault());
    }

    #[test]
    fn every_status_carries_error_info() {
        for &code in ErrorCode::ALL {
            let status: Status = Error::new(code, "x").into();
            let info = status.get_details_error_info().expect("ErrorInfo");
            assert_eq!((info.reason.as_str(), info.domain.as_str()), (code.as_str(), ERROR_DOMAIN));
            // A status whose metadata was lost on the way still says its code.
            let bare = Status::with_details(status.code(), status.message(), status.details().to_vec().into());
            assert_eq!(Error::from_status(bare).code, code);
        }
    }

    /// The documented proto enum (`offers.errors.v1.ErrorCode`) is this
    /// table: the same codes, in the same order (value n is `ALL[n - 1]`),
    /// each commented with its gRPC code and HTTP status.
    #[test]
    fn the_proto_enum_is_this_table() {
        use offers_proto::errors::v1::ErrorCode as Proto;
        use prost::Message;
        for (i, &code) in ErrorCode::ALL.iter().enumerate() {
            let name = format!("ERROR_CODE_{}", code.as_str().to_uppercase());
            let value = Proto::from_str_name(&name).unwrap_or_else(|| panic!("{name} is not in errors.proto"));
            assert_eq!(value as usize, i + 1, "{name} is numbered out of the table's order");
        }
        let count = i32::try_from(ErrorCode::ALL.len()).expect("few codes");
        assert!(Proto::try_from(count + 1).is_err(), "errors.proto has codes the table lacks");

        let set = prost_types::FileDescriptorSet::decode(offers_proto::FILE_DESCRIPTOR_SET).expect("descriptors");
        let file = set.file.iter().find(|f| f.package() == "offers.errors.v1").expect("errors.proto");
        let enum_index = file.enum_type.iter().position(|e| e.name() == "ErrorCode").expect("ErrorCode");
        let comment = |value: usize| {
            // Source paths: 5 = enum_type, then its index, 2 = value, then its index.
            let path = [5, i32::try_from(enum_index).expect("index"), 2, i32::try_from(value).expect("index")];
            let info = file.source_code_info.as_ref().expect("source info");
            info.location.iter().find(|l| l.path == path).map(|l| l.leading_comments().to_string()).unwrap_or_default()
        };
        for (i, &code) in ErrorCode::ALL.iter().enumerate() {
            let doc = comment(i + 1);
            let grpc = crate::grpc::code_name(code.grpc());
            let expected = format!("`{code}`: {}. gRPC {grpc}, HTTP {}.", code.title(), code.http_status());
            assert!(doc.contains(&expected), "errors.proto documents {code} as {doc:?}, not {expected:?}");
        }
    }
}
