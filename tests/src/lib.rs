//! The end-to-end test harness: starts the whole suite in-process on random
//! local ports, on real PostgreSQL/Redis/RabbitMQ (a fresh database, key
//! prefix and queue prefix per test) or on the embedded backends, and talks
//! to it over HTTP and gRPC as clients do.

pub mod api;
pub mod backends;
pub mod provider;

use std::net::SocketAddr;

use offers::admin::AdminClient;
use offers::process::Process;
use offers::roles::Role;
use offers::settings::Settings;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub use api::{Api, Reply};
pub use backends::Backend;

/// A purchase by the demo user, and what the test needs to check it.
pub struct Bought {
    pub token: String,
    /// The balance before the purchase.
    pub before: i64,
    pub offer: String,
    pub reply: Reply,
}

pub struct TestSuite {
    pub backend: Backend,
    pub api: Api,
    /// The settings in effect (upstreams point at this suite).
    pub settings: Settings,
    /// The suite's token-signing key, for forging tokens in tests.
    pub private_key_pem: String,
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub internal_grpc_addr: SocketAddr,
    base: Settings,
    suite: Option<Process>,
    simulator: CancellationToken,
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
        // The embedded mode's settings in the test's scratch directory (keys,
        // credential, reminder sink, the demo partner's preset key, callbacks
        // to local servers), on the backend under test.
        let mut settings = Settings::default().embedded(&resources.scratch_dir()).expect("embedded settings");
        resources.apply(&mut settings);
        // The first signing key is ours, so tests can forge tokens with it.
        let (private_key_pem, _) = offers_kit::token::generate_keypair().expect("key pair");
        settings.auth.private_key_pem = Some(secrecy::SecretString::from(private_key_pem.clone()));
        settings.auth.jwks_refresh_secs = 1;
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);
        settings.shutdown_grace_secs = 2;
        // Tests wait for retries and the reconciler; keep both quick.
        settings.provisioning.timeout_ms = 1_000;
        settings.provisioning.retry_base_ms = 50;
        settings.provisioning.retry_max_ms = 200;
        settings.ledger.attempt_lease_secs = 2;
        settings.ledger.pending_deadline_secs = 3;
        settings.ledger.reconcile_interval_ms = 250;
        settings.ledger.relay_interval_ms = 100;
        let simulator = CancellationToken::new();
        let sim = offers::dev::start_simulator(&settings, simulator.clone()).await.expect("simulator");
        settings.provisioning.url = Some(format!("http://{sim}"));
        settings.notifier.retry_base_ms = 50;
        settings.notifier.retry_max_ms = 200;
        configure(&mut settings);

        let suite = start(&settings).await;
        let this = TestSuite {
            backend,
            api: Api::new(suite.http_addr),
            settings: suite.settings.clone(),
            private_key_pem,
            http_addr: suite.http_addr,
            grpc_addr: suite.grpc_addr.expect("gRPC listener"),
            internal_grpc_addr: suite.internal_grpc_addr.expect("internal listener"),
            base: settings,
            suite: Some(suite),
            simulator,
            _resources: resources,
        };
        let currency = this.settings.currency.clone();
        offers::dev::seed(&mut this.admin(), &currency).await.expect("demo data");
        Some(this)
    }

    /// Kills the running suite at once — no grace, no acks, as a crash would
    /// — and starts a new one on the same database, cache and bus.
    pub async fn crash_and_restart(&mut self) {
        drop(self.suite.take());
        let suite = start(&self.base).await;
        self.api = Api::new(suite.http_addr);
        self.settings = suite.settings.clone();
        self.http_addr = suite.http_addr;
        self.grpc_addr = suite.grpc_addr.expect("gRPC listener");
        self.internal_grpc_addr = suite.internal_grpc_addr.expect("internal listener");
        self.suite = Some(suite);
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

    fn running(&self) -> &Process {
        self.suite.as_ref().expect("running suite")
    }

    pub fn database(&self) -> &sea_orm::DatabaseConnection {
        self.running().db.as_ref().expect("database")
    }

    pub fn bus(&self) -> offers_kit::bus::SharedBus {
        self.running().bus.clone().expect("bus")
    }

    /// Logs in and returns the access token.
    pub async fn token(&self, username: &str) -> String {
        let reply = self.api.login(username, offers::dev::DEMO_PASSWORD).await;
        assert_eq!(reply.status, 200, "login of {username}: {}", reply.body);
        reply.str("access_token").to_string()
    }

    /// A new user with `balance` minor units, logged in.
    pub async fn user_with_balance(&self, balance: i64) -> (String, String) {
        let username = format!("u{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut admin = self.admin();
        let request = offers_proto::auth::v1::CreateUserRequest {
            username: username.clone(),
            password: offers::dev::DEMO_PASSWORD.into(),
            email: format!("{username}@example.com"),
            ..Default::default()
        };
        let offers::admin::Created::New(user) = admin.create_user(request).await.expect("user") else {
            panic!("user exists")
        };
        if balance > 0 {
            admin
                .credit(&user.id, balance, &self.settings.currency, &format!("test:{username}"), "test")
                .await
                .expect("credit");
        }
        (user.id, self.token(&username).await)
    }

    pub async fn offer_id(&self, token: &str, code: &str) -> String {
        let list = self.api.get("/api/v1/offers/", Some(token)).await;
        let offers = list.body["results"].as_array().expect("results");
        let offer = offers.iter().find(|o| o["code"] == code).unwrap_or_else(|| panic!("no offer {code}"));
        offer["id"].as_str().expect("id").to_string()
    }

    pub async fn balance(&self, token: &str) -> i64 {
        let reply = self.api.get("/api/v1/account/balance/", Some(token)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["balance"].as_i64().expect("balance")
    }

    /// The demo user buys the offer `code`.
    pub async fn demo_buys(&self, code: &str) -> Bought {
        let token = self.token("demo").await;
        let before = self.balance(&token).await;
        let offer = self.offer_id(&token, code).await;
        let reply = self.activate(&token, &offer).await;
        Bought { token, before, offer, reply }
    }

    pub async fn activate(&self, token: &str, offer_id: &str) -> Reply {
        self.api.post("/api/v1/activation/", Some(token), &serde_json::json!({ "offer_id": offer_id })).await
    }

    /// Polls the status endpoint until the transaction leaves PENDING.
    pub async fn settled(&self, token: &str, transaction_id: &str) -> Reply {
        let path = format!("/api/v1/activation/status/{transaction_id}/");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let reply = self.api.get(&path, Some(token)).await;
            assert_eq!(reply.status, 200, "{}", reply.body);
            if reply.body["status"] != "PENDING" {
                return reply;
            }
            assert!(tokio::time::Instant::now() < deadline, "{transaction_id} still PENDING after 60 s");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The transaction as its owner's transaction list shows it.
    pub async fn transaction(&self, token: &str, transaction_id: &str) -> serde_json::Value {
        let reply = self.api.get(&format!("/api/v1/account/transactions/{transaction_id}/"), Some(token)).await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body
    }

    /// The books balance, by the same check `offers admin ledger check`
    /// runs: the accounts sum to zero, each user and partner account equals
    /// its transfers and is within its limit, and every transaction's
    /// transfers match its state.
    pub async fn assert_ledger_invariant(&self) {
        let books = self.admin().check_ledger().await.expect("ledger check");
        assert!(books.violations.is_empty(), "the ledger is not balanced: {:#?}", books.violations);
        assert_eq!(books.sum, 0, "the accounts do not sum to zero");
        assert!(books.totals.len() >= 3, "the system accounts are missing: {:?}", books.totals);
    }

    /// The operator's recorded decision on a transaction: (outcome, actor).
    pub async fn resolution(&self, transaction_id: &str) -> (String, String) {
        use sea_orm::ConnectionTrait;
        use sea_orm::sea_query::{Expr, ExprTrait, Query};
        let id = uuid::Uuid::parse_str(transaction_id).expect("uuid");
        let select = Query::select()
            .columns(["outcome", "actor"])
            .from("account_resolutions")
            .and_where(Expr::col("transaction_id").eq(id))
            .to_owned();
        let row = self.database().query_one(&select).await.expect("query").expect("a resolution");
        (row.try_get("", "outcome").expect("outcome"), row.try_get("", "actor").expect("actor"))
    }

    /// Runs the one-shot expiring-subscriptions job as of `at`.
    pub async fn expiring_subscriptions(
        &self,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Option<offers_notifier::RunReport> {
        let token = self.settings.internal_token().expect("internal token");
        offers::cron::expiring_subscriptions(&self.settings, token, at).await.expect("job runs")
    }

    /// Stops the servers (the backend resources go when the suite drops).
    pub async fn stop(mut self) {
        if let Some(suite) = self.suite.take() {
            suite.stop().await;
        }
        self.simulator.cancel();
    }
}

async fn start(settings: &Settings) -> Process {
    Process::start(settings.clone(), Role::ALL, true).await.expect("suite starts")
}

fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let telemetry = offers_kit::telemetry::TelemetrySettings {
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
                        suite.assert_ledger_invariant().await;
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
                        suite.assert_ledger_invariant().await;
                        suite.stop().await;
                    }
                }
            )+
        }
    };
}

/// Runs scenarios that set up their own suite on both backends:
/// `each_backend!(name)` expects an `async fn name(backend: Backend)` in
/// scope (which asserts the ledger invariant itself) and makes the tests
/// `each_embedded::name` and `each_real::name`.
#[macro_export]
macro_rules! each_backend {
    ($($name:ident),+ $(,)?) => {
        mod each_embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Embedded).await;
                }
            )+
        }
        mod each_real {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Real).await;
                }
            )+
        }
    };
}
