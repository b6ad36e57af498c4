//! The OpenAPI document. REST paths are documented where they are routed
//! (utoipa-axum), so the document cannot list a path the gateway does not
//! serve or miss one it does; the operational paths are added here.

use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, PathsBuilder};
use utoipa::{Modify, OpenApi as _};

#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "Offers API", version = "1.0.0", description = "Buy and renew offers from a prepaid balance."),
    modifiers(&BearerAuth),
    tags((name = "auth"), (name = "offers"), (name = "activation"), (name = "account"), (name = "partner"), (name = "operations"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "partner_key",
            SecurityScheme::Http(
                Http::builder().scheme(HttpAuthScheme::Bearer).bearer_format("partner API key").build(),
            ),
        );
    }
}

pub const OPERATIONAL: [(&str, &str); 4] = [
    ("/healthz", "The process is up"),
    ("/readyz", "The dependencies this process needs are reachable"),
    ("/metrics", "Prometheus metrics"),
    ("/api/v1/openapi.json", "This document"),
];

pub fn base() -> OpenApi {
    ApiDoc::openapi()
}

/// Adds the operational GET paths to the routed ones.
pub fn with_operational(mut doc: OpenApi) -> OpenApi {
    let mut paths = PathsBuilder::new();
    for (path, summary) in OPERATIONAL {
        let operation = OperationBuilder::new()
            .summary(Some(summary))
            .tag("operations")
            .response("200", ResponseBuilder::new().description(summary).build())
            .build();
        paths = paths.path(path, PathItem::new(HttpMethod::Get, operation));
    }
    doc.paths.merge(paths.build());
    doc
}
