//! How the document describes errors: each operation lists the codes it
//! can answer (a type made by [`problems!`]), grouped by HTTP status, as
//! `application/problem+json` with the `Problem` schema narrowed to those
//! codes. Built from the kit's one code table, so a status, title or code
//! cannot drift from what the server sends.

use std::collections::BTreeMap;

use offers_kit::ErrorCode;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr, Response};

pub const PROBLEM_JSON: &str = "application/problem+json";

/// Missing, malformed or unverifiable bearer credentials.
pub const CREDENTIALS: &[ErrorCode] = &[ErrorCode::Unauthenticated, ErrorCode::InvalidToken];
/// A JSON body that cannot be read, or is too large.
pub const BODY: &[ErrorCode] = &[ErrorCode::InvalidRequest, ErrorCode::PayloadTooLarge];
/// What any call to the services behind the edge may end in.
pub const UPSTREAM: &[ErrorCode] = &[ErrorCode::Unavailable, ErrorCode::Timeout, ErrorCode::Internal];

/// Declares the problems an operation answers, as a type for
/// `#[utoipa::path(responses(...))]`: lists of codes (the sets above, or
/// `[Code, ...]`), joined.
macro_rules! problems {
    ($(#[$doc:meta])* $name:ident = $($set:expr),+ $(,)?) => {
        $(#[$doc])*
        pub struct $name;

        impl utoipa::IntoResponses for $name {
            fn responses() -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
                let sets: &[&[offers_kit::ErrorCode]] = &[$($set),+];
                $crate::problems::responses(&sets.concat())
            }
        }
    };
}
pub(crate) use problems;

/// One response per HTTP status among `codes`.
pub fn responses(codes: &[ErrorCode]) -> BTreeMap<String, RefOr<Response>> {
    let mut by_status: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for &code in codes {
        let same = by_status.entry(code.http_status()).or_default();
        if !same.contains(&code) {
            same.push(code);
        }
    }
    by_status.into_iter().map(|(status, codes)| (status.to_string(), RefOr::T(response(status, &codes)))).collect()
}

fn response(status: u16, codes: &[ErrorCode]) -> Response {
    let description = codes.iter().map(|c| format!("`{c}`: {}.", c.title())).collect::<Vec<_>>().join(" ");
    let narrowed = ObjectBuilder::new()
        .property("status", ObjectBuilder::new().schema_type(Type::Integer).enum_values(Some([status])))
        .property(
            "code",
            ObjectBuilder::new().schema_type(Type::String).enum_values(Some(codes.iter().map(|c| c.as_str()))),
        );
    let schema = AllOfBuilder::new().item(Ref::from_schema_name("Problem")).item(narrowed);
    let content = ContentBuilder::new().schema(Some(schema)).example(Some(example(codes[0]))).build();
    let mut response = ResponseBuilder::new().description(description).content(PROBLEM_JSON, content);
    if codes.iter().any(|c| matches!(c, ErrorCode::RateLimited | ErrorCode::Unavailable)) {
        let seconds = HeaderBuilder::new()
            .schema(Some(ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(1))))
            .description(Some("Seconds to wait before trying again (rate limits, a busy service)."))
            .build();
        response = response.header("Retry-After", seconds);
    }
    response.build()
}

/// A problem as the server would send it for `code`.
pub fn example(code: ErrorCode) -> serde_json::Value {
    serde_json::json!({
        "type": crate::error::type_uri(code),
        "title": code.title(),
        "status": code.http_status(),
        "detail": code.title(),
        "code": code.as_str(),
    })
}

/// The `Problem` component: RFC 9457 members and our `code`, any of the table's.
pub fn problem_schema() -> Schema {
    let string = |description: &str| ObjectBuilder::new().schema_type(Type::String).description(Some(description));
    let codes = ErrorCode::ALL.iter().map(|c| c.as_str());
    ObjectBuilder::new()
        .description(Some("RFC 9457 problem details; `code` is the stable machine code."))
        .property("type", string("`urn:offers:problem:` and the code.").pattern(Some("^urn:offers:problem:[a-z_]+$")))
        .property("title", string("The code's title."))
        .property("status", ObjectBuilder::new().schema_type(Type::Integer).minimum(Some(400)).maximum(Some(599)))
        .property("detail", string("What went wrong with this request (never a server fault's cause)."))
        .property("code", string("One of the stable error codes.").enum_values(Some(codes)))
        .required("type")
        .required("title")
        .required("status")
        .required("detail")
        .required("code")
        .examples([example(ErrorCode::NotFound)])
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_grouped_by_status_once_each() {
        let answers =
            responses(&[BODY, CREDENTIALS, &[ErrorCode::InvalidRequest, ErrorCode::InsufficientBalance]].concat());
        assert_eq!(answers.keys().map(String::as_str).collect::<Vec<_>>(), ["400", "401", "413"]);
        let RefOr::T(bad) = &answers["400"] else { panic!("inline") };
        assert_eq!(
            bad.description,
            "`invalid_request`: The request is not valid. `insufficient_balance`: The balance does not cover the price."
        );
        assert!(bad.content.contains_key(PROBLEM_JSON));
    }
}
