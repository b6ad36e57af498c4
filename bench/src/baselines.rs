//! The machine's own limits, measured in the same run: a bare hyper server
//! answering "hello" (the ceiling of a request through any HTTP server
//! here), PostgreSQL running the purchase transaction's own statements
//! under pgbench (the ceiling of a purchase), redis-benchmark on the cache
//! commands the suite uses, and the password hash's own cost (the ceiling
//! of a login).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use crate::driver;
use crate::report::{Latencies, Row};
use crate::workloads::Phases;

/// Serves "hello" to every request until killed (`offers-bench hello`).
pub async fn serve_hello(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        tokio::spawn(async move {
            let hello = hyper::service::service_fn(|_request| async {
                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"hello"))))
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), hello).await;
        });
    }
}

/// The hello server in its own process, so that it and the suite are
/// measured alike.
pub struct Hello {
    child: Child,
    pub addr: SocketAddr,
}

impl Hello {
    pub async fn start() -> anyhow::Result<Hello> {
        let addr = offers_harness::local::free_port()?;
        let child = Command::new(std::env::current_exe()?)
            .args(["hello", "--addr", &addr.to_string()])
            .stdout(Stdio::null())
            .spawn()?;
        let hello = Hello { child, addr };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(hello);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("the hello server did not start")
    }

    pub async fn measure(&self, phases: Phases) -> anyhow::Result<Row> {
        let addr = self.addr;
        let make = std::sync::Arc::new(move || driver::request(addr, Method::GET, "/", &[], None));
        let connect = driver::http(addr, StatusCode::OK, make, None);
        let max =
            driver::run(&connect, phases.connections, driver::Pace::Closed, phases.warmup, phases.measure).await?;
        let rate = (max.per_second() / 2.0).max(1.0);
        let pace = driver::Pace::Rate(rate);
        let half = driver::run(&connect, phases.connections, pace, phases.warmup, phases.measure).await?;
        Ok(Row::new("baseline", "hello (bare hyper, same load generator)", &max, rate, Latencies::of(&half)))
    }

    pub fn peak_rss_mib(&self) -> Option<f64> {
        crate::target::peak_rss_mib(self.child.id())
    }
}

