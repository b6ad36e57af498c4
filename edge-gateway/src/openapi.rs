//! The OpenAPI document. REST paths are documented where they are routed
//! (utoipa-axum), so the document cannot list a path the gateway does not
//! serve or miss one it does; the operational paths, the security schemes
//! and the shared components are added here.

use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, PathsBuilder, RefOr};
use utoipa::{Modify, OpenApi as _};

use crate::formats::{Cursor, Id, Reference, RefreshToken};
use crate::problems;

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Offers API", version = "1.0.0", description = "Buy and renew offers from a prepaid balance.

Errors are RFC 9457 `application/problem+json` documents whose `code` is stable; each operation lists \
the codes it can answer under the HTTP status they come with. Users send an access token from \
`POST /api/v1/auth/login/` (scheme `bearer`); partners send their API key the same way (scheme \
`partner_key`). Money moves only on `POST`s that take an `Idempotency-Key`: retry with the same key."),
    components(schemas(Id, Cursor, Reference, RefreshToken)),
    modifiers(&Components),
    tags((name = "auth"), (name = "offers"), (name = "activation"), (name = "account"), (name = "partner"), (name = "operations"))
)]
pub struct ApiDoc;

struct Components;

impl Modify for Components {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        // Partners present their key as a bearer credential too (context.rs):
        // `Authorization: Bearer <key>`.
        let schemes = [
            ("bearer", "JWT", "A user's access token (`POST /api/v1/auth/login/`), valid 15 minutes."),
            (
                "partner_key",
                "partner API key",
                "A partner's API key, issued by an operator (`offers admin partner key create`).",
            ),
        ];
        for (name, format, description) in schemes {
            let scheme = Http::builder()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format(format)
                .description(Some(description))
                .build();
            components.add_security_scheme(name, SecurityScheme::Http(scheme));
        }
        components.schemas.insert("Problem".into(), RefOr::T(problems::problem_schema()));
    }
}

/// An operational path: its summary, and what each status answers in
/// which content type.
struct Operational {
    path: &'static str,
    summary: &'static str,
    answers: &'static [(&'static str, &'static str, &'static str)],
}

const OPERATIONS: [Operational; 4] = [
    Operational {
        path: "/healthz",
        summary: "The process is up",
        answers: &[("200", "application/json", "`{\"status\": \"ok\"}`")],
    },
    Operational {
        path: "/readyz",
        summary: "The dependencies this process needs are reachable",
        answers: &[
            ("200", "application/json", "Ready, with each check's outcome"),
            ("503", "application/json", "Not ready, with each check's outcome"),
        ],
    },
    Operational {
        path: "/metrics",
        summary: "Prometheus metrics",
        answers: &[("200", "text/plain", "The Prometheus text format")],
    },
    Operational {
        path: "/api/v1/openapi.json",
        summary: "This document",
        answers: &[("200", "application/json", "OpenAPI 3.1")],
    },
];

pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Adds the operational GET paths to the routed ones.
pub fn with_operational(mut doc: OpenApi) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for op in OPERATIONS {
        let mut responses = ResponsesBuilder::new();
        for (status, content_type, description) in op.answers {
            let body = match *content_type {
                "text/plain" => ObjectBuilder::new().schema_type(Type::String),
                _ => ObjectBuilder::new().schema_type(Type::Object),
            };
            let content = ContentBuilder::new().schema(Some(body)).build();
            responses = responses
                .response(*status, ResponseBuilder::new().description(*description).content(*content_type, content));
        }
        let operation = OperationBuilder::new()
            .summary(Some(op.summary))
            .operation_id(Some(op.path.trim_matches('/').replace(['/', '.'], "_")))
            .tag("operations")
            .responses(responses.build())
            .build();
        paths = paths.path(op.path, PathItem::new(HttpMethod::Get, operation));
    }
    doc.paths.merge(paths.build());
    doc
}
