//! One running process: binds its listeners, connects what its roles need,
//! builds each role's parts and serves them until told to stop. `offers
//! dev`, `offers serve` and the tests all start processes here.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use offers_kit::Parts;
use offers_kit::audit::{AuditServer, Trail};
use offers_kit::bus::{self, SharedBus};
use offers_kit::cache::{self, SharedCache};
use offers_kit::cors::CorsPolicy;
use offers_kit::credentials::{PublicCheck, ServiceCredentialCheck};
use offers_kit::grpc::{KnownMethods, ServerLayer};
use offers_kit::parts::GrpcServices;
use sea_orm::DatabaseConnection;
use sea_orm_migration::MigratorTrait;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::{InterceptorLayer, Routes};
use tonic::transport::{Server, ServerTlsConfig};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::clients::InternalClients;
use crate::migrator::Migrator;
use crate::ops::{self, BusCheck, CacheCheck, DatabaseCheck, Gate, KeysCheck, Readiness};
use crate::roles::{Role, Shared, needs_of};
use crate::settings::Settings;

/// The histograms whose values are not a call's milliseconds, each with
/// the buckets its crate chose.
const HISTOGRAMS: &[offers_kit::telemetry::Buckets] =
    &[offers_activation::PROVIDER_CALL_HISTOGRAM, offers_account::SETTLE_HISTOGRAM];

/// A running process: its bound addresses and the handle to stop it.
pub struct Process {
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

async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))
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

impl Process {
    /// Starts `roles`; with `migrate`, applies pending migrations first (dev
    /// and tests; production runs `offers migrate` as a separate step).
    pub async fn start(settings: Settings, roles: &[Role], migrate: bool) -> anyhow::Result<Process> {
        Self::start_gated(settings, roles, migrate, None).await
    }

    /// Like [`Process::start`], but `/readyz` stays 503 until `gate` opens.
    pub async fn start_gated(
        mut settings: Settings,
        roles: &[Role],
        migrate: bool,
        gate: Option<Gate>,
    ) -> anyhow::Result<Process> {
        settings.check()?;
        // Metrics recorded before the first scrape must not be lost.
        offers_kit::telemetry::install_metrics(HISTOGRAMS);
        let needs = needs_of(roles);
        let listeners = Listeners::bind(&settings, needs.serves.is_some()).await?;
        listeners.point_home(&mut settings, roles);
        let credential =
            settings.internal_token().context("internal.token (OFFERS_INTERNAL__TOKEN) is required")?.to_string();
        let checks_tokens = needs.serves.is_some() || roles.contains(&Role::Gateway);
        let shared = connect(settings, needs, &credential, migrate, checks_tokens, gate).await?;
        let mut parts = Parts::default();
        for role in roles {
            parts.merge(role.build(&shared).await?);
        }
        // The edge serves the operational paths with the API; anything else
        // on the HTTP listener (the console) gets them added here.
        if !roles.contains(&Role::Gateway) {
            parts.http = parts.http.take().map(|http| http.merge(shared.ops.clone()));
        }
        // One audit service per process, over the trails of the roles it
        // runs (they share its database).
        let trails: Vec<_> = roles.iter().filter_map(|r| r.audit_trail()).collect();
        if !trails.is_empty() {
            let db = shared.db()?;
            let trails = trails.into_iter().map(|name| Trail::new(name, db.clone())).collect();
            parts.internal.add(AuditServer::new(trails).into_service());
        }
        let mut process = Process {
            grace: shared.settings.shutdown_grace,
            settings: shared.settings.clone(),
            http_addr: listeners.http_addr,
            grpc_addr: listeners.grpc_addrs.map(|(p, _)| p),
            internal_grpc_addr: listeners.grpc_addrs.map(|(_, i)| i),
            db: shared.db.clone(),
            cache: shared.cache.clone(),
            bus: shared.bus.clone(),
            shutdown: CancellationToken::new(),
            health: Vec::new(),
            tasks: JoinSet::new(),
        };
        let verifies = match checks_tokens {
            false => Verifies::Nothing,
            true if roles.contains(&Role::Auth) => Verifies::WithOwnKeys,
            true => Verifies::WithKeysFromAuth,
        };
        process.serve(listeners, parts, &shared, &credential, verifies).await?;
        Ok(process)
    }

