//! The REST/JSON edge: `/api/v1/...` translated to gRPC calls on the
//! public services, with the bearer token checked here first.

mod context;
mod error;
mod metrics;
mod openapi;
mod routes;
mod settings;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef};
use axum::http::{HeaderName, Request};
use axum::routing::get;
use offers_kit::grpc::Channel;
use offers_proto::account::v1::account_service_client::AccountServiceClient;
use offers_proto::activation::v1::activation_service_client::ActivationServiceClient;
use offers_proto::auth::v1::auth_service_client::AuthServiceClient;
use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
use offers_proto::partner::v1::partner_service_client::PartnerServiceClient;
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

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

#[derive(Clone, FromRef)]
struct AppState {
    upstreams: Upstreams,
    auth: EdgeAuth,
}

/// The whole edge: REST paths, OpenAPI, the process's operational paths
/// (`ops`: health, readiness, metrics), and the layers every request goes
/// through.
pub fn router(settings: &GatewaySettings, upstreams: Upstreams, auth: EdgeAuth, ops: Router) -> Router {
    let state = AppState { upstreams, auth };
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
    api.route("/api/v1/openapi.json", get(move || async move { axum::Json(doc) }))
        .merge(ops)
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
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
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}
