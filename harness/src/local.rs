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

use offers::roles::Role;
use offers::settings::{Settings, Upstream, write_private};

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
    /// A command every process runs under (a profiler and its options,
    /// the binary's path and arguments after them); empty: none.
    pub wrapper: Vec<String>,
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
    wrapper: Vec<String>,
}

const STATE_FILE: &str = "processes.json";

/// Ports handed to processes come from below the ephemeral range (32768
/// and up on Linux), which outgoing connections and `bind(0)` draw from.
/// Between our check and the process's bind nothing holds the port, so this
/// process never hands out the same one twice (deployments started side by
/// side, as the tests do, would otherwise collide now and then); only
/// another program choosing from the same range could still take it.
const PORTS: std::ops::Range<u16> = 20_000..32_000;

/// `binary` run by `wrapper` (a program and its options), or on its own
/// when that is empty.
pub fn command_under(wrapper: &[String], binary: &Path) -> Command {
    match wrapper.split_first() {
        Some((program, options)) => {
            let mut command = Command::new(program);
            command.args(options).arg(binary);
            command
        }
        None => Command::new(binary),
    }
}

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
        let Plan { binary, dir, mut settings, replicas, env, wrapper } = plan;
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
        // Every process serves plain HTTP on loopback: a `Secure` session cookie would never come back.
        settings.console.secure_cookie = false;
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
            Deployment { dir, settings, members: Vec::new(), children: Vec::new(), binary, config, env, wrapper };
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
        // Under a profiler such as callgrind everything runs some 50 times
        // slower, start-up included, and the processes share the cores.
        let within = if deployment.wrapper.is_empty() { 90 } else { 1_800 };
        deployment.wait_ready(Duration::from_secs(within)).await?;
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
        let mut command = command_under(&self.wrapper, &self.binary);
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
        let grace = self.settings.shutdown_grace + Duration::from_secs(5);
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
const LOCAL_REDIS: &str = "redis://127.0.0.1:6379";
const LOCAL_RABBITMQ: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The database, cache prefix and queue prefix of the deployment in a
/// directory, named after it (a hash of its canonical path): each
/// directory has its own key-encryption key, so two directories on one
/// machine must never share the keys it seals, nor anything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalNames {
    pub database: String,
    pub cache_prefix: String,
    pub bus_prefix: String,
}

impl LocalNames {
    /// The names of `dir`'s deployment; the directory must exist.
    pub fn of(dir: &Path) -> anyhow::Result<LocalNames> {
        use sha2::Digest;
        let canonical = dir.canonicalize().with_context(|| format!("cannot resolve {}", dir.display()))?;
        let digest = sha2::Sha256::digest(canonical.as_os_str().as_encoded_bytes());
        let tag = hex::encode(&digest[..4]);
        Ok(LocalNames {
            database: format!("offers_local_{tag}"),
            cache_prefix: format!("offers-local-{tag}:"),
            bus_prefix: format!("offers-local-{tag}"),
        })
    }
}

/// Which of the local services `dir`'s deployment runs on — those the
/// configuration leaves to the default — under the directory's names;
/// `settings` are pointed at them. `None` where the configuration named
/// its own (never created, never purged here).
#[derive(Debug, Default)]
struct Owned {
    database: Option<String>,
    cache_prefix: Option<String>,
    bus_prefix: Option<String>,
}

fn adopt_local_services(settings: &mut Settings, dir: &Path) -> anyhow::Result<Owned> {
    let names = LocalNames::of(dir)?;
    let mut owned = Owned::default();
    if settings.database.url.starts_with("sqlite:") {
        settings.database.url = format!("{LOCAL_POSTGRES}/{}", names.database);
        owned.database = Some(names.database);
    }
    if settings.cache.url == "memory://" {
        settings.cache.url = LOCAL_REDIS.into();
        settings.cache.prefix.clone_from(&names.cache_prefix);
        owned.cache_prefix = Some(names.cache_prefix);
    }
    if settings.bus.url == "memory://" {
        settings.bus.url = LOCAL_RABBITMQ.into();
        settings.bus.prefix.clone_from(&names.bus_prefix);
        owned.bus_prefix = Some(names.bus_prefix);
    }
    Ok(owned)
}

/// `offers local up`: the suite on this machine's PostgreSQL, Redis and
/// RabbitMQ (unless the configuration names others), with the
/// provisioning simulator and the demo data, left running.
pub async fn up(mut settings: Settings, dir: &Path, replicas: Replicas) -> anyhow::Result<Deployment> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(database) = adopt_local_services(&mut settings, dir)?.database {
        ensure_database(LOCAL_POSTGRES, &database).await?;
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
    let plan = Plan { binary, dir: dir.to_path_buf(), settings, replicas, env: Vec::new(), wrapper: Vec::new() };
    let mut deployment = Deployment::start(plan).await?;
    if let Some((member, child)) = simulator {
        deployment.members.push(member);
        deployment.children.push(child);
    }
    let token = deployment.settings.internal_token().context("no internal credential")?.to_string();
    let mut admin = offers::admin::AdminClient::connect(&deployment.settings, &token)?;
    offers::dev::seed(&mut admin, &deployment.settings.currency).await?;
    Ok(deployment)
}

/// Creates `name` on the PostgreSQL server at `server` unless it exists.
async fn ensure_database(server: &str, name: &str) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, Statement};
    let admin = postgres_server(server).await?;
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

