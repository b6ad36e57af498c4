//! The suite under measurement, started from the release binary: `offers
//! dev` as one process on the embedded backends, or every role as its own
//! process on PostgreSQL, Redis and RabbitMQ (the local deployment), with
//! the provisioning simulator answering at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use offers::admin::AdminClient;
use offers::roles::Role;
use offers::settings::{Settings, write_private};
use offers_harness::local::{Replicas, command_under, free_port, http_status};
use offers_kit::token::{TokenSigner, generate_keypair};
use offers_tests::TestSuite;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `offers dev`: SQLite, the in-memory cache and bus, one process.
    Embedded,
    /// Separate processes on PostgreSQL, Redis and RabbitMQ.
    Real,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Embedded => "embedded",
            Backend::Real => "real",
        })
    }
}

pub struct Target {
    pub backend: Backend,
    pub edge: SocketAddr,
    /// The catalog's public gRPC listener.
    pub catalog_grpc: SocketAddr,
    pub settings: Settings,
    pub signer: TokenSigner,
    pub db: sea_orm::DatabaseConnection,
    running: Running,
}

enum Running {
    Dev { child: Child, dir: PathBuf },
    Processes(Box<TestSuite>),
}

/// Settings that keep the harness's own traffic from being limited: it
/// logs the same few users in thousands of times from one address.
fn unlimited(settings: &mut Settings) {
    offers_harness::overrides::unlimited(settings);
    settings.provisioning.simulator_latency = Duration::ZERO;
    settings.provisioning.simulator_failure_percent = 0;
    settings.telemetry.log_filter = "warn".into();
}

impl Target {
    pub async fn start(backend: Backend, binary: &Path) -> anyhow::Result<Target> {
        Self::start_under(backend, binary, &[]).await
    }

    /// The suite with every process run by `wrapper` (a profiler and its
    /// options; empty: none). Under a profiler, the processes of the real
    /// backend run once each.
    pub async fn start_under(backend: Backend, binary: &Path, wrapper: &[String]) -> anyhow::Result<Target> {
        match backend {
            // Under callgrind everything runs some 50 times slower, start-up included.
            Backend::Embedded => {
                let within = if wrapper.is_empty() { 60 } else { 900 };
                Self::dev(binary, wrapper, Duration::from_secs(within)).await
            }
            Backend::Real => Self::processes(wrapper).await,
        }
    }

    async fn dev(binary: &Path, wrapper: &[String], within: Duration) -> anyhow::Result<Target> {
        let dir = std::env::temp_dir().join(format!("offers-bench-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let (pem, _) = generate_keypair()?;
        let mut settings = Settings::default();
        unlimited(&mut settings);
        settings.auth.private_key_pem = Some(secrecy::SecretString::from(pem.clone()));
        let config = dir.join("config.json");
        write_private(&config, &offers_kit::config::unredacted(|| serde_json::to_string(&settings))?)?;
        let (http, grpc, internal) = (free_port()?, free_port()?, free_port()?);
        let log = std::fs::File::create(dir.join("offers.log"))?;
        let child = command_under(wrapper, binary)
            .arg("--config")
            .arg(&config)
            .args(["dev", "--http", &http.to_string(), "--grpc", &grpc.to_string()])
            .args(["--internal-grpc", &internal.to_string(), "--data-dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let running = Running::Dev { child, dir: dir.clone() };
        ready(http, within).await.with_context(|| format!("see {}", dir.join("offers.log").display()))?;
        // The settings a client of this process needs: its credential
        // (made by `offers dev` in the data directory) and its listeners.
        let mut settings = settings.embedded(&dir)?;
        let (public, internal) = (format!("http://{grpc}"), format!("http://{internal}"));
        for service in Role::ALL.iter().filter_map(|r| r.needs().serves) {
            settings.upstream.serve_here(service, &public, &internal);
        }
        let db = offers_kit::db::connect(&settings.database).await?;
        let signer = signer(&settings, &pem)?;
        Ok(Target { backend: Backend::Embedded, edge: http, catalog_grpc: grpc, settings, signer, db, running })
    }

    async fn processes(wrapper: &[String]) -> anyhow::Result<Target> {
        let suite = if wrapper.is_empty() {
            TestSuite::spawn_processes_with(Replicas::default(), Vec::new(), unlimited).await
        } else {
            let once = Replicas::default().set(Role::Activation, 1).set(Role::Worker, 1);
            TestSuite::spawn_processes_under(once, wrapper.to_vec(), unlimited).await
        }
        .context("PostgreSQL, Redis or RabbitMQ is not reachable")?;
        let deployment = suite.processes().context("a deployment")?;
        let catalog = deployment.members_of(Role::Catalog).next().and_then(|m| m.grpc).context("a catalog process")?;
        let signer = signer(&suite.settings, &suite.private_key_pem)?;
        Ok(Target {
            backend: Backend::Real,
            edge: suite.http_addr,
            catalog_grpc: catalog,
            settings: suite.settings.clone(),
            signer,
            db: suite.database().clone(),
            running: Running::Processes(Box::new(suite)),
        })
    }

    pub fn admin(&self) -> anyhow::Result<AdminClient> {
        let mut admin =
            AdminClient::connect(&self.settings, self.settings.internal_token().context("no internal credential")?)?;
        admin.act_as("offers-bench", "the benchmark's population");
        Ok(admin)
    }

    /// Every process of the suite, by name.
    pub fn processes_by_name(&self) -> Vec<(String, u32)> {
        match &self.running {
            Running::Dev { child, .. } => vec![("offers-dev".into(), child.id())],
            Running::Processes(suite) => {
                suite.processes().map(|d| d.members.iter().map(|m| (m.name(), m.pid)).collect()).unwrap_or_default()
            }
        }
    }

    /// The process with the largest peak RSS so far, and that peak in MiB.
    pub fn largest_peak_rss(&self) -> Option<(String, f64)> {
        let peaks = self.processes_by_name().into_iter().filter_map(|(name, pid)| Some((name, peak_rss_mib(pid)?)));
        peaks.max_by(|a, b| a.1.total_cmp(&b.1))
    }

    /// Stops (`SIGSTOP`) or resumes (`SIGCONT`) every process of `role`.
    /// `false` when the role has no process of its own (`offers dev`).
    pub fn pause(&self, role: Role, paused: bool) -> anyhow::Result<bool> {
        let Running::Processes(suite) = &self.running else { return Ok(false) };
        let deployment = suite.processes().context("a deployment")?;
        for member in deployment.members_of(role) {
            offers_harness::local::signal(member.pid, if paused { "STOP" } else { "CONT" })?;
        }
        Ok(true)
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        match self.running {
            Running::Dev { mut child, dir } => {
                child.kill()?;
                child.wait()?;
                std::fs::remove_dir_all(dir)?;
            }
            // The harness checked the books itself and reported what it
            // found; dropping the suite stops its processes and removes its
            // database, whatever the books say.
            Running::Processes(suite) => drop(suite),
        }
        Ok(())
    }
}

fn signer(settings: &Settings, pem: &str) -> anyhow::Result<TokenSigner> {
    let auth = &settings.auth;
    // Long enough for the whole run: a token expiring mid-phase would be an error of ours.
    Ok(TokenSigner::from_pem(pem, &auth.issuer, &auth.audience, 3_600)?)
}

async fn ready(http: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_status(http, "/readyz").await == Some(200) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("offers dev was not ready within {within:?}")
}

/// The peak resident memory of a process so far (`VmHWM`), in MiB.
pub fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
