//! What a service contributes to a process: gRPC services for the public
//! listener, gRPC services for the internal listener, background tasks, and
//! (the edge only) the HTTP listener's routes.
//! Every service crate builds one of these; a process merges the parts of
//! the roles it runs and serves them.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;

use axum::response::IntoResponse;
use tokio_util::sync::CancellationToken;
use tonic::server::NamedService;
use tonic::service::Routes;

type Running = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Background work that runs until the process's shutdown token fires.
pub struct Task {
    pub name: &'static str,
    start: Box<dyn FnOnce(CancellationToken) -> Running + Send>,
}

impl Task {
    pub fn new<F, Fut>(name: &'static str, start: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self { name, start: Box::new(move |shutdown| Box::pin(start(shutdown))) }
    }

    pub fn start(self, shutdown: CancellationToken) -> impl Future<Output = ()> + Send {
        (self.start)(shutdown)
    }
}

/// The gRPC services of one listener, by name.
#[derive(Default)]
pub struct GrpcServices {
    router: axum::Router,
    names: Vec<&'static str>,
}

impl GrpcServices {
    /// Adds a generated tonic server.
    pub fn add<S>(&mut self, service: S)
    where
        S: tower::Service<http::Request<tonic::body::Body>, Error = Infallible, Response: IntoResponse>
            + NamedService
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
    {
        self.names.push(S::NAME);
        // A router without tonic's fallback, so that routers merge.
        let routes = Routes::from(axum::Router::new()).add_service(service);
        self.router = std::mem::take(&mut self.router).merge(routes.into_axum_router());
    }

    pub fn merge(&mut self, other: GrpcServices) {
        self.names.extend(other.names);
        self.router = std::mem::take(&mut self.router).merge(other.router);
    }

    /// The fully qualified names of the services, e.g. `offers.auth.v1.AuthService`.
    pub fn names(&self) -> &[&'static str] {
        &self.names
    }

    /// The services as tonic routes (answering UNIMPLEMENTED for anything else).
    pub fn into_routes(self) -> Routes {
        let mut routes = Routes::default();
        let fallback = std::mem::take(routes.axum_router_mut());
        *routes.axum_router_mut() = fallback.merge(self.router);
        routes
    }
}

/// One service's (or several roles') contribution to a process.
#[derive(Default)]
pub struct Parts {
    /// Served on the public listener, behind the access-token check.
    pub public: GrpcServices,
    /// Served on the internal listener, behind the service credential.
    pub internal: GrpcServices,
    pub tasks: Vec<Task>,
    /// What the HTTP listener serves, when more than the operational paths.
    pub http: Option<axum::Router>,
}

impl Parts {
    pub fn task<F, Fut>(mut self, name: &'static str, start: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks.push(Task::new(name, start));
        self
    }

    pub fn merge(&mut self, other: Parts) {
        self.public.merge(other.public);
        self.internal.merge(other.internal);
        self.tasks.extend(other.tasks);
        self.http = match (self.http.take(), other.http) {
            (Some(mine), Some(theirs)) => Some(mine.merge(theirs)),
            (mine, theirs) => mine.or(theirs),
        };
    }
}
