//! The fault-injection soak: the suite as separate processes (two of the
//! worker, of activation and of account) on PostgreSQL, Redis and
//! RabbitMQ, each reached through a fault proxy, with a provisioning
//! simulator that is slow now and then and fails some calls; a seeded
//! mixed workload runs while faults arrive; then, once everything has
//! settled, the books and every answer are checked.

mod checks;
mod faults;
mod workload;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offers::roles::Role;
use offers_harness::local::Replicas;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// How far ahead the soak's renewal passes reach: beyond a week, so every
/// subscription bought with auto_renew is due at once.
const RENEWAL_LEAD: Duration = Duration::from_hours(8 * 24);

pub use faults::{Fault, Window};
pub use workload::{Op, Record};

use crate::TestSuite;
use crate::faults::FaultProxy;
use workload::{Client, Partner, Population, User};

/// How big a run is.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// How long the workload runs (faults arrive meanwhile).
    pub duration: Duration,
    /// Operations in all, spread evenly over the clients and the duration.
    pub operations: usize,
    pub clients: usize,
    /// The kinds of fault injected (all unless `CHAOS_FAULTS` names some).
    pub faults: Vec<Fault>,
}

impl Config {
    /// About 1,000 operations in 75 s, every kind of fault at least once.
    pub fn quick() -> Self {
        Self { seed: 1, duration: Duration::from_secs(75), operations: 1_000, clients: 12, faults: Fault::ALL.to_vec() }
    }

    /// 12,000 operations in ten minutes, every kind of fault several times.
    pub fn long() -> Self {
        Self {
            seed: 1,
            duration: Duration::from_secs(600),
            operations: 12_000,
            clients: 16,
            faults: Fault::ALL.to_vec(),
        }
    }

    /// With `CHAOS_SEED`, `CHAOS_SECONDS`, `CHAOS_OPERATIONS`,
    /// `CHAOS_CLIENTS` and `CHAOS_FAULTS` (short names, comma-separated)
    /// where set.
    pub fn from_env(mut self) -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        self.seed = var("CHAOS_SEED").unwrap_or(self.seed);
        self.duration = var("CHAOS_SECONDS").map_or(self.duration, Duration::from_secs);
        self.operations = var("CHAOS_OPERATIONS").map_or(self.operations, |n| n as usize);
        self.clients = var("CHAOS_CLIENTS").map_or(self.clients, |n| n as usize);
        if let Ok(names) = std::env::var("CHAOS_FAULTS") {
            let wanted: Vec<&str> = names.split(',').map(str::trim).collect();
            self.faults = Fault::ALL.into_iter().filter(|f| wanted.contains(&f.short())).collect();
            assert!(!self.faults.is_empty(), "CHAOS_FAULTS names none of {:?}", Fault::ALL.map(Fault::short));
        }
        self
    }
}

/// What a run found: its report (one line per figure and per check) and
/// the checks that failed.
pub struct Report {
    pub lines: Vec<String>,
    pub failed: Vec<String>,
}

/// Partner callbacks as the partners' endpoint receives them:
/// (reference, event id) of each POST.
type Callbacks = Arc<Mutex<Vec<(String, String)>>>;

