#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use offers::admin::AdminClient;
use offers::roles::Role;
use offers::suite::{Suite, SuiteOptions, connect_database};
use offers_kit::config::Settings;
use offers_proto::auth::v1 as auth_pb;
use offers_proto::catalog::v1 as catalog_pb;
use sea_orm_migration::MigratorTrait;

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
        #[command(subcommand)]
        task: AdminTask,
    },
    /// Show the effective configuration (secrets redacted).
    Config,
    /// One-shot jobs (for Kubernetes CronJobs).
    Jobs {
        /// Read the internal credential from this embedded-mode data
        /// directory when internal.token is not configured.
        #[arg(long, default_value = ".offers")]
        data_dir: PathBuf,
        #[command(subcommand)]
        job: Job,
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
        #[arg(long)]
        failure_percent: Option<u8>,
    },
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
        if let Some(a) = self.http {
            settings.http_addr = a;
        }
        if let Some(a) = self.grpc {
            settings.grpc_addr = a;
        }
        if let Some(a) = self.internal_grpc {
            settings.internal_grpc_addr = a;
        }
    }
}

#[derive(Subcommand)]
enum AdminTask {
    /// Manage users.
    #[command(subcommand)]
    User(UserTask),
    /// Manage offers.
    #[command(subcommand)]
    Offer(OfferTask),
    /// Manage partners and their API keys.
    #[command(subcommand)]
    Partner(PartnerTask),
    /// Credit a user's balance (a top-up), once per key.
    Credit {
        /// Username or user id.
        #[arg(long)]
        user: String,
        /// Minor units.
        #[arg(long)]
        amount: i64,
        /// Repeating a credit with the same key credits nothing; a fresh
        /// key is made when none is given.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value = "admin top-up")]
        memo: String,
    },
}

#[derive(Subcommand)]
enum PartnerTask {
    /// Create a partner; prints its first API key, once.
    Create {
        #[arg(long)]
        name: String,
    },
    /// Suspend a partner: every key of it is refused until reactivated.
    Suspend {
        #[arg(long)]
        name: String,
    },
    /// Reactivate a suspended partner.
    Activate {
        #[arg(long)]
        name: String,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyTask),
}

#[derive(Subcommand)]
enum KeyTask {
    /// Add a key (the old ones keep working until revoked: rotation
    /// without downtime); prints it once.
    Create {
        #[arg(long)]
        partner: String,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

#[derive(Subcommand)]
enum UserTask {
    /// Create a user.
    Create {
        #[arg(long)]
        username: String,
        /// Read from OFFERS_NEW_PASSWORD when not given.
        #[arg(long, env = "OFFERS_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        phone_number: String,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        /// May see inactive offers.
        #[arg(long)]
        admin: bool,
    },
}

#[derive(Subcommand)]
enum OfferTask {
    /// Create an offer.
    Create {
        #[arg(long)]
        code: String,
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// Price in minor units.
        #[arg(long)]
        price: i64,
        /// Defaults to the configured currency.
        #[arg(long)]
        currency: Option<String>,
        #[arg(long)]
        duration_days: i32,
        #[arg(long, default_value_t = 0)]
        data_mb: i64,
        #[arg(long, default_value_t = 0)]
        voice_minutes: i64,
        #[arg(long, default_value_t = 0)]
        sms: i64,
        /// Create it inactive.
        #[arg(long)]
        inactive: bool,
    },
    /// Change fields of an offer; only the ones given change.
    Update {
        #[arg(long)]
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        price: Option<i64>,
        #[arg(long)]
        duration_days: Option<i32>,
        #[arg(long)]
        data_mb: Option<i64>,
        #[arg(long)]
        voice_minutes: Option<i64>,
        #[arg(long)]
        sms: Option<i64>,
        #[arg(long)]
        active: Option<bool>,
    },
}

fn load(config: Option<&Path>) -> anyhow::Result<Settings> {
    let settings = Settings::load(config)?;
    settings.validate()?;
    Ok(settings)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut settings = load(cli.config.as_deref())?;
    match cli.command {
        Command::Dev { listen, data_dir } => {
            listen.apply(&mut settings);
            offers::dev::prepare(&mut settings, &data_dir)?;
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            run_dev(settings, &data_dir).await
        }
        Command::Serve { roles, listen, migrate } => {
            listen.apply(&mut settings);
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let suite = Suite::start(settings, SuiteOptions { roles, migrate }).await?;
            tracing::info!(http = %suite.http_addr, grpc = ?suite.grpc_addr, internal = ?suite.internal_grpc_addr, "serving");
            run_until_signal(suite).await
        }
        Command::Migrate => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let db = connect_database(&settings, false).await?;
            offers::migrator::Migrator::up(&db, None).await.context("migrations failed")?;
            println!("migrations applied");
            Ok(())
        }
        Command::Admin { data_dir, task } => admin(settings, &data_dir, task).await,
        Command::Jobs { data_dir, job: Job::ExpiringSubscriptions { at } } => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            if settings.internal_token().is_none() {
                // Embedded mode: the credential and the database are the data directory's.
                settings.database.url = format!("sqlite://{}?mode=rwc", data_dir.join("offers.db").display());
            }
            let token = internal_token(&settings, &data_dir)?;
            match offers::jobs::expiring_subscriptions(&settings, &token, at.unwrap_or_else(chrono::Utc::now)).await? {
                Some(report) => {
                    println!("reminders queued: {}; already reminded: {}", report.scheduled, report.already_reminded);
                    Ok(())
                }
                None => anyhow::bail!("another expiring-subscriptions run holds the lock; nothing done"),
            }
        }
        Command::Config => {
            println!("{}", settings.dump());
            Ok(())
        }
        Command::SimProvider { addr, latency_ms, failure_percent } => {
            let _telemetry = offers_kit::telemetry::init(&settings.telemetry)?;
            let mut sim = settings.provisioning.clone();
            sim.simulator_latency_ms = latency_ms.unwrap_or(sim.simulator_latency_ms);
            sim.simulator_failure_percent = failure_percent.unwrap_or(sim.simulator_failure_percent);
            anyhow::ensure!(sim.simulator_failure_percent <= 100, "--failure-percent must be 0 to 100");
            let stop = tokio_util::sync::CancellationToken::new();
            let bound = offers::suite::start_simulator(addr, &sim, stop.clone()).await?;
            println!("provisioning simulator on http://{bound}/v1/activations (Ctrl-C stops it)");
            shutdown_signal().await;
            stop.cancel();
            Ok(())
        }
    }
}

