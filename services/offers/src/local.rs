//! The production shape on one machine: every role as its own `offers
//! serve <role>` process (two replicas of activation and of the worker),
//! talking gRPC over loopback, on PostgreSQL, Redis and RabbitMQ. `offers
//! local up` (and `deploy/local/up`) starts one and leaves it running;
//! `offers local down` stops it; the tests start one per scenario.
//!
//! Every process reads one configuration file written here (secrets
//! included, mode 0600) and is told its own listeners on the command line;
//! each logs JSON to a file of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::roles::Role;
use crate::settings::{Settings, Upstream, write_private};

/// How many processes of each role; a role not named runs once.
#[derive(Debug, Clone)]
pub struct Replicas(BTreeMap<String, usize>);

impl Default for Replicas {
    /// Two of what scales out under load: activation and the worker.
    fn default() -> Self {
        Self(BTreeMap::from([(Role::Activation.to_string(), 2), (Role::Worker.to_string(), 2)]))
    }
}

impl Replicas {
    pub fn set(mut self, role: Role, count: usize) -> Self {
        self.0.insert(role.to_string(), count.max(1));
        self
    }

    fn of(&self, role: Role) -> usize {
        self.0.get(&role.to_string()).copied().unwrap_or(1)
    }
}

/// What to start.
pub struct Plan {
    /// The `offers` binary every process runs.
    pub binary: PathBuf,
    /// Where the configuration, the logs and the list of processes go.
    pub dir: PathBuf,
    /// The configuration every process shares (backends, secrets, timings);
    /// listeners and upstreams are filled in here.
    pub settings: Settings,
    pub replicas: Replicas,
    /// Extra environment for every process.
    pub env: Vec<(String, String)>,
}

/// One running process of the deployment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub role: String,
    pub replica: usize,
    pub pid: u32,
    pub http: SocketAddr,
    pub grpc: Option<SocketAddr>,
    pub internal_grpc: Option<SocketAddr>,
    pub log: PathBuf,
}

impl Member {
    pub fn name(&self) -> String {
        format!("{}-{}", self.role, self.replica)
    }
}

/// A started deployment. Dropping it kills what it started (tests);
/// [`Deployment::detach`] leaves the processes running (`offers local up`).
pub struct Deployment {
    pub dir: PathBuf,
    /// The settings as every process has them (upstreams filled in).
    pub settings: Settings,
    pub members: Vec<Member>,
    children: Vec<Child>,
    binary: PathBuf,
    config: PathBuf,
    env: Vec<(String, String)>,
}

const STATE_FILE: &str = "processes.json";

/// Ports handed to processes come from below the ephemeral range (32768
/// and up on Linux), which outgoing connections and `bind(0)` draw from.
/// Between our check and the process's bind nothing holds the port, so this
/// process never hands out the same one twice (deployments started side by
/// side, as the tests do, would otherwise collide now and then); only
/// another program choosing from the same range could still take it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// A free port on loopback that no earlier call returned.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    static HANDED_OUT: std::sync::Mutex<BTreeSet<u16>> = std::sync::Mutex::new(BTreeSet::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if handed_out.len() > usize::from(PORTS.end - PORTS.start) / 2 {
        // Long-lived callers cycle through the range; the oldest are long gone.
        handed_out.clear();
    }
    for _ in 0..1000 {
        let port = rand::random_range(PORTS);
        if handed_out.contains(&port) {
            continue;
        }
        if let Ok(listener) = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            handed_out.insert(port);
            return Ok(listener.local_addr()?);
        }
    }
    bail!("no free local port between {} and {}", PORTS.start, PORTS.end)
}

struct Slot {
    role: Role,
    replica: usize,
    http: SocketAddr,
    grpc: Option<(SocketAddr, SocketAddr)>,
}