    /// Runs the parts' tasks and serves them on the listeners; returns once
    /// the process can verify tokens (or has tried for a while). A process
    /// that gets its keys from another takes gRPC calls only once it has
    /// them (or gave up waiting): its listener is open from the start, and
    /// a call taken earlier would refuse a good token.
    async fn serve(
        &mut self,
        listeners: Listeners,
        parts: Parts,
        shared: &Shared,
        credential: &str,
        verifies: Verifies,
    ) -> anyhow::Result<()> {
        let Parts { public, internal, tasks: work, http: api } = parts;
        for task in work {
            let (name, stop) = (task.name, self.shutdown.clone());
            self.tasks.spawn(async move {
                task.start(stop).await;
                tracing::debug!(task = name, "stopped");
                Ok(())
            });
        }
        if let Some(db) = &shared.db {
            let (db, stop) = (db.clone(), self.shutdown.clone());
            self.tasks.spawn(async move {
                offers_kit::db::report_pool(db, Duration::from_secs(5), stop).await;
                Ok(())
            });
        }
        let router = api.unwrap_or_else(|| shared.ops.clone());
        self.tasks.spawn(serve_http(listeners.http, router, self.shutdown.clone()));
        let connector = shared.settings.tls.connector(Duration::from_secs(5))?;
        let auth = &shared.settings.upstream.auth;
        if verifies != Verifies::Nothing {
            crate::jwks::attach(&shared.verifier, &connector, auth)?;
            let verifier = shared.verifier.clone();
            let every = shared.settings.auth.jwks_refresh;
            let stop = self.shutdown.clone();
            self.tasks.spawn(async move {
                crate::jwks::refresh(verifier, every, stop).await;
                Ok(())
            });
        }
        let first_load = || crate::jwks::first_load(&shared.verifier, Duration::from_secs(5));
        if verifies == Verifies::WithKeysFromAuth {
            first_load().await;
        }
        if let Some((public_listener, internal_listener)) = listeners.grpc {
            let cors = shared.settings.grpc_web_cors.layer(&GRPC_WEB_CORS);
            let tls = shared.settings.tls.server()?;
            let serving = Serving { tls, cors, limits: ServerLimits::of(&shared.settings) };
            let names = public.names().to_vec();
            let (reporter, routes) = with_health_and_reflection(public).await?;
            self.health.push((reporter, names));
            let check = PublicCheck::new(shared.verifier.clone(), credential);
            let stop = self.shutdown.clone();
            self.tasks.spawn(serve_grpc(public_listener, routes, InterceptorLayer::new(check), serving.clone(), stop));
            let names = internal.names().to_vec();
            let (reporter, routes) = with_health_and_reflection(internal).await?;
            self.health.push((reporter, names));
            let check = ServiceCredentialCheck::new(credential);
            let stop = self.shutdown.clone();
            self.tasks.spawn(serve_grpc(internal_listener, routes, InterceptorLayer::new(check), serving, stop));
        }
        if verifies == Verifies::WithOwnKeys {
            first_load().await;
        }
        Ok(())
    }

    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Serves until SIGINT or SIGTERM (or a server fails), then stops.
    pub async fn run_until_signal(mut self) -> anyhow::Result<()> {
        let outcome = tokio::select! {
            result = self.run_until_stopped() => result,
            () = shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
        };
        self.stop().await;
        outcome
    }

    /// Waits until a server task fails or the process is told to stop.
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

/// Whether a process checks access tokens, and where its keys come from.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Verifies {
    Nothing,
    /// It runs the auth role: its own listener serves the key set.
    WithOwnKeys,
    WithKeysFromAuth,
}

