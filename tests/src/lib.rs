//! The end-to-end test harness: starts the whole suite in-process on random
//! local ports, on real PostgreSQL/Redis/RabbitMQ (a fresh database, key
//! prefix and queue prefix per test) or on the embedded backends, and talks
//! to it over HTTP and gRPC as clients do.

pub mod api;
pub mod backends;

use std::net::SocketAddr;

use offers::admin::AdminClient;
use offers::roles::Role;
use offers::suite::{Suite, SuiteOptions};
use offers_kit::config::Settings;
use offers_kit::token::generate_keypair;
use secrecy::SecretString;
use tonic::transport::Channel;

pub use api::{Api, Reply};
pub use backends::Backend;

pub struct TestSuite {
    pub backend: Backend,
    pub api: Api,
    pub settings: Settings,
    /// The suite's token-signing key, for forging tokens in tests.
    pub private_key_pem: String,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub internal_grpc_addr: SocketAddr,
    suite: Option<Suite>,
    _resources: backends::Resources,
}

impl TestSuite {
    /// A suite with demo data on `backend`, or `None` when that backend's
    /// services are not reachable outside CI (under CI that fails the test).
    pub async fn spawn(backend: Backend) -> Option<TestSuite> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestSuite> {
        init_logs();
        let resources = backends::Resources::provision(backend).await?;
        let mut settings = Settings::default();
        resources.apply(&mut settings);
        let (private_key_pem, public_key_pem) = generate_keypair().expect("key pair");
        settings.auth.private_key_pem = Some(SecretString::from(private_key_pem.clone()));
        settings.auth.public_key_pem = Some(public_key_pem);
        settings.internal.token = Some(SecretString::from(format!("test-{}", uuid::Uuid::new_v4())));
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);
        settings.shutdown_grace_secs = 2;
        configure(&mut settings);

        let suite = Suite::start(settings.clone(), SuiteOptions { roles: Role::ALL.to_vec(), migrate: true })
            .await
            .expect("suite starts");
        let grpc_addr = suite.grpc_addr.expect("gRPC listener");
        let internal_grpc_addr = suite.internal_grpc_addr.expect("internal listener");
        let http_addr = suite.http_addr;
        settings.upstream.auth = format!("http://{grpc_addr}");
        settings.upstream.catalog = format!("http://{grpc_addr}");
        settings.upstream.auth_internal = format!("http://{internal_grpc_addr}");
        settings.upstream.catalog_internal = format!("http://{internal_grpc_addr}");
        let this = TestSuite {
            backend,
            api: Api::new(http_addr),
            settings,
            private_key_pem,
            http_addr,
            grpc_addr,
            internal_grpc_addr,
            suite: Some(suite),
            _resources: resources,
        };
        let currency = this.settings.currency.clone();
        offers::dev::seed(&mut this.admin(), &currency).await.expect("demo data");
        Some(this)
    }

    /// An administrative client holding the service credential.
    pub fn admin(&self) -> AdminClient {
        let token = self.settings.internal_token().expect("internal token");
        AdminClient::connect(&self.settings, token).expect("admin client")
    }

    pub async fn public_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.grpc_addr)).expect("url").connect().await.expect("connect")
    }

    pub async fn internal_channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.internal_grpc_addr))
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub fn database(&self) -> &sea_orm::DatabaseConnection {
        self.suite.as_ref().and_then(|s| s.db.as_ref()).expect("database")
    }

    /// Logs in and returns the access token.
    pub async fn token(&self, username: &str) -> String {
        let reply = self.api.login(username, offers::dev::DEMO_PASSWORD).await;
        assert_eq!(reply.status, 200, "login of {username}: {}", reply.body);
        reply.str("access_token").to_string()
    }

    /// Stops the servers (the backend resources go when the suite drops).
    pub async fn stop(mut self) {
        if let Some(suite) = self.suite.take() {
            suite.stop().await;
        }
    }
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let telemetry = offers_kit::config::TelemetrySettings {
            log_filter: std::env::var("TEST_LOG").unwrap_or_else(|_| "info".into()),
            ..Default::default()
        };
        std::mem::forget(offers_kit::telemetry::init(&telemetry));
    }
}

/// Runs one scenario against both backends: `both!(name)` expects an
/// `async fn name(suite: &TestSuite)` in scope and makes the tests
/// `embedded::name` and `real::name`.
#[macro_export]
macro_rules! both {
    ($($name:ident),+ $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(suite) = $crate::TestSuite::spawn($crate::Backend::Embedded).await {
                        super::$name(&suite).await;
                        suite.stop().await;
                    }
                }
            )+
        }
        mod real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(suite) = $crate::TestSuite::spawn($crate::Backend::Real).await {
                        super::$name(&suite).await;
                        suite.stop().await;
                    }
                }
            )+
        }
    };
}