async fn callback_receiver() -> (String, Callbacks) {
    let received: Callbacks = Arc::default();
    let seen = received.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: String| {
            let seen = seen.clone();
            async move {
                if let Ok(event) = serde_json::from_str::<Value>(&body) {
                    let field = |name: &str| event[name].as_str().unwrap_or_default().to_string();
                    seen.lock().expect("lock").push((field("reference"), field("event_id")));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/hooks", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, received)
}

/// Runs the soak; `None` when the real backends are not reachable outside CI.
pub async fn run(config: Config) -> Option<Report> {
    let started = Instant::now();
    let postgres = FaultProxy::to_url(&crate::backends::postgres_url()).await;
    let redis = FaultProxy::to_url(&crate::backends::redis_url()).await;
    let rabbitmq = FaultProxy::to_url(&crate::backends::amqp_url()).await;
    // A provider that answers in 5 to 30 ms and fails 10% of calls
    // transiently (plus the demo offers' own scripts).
    let stop_simulator = CancellationToken::new();
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let behaviour = offers_activation::simulator::Behaviour {
        latency: Duration::from_millis(15),
        failure_percent: 10,
        hold: Duration::from_secs(2),
    };
    let simulator =
        offers_activation::simulator::start(any, behaviour, stop_simulator.clone()).await.expect("simulator");
    let provider = FaultProxy::start(simulator).await;
    let targets = faults::Targets { postgres, redis, rabbitmq, provider };
    let configure = |s: &mut offers::settings::Settings| {
        s.database.url = targets.postgres.in_url(&s.database.url);
        s.cache.url = targets.redis.in_url(&s.cache.url);
        s.bus.url = targets.rabbitmq.in_url(&s.bus.url);
        s.provisioning.url = Some(format!("http://{}", targets.provider.addr));
        // A dependency that is away is a bounded 503, not a hung request.
        s.database.acquire_timeout = Duration::from_secs(1);
        s.call_timeout = Duration::from_secs(2);
        // Many clients from one address, for many minutes.
        offers_harness::overrides::unlimited(s);
        s.auth.access_ttl = Duration::from_secs(3600);
        // Key sets reloaded on the production schedule: a token of a key
        // rotated in or made anew must verify without waiting for it.
        s.auth.jwks_refresh = Duration::from_secs(30);
        // The scheduler's renewal pass, every 2 s, reaching 8 days ahead:
        // the week-long subscriptions bought with auto_renew are renewed
        // once during the load, day-long ones period after period, while
        // schedulers are killed and dependencies cut.
        s.renewal.lead = RENEWAL_LEAD;
        s.renewal.interval = Duration::from_secs(2);
    };
    let replicas = Replicas::default().set(Role::Account, 2);
    let mut suite = TestSuite::spawn_processes_with(replicas, Vec::new(), configure).await?;
    let deployed = started.elapsed();
    let (hook, callbacks) = callback_receiver().await;
    let population = Arc::new(populate(&suite, &hook).await);
    let set_up = started.elapsed();

    let journal: workload::Journal = Arc::default();
    let until = Instant::now() + config.duration;
    let per_client = workload::per_client(config.operations, config.clients);
    let mut clients = Vec::new();
    for index in 0..config.clients {
        let client =
            Client::new(index, config.seed, suite.api.clone(), suite.admin(), population.clone(), journal.clone());
        clients.push(tokio::spawn(client.run(per_client, until)));
    }
    let mut rng = StdRng::seed_from_u64(config.seed);
    let load_started = Instant::now();
    let windows = faults::inject(&mut suite, &targets, &config.faults, &mut rng, until).await;
    for client in clients {
        client.await.expect("a client");
    }
    let load_ended = Instant::now();
    let records = journal.lock().expect("journal").clone();
    let renewing = checks::stop_renewals(&suite, RENEWAL_LEAD).await;
    let settled = checks::settle(&suite, &callbacks).await;
    let delivered = callbacks.lock().expect("lock").clone();
    let mut report = checks::check(&suite, &records, &windows, &delivered, settled).await;
    let (line, held) = checks::renewals(&suite, &renewing).await;
    report.lines.push(line);
    if !held {
        report.failed.push("renewals".into());
    }

    let mut head = vec![
        format!(
            "chaos: seed {}, {} clients, {} s of load ({} s to deploy, {} s to populate, {} s to settle), {} processes",
            config.seed,
            config.clients,
            config.duration.as_secs(),
            deployed.as_secs(),
            (set_up - deployed).as_secs(),
            settled.map_or("over 240".into(), |d| d.as_secs().to_string()),
            suite.processes().map_or(0, |d| d.members.len()),
        ),
        summary_of_faults(&windows),
        timeline(&windows, load_started),
        summary_of_operations(&records),
    ];
    head.append(&mut report.lines);
    report.lines = head;
    report.lines.extend(errors_logged(&suite));
    report.lines.push(format!(
        "chaos: {} s in all (load ended after {} s)",
        started.elapsed().as_secs(),
        (load_ended - started).as_secs()
    ));
    suite.stop().await;
    stop_simulator.cancel();
    Some(report)
}

/// What the processes logged at ERROR (server faults and dependencies
/// away), and the first few internal errors in full: the way to a defect
/// the checks found.
fn errors_logged(suite: &TestSuite) -> Vec<String> {
    let Some(deployment) = suite.processes() else { return Vec::new() };
    let mut errors = Vec::new();
    for member in &deployment.members {
        let log = std::fs::read_to_string(&member.log).unwrap_or_default();
        let logged = log.lines().filter(|l| l.contains("\"level\":\"ERROR\""));
        errors.extend(logged.map(|l| format!("{}: {l}", member.name())));
    }
    let internal: Vec<&String> = errors.iter().filter(|e| e.contains("\"code\":\"internal\"")).collect();
    let mut lines = vec![format!("errors logged: {} ({} internal)", errors.len(), internal.len())];
    lines.extend(internal.into_iter().take(5).map(|e| format!("      {}", e.chars().take(1_500).collect::<String>())));
    lines
}

/// Users with ample balances and a few with little, partners with floats
/// near what they will spend (one with a credit line), each with its
/// callback registered.
async fn populate(suite: &TestSuite, hook: &str) -> Population {
    // Two at a time: the auth role hashes as many passwords at once.
    let made = |balance| suite.user_with_balance(balance);
    let mut people = Vec::new();
    for pair in [20_000; 40].into_iter().chain([1_000; 6]).collect::<Vec<_>>().chunks(2) {
        people.extend(futures_util::future::join_all(pair.iter().map(|&b| made(b))).await);
    }
    let mut named = Vec::new();
    for (id, token) in people {
        let profile = suite.api.get("/api/v1/auth/profile/", Some(&token)).await;
        let username = profile.body["username"].as_str().expect("a username").to_string();
        named.push(User { id, username, token });
    }
    let poor = named.split_off(40);
    let users = named;
    let mut partners = Vec::new();
    let mut admin = suite.admin();
    let currency = suite.settings.currency.clone();
    for (n, float, limit) in [(1, 20_000, 0), (2, 5_000, 0), (3, 2_000, 1_000)] {
        let name = format!("chaos-partner-{n}");
        let offers::admin::Created::New(made) = admin.create_partner(&name).await.expect("partner") else {
            panic!("{name} exists")
        };
        let id = made.partner.expect("partner").id;
        admin.fund_partner(&id, float, &currency, &format!("float:{id}")).await.expect("funded");
        if limit > 0 {
            admin.set_credit_limit(&id, limit).await.expect("credit line");
        }
        let key = made.secret;
        let registered =
            suite.api.post("/api/v1/partner/callback/", Some(&key), &serde_json::json!({ "callback_url": hook })).await;
        assert_eq!(registered.status, 200, "{}", registered.body);
        partners.push(Partner { id, key });
    }
    let token = &users[0].token;
    let list = suite.api.get("/api/v1/offers/?limit=100", Some(token)).await;
    // SIM-UNKNOWN is never settled by the provider: its purchases would all
    // wait for an operator, which the soak's final states do not study.
    let offers = list.body["results"]
        .as_array()
        .expect("offers")
        .iter()
        .filter(|o| o["code"] != "SIM-UNKNOWN")
        .map(|o| (o["id"].as_str().expect("id").to_string(), o["price"].as_i64().expect("price")))
        .collect();
    Population { users, poor, partners, offers, currency }
}

fn summary_of_faults(windows: &[Window]) -> String {
    let mut by_kind: BTreeMap<Fault, usize> = BTreeMap::new();
    for window in windows {
        *by_kind.entry(window.fault).or_default() += 1;
    }
    let kinds: Vec<String> = by_kind.iter().map(|(fault, n)| format!("{} ×{n}", fault.name())).collect();
    format!("faults: {} injected: {}", windows.len(), kinds.join(", "))
}

/// When each fault began and how long it held, from the start of the load.
fn timeline(windows: &[Window], start: Instant) -> String {
    let at = |w: &Window| {
        let from = w.from.duration_since(start).as_secs_f64();
        format!("+{from:.1}s {} ({:.1} s)", w.fault.name(), (w.to - w.from).as_secs_f64())
    };
    format!("timeline: {}", windows.iter().map(at).collect::<Vec<_>>().join("; "))
}

fn summary_of_operations(records: &[Record]) -> String {
    let accepted = records.iter().filter(|r| matches!(r.status, 200 | 202)).count();
    let refused = records.iter().filter(|r| (400..500).contains(&r.status)).count();
    let unavailable = records.iter().filter(|r| r.status >= 500 || r.status == 0).count();
    let mut by_op: HashMap<Op, usize> = HashMap::new();
    for record in records {
        *by_op.entry(record.op).or_default() += 1;
    }
    let mut ops: Vec<(Op, usize)> = by_op.into_iter().collect();
    ops.sort();
    let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op:?} {n}")).collect();
    format!(
        "operations: {} attempted, {accepted} accepted, {refused} refused (4xx), {unavailable} unavailable (5xx); {}",
        records.len(),
        ops.join(", ")
    )
}