/// The listeners of a process: HTTP always, the two gRPC ones when a role
/// serves gRPC.
struct Listeners {
    http: TcpListener,
    http_addr: SocketAddr,
    grpc: Option<(TcpListener, TcpListener)>,
    grpc_addrs: Option<(SocketAddr, SocketAddr)>,
}

impl Listeners {
    async fn bind(settings: &Settings, grpc: bool) -> anyhow::Result<Self> {
        let http = bind(settings.http_addr).await?;
        let http_addr = http.local_addr()?;
        let grpc = match grpc {
            true => Some((bind(settings.grpc_addr).await?, bind(settings.internal_grpc_addr).await?)),
            false => None,
        };
        let grpc_addrs = match &grpc {
            Some((public, internal)) => Some((public.local_addr()?, internal.local_addr()?)),
            None => None,
        };
        Ok(Self { http, http_addr, grpc, grpc_addrs })
    }

    /// Roles in this process reach each other over the listeners just
    /// bound, on loopback when they listen on every address (so with TLS
    /// the certificate names 127.0.0.1 or ::1, never 0.0.0.0).
    fn point_home(&self, settings: &mut Settings, roles: &[Role]) {
        let Some((public, internal)) = self.grpc_addrs else { return };
        let scheme = settings.tls.scheme();
        let public = format!("{scheme}://{}", reachable(public));
        let internal = format!("{scheme}://{}", reachable(internal));
        for service in roles.iter().filter_map(|r| r.needs().serves) {
            settings.upstream.serve_here(service, &public, &internal);
        }
    }
}

/// Connects what the roles need and says what makes the process ready:
/// the database (required), the cache and the bus (reported), the token
/// keys for a process that checks tokens, and `gate`.
async fn connect(
    settings: Settings,
    needs: crate::roles::Needs,
    credential: &str,
    migrate: bool,
    checks_tokens: bool,
    gate: Option<Gate>,
) -> anyhow::Result<Shared> {
    let db = if needs.database { Some(connect_database(&settings, migrate).await?) } else { None };
    let cache = cache::from_settings(&settings.cache)?;
    let bus = if needs.bus { Some(bus::from_settings(&settings.bus)?) } else { None };
    let clients = match needs.clients {
        true => Some(InternalClients::new(&settings, credential)?),
        false => None,
    };
    let mut readiness = Readiness::default().report(CacheCheck(cache.clone()));
    if let Some(gate) = gate {
        readiness = readiness.require(gate);
    }
    if let Some(bus) = &bus {
        readiness = readiness.report(BusCheck(bus.clone()));
    }
    if let Some(db) = &db {
        readiness = readiness.require(DatabaseCheck(db.clone()));
    }
    let verifier = settings.auth.verifier();
    if checks_tokens {
        readiness = readiness.require(KeysCheck(verifier.clone()));
    }
    Ok(Shared { verifier, settings, db, cache, bus, clients, ops: ops::router(readiness) })
}

async fn serve_http(listener: TcpListener, router: axum::Router, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("HTTP server failed")
}

/// SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => drop(signal.recv().await),
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

/// Where this process reaches a listener of its own.
fn reachable(bound: SocketAddr) -> SocketAddr {
    match bound.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => SocketAddr::new(Ipv4Addr::LOCALHOST.into(), bound.port()),
        IpAddr::V6(ip) if ip.is_unspecified() => SocketAddr::new(Ipv6Addr::LOCALHOST.into(), bound.port()),
        _ => bound,
    }
}

/// Every descriptor reflection serves: ours, health's, both reflection
/// versions' (each version lists the other, so a client must be able to
/// describe both), and `google.rpc`'s error details, which every failure of
/// ours carries (`ErrorInfo`, `RetryInfo`) and a client must decode.
const DESCRIPTOR_SETS: [&[u8]; 5] = [
    offers_proto::FILE_DESCRIPTOR_SET,
    tonic_health::pb::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
    tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    tonic_types::pb::FILE_DESCRIPTOR_SET,
];