async fn run_dev(mut settings: Settings, data_dir: &Path) -> anyhow::Result<()> {
    let simulator = tokio_util::sync::CancellationToken::new();
    let sim_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    let sim = offers::suite::start_simulator(sim_addr, &settings.provisioning, simulator.clone()).await?;
    settings.provisioning.url = Some(format!("http://{sim}"));
    let suite = Suite::start(settings, SuiteOptions { roles: Role::ALL.to_vec(), migrate: true }).await?;
    let token = offers::dev::internal_token(data_dir)?;
    offers::dev::seed(&mut AdminClient::connect(&suite.settings, &token)?, &suite.settings.currency).await?;
    let http = suite.http_addr;
    println!(
        "\nOffers is running (embedded mode, data in {dir})\n\
         \x20 REST      http://{http}/api/v1/   (OpenAPI: http://{http}/api/v1/openapi.json)\n\
         \x20 gRPC      {grpc}   internal gRPC {internal}\n\
         \x20 provisioning simulator http://{sim}\n\
         \x20 demo users: demo / {pw}  and  demo2 / {pw}  (balance {balance} each)\n\
         \x20 demo partner key: {partner_key}   reminders: {dir}/notifications.log\n\n\
         Try:\n\
         \x20 curl -s -X POST http://{http}/api/v1/auth/login/ -H 'Content-Type: application/json' \
         -d '{{\"username\":\"demo\",\"password\":\"{pw}\"}}'\n\n\
         Ctrl-C stops it.\n",
        dir = data_dir.display(),
        grpc = suite.grpc_addr.map(|a| a.to_string()).unwrap_or_default(),
        internal = suite.internal_grpc_addr.map(|a| a.to_string()).unwrap_or_default(),
        pw = offers::dev::DEMO_PASSWORD,
        balance = offers::dev::DEMO_BALANCE,
        partner_key = offers::dev::DEMO_PARTNER_KEY,
    );
    let outcome = run_until_signal(suite).await;
    simulator.cancel();
    outcome
}

async fn run_until_signal(mut suite: Suite) -> anyhow::Result<()> {
    let outcome = tokio::select! {
        result = suite.run_until_stopped() => result,
        () = shutdown_signal() => {
            tracing::info!("shutting down");
            Ok(())
        }
    };
    suite.stop().await;
    outcome
}