/// What `offers local down --purge` threw away.
#[derive(Debug, Default)]
pub struct Purged {
    pub database: Option<String>,
    pub cache_keys: Option<usize>,
    pub bus_prefix: Option<String>,
}

/// `offers local down --purge`, once the processes are stopped: drops what
/// `up` made for `dir` on the local services — its database, its cache
/// keys, its queues and exchanges (not what the configuration pointed
/// elsewhere) — and the directory itself, so the next `up` starts afresh.
pub async fn purge(settings: &Settings, dir: &Path) -> anyhow::Result<Purged> {
    let mut settings = settings.clone();
    let owned = adopt_local_services(&mut settings, dir)?;
    let mut purged = Purged::default();
    if let Some(database) = owned.database {
        drop_database(LOCAL_POSTGRES, &database).await?;
        purged.database = Some(database);
    }
    if owned.cache_prefix.is_some() {
        let cache = offers_kit::cache::RedisCache::new(&settings.cache.url, &settings.cache.prefix)?;
        purged.cache_keys = Some(cache.purge().await.context("cannot purge the cache")?);
    }
    if let Some(prefix) = owned.bus_prefix {
        // Every delay tier a job can wait in, up to a day and more.
        let tiers: Vec<u64> = (0..=27).map(|p| 1u64 << p).collect();
        offers_kit::bus::RabbitBus::new(&settings.bus)
            .delete_topology(offers::TOPICS, &tiers)
            .await
            .context("cannot delete the queues")?;
        purged.bus_prefix = Some(prefix);
    }
    // Only what `up` writes: `--dir` may name a directory with more in it.
    for file in ["config.json", "auth-kek", "internal-token", "notifications.log", STATE_FILE] {
        match std::fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("cannot remove {file} in {}", dir.display()));
            }
            _ => {}
        }
    }
    let logs = dir.join("logs");
    if logs.exists() {
        std::fs::remove_dir_all(&logs).with_context(|| format!("cannot remove {}", logs.display()))?;
    }
    // Left in place if anything else lives there.
    let _ = std::fs::remove_dir(dir);
    Ok(purged)
}

/// Whether a deployment is recorded as running in `dir`.
pub fn recorded(dir: &Path) -> bool {
    dir.join(STATE_FILE).exists()
}

/// The maintenance database of the PostgreSQL server at `server`.
async fn postgres_server(server: &str) -> anyhow::Result<sea_orm::DatabaseConnection> {
    sea_orm::Database::connect(format!("{server}/postgres"))
        .await
        .with_context(|| format!("cannot reach PostgreSQL at {server}"))
}

async fn drop_database(server: &str, name: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let admin = postgres_server(server).await?;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    admin.close().await.ok();
    Ok(())
}

/// Sends the signal `name` (`TERM`, `INT`, `0` to ask whether it lives) to `pid`.
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
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
    fn a_wrapper_runs_the_binary_with_its_options_before_the_binary() {
        let binary = Path::new("/opt/offers/bin/offers");
        let wrapped = command_under(&["valgrind".into(), "--tool=callgrind".into()], binary);
        assert_eq!(wrapped.get_program(), "valgrind");
        let args: Vec<_> = wrapped.get_args().collect();
        assert_eq!(args, ["--tool=callgrind", "/opt/offers/bin/offers"]);
        let bare = command_under(&[], binary);
        assert_eq!(bare.get_program(), binary.as_os_str());
        assert_eq!(bare.get_args().count(), 0);
    }

    #[test]
    fn each_directory_has_its_own_database_and_prefixes() {
        let root = std::env::temp_dir().join(format!("offers-local-names-{}", uuid::Uuid::new_v4().simple()));
        let (a, b) = (root.join("a"), root.join("b"));
        std::fs::create_dir_all(&a).expect("a");
        std::fs::create_dir_all(&b).expect("b");
        let names = LocalNames::of(&a).expect("names");
        assert_eq!(names, LocalNames::of(&root.join("b/../a/.")).expect("names"), "one directory, however spelt");
        let other = LocalNames::of(&b).expect("names");
        assert_ne!(names.database, other.database);
        assert_ne!(names.cache_prefix, other.cache_prefix);
        assert_ne!(names.bus_prefix, other.bus_prefix);
        // A PostgreSQL identifier that needs no quoting.
        assert!(names.database.len() <= 63);
        assert!(names.database.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));

        // The defaults are adopted under those names; what the
        // configuration names is left alone and never purged.
        let mut settings = Settings::default();
        let owned = adopt_local_services(&mut settings, &a).expect("adopted");
        assert_eq!(owned.database.as_ref(), Some(&names.database));
        assert!(settings.database.url.ends_with(&format!("/{}", names.database)));
        assert_eq!(
            (settings.cache.prefix.as_str(), settings.bus.prefix.as_str()),
            (names.cache_prefix.as_str(), names.bus_prefix.as_str())
        );
        let mut configured = Settings::default();
        configured.database.url = "postgres://db.example/offers".into();
        let owned = adopt_local_services(&mut configured, &a).expect("adopted");
        assert!(owned.database.is_none());
        assert_eq!(configured.database.url, "postgres://db.example/offers");
        std::fs::remove_dir_all(&root).expect("cleaned up");
    }

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