/// The methods a listener may be labelled with in metrics: what the
/// descriptors it serves define.
fn known_methods() -> anyhow::Result<KnownMethods> {
    KnownMethods::from_descriptor_sets(&DESCRIPTOR_SETS).context("the served descriptor sets do not decode")
}

/// A listener's services with gRPC health (each SERVING) and reflection
/// that describes exactly what the listener serves (v1 and v1alpha).
async fn with_health_and_reflection(services: GrpcServices) -> anyhow::Result<(HealthReporter, Routes)> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let names = services.names().to_vec();
    for name in &names {
        reporter.set_service_status(*name, ServingStatus::Serving).await;
    }
    reporter.set_service_status("", ServingStatus::Serving).await;
    let reflection = || {
        let mut builder = DESCRIPTOR_SETS
            .iter()
            .fold(tonic_reflection::server::Builder::configure(), |builder, set| {
                builder.register_encoded_file_descriptor_set(set)
            })
            .with_service_name("grpc.health.v1.Health")
            .with_service_name("grpc.reflection.v1.ServerReflection")
            .with_service_name("grpc.reflection.v1alpha.ServerReflection");
        for name in &names {
            builder = builder.with_service_name(*name);
        }
        builder
    };
    let mut routes = services.into_routes();
    routes =
        routes.add_service(health).add_service(reflection().build_v1()?).add_service(reflection().build_v1alpha()?);
    Ok((reporter, routes))
}

/// What browsers on an allowed origin may send over gRPC-Web and read
/// back (the status and its details arrive as trailers the script reads).
const GRPC_WEB_CORS: CorsPolicy = CorsPolicy {
    methods: &[http::Method::POST],
    request_headers: &[
        "authorization",
        "content-type",
        "x-grpc-web",
        "x-user-agent",
        "grpc-timeout",
        "idempotency-key",
        "x-request-id",
        "traceparent",
    ],
    response_headers: &[
        "grpc-status",
        "grpc-message",
        "grpc-status-details-bin",
        offers_kit::error::CODE_METADATA,
        offers_kit::error::RETRY_AFTER_METADATA,
        offers_kit::grpc::STALE_METADATA,
        "x-request-id",
    ],
};

/// How a gRPC listener serves: TLS, cross-origin access for gRPC-Web, and
/// the bounds on calls and connections.
#[derive(Clone)]
struct Serving {
    tls: Option<ServerTlsConfig>,
    cors: Option<tower_http::cors::CorsLayer>,
    limits: ServerLimits,
}

#[derive(Clone, Copy)]
struct ServerLimits {
    call: Duration,
    connection_age: Duration,
}

impl ServerLimits {
    fn of(settings: &Settings) -> Self {
        Self { call: settings.call_timeout, connection_age: settings.max_connection_age }
    }
}

async fn serve_grpc<I>(
    listener: TcpListener,
    routes: Routes,
    check: InterceptorLayer<I>,
    serving: Serving,
    shutdown: CancellationToken,
) -> anyhow::Result<()>
where
    I: tonic::service::Interceptor + Clone + Send + Sync + 'static,
{
    let incoming = TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(tcp) = &accepted
            && let Err(e) = tcp.set_nodelay(true)
        {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        accepted
    });
    let mut server = Server::builder();
    if let Some(tls) = serving.tls {
        server = server.tls_config(tls).context("the TLS configuration is not usable")?;
    }
    // Clients balance over replicas when they connect: ageing connections
    // out makes a long-lived client spread again after a scale-up.
    server
        .max_connection_age(serving.limits.connection_age)
        .max_connection_age_grace(Duration::from_secs(30))
        .accept_http1(true)
        .layer(ServerLayer::new(serving.limits.call, known_methods()?))
        // Before gRPC-Web and the credential check: a preflight carries neither.
        .layer(tower::util::option_layer(serving.cors))
        .layer(tonic_web::GrpcWebLayer::new())
        .layer(check)
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled_owned())
        .await
        .context("gRPC server failed")
}