impl Deployment {
    /// Applies migrations, starts every process and waits until each says
    /// it is ready (or fails, with the end of the log of what did not start).
    pub async fn start(plan: Plan) -> anyhow::Result<Deployment> {
        let Plan { binary, dir, mut settings, replicas, env } = plan;
        let logs = dir.join("logs");
        std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;
        let mut slots = Vec::new();
        for &role in Role::ALL {
            for replica in 1..=replicas.of(role) {
                let grpc = match role.needs().serves {
                    Some(_) => Some((free_port()?, free_port()?)),
                    None => None,
                };
                slots.push(Slot { role, replica, http: free_port()?, grpc });
            }
        }
        point_upstreams(&mut settings, &slots);
        settings.telemetry.log_format = "json".into();
        settings.check()?;
        let config = dir.join("config.json");
        let json = offers_kit::config::unredacted(|| serde_json::to_string_pretty(&settings))?;
        write_private(&config, &json)?;

        let migrate = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .arg("migrate")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", binary.display()))?;
        if !migrate.status.success() {
            bail!("offers migrate failed: {}", String::from_utf8_lossy(&migrate.stderr));
        }

        let mut deployment =
            Deployment { dir, settings, members: Vec::new(), children: Vec::new(), binary, config, env };
        for slot in &slots {
            let name = format!("{}-{}", slot.role, slot.replica);
            let member = Member {
                role: slot.role.to_string(),
                replica: slot.replica,
                pid: 0,
                http: slot.http,
                grpc: slot.grpc.map(|(p, _)| p),
                internal_grpc: slot.grpc.map(|(_, i)| i),
                log: logs.join(format!("{name}.log")),
            };
            let child = deployment.spawn(&member)?;
            deployment.members.push(Member { pid: child.id(), ..member });
            deployment.children.push(child);
        }
        deployment.wait_ready(Duration::from_secs(90)).await?;
        Ok(deployment)
    }

    /// Where the REST edge listens.
    pub fn edge(&self) -> SocketAddr {
        self.members.iter().find(|m| m.role == Role::Gateway.to_string()).map_or(self.members[0].http, |m| m.http)
    }

    pub fn members_of(&self, role: Role) -> impl Iterator<Item = &Member> {
        let role = role.to_string();
        self.members.iter().filter(move |m| m.role == role)
    }

