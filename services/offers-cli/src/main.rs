use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use offers::admin::AdminClient;
use offers::admin::cli::AdminTask;
use offers::process::{Process, connect_database, shutdown_signal};
use offers::roles::Role;
use offers::settings::{Settings, embedded_token_if_present};
use offers_harness::local::Replicas;
use sea_orm_migration::MigratorTrait;

/// mimalloc rather than glibc's malloc: per-thread heaps without arena
/// locks, and freed pages handed back to the system (glibc keeps them in
/// its arenas). See bench/README.md for what it changed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Offers: buy and renew telecom offers from a prepaid balance.
///
/// Configuration comes from defaults, then the --config TOML file, then
/// OFFERS_* environment variables (`__` between levels, e.g.
/// OFFERS_DATABASE__URL), then the flags of each command.
#[derive(Parser)]
#[command(name = "offers", version)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, global = true, env = "OFFERS_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process on SQLite, an in-memory cache and an
    /// in-process job bus, with demo data. For trying Offers out.
    Dev {
        #[command(flatten)]
        listen: Listen,
        /// Where the database, keys and credential live.
        #[arg(long, default_value = ".offers")]
        data_dir: PathBuf,
        /// Log a line per call and per migration too.
        #[arg(short, long)]
        verbose: bool,
    },
    /// Run the named roles (production: one role per process, on
    /// PostgreSQL, Redis and RabbitMQ).
    Serve {
        #[arg(value_enum, required = true)]
        roles: Vec<Role>,
        #[command(flatten)]
        listen: Listen,
        /// Apply pending migrations first.
        #[arg(long)]
        migrate: bool,
    },
    /// Apply pending database migrations and exit.
    Migrate,
    /// Administrative tasks against a running suite's internal listener.
    Admin {
        /// Read the internal credential from this embedded-mode data
        /// directory when internal.token is not configured.
        #[arg(long, default_value = ".offers")]
        data_dir: PathBuf,
        /// Who acts: recorded in the audit trail with every write, which is
        /// refused without it.
        #[arg(long, global = true, env = "OFFERS_ACTOR")]
        actor: Option<String>,
        /// Why (recorded with the act).
        #[arg(long = "why", global = true)]
        why: Option<String>,
        #[command(subcommand)]
        task: AdminTask,
    },
    /// Show the effective configuration (secrets redacted).
    Config,
    /// Describe every role as JSON: its listeners and default ports, its
    /// probes, and the settings it cannot run without (the chart's checks
    /// hold the chart against this).
    Roles,
    /// One-shot jobs (for Kubernetes CronJobs).
    Jobs {
        /// Use this embedded-mode data directory (its database and
        /// credential) when internal.token is not configured.
        #[arg(long, default_value = ".offers")]
        data_dir: PathBuf,
        #[command(subcommand)]
        job: Job,
    },
    /// The production shape on this machine: every role as its own
    /// process (two activation and two worker replicas) on PostgreSQL,
    /// Redis and RabbitMQ, with the simulator and demo data.
    Local {
        /// Where the configuration, secrets, logs and process list live.
        #[arg(long, global = true, default_value = ".offers-local")]
        dir: PathBuf,
        #[command(subcommand)]
        action: LocalAction,
    },
    /// Run the provisioning-system simulator alone (for load tests and for
    /// a multi-process local setup). Never a production default.
    SimProvider {
        #[arg(long, default_value = "127.0.0.1:8090")]
        addr: SocketAddr,
        /// Added latency per call, in milliseconds.
        #[arg(long)]
        latency_ms: Option<u64>,
        /// Percentage of calls that fail transiently at random.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        failure_percent: Option<u8>,
    },
}

#[derive(Subcommand)]
enum LocalAction {
    /// Start every process, wait until each is ready, seed the demo data,
    /// print where the edge listens, and leave it running.
    Up {
        /// Replicas of a role, e.g. `--replicas catalog=2` (repeatable).
        #[arg(long, value_parser = parse_replicas)]
        replicas: Vec<(Role, usize)>,
    },
    /// Stop what `up` started: SIGTERM, then SIGKILL after the grace period.
    Down {
        /// Then throw away the directory's deployment: its database, cache
        /// keys, queues, keys, credential and logs.
        #[arg(long)]
        purge: bool,
    },
}