impl Drop for Hello {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The statements of one purchase as the ledger runs them (the key looked
/// up, then in one transaction: the key, the account made sure of, the
/// conditional debit, the hold, the transaction, the outbox row).
const PURCHASE_SQL: &str = r#"\set n random(1, 10000)
SELECT gen_random_uuid() AS tx, md5(:n::text)::uuid AS payer \gset
SELECT transaction_id FROM account_idempotency_keys WHERE scope = :payer::text AND key = :tx::text;
BEGIN;
INSERT INTO account_idempotency_keys (scope, key, request_hash, transaction_id, created_at) VALUES (:payer, :tx, 'bench', :tx, now());
INSERT INTO account_accounts (id, kind, balance, credit_limit, currency, created_at, updated_at) VALUES (:payer, 'USER', 0, 0, 'XAF', now(), now()) ON CONFLICT (id) DO NOTHING;
UPDATE account_accounts SET balance = balance - 500, updated_at = now() WHERE id = :payer AND balance + credit_limit >= 500;
INSERT INTO account_transfers (id, from_account, to_account, amount, currency, kind, transaction_id, key, memo, created_at) VALUES (gen_random_uuid(), :payer, '00000000-0000-0000-0000-000000000002', 500, 'XAF', 'HOLD', :tx, 'hold:' || :tx::text, 'ACTIVATION DATA-1GB', now());
INSERT INTO account_transactions (id, user_id, kind, offer_id, offer_code, offer_name, duration_days, amount, currency, status, attempts, revision, redrive_at, created_at, updated_at, payer_account_id) VALUES (:tx, :payer, 'ACTIVATION', :payer, 'DATA-1GB', 'Data 1 GB', 7, 500, 'XAF', 'PENDING', 0, 1, now() + interval '1 minute', now(), now(), :payer) RETURNING *;
INSERT INTO account_outbox (id, topic, payload, available_at, created_at) VALUES (gen_random_uuid(), 'activation.provision', '{"transaction_id":"' || :tx::text || '","attempt":1}', now(), now());
COMMIT;
"#;

/// pgbench running [`PURCHASE_SQL`] on a scratch database with the suite's
/// own schema (made by `offers migrate`), with as many connections as the
/// account service's pool; transactions per second.
pub async fn pgbench(binary: &Path, connections: u32, seconds: f64) -> anyhow::Result<f64> {
    use sea_orm::ConnectionTrait;
    let server = offers_tests::backends::postgres_url();
    let name = format!("offers_bench_pgbench_{}", uuid::Uuid::new_v4().simple());
    let admin = sea_orm::Database::connect(format!("{server}/postgres")).await?;
    admin.execute_unprepared(&format!("CREATE DATABASE {name}")).await?;
    let url = format!("{server}/{name}");
    let outcome = async {
        let migrated = Command::new(binary)
            .arg("migrate")
            .env("OFFERS_DATABASE__URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        anyhow::ensure!(migrated.success(), "offers migrate failed on the pgbench database");
        let db = sea_orm::Database::connect(url.as_str()).await?;
        db.execute_unprepared(
            "INSERT INTO account_accounts (id, kind, balance, credit_limit, currency, created_at, updated_at) \
             SELECT md5(i::text)::uuid, 'USER', 1000000000, 0, 'XAF', now(), now() FROM generate_series(1, 10000) i",
        )
        .await?;
        db.close().await?;
        let script = std::env::temp_dir().join(format!("{name}.sql"));
        std::fs::write(&script, PURCHASE_SQL)?;
        let run = Command::new("pgbench")
            .args(["-n", "-M", "extended", "-j", "2"])
            .arg(format!("-c{connections}"))
            .arg(format!("-T{}", seconds.ceil().max(1.0)))
            .arg("-f")
            .arg(&script)
            .arg(&url)
            .output()
            .context("pgbench (Debian's postgresql-contrib or postgresql package) is not installed")?;
        let _ = std::fs::remove_file(&script);
        let out = String::from_utf8_lossy(&run.stdout);
        let tps = out
            .lines()
            .find(|l| l.starts_with("tps = "))
            .and_then(|l| l.split_whitespace().nth(2))
            .and_then(|v| v.parse::<f64>().ok());
        tps.with_context(|| format!("pgbench said: {out}{}", String::from_utf8_lossy(&run.stderr)))
    }
    .await;
    admin.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await?;
    outcome
}

/// redis-benchmark on the cache's commands: GET and SET (the transaction
/// status cache, the rate limits) and HGETALL of a 50-entry hash (the
/// offers list); requests per second of each.
pub fn redis_benchmark(connections: usize, requests: usize) -> anyhow::Result<Vec<(String, f64)>> {
    let url = offers_tests::backends::redis_url();
    let address = url.trim_start_matches("redis://").trim_end_matches('/');
    let (host, port) = address.rsplit_once(':').unwrap_or((address, "6379"));
    let key = format!("offers-bench:{}", uuid::Uuid::new_v4().simple());
    let mut fill = Command::new("redis-cli");
    fill.args(["-h", host, "-p", port, "HSET", &key]);
    let entry = "x".repeat(300);
    for n in 0..50 {
        fill.arg(format!("offer-{n}")).arg(&entry);
    }
    anyhow::ensure!(fill.stdout(Stdio::null()).status()?.success(), "redis-cli HSET failed");
    let run = |extra: &[&str]| -> anyhow::Result<Vec<(String, f64)>> {
        let out = Command::new("redis-benchmark")
            .args(["-h", host, "-p", port, "-q", "--csv", "-c", &connections.to_string(), "-n", &requests.to_string()])
            .args(extra)
            .output()
            .context("redis-benchmark (Debian's redis-tools) is not installed")?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(',').map(|f| f.trim_matches('"'));
                let (test, rps) = (fields.next()?, fields.next()?.parse().ok()?);
                Some((test.to_string(), rps))
            })
            .collect())
    };
    let mut figures = run(&["-t", "get,set"])?;
    figures.extend(run(&["HGETALL", &key])?.into_iter().map(|(_, rps)| ("HGETALL (50 entries)".to_string(), rps)));
    let _ = Command::new("redis-cli").args(["-h", host, "-p", port, "DEL", &key]).stdout(Stdio::null()).status();
    Ok(figures)
}

/// How many argon2id hashes per second this machine makes with the auth
/// service's own parameters, every core busy (a login verifies one).
pub async fn hashes_per_second(cores: usize) -> anyhow::Result<f64> {
    let hasher = std::sync::Arc::new(offers_auth::Hasher::new(cores, Duration::from_secs(60)));
    let count = cores * 6;
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for n in 0..count {
        let hasher = hasher.clone();
        tasks.push(tokio::spawn(async move { hasher.hash(format!("bench-password-{n}")).await }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / started.elapsed().as_secs_f64())
}
