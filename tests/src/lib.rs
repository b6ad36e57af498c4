//! The end-to-end test harness: starts the whole suite in-process on random
//! local ports, on real PostgreSQL/Redis/RabbitMQ (a fresh database, key
//! prefix and queue prefix per test) or on the embedded backends, or as
//! separate `offers serve <role>` processes (the production shape, on the
//! real backends), and talks to it over HTTP and gRPC as clients do.

pub mod api;
pub mod backends;
pub mod chaos;
pub mod console;
pub mod faults;
pub mod provider;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use offers::admin::AdminClient;
use offers::process::Process;
use offers::roles::Role;
use offers::settings::Settings;
use offers_harness::local::{Deployment, Plan, Replicas};
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
    /// The gRPC listeners (in a deployment, the auth process's).
    pub grpc_addr: SocketAddr,
    pub internal_grpc_addr: SocketAddr,
    base: Settings,
    suite: Option<Running>,
    db: sea_orm::DatabaseConnection,
    bus: offers_kit::bus::SharedBus,
    simulator: CancellationToken,
    resources: backends::Resources,
}

/// What runs the suite under test.
enum Running {
    /// Every role in this test's process.
    InProcess(Process),
    /// One process per role (and replicas), as in production.
    Processes(Deployment),
}

static BINARY: OnceLock<PathBuf> = OnceLock::new();

/// Cargo, without what `cargo test` and `cargo run` set for the program
/// they run: build scripts that watch those variables (ring's watches
/// `CARGO_PKG_NAME`) would otherwise run again, and everything above them
/// be rebuilt, on every switch between the outer and the inner build.
/// Who the audit trail says made what the tests set up.
pub const TEST_ACTOR: &str = "test-suite";

pub fn cargo() -> std::process::Command {
    outside_cargo(std::process::Command::new(env!("CARGO")))
}

/// `command` without the variables cargo set for this test program (see
/// [`cargo`]), as a user's shell would run it.
pub fn outside_cargo(mut command: std::process::Command) -> std::process::Command {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_for_the_program = ["CARGO_PKG_", "CARGO_MANIFEST_", "CARGO_BIN_", "CARGO_CRATE_", "CARGO_PRIMARY_"]
            .iter()
            .any(|prefix| name.starts_with(prefix))
            || name == "CARGO_TARGET_TMPDIR"
            || name == "OUT_DIR";
        if set_for_the_program {
            command.env_remove(name.as_ref());
        }
    }
    command
}

/// Makes the process suites start `binary` (the benchmark's release build)
/// instead of the debug build; only before the first one starts.
pub fn use_offers_binary(binary: PathBuf) -> bool {
    BINARY.set(binary).is_ok()
}

/// The `offers` binary the process tests start: `TEST_OFFERS_BIN` (not
/// `OFFERS_…`: the processes read those as settings), or this workspace's
/// debug build, brought up to date once per test run.
pub fn offers_binary() -> PathBuf {
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("TEST_OFFERS_BIN") {
                return PathBuf::from(path);
            }
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let built = cargo()
                .args(["build", "--quiet", "-p", "offers-cli", "--bin", "offers"])
                .current_dir(&workspace)
                .status()
                .expect("cargo runs");
            assert!(built.success(), "could not build the offers binary");
            let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
            target.join("debug").join("offers")
        })
        .clone()
}

/// `offers dev` as a newcomer starts it, in a process of its own (so its
/// `/metrics` is its alone): free ports, a scratch data directory; killed
/// and its directory removed when dropped.
pub struct DevProcess {
    child: std::process::Child,
    pub dir: PathBuf,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub internal_grpc: SocketAddr,
}

impl DevProcess {
    /// Started, once `/readyz` answers 200.
    pub async fn start() -> DevProcess {
        let dir = std::env::temp_dir().join(format!("offers-dev-{}", uuid::Uuid::new_v4().simple()));
        let port = || offers_harness::local::free_port().expect("a free port");
        let (http, grpc, internal_grpc) = (port(), port(), port());
        let child = std::process::Command::new(offers_binary())
            .arg("dev")
            .args(["--http", &http.to_string(), "--grpc", &grpc.to_string()])
            .args(["--internal-grpc", &internal_grpc.to_string(), "--data-dir"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("offers dev starts");
        let mut dev = DevProcess { child, dir, http, grpc, internal_grpc };
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        while offers_harness::local::http_status(http, "/readyz").await != Some(200) {
            assert!(dev.child.try_wait().expect("status").is_none(), "offers dev exited");
            assert!(tokio::time::Instant::now() < deadline, "offers dev never became ready");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        dev
    }

    /// The service credential it made for itself.
    pub fn internal_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("internal-token")).expect("the credential").trim().to_string()
    }
}

impl Drop for DevProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl TestSuite {
    /// A suite with demo data on `backend`, or `None` when that backend's
    /// services are not reachable outside CI (under CI that fails the test).
    pub async fn spawn(backend: Backend) -> Option<TestSuite> {
        Self::spawn_with(backend, |_| {}).await
    }