    /// Starts the process of `member` on its listeners, logging to its log
    /// (appended to, so a restarted member's log tells its whole story).
    fn spawn(&self, member: &Member) -> anyhow::Result<Child> {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&member.log)
            .with_context(|| format!("cannot write {}", member.log.display()))?;
        let mut command = Command::new(&self.binary);
        command
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .arg(&member.role)
            .arg("--http")
            .arg(member.http.to_string())
            .env("OFFERS_TELEMETRY__SERVICE_NAME", format!("offers-{}", member.role))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out);
        if let (Some(public), Some(internal)) = (member.grpc, member.internal_grpc) {
            command.arg("--grpc").arg(public.to_string()).arg("--internal-grpc").arg(internal.to_string());
        }
        // A group of its own: a Ctrl-C meant for `offers local up` does
        // not reach the suite it leaves running.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        command.spawn().with_context(|| format!("cannot start {}", member.name()))
    }

    /// Starts `member` again (after it exited or was killed) on the same
    /// listeners, and waits until it is ready.
    pub async fn restart(&mut self, member: &Member, within: Duration) -> anyhow::Result<()> {
        let index = self.members.iter().position(|m| m.name() == member.name()).context("not a member")?;
        if self.children[index].try_wait()?.is_none() {
            bail!("{} is still running", member.name());
        }
        let child = self.spawn(&self.members[index])?;
        self.members[index].pid = child.id();
        self.children[index] = child;
        self.wait_ready_of(vec![index], within).await
    }

    /// Kills `member` at once (SIGKILL: no grace, nothing flushed, as a
    /// crash would) and reaps it.
    pub fn kill(&mut self, member: &Member) -> anyhow::Result<()> {
        let index = self.members.iter().position(|m| m.name() == member.name()).context("not a member")?;
        self.children[index].kill()?;
        self.children[index].wait()?;
        Ok(())
    }

    async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        self.wait_ready_of((0..self.members.len()).collect(), within).await
    }

    async fn wait_ready_of(&mut self, mut waiting: Vec<usize>, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while !waiting.is_empty() {
            let mut still = Vec::new();
            for index in waiting {
                if let Some(status) = self.children[index].try_wait()? {
                    let member = &self.members[index];
                    bail!("{} exited ({status}) before it was ready:\n{}", member.name(), tail(&member.log, 20));
                }
                if http_status(self.members[index].http, "/readyz").await != Some(200) {
                    still.push(index);
                }
            }
            waiting = still;
            if !waiting.is_empty() {
                if Instant::now() > deadline {
                    let names: Vec<String> = waiting.iter().map(|&i| self.members[i].name()).collect();
                    let log = tail(&self.members[waiting[0]].log, 20);
                    bail!("not ready after {within:?}: {}\n{log}", names.join(", "));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Leaves the processes running and records them for `offers local down`.
    pub fn detach(mut self) -> anyhow::Result<PathBuf> {
        let state = self.dir.join(STATE_FILE);
        std::fs::write(&state, serde_json::to_string_pretty(&self.members)?)?;
        self.children.clear();
        Ok(state)
    }

    /// Asks `member` to stop (SIGTERM) and waits up to `within` for it to
    /// exit; its exit status, or `None` if it is still running.
    pub async fn terminate(&mut self, member: &Member, within: Duration) -> anyhow::Result<Option<i32>> {
        let index = self.members.iter().position(|m| m.name() == member.name()).context("not a member")?;
        signal(self.members[index].pid, "TERM")?;
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.children[index].try_wait()? {
                return Ok(Some(status.code().unwrap_or(-1)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(None)
    }

    /// Stops every process gracefully, killing what outlives the grace.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let grace = Duration::from_secs(self.settings.shutdown_grace_secs + 5);
        for member in &self.members {
            let _ = signal(member.pid, "TERM");
        }
        let deadline = Instant::now() + grace;
        for child in &mut self.children {
            while child.try_wait()?.is_none() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }
}

impl Drop for Deployment {
    fn drop(&mut self) {
        for child in &mut self.children {
            if let Ok(None) = child.try_wait() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// The local services a deployment uses unless configured otherwise.
const LOCAL_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432";
const LOCAL_DATABASE: &str = "offers_local";
const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";
const LOCAL_RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// `offers local up`: the suite on this machine's PostgreSQL, Redis and
/// RabbitMQ (unless the configuration names others), with the
/// provisioning simulator and the demo data, left running.
pub async fn up(mut settings: Settings, dir: &Path, replicas: Replicas) -> anyhow::Result<Deployment> {
    if settings.database.url.starts_with("sqlite:") {
        ensure_database(LOCAL_POSTGRES, LOCAL_DATABASE).await?;
        settings.database.url = format!("{LOCAL_POSTGRES}/{LOCAL_DATABASE}");
    }
    if settings.cache.url == "memory://" {
        settings.cache.url = LOCAL_REDIS.into();
        settings.cache.prefix = "offers-local:".into();
    }
    if settings.bus.url == "memory://" {
        settings.bus.url = LOCAL_RABBITMQ.into();
        settings.bus.prefix = "offers-local".into();
    }
    let mut settings = settings.with_secrets_in(dir)?;
    // What only a deployment on one's own machine allows: the demo
    // partner's well-known key, callbacks to local servers.
    settings.partner.allow_preset_keys = true;
    settings.partner.allow_private_callbacks = true;
    if settings.notifier.sink_file.is_none() && settings.notifier.smtp_url.is_none() {
        settings.notifier.sink_file = Some(dir.join("notifications.log"));
    }
    let binary = std::env::current_exe().context("cannot find the offers binary")?;
    let simulator = match settings.provisioning.url {
        Some(_) => None,
        None => {
            let addr = free_port()?;
            settings.provisioning.url = Some(format!("http://{addr}"));
            let log = dir.join("logs").join("sim-provider-1.log");
            std::fs::create_dir_all(dir.join("logs"))?;
            let out = std::fs::File::create(&log)?;
            let mut command = Command::new(&binary);
            command.args(["sim-provider", "--addr", &addr.to_string()]).stdout(out.try_clone()?).stderr(out);
            #[cfg(unix)]
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let child = command.spawn().context("cannot start the provisioning simulator")?;
            let member = Member {
                role: "sim-provider".into(),
                replica: 1,
                pid: child.id(),
                http: addr,
                grpc: None,
                internal_grpc: None,
                log,
            };
            Some((member, child))
        }
    };
    let plan = Plan { binary, dir: dir.to_path_buf(), settings, replicas, env: Vec::new() };
    let mut deployment = Deployment::start(plan).await?;
    if let Some((member, child)) = simulator {
        deployment.members.push(member);
        deployment.children.push(child);
    }
    let token = deployment.settings.internal_token().context("no internal credential")?.to_string();
    let mut admin = crate::admin::AdminClient::connect(&deployment.settings, &token)?;
    crate::dev::seed(&mut admin, &deployment.settings.currency).await?;
    Ok(deployment)
}

/// Creates `name` on the PostgreSQL server at `server` unless it exists.
async fn ensure_database(server: &str, name: &str) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Database, Statement};
    let admin = Database::connect(format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {server}"))?;
    let exists = admin
        .query_one_raw(Statement::from_sql_and_values(
            sea_orm::DbBackend::Postgres,
            "SELECT 1 FROM pg_database WHERE datname = $1",
            [name.into()],
        ))
        .await?
        .is_some();
    if !exists {
        admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
    }
    admin.close().await.ok();
    Ok(())
}

/// Points every upstream at all replicas of the role that serves it.
fn point_upstreams(settings: &mut Settings, slots: &[Slot]) {
    let scheme = settings.tls.scheme();
    for service in [Upstream::Auth, Upstream::Catalog, Upstream::Account, Upstream::Activation, Upstream::Partner] {
        let serving = slots.iter().filter(|s| s.role.needs().serves == Some(service));
        let (public, internal): (Vec<String>, Vec<String>) =
            serving.filter_map(|s| s.grpc).map(|(p, i)| (format!("{scheme}://{p}"), format!("{scheme}://{i}"))).unzip();
        settings.upstream.serve_here(service, &public.join(","), &internal.join(","));
    }
}

/// Stops the deployment recorded in `dir` (`offers local down`): SIGTERM to
/// every process, SIGKILL to any still running after `grace`.
pub async fn down(dir: &Path, grace: Duration) -> anyhow::Result<usize> {
    let state = dir.join(STATE_FILE);
    let text =
        std::fs::read_to_string(&state).with_context(|| format!("no deployment recorded in {}", dir.display()))?;
    let members: Vec<Member> = serde_json::from_str(&text)?;
    // The edge first, so no new work arrives while the rest drain.
    let (edge, rest): (Vec<&Member>, Vec<&Member>) = members.iter().partition(|m| m.role == Role::Gateway.to_string());
    for member in edge.iter().chain(rest.iter()) {
        let _ = signal(member.pid, "TERM");
    }
    let deadline = Instant::now() + grace;
    while members.iter().any(|m| alive(m.pid)) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for member in members.iter().filter(|m| alive(m.pid)) {
        tracing::warn!(process = %member.name(), "still running after the grace period; killing it");
        let _ = signal(member.pid, "KILL");
    }
    std::fs::remove_file(&state)?;
    Ok(members.len())
}

fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = Command::new("kill").arg(format!("-{name}")).arg(pid.to_string()).stderr(Stdio::null()).status()?;
    if status.success() { Ok(()) } else { bail!("could not signal process {pid}") }
}

fn alive(pid: u32) -> bool {
    signal(pid, "0").is_ok()
}

/// The last `lines` lines of a log, for an error message.
fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The status code of a plain HTTP GET, or `None` if nothing answered.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(3), ask).await.ok().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_port_is_handed_out_twice() {
        let mut seen = BTreeSet::new();
        for _ in 0..2_000 {
            let port = free_port().expect("a free port").port();
            assert!(PORTS.contains(&port));
            assert!(seen.insert(port), "port {port} handed out twice");
        }
    }

    #[test]
    fn upstreams_name_every_replica() {
        let mut settings = Settings::default();
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let slots = [
            Slot { role: Role::Catalog, replica: 1, http: addr(1), grpc: Some((addr(11), addr(12))) },
            Slot { role: Role::Catalog, replica: 2, http: addr(2), grpc: Some((addr(21), addr(22))) },
            Slot { role: Role::Worker, replica: 1, http: addr(3), grpc: None },
        ];
        point_upstreams(&mut settings, &slots);
        assert_eq!(settings.upstream.catalog, "http://127.0.0.1:11,http://127.0.0.1:21");
        assert_eq!(settings.upstream.catalog_internal, "http://127.0.0.1:12,http://127.0.0.1:22");
        assert_eq!(Replicas::default().of(Role::Worker), 2);
        assert_eq!(Replicas::default().of(Role::Gateway), 1);
    }
}
