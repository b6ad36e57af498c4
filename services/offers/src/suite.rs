//! Builds and runs the roles of one process: the gRPC listeners (public and
//! internal), the HTTP listener, and what each role contributes to them.
//! `offers dev`, `offers serve` and the tests all start the suite here.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use offers_kit::bus::{self, SharedBus};
use offers_kit::cache::{self, SharedCache};
use offers_kit::config::Settings;
use offers_kit::credentials::{AccessTokenInterceptor, ServiceCredentialCheck};
use offers_kit::grpc::InternalChannel;
use offers_kit::ops::{self, BusCheck, CacheCheck, DatabaseCheck, Readiness};
use offers_kit::token::{TokenSigner, TokenVerifier, read_key};
use offers_proto::account::v1::ledger_service_client::LedgerServiceClient;
use offers_proto::activation::v1::activation_service_server::ActivationServiceServer;
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

use crate::clients::InternalClients;
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
    /// The settings in effect, with upstreams pointing at this process for
    /// the roles it runs.
    pub settings: Settings,
    pub http_addr: SocketAddr,
    pub grpc_addr: Option<SocketAddr>,
    pub internal_grpc_addr: Option<SocketAddr>,
    pub db: Option<DatabaseConnection>,
    pub cache: SharedCache,
    pub bus: Option<SharedBus>,
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
                (up.catalog, up.catalog_internal) = (public.clone(), internal.clone());
            }
            if has(Role::Account) {
                (up.account, up.account_internal) = (public.clone(), internal.clone());
            }
            if has(Role::Activation) {
                up.activation = public.clone();
            }
            if has(Role::Partner) {
                (up.partner, up.partner_internal) = (public, internal.clone());
            }
        }

        let db = if roles.iter().any(|r| r.needs_database()) {
            Some(connect_database(&settings, options.migrate).await?)
        } else {
            None
        };
        let cache = cache::from_settings(&settings.cache)?;
        let bus =
            if roles.iter().any(|r| r.needs_bus()) { Some(bus::from_settings(&settings.bus).await) } else { None };
        let verifier = verifier(&settings)?;
        let credential = settings.internal_token().context("internal.token (OFFERS_INTERNAL__TOKEN) is required")?;

        let mut readiness = Readiness::default().report(CacheCheck(cache.clone()));
        if let Some(bus) = &bus {
            readiness = readiness.report(BusCheck(bus.clone()));
        }
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
        if let (Some(db), Some(bus), true) = (&db, &bus, has(Role::Account)) {
            let account = offers_account::Account::new(
                db.clone(),
                cache.clone(),
                bus.clone(),
                settings.ledger.clone(),
                settings.currency.clone(),
            );
            let (public, ledger) = account.servers();
            services.public(public);
            services.internal(ledger);
            let stop = shutdown.clone();
            tasks.spawn(async move {
                account.run_background(stop).await;
                Ok(())
            });
        }
        let needs_clients = [Role::Activation, Role::Worker, Role::Partner, Role::Notifier, Role::Scheduler];
        if needs_clients.into_iter().any(has) {
            let clients = InternalClients::new(
                &settings,
                credential,
                Duration::from_millis(settings.gateway.upstream_timeout_ms),
            )?;
            if let (Some(db), Some(bus), true) = (&db, &bus, has(Role::Partner)) {
                let partner_clients = offers_partner::Clients {
                    users: clients.users.clone(),
                    catalog: clients.catalog.clone(),
                    ledger: clients.ledger.clone(),
                };
                let partners =
                    offers_partner::Partners::new(db.clone(), cache.clone(), settings.partner.clone(), partner_clients);
                let (public, admin) = offers_partner::servers(Arc::new(partners));
                services.public(public);
                services.internal(admin);
                let callbacks = offers_partner::CallbackWorker::new(db.clone(), bus.clone(), settings.partner.clone())?;
                let (bus, stop) = (bus.clone(), shutdown.clone());
                tasks.spawn(async move {
                    bus.consume(offers_kit::jobs::PARTNER_CALLBACK, Arc::new(callbacks), stop).await;
                    Ok(())
                });
            }
            if has(Role::Activation) {
                let activation = offers_activation::Activation {
                    catalog: clients.catalog.clone(),
                    ledger: clients.ledger.clone(),
                    cache: cache.clone(),
                };
                services.public(ActivationServiceServer::new(offers_activation::ActivationApi(Arc::new(activation))));
            }
            if let (Some(db), Some(bus), true) = (&db, &bus, has(Role::Notifier)) {
                let channels = offers_notifier::Channels::from_settings(&settings.notifier)?;
                let worker = offers_notifier::ReminderWorker {
                    db: db.clone(),
                    bus: bus.clone(),
                    users: clients.users.clone(),
                    channels,
                    settings: settings.notifier.clone(),
                };
                let (bus, stop) = (bus.clone(), shutdown.clone());
                tasks.spawn(async move {
                    bus.consume(offers_kit::jobs::REMINDER, Arc::new(worker), stop).await;
                    Ok(())
                });
            }
            if let (Some(db), Some(bus), true) = (&db, &bus, has(Role::Scheduler)) {
                let outbox = offers_kit::outbox::Outbox::new(offers_notifier::OUTBOX);
                let scheduler = scheduler(&settings, db.clone(), clients.ledger.clone(), outbox.clone());
                let relay = outbox.relay(
                    db.clone(),
                    bus.clone(),
                    Duration::from_millis(settings.ledger.relay_interval_ms),
                    shutdown.clone(),
                );
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    tokio::join!(relay, scheduler.run_daily(stop));
                    Ok(())
                });
            }
            if let (Some(bus), true) = (&bus, has(Role::Worker)) {
                tasks.spawn(run_worker(&settings, clients.ledger, bus.clone(), shutdown.clone())?);
            }
        }

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
            settings: settings.clone(),
            http_addr,
            grpc_addr,
            internal_grpc_addr,
            db,
            cache,
            bus,
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

/// The expiring-subscriptions scheduler over this process's connections.
pub fn scheduler(
    settings: &Settings,
    db: DatabaseConnection,
    ledger: LedgerServiceClient<InternalChannel>,
    outbox: offers_kit::outbox::Outbox,
) -> offers_notifier::Scheduler {
    offers_notifier::Scheduler::new(db, ledger, outbox, settings.notifier.clone())
}

/// The provisioning worker, consuming until shutdown.
fn run_worker(
    settings: &Settings,
    ledger: LedgerServiceClient<InternalChannel>,
    bus: SharedBus,
    shutdown: CancellationToken,
) -> anyhow::Result<impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static> {
    let p = &settings.provisioning;
    let url = p.url.as_deref().context("the worker needs provisioning.url (OFFERS_PROVISIONING__URL)")?;
    let provider = offers_activation::Provider::new(url, p.api_key.clone(), Duration::from_millis(p.timeout_ms))?;
    let worker = offers_activation::Worker { ledger, provider, settings: p.clone() };
    Ok(async move {
        bus.consume(offers_kit::jobs::PROVISION, Arc::new(worker), shutdown).await;
        Ok(())
    })
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

/// Serves the provisioning-system simulator on `addr` until `shutdown`.
pub async fn start_simulator(
    addr: SocketAddr,
    settings: &offers_kit::config::ProvisioningSettings,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = offers_activation::simulator::router(
        Duration::from_millis(settings.simulator_latency_ms),
        settings.simulator_failure_percent,
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "provisioning simulator failed");
        }
    });
    Ok(bound)
}