    pub async fn spawn_with(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<TestSuite> {
        let (prepared, settings) = prepare(backend, configure).await?;
        let suite = start(&settings).await;
        let db = suite.db.clone().expect("database");
        let bus = suite.bus.clone().expect("bus");
        let (http, grpc) = (suite.http_addr, suite.grpc_addr.expect("gRPC listener"));
        let internal = suite.internal_grpc_addr.expect("internal listener");
        let listeners = (http, grpc, internal);
        let this = Self::assemble(prepared, settings, Running::InProcess(suite), listeners, db, bus);
        this.seed().await;
        Some(this)
    }

    /// The suite as separate processes on the real backends: every role
    /// once, activation and the worker twice.
    pub async fn spawn_processes() -> Option<TestSuite> {
        Self::spawn_processes_with(Replicas::default(), Vec::new(), |_| {}).await
    }

    /// Separate processes with `replicas`, `env` for each, and the settings
    /// `configure` makes.
    pub async fn spawn_processes_with(
        replicas: Replicas,
        env: Vec<(String, String)>,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<TestSuite> {
        Self::spawn_planned(replicas, env, Vec::new(), configure).await
    }

    /// Separate processes with `replicas`, each run by `wrapper` (a
    /// profiler and its options), and the settings `configure` makes.
    pub async fn spawn_processes_under(
        replicas: Replicas,
        wrapper: Vec<String>,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<TestSuite> {
        Self::spawn_planned(replicas, Vec::new(), wrapper, configure).await
    }

    async fn spawn_planned(
        replicas: Replicas,
        env: Vec<(String, String)>,
        wrapper: Vec<String>,
        configure: impl FnOnce(&mut Settings),
    ) -> Option<TestSuite> {
        let (prepared, settings) = prepare(Backend::Real, configure).await?;
        let plan = Plan {
            binary: offers_binary(),
            dir: prepared.resources.scratch_dir().join("deployment"),
            settings: settings.clone(),
            replicas,
            env,
            wrapper,
        };
        let deployment = Deployment::start(plan).await.expect("the deployment starts");
        let db = offers::process::connect_database(&deployment.settings, false).await.expect("database");
        let bus = offers_kit::bus::from_settings(&deployment.settings.bus).expect("bus");
        let auth = deployment.members_of(Role::Auth).next().expect("an auth process").clone();
        let grpc = auth.grpc.expect("auth's gRPC listener");
        let listeners = (deployment.edge(), grpc, auth.internal_grpc.expect("auth's internal listener"));
        let this = Self::assemble(prepared, settings, Running::Processes(deployment), listeners, db, bus);
        this.seed().await;
        Some(this)
    }

    /// The suite under test, with its (HTTP, gRPC, internal gRPC) listeners.
    fn assemble(
        prepared: Prepared,
        base: Settings,
        running: Running,
        (http_addr, grpc_addr, internal_grpc_addr): (SocketAddr, SocketAddr, SocketAddr),
        db: sea_orm::DatabaseConnection,
        bus: offers_kit::bus::SharedBus,
    ) -> TestSuite {
        let settings = match &running {
            Running::InProcess(process) => process.settings.clone(),
            Running::Processes(deployment) => deployment.settings.clone(),
        };
        let Prepared { backend, resources, private_key_pem, simulator } = prepared;
        TestSuite {
            backend,
            api: Api::new(http_addr),
            settings,
            private_key_pem,
            http_addr,
            grpc_addr,
            internal_grpc_addr,
            base,
            suite: Some(running),
            db,
            bus,
            simulator,
            resources,
        }
    }

    /// The processes of a deployment, if this suite is one.
    /// Where the operator console answers: with the edge in one process,
    /// its own process when split.
    pub fn console_base(&self) -> String {
        let own = self.processes().and_then(|d| d.members_of(Role::Console).next().map(|m| m.http));
        own.map_or_else(|| self.api.base.clone(), |at| format!("http://{at}"))
    }

    pub fn processes(&self) -> Option<&Deployment> {
        match &self.suite {
            Some(Running::Processes(deployment)) => Some(deployment),
            _ => None,
        }
    }

    /// The processes of a deployment (panics for an in-process suite).
    pub fn deployment(&mut self) -> &mut Deployment {
        match &mut self.suite {
            Some(Running::Processes(deployment)) => deployment,
            _ => panic!("not a deployment of processes"),
        }
    }

    /// The test's scratch directory.
    pub fn scratch_dir(&self) -> PathBuf {
        self.resources.scratch_dir()
    }

    /// Runs the `offers` command line with this suite's settings (written
    /// to a private file in the scratch directory), as an operator would.
    pub async fn offers_cli(&self, args: &[&str]) -> std::process::Output {
        let config = self.scratch_dir().join("cli-config.json");
        let json = offers_kit::config::unredacted(|| serde_json::to_string(&self.settings)).expect("settings");
        offers::settings::write_private(&config, &json).expect("config file");
        let mut command = std::process::Command::new(offers_binary());
        command.arg("--config").arg(config).args(args);
        tokio::task::spawn_blocking(move || command.output().expect("offers runs")).await.expect("joined")
    }

    async fn seed(&self) {
        let currency = self.settings.currency.clone();
        offers::dev::seed(&mut self.admin(), &currency).await.expect("demo data");
    }
}

/// What a test runs on besides the suite: its backends, the signing key it
/// forges tokens with, the provisioning simulator.
struct Prepared {
    backend: Backend,
    resources: backends::Resources,
    private_key_pem: String,
    simulator: CancellationToken,
}

/// A test's backends and the settings every topology starts from: the
/// embedded mode's (keys, credential, reminder sink, the demo partner's
/// preset key, callbacks to local servers) on `backend`, with a signing key
/// the test knows, quick retries, and the provisioning simulator.
async fn prepare(backend: Backend, configure: impl FnOnce(&mut Settings)) -> Option<(Prepared, Settings)> {
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
    settings.auth.jwks_refresh = Duration::from_secs(1);
    // A rotated-in key signs 5 s later: time for a test to log in before.
    settings.auth.key_publish_margin = Duration::from_secs(4);
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);
    settings.shutdown_grace = Duration::from_secs(2);
    // Tests wait for retries and the reconciler; keep both quick.
    settings.provisioning.timeout = Duration::from_secs(1);
    settings.provisioning.retry.base = Duration::from_millis(50);
    settings.provisioning.retry.max = Duration::from_millis(200);
    // Long enough that a first `not_found` comes too soon and is confirmed.
    settings.provisioning.settle_window = Duration::from_secs(2);
    // SIM-HELD's requests arrive after the first inquiry, before the second.
    settings.provisioning.simulator_hold = Duration::from_secs(2);
    settings.ledger.attempt_lease = Duration::from_secs(2);
    settings.ledger.pending_deadline = Duration::from_secs(3);
    settings.ledger.reconcile_interval = Duration::from_millis(250);
    settings.ledger.relay_interval = Duration::from_millis(100);
    settings.notifier.relay_interval = Duration::from_millis(100);
    let simulator = CancellationToken::new();
    let sim = offers::dev::start_simulator(&settings, simulator.clone()).await.expect("simulator");
    settings.provisioning.url = Some(format!("http://{sim}"));
    settings.notifier.retry.base = Duration::from_millis(50);
    settings.notifier.retry.max = Duration::from_millis(200);
    settings.partner.callback_retry.base = Duration::from_millis(50);
    settings.partner.callback_retry.max = Duration::from_millis(200);
    configure(&mut settings);
    Some((Prepared { backend, resources, private_key_pem, simulator }, settings))
}

impl TestSuite {
    /// Kills the running suite at once — no grace, no acks, as a crash would
    /// — and starts a new one on the same database, cache and bus.
    pub async fn crash_and_restart(&mut self) {
        assert!(matches!(self.suite, Some(Running::InProcess(_))), "crash_and_restart runs in-process suites");
        drop(self.suite.take());
        let suite = start(&self.base).await;
        self.api = Api::new(suite.http_addr);
        self.settings = suite.settings.clone();
        self.http_addr = suite.http_addr;
        self.grpc_addr = suite.grpc_addr.expect("gRPC listener");
        self.internal_grpc_addr = suite.internal_grpc_addr.expect("internal listener");
        self.suite = Some(Running::InProcess(suite));
    }

    /// An administrative client holding the service credential, acting as
    /// [`TEST_ACTOR`].
    pub fn admin(&self) -> AdminClient {
        let token = self.settings.internal_token().expect("internal token");
        let mut admin = AdminClient::connect(&self.settings, token).expect("admin client");
        admin.act_as(TEST_ACTOR, "");
        admin
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
        &self.db
    }

    pub fn bus(&self) -> offers_kit::bus::SharedBus {
        self.bus.clone()
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
        // The largest page: a test that adds offers must still find the seeded ones.
        let list = self.api.get("/api/v1/offers/?limit=200", Some(token)).await;
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

    /// Checks the books (every scenario ends so), then stops the servers
    /// (the backend resources go when the suite drops).
    pub async fn stop(mut self) {
        self.assert_ledger_invariant().await;
        match self.suite.take() {
            Some(Running::InProcess(suite)) => suite.stop().await,
            Some(Running::Processes(deployment)) => deployment.stop().await.expect("the deployment stops"),
            None => {}
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

/// Runs scenarios that set up their own suite on both backends:
/// `each_backend!(name)` expects an `async fn name(backend: Backend)` in
/// scope (its suites check the books when they stop) and makes the tests
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

/// Runs scenarios against the suite as separate processes (the production
/// shape, on the real backends): `across_processes!(name)` expects an
/// `async fn name(suite: &TestSuite)` in scope and makes the test
/// `processes::name`. The scenarios named so are the ones that cross every
/// process boundary; they run in-process on both backends too.
#[macro_export]
macro_rules! across_processes {
    ($($name:ident),+ $(,)?) => {
        mod processes {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(suite) = $crate::TestSuite::spawn_processes().await {
                        super::$name(&suite).await;
                        suite.stop().await;
                    }
                }
            )+
        }
    };
}