async fn shutdown_signal() {
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

/// The configured service credential, or the embedded mode's.
fn internal_token(settings: &Settings, data_dir: &Path) -> anyhow::Result<String> {
    match settings.internal_token() {
        Some(token) => Ok(token.to_string()),
        None => offers::dev::internal_token_if_present(data_dir)
            .context("internal.token (OFFERS_INTERNAL__TOKEN) is not set and no embedded-mode credential was found"),
    }
}

async fn admin(settings: Settings, data_dir: &Path, task: AdminTask) -> anyhow::Result<()> {
    let token = internal_token(&settings, data_dir)?;
    let mut client = AdminClient::connect(&settings, &token)?;
    match task {
        AdminTask::User(UserTask::Create { username, password, email, phone_number, first_name, last_name, admin }) => {
            let request = auth_pb::CreateUserRequest {
                username,
                password,
                email,
                phone_number,
                first_name,
                last_name,
                is_admin: admin,
            };
            match client.create_user(request).await? {
                offers::admin::Created::New(user) => println!("created user {} ({})", user.username, user.id),
                offers::admin::Created::Existing => anyhow::bail!("that username is taken"),
            }
        }
        AdminTask::Partner(task) => partner_admin(&mut client, task).await?,
        AdminTask::Credit { user, amount, key, memo } => {
            let user = client.user(&user).await?;
            let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let (applied, balance) = client.credit(&user.id, amount, &settings.currency, &key, &memo).await?;
            let what = if applied { "credited" } else { "already credited with this key" };
            println!("{what}: {} now has {} {} (key {key})", user.username, balance.balance, balance.currency_code);
        }
        AdminTask::Offer(OfferTask::Create {
            code,
            name,
            description,
            price,
            currency,
            duration_days,
            data_mb,
            voice_minutes,
            sms,
            inactive,
        }) => {
            let offer = catalog_pb::Offer {
                code,
                name,
                description,
                price,
                currency_code: currency.unwrap_or(settings.currency.clone()),
                duration_days,
                data_mb,
                voice_minutes,
                sms,
                is_active: !inactive,
                ..Default::default()
            };
            match client.create_offer(offer).await? {
                offers::admin::Created::New(o) => println!("created offer {} ({})", o.code, o.id),
                offers::admin::Created::Existing => anyhow::bail!("an offer with that code exists"),
            }
        }
        AdminTask::Offer(OfferTask::Update {
            id,
            name,
            description,
            price,
            duration_days,
            data_mb,
            voice_minutes,
            sms,
            active,
        }) => {
            let mut paths = Vec::new();
            let mut offer = catalog_pb::Offer { id, ..Default::default() };
            let mut set = |path: &str, given: bool| {
                if given {
                    paths.push(path.to_string());
                }
            };
            set("name", name.is_some());
            set("description", description.is_some());
            set("price", price.is_some());
            set("duration_days", duration_days.is_some());
            set("data_mb", data_mb.is_some());
            set("voice_minutes", voice_minutes.is_some());
            set("sms", sms.is_some());
            set("is_active", active.is_some());
            anyhow::ensure!(!paths.is_empty(), "nothing to change: give at least one field");
            offer.name = name.unwrap_or_default();
            offer.description = description.unwrap_or_default();
            offer.price = price.unwrap_or_default();
            offer.duration_days = duration_days.unwrap_or_default();
            offer.data_mb = data_mb.unwrap_or_default();
            offer.voice_minutes = voice_minutes.unwrap_or_default();
            offer.sms = sms.unwrap_or_default();
            offer.is_active = active.unwrap_or_default();
            let updated = client.update_offer(offer, paths).await?;
            println!("updated offer {} ({})", updated.code, updated.id);
        }
    }
    Ok(())
}

async fn partner_admin(client: &mut AdminClient, task: PartnerTask) -> anyhow::Result<()> {
    use offers_proto::partner::v1::PartnerStatus;
    match task {
        PartnerTask::Create { name } => match client.create_partner(&name).await? {
            offers::admin::Created::New(created) => {
                let partner = created.partner.context("no partner")?;
                let key = created.api_key.context("no key")?;
                println!("created partner {} ({})", partner.name, partner.id);
                println!("API key {} (id {}) — shown once, store it now:\n{}", key.prefix, key.id, created.secret);
            }
            offers::admin::Created::Existing => anyhow::bail!("a partner with that name exists"),
        },
        PartnerTask::Suspend { name } => {
            let partner = client.partner(&name).await?;
            client.set_partner_status(&partner.id, PartnerStatus::Suspended).await?;
            println!("suspended {}", partner.name);
        }
        PartnerTask::Activate { name } => {
            let partner = client.partner(&name).await?;
            client.set_partner_status(&partner.id, PartnerStatus::Active).await?;
            println!("reactivated {}", partner.name);
        }
        PartnerTask::Key(KeyTask::Create { partner }) => {
            let found = client.partner(&partner).await?;
            let created = client.create_key(&found.id, None).await?;
            let key = created.api_key.context("no key")?;
            println!(
                "API key {} (id {}) for {} — shown once, store it now:\n{}",
                key.prefix, key.id, found.name, created.secret
            );
        }
        PartnerTask::Key(KeyTask::Revoke { id }) => {
            let key = client.revoke_key(&id).await?;
            println!("revoked key {} ({})", key.prefix, key.id);
        }
    }
    Ok(())
}
