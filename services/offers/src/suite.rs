//! Builds and runs the roles of one process: the gRPC listeners (public and
//! internal), the HTTP listener, and what each role contributes to them.
//! `offers dev`, `offers serve` and the tests all start the suite here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use offers_kit::cache::{self, SharedCache};
use offers_kit::config::Settings;
use offers_kit::credentials::{AccessTokenInterceptor, ServiceCredentialCheck};
use offers_kit::ops::{self, CacheCheck, DatabaseCheck, Readiness};
use offers_kit::token::{TokenSigner, TokenVerifier, read_key};
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::interceptor::InterceptedService;
use tonic::service::{Routes, RoutesBuilder};
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::migrator::Migrator;
use crate::roles::Role;

pub struct SuiteOptions {
    pub roles: Vec<Role>,
    /// Apply pending migrations before serving (dev and tests; production
    /// runs `offers migrate` as a separate step).
    pub migrate: bool,
}

/// A running process: its bound addresses and the handle to stop it.
pub struct Suite {
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub internal_grpc_addr: Option<SocketAddr>,
    pub db: Option<DatabaseConnection>,
    pub cache: SharedCache,
    shutdown: CancellationToken,
    health: Vec<(HealthReporter, Vec<&'static str>)>,
    tasks: JoinSet<anyhow::Result<()>>,
    grace: Duration,
}

/// The gRPC services a process serves, split by listener. Public services
/// see the caller's verified access token; internal ones admit only callers
/// with the service credential.
struct Services {
    token: AccessTokenInterceptor,
    credential: ServiceCredentialCheck,
    public: RoutesBuilder,
    public_names: Vec<&'static str>,
    internal: RoutesBuilder,
    internal_names: Vec<&'static str>,
}

/// What a generated tonic server is, as far as routing cares.
trait GrpcService:
    tower::Service<
        http::Request<tonic::body::Body>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + NamedService
    + Clone
    + Send
    + Sync
    + 'static
{
}

impl<S> GrpcService for S where
    S: tower::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + NamedService
        + Clone
        + Send
        + Sync
        + 'static
{
}

impl Services {
    fn new(token: AccessTokenInterceptor, credential: ServiceCredentialCheck) -> Self {
        Self {
            token,
            credential,
            public: RoutesBuilder::default(),
            public_names: Vec::new(),
            internal: RoutesBuilder::default(),
            internal_names: Vec::new(),
        }
    }

    fn public(&mut self, service: impl GrpcService) {
        self.public_names.push(name_of(&service));
        self.public.add_service(InterceptedService::new(service, self.token.clone()));
    }

    fn internal(&mut self, service: impl GrpcService) {
        self.internal_names.push(name_of(&service));
        self.internal.add_service(InterceptedService::new(service, self.credential.clone()));
    }
}

fn name_of<S: NamedService>(_: &S) -> &'static str {
    S::NAME
}

/// The access-token keys: every process verifies, only auth signs.
pub fn verifier(settings: &Settings) -> anyhow::Result<TokenVerifier> {
    let auth = &settings.auth;
    let pem = read_key(auth.public_key_pem.as_deref(), auth.public_key_file.as_deref(), "public")?;
    Ok(TokenVerifier::from_pem(&pem, &auth.issuer, &auth.audience)?)
}

fn signer(settings: &Settings) -> anyhow::Result<TokenSigner> {
    let auth = &settings.auth;
    let inline = auth.private_key_pem.as_ref().map(|s| s.expose_secret());
    let pem = read_key(inline, auth.private_key_file.as_deref(), "private")?;
    Ok(TokenSigner::from_pem(&pem, &auth.issuer, &auth.audience, auth.access_ttl_secs)?)
}

pub async fn connect_database(settings: &Settings, migrate: bool) -> anyhow::Result<DatabaseConnection> {
    let db = offers_kit::db::connect(&settings.database).await.with_context(|| {
        format!("cannot open the database {}", offers_kit::config::redacted_url(&settings.database.url))
    })?;
    if migrate {
        Migrator::up(&db, None).await.context("migrations failed")?;
    }
    Ok(db)
}