fn parse_replicas(value: &str) -> Result<(Role, usize), String> {
    let (role, count) = value.split_once('=').ok_or("expected role=count")?;
    let role = <Role as clap::ValueEnum>::from_str(role, true)?;
    let count = count.parse::<usize>().map_err(|e| e.to_string())?;
    if !(1..=8).contains(&count) {
        return Err("between 1 and 8 replicas".into());
    }
    Ok((role, count))
}

#[derive(Subcommand)]
enum Job {
    /// Queue a reminder for every subscription expiring within a reminder
    /// window, once per subscription, window and expiry.
    ExpiringSubscriptions {
        /// Run as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// Renew, from their owners' balances, the subscriptions asking for it
    /// that end within renewal.lead (what the scheduler role does every
    /// renewal.interval).
    Renewals {
        /// Run as of this time (RFC 3339) instead of now.
        #[arg(long)]
        at: Option<chrono::DateTime<chrono::Utc>>,
    },
}

#[derive(Args)]
struct Listen {
    /// HTTP listener (REST edge or operational endpoints).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// Public gRPC listener.
    #[arg(long)]
    grpc: Option<SocketAddr>,
    /// Internal gRPC listener.
    #[arg(long)]
    internal_grpc: Option<SocketAddr>,
}

impl Listen {
    fn apply(&self, settings: &mut Settings) {
        settings.http_addr = self.http.unwrap_or(settings.http_addr);
        settings.grpc_addr = self.grpc.unwrap_or(settings.grpc_addr);
        settings.internal_grpc_addr = self.internal_grpc.unwrap_or(settings.internal_grpc_addr);
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // One line naming the cause chain: a process that cannot start says why
    // on its last line (where an operator and the local deployment look),
    // not under a backtrace.
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let (mut settings, deprecated) = Settings::load(cli.config.as_deref())?;
    // Before any command's own output or logging is set up, so every
    // command says it, `offers config` included.
    for line in deprecated {
        eprintln!("warning: {line}");
    }
    match cli.command {
        Command::Dev { listen, data_dir, verbose } => {
            listen.apply(&mut settings);
            // Set to the default spelt out (`info`) is asked for too.
            let asked = verbose || std::env::var_os("OFFERS_TELEMETRY__LOG_FILTER").is_some();
            settings.telemetry.log_filter = offers::dev::log_filter(&settings.telemetry, asked);
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            offers::dev::run(settings, &data_dir).await
        }
        Command::Serve { roles, listen, migrate } => {
            listen.apply(&mut settings);
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let process = Process::start(settings, &roles, migrate).await?;
            tracing::info!(http = %process.http_addr, grpc = ?process.grpc_addr, internal = ?process.internal_grpc_addr, "serving");
            process.run_until_signal().await
        }
        Command::Migrate => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let db = connect_database(&settings, false).await?;
            offers::migrator::Migrator::up(&db, None).await.context("migrations failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin { data_dir, actor, why, task } => {
            let settings = or_embedded(settings, &data_dir)?;
            let token = settings.internal_token().context(NO_CREDENTIAL)?;
            let mut client = AdminClient::connect(&settings, token)?;
            match actor.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
                Some(actor) => {
                    client.act_as(actor, why.as_deref().unwrap_or_default());
                }
                None if task.writes() => anyhow::bail!(
                    "--actor (or OFFERS_ACTOR) is required: every administrative write is recorded with who did it"
                ),
                None => {}
            }
            offers::admin::cli::run(&mut client, &settings.currency, task).await
        }
        Command::Jobs { data_dir, job: Job::ExpiringSubscriptions { at } } => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let settings = or_embedded(settings, &data_dir)?;
            let token = settings.internal_token().context(NO_CREDENTIAL)?;
            let at = at.unwrap_or_else(chrono::Utc::now);
            match offers::cron::expiring_subscriptions(&settings, token, at).await? {
                Some(report) => {
                    println!("reminders queued: {}; already reminded: {}", report.scheduled, report.already_reminded);
                    Ok(())
                }
                None => anyhow::bail!("another expiring-subscriptions run holds the lock; nothing done"),
            }
        }
        Command::Jobs { data_dir, job: Job::Renewals { at } } => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let settings = or_embedded(settings, &data_dir)?;
            let token = settings.internal_token().context(NO_CREDENTIAL)?;
            let report = offers::cron::renewals(&settings, token, at.unwrap_or_else(chrono::Utc::now)).await?;
            println!(
                "renewed: {}; in progress: {}; not charged: {}; lapsed: {}; price announced: {}; could not try: {}",
                report.renewed, report.in_progress, report.not_charged, report.lapsed, report.announced, report.failed
            );
            anyhow::ensure!(report.failed == 0, "{} renewals could not be tried; run again", report.failed);
            Ok(())
        }
        Command::Roles => {
            let facts: Vec<_> = Role::ALL.iter().map(|r| r.facts()).collect();
            println!("{}", serde_json::to_string_pretty(&facts)?);
            Ok(())
        }
        Command::Config => {
            println!("{}", settings.dump());
            Ok(())
        }
        Command::Local { dir, action: LocalAction::Up { replicas } } => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let replicas = replicas.into_iter().fold(Replicas::default(), |all, (role, n)| all.set(role, n));
            let deployment = offers_harness::local::up(settings, &dir, replicas).await?;
            let edge = deployment.edge();
            let console = deployment.members_of(offers::roles::Role::Console).next().map(|m| m.http);
            let console = console.map(|at| format!("http://{at}/console/")).unwrap_or_else(|| "not running".into());
            let processes: Vec<String> = deployment.members.iter().map(|m| m.name()).collect();
            let logs = dir.join("logs");
            deployment.detach()?;
            println!(
                "\nOffers is running as {count} processes: {names}\n\
                 \x20 REST      http://{edge}/api/v1/\n\
                 \x20 console   {console}   (operator / {pw} acts, viewer / {pw} sees)\n\
                 \x20 logs      {logs}/<role>-<n>.log (JSON, one line per event)\n\
                 \x20 demo users: demo / {pw} and demo2 / {pw}; demo partner key: {key}\n\n\
                 Try:\n\
                 \x20 curl -s -X POST http://{edge}/api/v1/auth/login/ -H 'Content-Type: application/json' \
                 -d '{{\"username\":\"demo\",\"password\":\"{pw}\"}}'\n\n\
                 Stop it with: deploy/local/down  (or: offers local down --dir {dir})\n",
                count = processes.len(),
                names = processes.join(" "),
                logs = logs.display(),
                dir = dir.display(),
                pw = offers::dev::DEMO_PASSWORD,
                key = offers::dev::DEMO_PARTNER_KEY,
            );
            Ok(())
        }
        Command::Local { dir, action: LocalAction::Down { purge } } => {
            let grace = settings.shutdown_grace + std::time::Duration::from_secs(5);
            // A purge also cleans up after a deployment that is not running.
            if !purge || offers_harness::local::recorded(&dir) {
                let stopped = offers_harness::local::down(&dir, grace).await?;
                println!("stopped {stopped} processes");
            }
            if purge {
                let purged = offers_harness::local::purge(&settings, &dir).await?;
                let none = || "-".to_string();
                println!(
                    "purged {dir}: database {db}, {keys} cache keys, queues under {bus}",
                    dir = dir.display(),
                    db = purged.database.unwrap_or_else(none),
                    keys = purged.cache_keys.unwrap_or(0),
                    bus = purged.bus_prefix.unwrap_or_else(none),
                );
            }
            Ok(())
        }
        Command::SimProvider { addr, latency_ms, failure_percent } => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let mut behaviour = offers_activation::simulator::Behaviour::from(&settings.provisioning);
            if let Some(ms) = latency_ms {
                behaviour.latency = std::time::Duration::from_millis(ms);
            }
            behaviour.failure_percent = failure_percent.unwrap_or(behaviour.failure_percent);
            let stop = tokio_util::sync::CancellationToken::new();
            let bound = offers_activation::simulator::start(addr, behaviour, stop.clone()).await?;
            println!("provisioning simulator on http://{bound}/v1/activations (Ctrl-C stops it)");
            shutdown_signal().await;
            stop.cancel();
            Ok(())
        }
    }
}

const NO_CREDENTIAL: &str =
    "internal.token (OFFERS_INTERNAL__TOKEN) is not set and no embedded-mode credential was found";

/// The settings as configured when they name an internal credential;
/// otherwise those of the embedded mode in `data_dir`, if a `offers dev`
/// has made one there.
fn or_embedded(settings: Settings, data_dir: &Path) -> anyhow::Result<Settings> {
    if settings.internal_token().is_some() || embedded_token_if_present(data_dir).is_none() {
        return Ok(settings);
    }
    settings.embedded(data_dir)
}
