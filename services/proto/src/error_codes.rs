//! Every error a client can see, as one table: the stable wire code, the
//! gRPC code, the HTTP status and the title. The codes are part of the
//! contract (`offers.errors.v1.ErrorCode` documents them for clients built
//! from the protos), so they live with the contracts; the kit only carries
//! them and maps them onto statuses and problems.

use std::fmt;

use tonic::Code;

macro_rules! error_codes {
    ($($variant:ident => ($code:literal, $grpc:ident, $http:literal, $title:literal)),+ $(,)?) => {
        /// Every error a client can see, with its wire code, gRPC code, HTTP
        /// status and title. This table is the documentation of the codes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { $($variant),+ }

        impl ErrorCode {
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code),+ }
            }
            pub fn grpc(self) -> Code {
                match self { $(ErrorCode::$variant => Code::$grpc),+ }
            }
            pub fn http_status(self) -> u16 {
                match self { $(ErrorCode::$variant => $http),+ }
            }
            pub fn title(self) -> &'static str {
                match self { $(ErrorCode::$variant => $title),+ }
            }
            pub fn parse(code: &str) -> Option<Self> {
                match code { $($code => Some(ErrorCode::$variant),)+ _ => None }
            }
            /// A fault of the server or of what it depends on, as opposed to
            /// a caller's mistake: only these are logged as errors.
            pub fn is_fault(self) -> bool {
                self.http_status() >= 500
            }
        }
    };
}

error_codes! {
    InvalidRequest => ("invalid_request", InvalidArgument, 400, "The request is not valid"),
    InvalidId => ("invalid_id", InvalidArgument, 400, "The id is malformed"),
    NotFound => ("not_found", NotFound, 404, "Not found"),
    InvalidCredentials => ("invalid_credentials", Unauthenticated, 401, "Invalid username or password"),
    InvalidToken => ("invalid_token", Unauthenticated, 401, "The token is invalid, expired or revoked"),
    Unauthenticated => ("unauthenticated", Unauthenticated, 401, "Authentication required"),
    PermissionDenied => ("permission_denied", PermissionDenied, 403, "Not allowed"),
    RateLimited => ("rate_limited", ResourceExhausted, 429, "Too many requests"),
    PayloadTooLarge => ("payload_too_large", InvalidArgument, 413, "The request body is too large"),
    MethodNotAllowed => ("method_not_allowed", Unimplemented, 405, "Method not allowed"),
    InsufficientBalance => ("insufficient_balance", FailedPrecondition, 400, "The balance does not cover the price"),
    InsufficientPartnerFunds => ("insufficient_partner_funds", FailedPrecondition, 400, "The partner's account does not cover the price"),
    OfferInactive => ("offer_inactive", FailedPrecondition, 400, "The offer is not available"),
    CurrencyMismatch => ("currency_mismatch", FailedPrecondition, 400, "The currencies do not match"),
    IdempotencyKeyReused => ("idempotency_key_reused", FailedPrecondition, 422, "The idempotency key was used with a different request"),
    InvalidUser => ("invalid_user", InvalidArgument, 400, "The user does not exist or is not active"),
    InvalidOffer => ("invalid_offer", InvalidArgument, 400, "The offer does not exist or is not active"),
    AmountMismatch => ("amount_mismatch", InvalidArgument, 400, "The amount does not equal the offer's price"),
    AlreadyExists => ("already_exists", AlreadyExists, 409, "Already exists"),
    Conflict => ("conflict", Aborted, 409, "The request conflicts with the current state"),
    Unavailable => ("service_unavailable", Unavailable, 503, "The service cannot answer now; try again"),
    Timeout => ("timeout", DeadlineExceeded, 504, "A dependency did not answer in time"),
    Internal => ("internal", Internal, 500, "Internal error"),
    InvalidRecipient => ("invalid_recipient", InvalidArgument, 400, "The recipient is not another active user"),
    GiftLimitReached => ("gift_limit_reached", ResourceExhausted, 429, "The daily number of gifts is reached"),
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