impl Suite {
    pub async fn start(mut settings: Settings, options: SuiteOptions) -> anyhow::Result<Suite> {
        settings.validate()?;
        let roles = options.roles;
        let has = |role: Role| roles.contains(&role);
        let serves_grpc = roles.iter().any(|r| r.serves_grpc());

        let http = TcpListener::bind(settings.http_addr)
            .await
            .with_context(|| format!("cannot listen on {}", settings.http_addr))?;
        let http_addr = http.local_addr()?;
        let (grpc, internal) = if serves_grpc {
            let grpc = TcpListener::bind(settings.grpc_addr)
                .await
                .with_context(|| format!("cannot listen on {}", settings.grpc_addr))?;
            let internal = TcpListener::bind(settings.internal_grpc_addr)
                .await
                .with_context(|| format!("cannot listen on {}", settings.internal_grpc_addr))?;
            (Some(grpc), Some(internal))
        } else {
            (None, None)
        };
        let grpc_addr = grpc.as_ref().map(TcpListener::local_addr).transpose()?;
        let internal_grpc_addr = internal.as_ref().map(TcpListener::local_addr).transpose()?;
        // Roles in this process reach each other over the listeners just bound.
        if let (Some(public), Some(internal)) = (grpc_addr, internal_grpc_addr) {
            let (public, internal) = (format!("http://{public}"), format!("http://{internal}"));
            let up = &mut settings.upstream;
            if has(Role::Auth) {
                (up.auth, up.auth_internal) = (public.clone(), internal.clone());
            }
            if has(Role::Catalog) {
                (up.catalog, up.catalog_internal) = (public, internal);
            }
        }

        let db = if roles.iter().any(|r| r.needs_database()) {
            Some(connect_database(&settings, options.migrate).await?)
        } else {
            None
        };
        let cache = cache::from_settings(&settings.cache)?;
        let verifier = verifier(&settings)?;
        let credential = settings.internal_token().context("internal.token (OFFERS_INTERNAL__TOKEN) is required")?;

        let mut readiness = Readiness::default().report(CacheCheck(cache.clone()));
        if let Some(db) = &db {
            readiness = readiness.require(DatabaseCheck(db.clone()));
        }

        let mut services =
            Services::new(AccessTokenInterceptor::new(verifier.clone()), ServiceCredentialCheck::new(credential));
        if let Some(db) = &db {
            if has(Role::Auth) {
                let auth = offers_auth::Auth::new(db.clone(), cache.clone(), signer(&settings)?, settings.auth.clone());
                let (public, admin) = offers_auth::servers(Arc::new(auth));
                services.public(public);
                services.internal(admin);
            }
            if has(Role::Catalog) {
                let catalog = offers_catalog::Catalog::new(db.clone(), cache.clone(), settings.currency.clone());
                let (public, admin) = offers_catalog::servers(Arc::new(catalog));
                services.public(public);
                services.internal(admin);
            }
        }

        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let mut health = Vec::new();
        if let (Some(grpc), Some(internal)) = (grpc, internal) {
            let (reporter, routes) = with_health_and_reflection(services.public, &services.public_names).await?;
            health.push((reporter, services.public_names));
            tasks.spawn(serve_grpc(grpc, routes, shutdown.clone()));
            let (reporter, routes) = with_health_and_reflection(services.internal, &services.internal_names).await?;
            health.push((reporter, services.internal_names));
            tasks.spawn(serve_grpc(internal, routes, shutdown.clone()));
        }

        let router = if has(Role::Gateway) {
            let upstreams = offers_gateway::Upstreams::from_settings(&settings)?;
            offers_gateway::router(&settings, upstreams, verifier, readiness)
        } else {
            ops::router(readiness)
        };
        let stop = shutdown.clone();
        tasks.spawn(async move {
            axum::serve(http, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
                .context("HTTP server failed")
        });

        Ok(Suite {
            http_addr,
            grpc_addr,
            internal_grpc_addr,
            db,
            cache,
            shutdown,
            health,
            tasks,
            grace: Duration::from_secs(settings.shutdown_grace_secs),
        })
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Waits until a server task fails or the suite is told to stop.
    pub async fn run_until_stopped(&mut self) -> anyhow::Result<()> {
        tokio::select! {
            () = self.shutdown.cancelled() => Ok(()),
            Some(done) = self.tasks.join_next() => {
                self.shutdown.cancel();
                done.context("a server task panicked")?.context("a server stopped")?;
                anyhow::bail!("a server stopped unexpectedly")
            }
        }
    }

    /// Marks every service NOT_SERVING, stops accepting work, and gives what
    /// is in flight the grace period to finish.
    pub async fn stop(mut self) {
        for (reporter, names) in &self.health {
            for name in names {
                reporter.set_service_status(*name, ServingStatus::NotServing).await;
            }
            reporter.set_service_status("", ServingStatus::NotServing).await;
        }
        self.shutdown.cancel();
        let drained = tokio::time::timeout(self.grace, async {
            while let Some(done) = self.tasks.join_next().await {
                if let Ok(Err(e)) = done {
                    tracing::warn!(error = %e, "task ended with an error during shutdown");
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!("grace period over; aborting what is still running");
            self.tasks.shutdown().await;
        }
    }
}

async fn with_health_and_reflection(
    mut routes: RoutesBuilder,
    names: &[&'static str],
) -> anyhow::Result<(HealthReporter, Routes)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    for name in names {
        reporter.set_service_status(*name, ServingStatus::Serving).await;
    }
    reporter.set_service_status("", ServingStatus::Serving).await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(offers_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    routes.add_service(health);
    routes.add_service(reflection);
    Ok((reporter, routes.routes()))
}

async fn serve_grpc(listener: TcpListener, routes: Routes, shutdown: CancellationToken) -> anyhow::Result<()> {
    let incoming = TcpListenerStream::new(listener);
    let trace = tower_http::trace::TraceLayer::new_for_grpc().make_span_with(|request: &http::Request<_>| {
        let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default();
        tracing::info_span!("grpc", path = %request.uri().path(), request_id = %id)
    });
    Server::builder()
        .accept_http1(true)
        .layer(trace)
        .layer(tonic_web::GrpcWebLayer::new())
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .context("gRPC server failed")
}
