//! The REST/JSON edge: `/api/v1/...` translated to gRPC calls on the
//! public services, with the bearer token checked here first.

mod bodies;
mod context;
mod error;
mod formats;
mod kept;
mod metrics;
mod openapi;
mod problems;
mod routes;
mod settings;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, Method, Request};
use axum::routing::get;
use offers_kit::cors::CorsPolicy;
use offers_kit::grpc::Channel;
use offers_proto::account::v1::account_service_client::AccountServiceClient;
use offers_proto::activation::v1::activation_service_client::ActivationServiceClient;
use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use offers_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tower_http::LatencyUnit;
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

pub use context::{EdgeAuth, REQUEST_ID};
pub use settings::GatewaySettings;

/// gRPC clients of the public services.
#[derive(Clone)]
pub struct Upstreams {
    pub auth: AuthServiceClient<Channel>,
    pub catalog: CatalogServiceClient<Channel>,
    pub account: AccountServiceClient<Channel>,
    pub activation: ActivationServiceClient<Channel>,
    pub partner: PartnerServiceClient<Channel>,
}

/// What browsers on an allowed origin may send to the REST paths and read
/// from their answers.
const CORS: CorsPolicy = CorsPolicy {
    methods: &[Method::GET, Method::POST],
    request_headers: &["authorization", "content-type", "idempotency-key", REQUEST_ID, "traceparent"],
    response_headers: &[REQUEST_ID, "retry-after", routes::STALE_HEADER],
};

/// Where the interactive documentation is served (Swagger UI, its assets
/// in the binary: it works offline).
pub const DOCS_PATH: &str = "/api/v1/docs";
const DOCUMENT_PATH: &str = "/api/v1/openapi.json";

/// Answers above this many bytes are compressed when the client accepts it.
const COMPRESS_ABOVE: u64 = 1024;

#[derive(Clone, FromRef)]
struct AppState {
    upstreams: Upstreams,
    auth: EdgeAuth,
    kept: kept::KeptPages,
}

/// The whole edge: REST paths, OpenAPI, the process's operational paths
/// (`ops`: health, readiness, metrics), and the layers every request goes
/// through.
pub fn router(settings: &GatewaySettings, upstreams: Upstreams, auth: EdgeAuth, ops: Router) -> Router {
    let state = AppState { upstreams, auth, kept: kept::KeptPages::default() };
    let (api, doc) = OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(routes::auth::login))
        .routes(routes!(routes::auth::refresh))
        .routes(routes!(routes::auth::logout))
        .routes(routes!(routes::auth::profile))
        .routes(routes!(routes::auth::jwks))
        .routes(routes!(routes::offers::list))
        .routes(routes!(routes::offers::get))
        .routes(routes!(routes::activation::renew))
        .routes(routes!(routes::activation::activate))
        .routes(routes!(routes::activation::status))
        .routes(routes!(routes::account::balance))
        .routes(routes!(routes::account::subscriptions))
        .routes(routes!(routes::account::update_subscription))
        .routes(routes!(routes::account::transactions))
        .routes(routes!(routes::account::transaction))
        .routes(routes!(routes::partner::activate))
        .routes(routes!(routes::partner::validate))
        .routes(routes!(routes::partner::callback))
        .routes(routes!(routes::partner::balance))
        .routes(routes!(routes::partner::transactions))
        .with_state(state)
        .split_for_parts();
    let doc = openapi::with_operational(doc);
    let request_id = HeaderName::from_static(REQUEST_ID);
    // The UI reads the document the edge serves, not a copy of its own.
    let docs = SwaggerUi::new(DOCS_PATH).config(Config::from(DOCUMENT_PATH).persist_authorization(true));
    let router = api
        .route(DOCUMENT_PATH, get(move || async move { axum::Json(doc) }))
        .merge(docs)
        .merge(ops)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        // Lists over a slow mobile link, for clients that accept gzip; a
        // small answer costs more to compress than it saves.
        .layer(CompressionLayer::new().compress_when(DefaultPredicate::new().and(SizeAbove::new(COMPRESS_ABOVE))))
        .layer(DefaultBodyLimit::max(settings.body_limit_bytes))
        .layer(axum::middleware::from_fn(metrics::record))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default();
            let span = tracing::info_span!("http", otel.name = %format!("{} {}", request.method(), request.uri().path()),
                    otel.kind = "server", method = %request.method(), path = %request.uri().path(), request_id = %id,
                    user_id = tracing::field::Empty);
            offers_kit::trace::continue_from_headers(&span, request.headers());
            span
        }).on_response(DefaultOnResponse::new().level(Level::INFO).latency_unit(LatencyUnit::Millis)))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid));
    // Outermost, so a preflight is answered before anything else looks at it.
    match settings.cors.layer(&CORS) {
        Some(cors) => router.layer(cors),
        None => router,
    }
}
