//! `offers-bench`: the suite under load beside the machine's own limits,
//! in one run, printed as one table and written as JSON. See bench/README.md.

mod baselines;
mod driver;
mod flamegraphs;
mod instructions;
mod population;
mod report;
mod target;
mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::population::Size;
use crate::report::{Memory, Report, Row};
use crate::target::{Backend, Target};
use crate::workloads::Phases;

#[derive(Parser)]
#[command(about = "Measure the suite against this machine's own limits")]
struct Cli {
    /// Under a minute: a small population, short phases, the embedded
    /// backend only (unless --backend says otherwise). For CI.
    #[arg(long)]
    quick: bool,
    /// Which backends to measure (default: both; with --quick, embedded).
    #[arg(long, value_enum)]
    backend: Vec<Backend>,
    /// Users with balances (default 10,000; quick 500).
    #[arg(long)]
    users: Option<usize>,
    #[arg(long, default_value_t = 50)]
    offers: usize,
    /// Past transactions of the user W7 lists (default 100,000; quick 2,000).
    #[arg(long)]
    history: Option<usize>,
    /// Seconds each measurement runs after its warm-up (default 5; quick 1).
    #[arg(long)]
    seconds: Option<f64>,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long, default_value = "target/bench/latest.json")]
    out: PathBuf,
    /// Instead of rates: instructions per request of W1, W2, W3, W4 and W6,
    /// counted by callgrind (the same on a busy or an idle machine) on
    /// `offers dev`, or with `--backend real` process by process; written
    /// to target/bench/instructions.json.
    #[arg(long)]
    instructions: bool,
    /// Instead of rates: a flame graph of each of W1, W2, W3, W4 and W6
    /// (perf and inferno), in target/bench/<backend>/, with the functions
    /// that take the most samples printed.
    #[arg(long)]
    flamegraphs: bool,
    /// Requests counted per workload with --instructions (default 400; quick 100).
    #[arg(long)]
    requests: Option<u64>,
    #[command(subcommand)]
    command: Option<Helper>,
}

#[derive(Subcommand)]
enum Helper {
    /// The baseline server: answers "hello" to everything (started by the harness).
    #[command(hide = true)]
    Hello {
        #[arg(long)]
        addr: SocketAddr,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Helper::Hello { addr }) = cli.command {
        return baselines::serve_hello(addr).await;
    }
    let quick = cli.quick;
    let size = Size {
        users: cli.users.unwrap_or(if quick { 500 } else { 10_000 }),
        offers: cli.offers.max(6),
        members: if quick { 16 } else { 64 },
        history: cli.history.unwrap_or(if quick { 2_000 } else { 100_000 }),
    };
    let measure = Duration::from_secs_f64(cli.seconds.unwrap_or(if quick { 1.0 } else { 5.0 }));
    let phases = Phases { warmup: measure / 4, measure, connections: cli.connections.max(1) };
    let backends = match (cli.backend.is_empty(), quick) {
        (false, _) => cli.backend.clone(),
        (true, true) => vec![Backend::Embedded],
        (true, false) => vec![Backend::Embedded, Backend::Real],
    };
    let binary = release_binary()?;
    offers_tests::use_offers_binary(binary.clone());
    if cli.instructions {
        let requests = cli.requests.unwrap_or(if quick { 100 } else { 400 });
        // Instruction counts default to `offers dev` alone, with or without --quick.
        let backends = if cli.backend.is_empty() { vec![Backend::Embedded] } else { cli.backend.clone() };
        return count_instructions(&binary, &backends, requests).await;
    }
    if cli.flamegraphs {
        return draw_flamegraphs(&binary, &backends, size, phases).await;
    }
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut report = Report {
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        cpu: cpu_model(),
        cores,
        command: std::env::args().collect::<Vec<_>>().join(" "),
        population: size,
        connections: phases.connections,
        warmup_secs: phases.warmup.as_secs_f64(),
        measure_secs: measure.as_secs_f64(),
        rows: Vec::new(),
        memory: Vec::new(),
        notes: Vec::new(),
    };

    eprintln!("baselines: hello, pgbench, redis-benchmark, the password hash");
    let hello = baselines::Hello::start().await?;
    let ceiling = hello.measure(phases).await?;
    let hello_max = ceiling.max_per_second;
    report.rows.push(ceiling);
    report.memory.push(Memory {
        backend: "baseline".into(),
        process: "hello".into(),
        peak_rss_mib: hello.peak_rss_mib().unwrap_or(0.0),
    });
    drop(hello);
    let pool = offers::settings::Settings::default().database.max_connections;
    let pgbench = match baselines::pgbench(&binary, pool, measure.as_secs_f64() * 2.0).await {
        Ok(tps) => {
            report.notes.push(format!("pgbench, the purchase's own SQL, {pool} connections: {tps:.0} transactions/s"));
            Some(tps)
        }
        Err(e) => {
            report.notes.push(format!("pgbench not measured: {e:#}"));
            None
        }
    };
    match baselines::redis_benchmark(phases.connections, if quick { 20_000 } else { 200_000 }) {
        Ok(figures) => {
            let figures: Vec<String> = figures.iter().map(|(test, rps)| format!("{test} {rps:.0}/s")).collect();
            report.notes.push(format!("redis-benchmark, {} connections: {}", phases.connections, figures.join(", ")));
        }
        Err(e) => report.notes.push(format!("redis-benchmark not measured: {e:#}")),
    }
    let hashes = baselines::hashes_per_second(cores).await?;
    report.notes.push(format!("argon2id (the auth service's parameters), {cores} at a time: {hashes:.1} hashes/s"));

    let mut unbalanced = Vec::new();
    for backend in backends {
        eprintln!("{backend}: starting the suite");
        let target = Target::start(backend, &binary).await?;
        eprintln!(
            "{backend}: seeding {} users, {} offers, {} past transactions",
            size.users, size.offers, size.history
        );
        let people = population::seed(&target, size).await?;
        let seeded =
            target.largest_peak_rss().map_or(String::new(), |(p, mib)| format!("; peak RSS then {p} {mib:.0} MiB"));
        report.notes.push(format!("{backend}: seeded in {:.1} s{seeded}", people.seeded_in.as_secs_f64()));
        eprintln!("{backend}: measuring");
        let mut rows = workloads::run_all(&target, &people, phases).await?;
        for row in &mut rows {
            against(row, hello_max, pgbench, hashes);
        }
        report.rows.extend(rows);
        for (process, pid) in target.processes_by_name() {
            let peak_rss_mib = target::peak_rss_mib(pid).unwrap_or(0.0);
            report.memory.push(Memory { backend: backend.to_string(), process, peak_rss_mib });
        }
        let checking = std::time::Instant::now();
        let books = target.admin()?.check_ledger().await;
        let took = checking.elapsed().as_secs_f64();
        match books {
            Ok(books) if books.violations.is_empty() && books.sum == 0 => report.notes.push(format!(
                "{backend}: ledger balanced ({} accounts sum to 0; the check took {took:.1} s)",
                books.totals.len()
            )),
            Ok(books) => unbalanced.push(format!("{backend}: the ledger does not balance: {:?}", books.violations)),
            Err(e) => unbalanced.push(format!("{backend}: the ledger check failed after {took:.1} s: {e:#}")),
        }
        target.stop().await?;
    }
    report.notes.extend(unbalanced.iter().cloned());
    report.print();
    report.write(&cli.out)?;
    anyhow::ensure!(unbalanced.is_empty(), "{}", unbalanced.join("; "));
    Ok(())
}

/// `--instructions`: a small population on the suite under callgrind
/// (`offers dev` unless `--backend real`), then each counted workload;
/// prints the table and writes the JSON.
async fn count_instructions(binary: &Path, backends: &[Backend], requests: u64) -> anyhow::Result<()> {
    let mut all = Vec::new();
    for &backend in backends {
        let dir = std::env::temp_dir().join(format!("offers-callgrind-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        eprintln!("instructions: the {backend} suite under callgrind (dumps in {})", dir.display());
        let target = Target::start_under(backend, binary, &instructions::wrapper(&dir)).await?;
        let size = Size { users: 8, offers: 6, members: 4, history: 10 };
        let people = population::seed(&target, size).await?;
        let counted = instructions::count(&target, &people, &dir, requests).await;
        target.stop().await?;
        let counted = counted?;
        let what = match backend {
            Backend::Embedded => "offers dev: every role in one process",
            Backend::Real => "every role its own process, by process",
        };
        println!("\nInstructions per request (callgrind, {what}; {requests} requests each)");
        println!("{:<62} {:>14} {:>14}", "workload", "per request", "idle share");
        for c in &counted {
            println!("{:<62} {:>14.0} {:>14.0}", c.workload, c.per_request, c.idle_per_request);
            if c.by_process.len() > 1 {
                for (process, share) in c.by_process.iter().filter(|(_, share)| *share >= 1.0) {
                    println!("    {process:<58} {share:>14.0}");
                }
            }
        }
        all.push((backend, counted));
        std::fs::remove_dir_all(&dir).ok();
    }
    let out = Path::new("target/bench/instructions.json");
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_string_pretty(&all)?)?;
    Ok(())
}

/// `--flamegraphs`: each backend started and seeded as for the rates,
/// then each counted workload sampled.
async fn draw_flamegraphs(binary: &Path, backends: &[Backend], size: Size, phases: Phases) -> anyhow::Result<()> {
    for &backend in backends {
        eprintln!("{backend}: starting the suite");
        let target = Target::start(backend, binary).await?;
        let people = population::seed(&target, size).await?;
        let out = Path::new("target/bench").join(backend.to_string());
        let profiles = flamegraphs::draw(&target, &people, phases, &out).await;
        target.stop().await?;
        let profiles = profiles?;
        for profile in &profiles {
            let (workload, cpu, svg) = (&profile.workload, profile.cpu_seconds, profile.svg.display());
            println!("\n{backend} {workload} ({cpu:.1} s of CPU sampled; {svg})");
            for (function, share) in &profile.top {
                println!("  {share:5.1}%  {function}");
            }
        }
        std::fs::write(out.join("profiles.json"), serde_json::to_string_pretty(&profiles)?)?;
    }
    Ok(())
}

/// What each workload is measured against.
fn against(row: &mut Row, hello: f64, pgbench: Option<f64>, hashes: f64) {
    let w = &row.workload[..2];
    match (w, pgbench) {
        ("W1" | "W2" | "W3" | "W7", _) => row.against("hello", hello),
        ("W4" | "W5" | "W6", Some(tps)) => row.against("pgbench purchase", tps),
        ("W8", _) => row.against("argon2id hashes", hashes),
        _ => {}
    }
}

/// Builds the `offers` binary in release mode (the figures are about it),
/// unless `BENCH_OFFERS_BIN` names one to measure instead (an earlier build, for
/// before-and-after figures from one machine).
fn release_binary() -> anyhow::Result<PathBuf> {
    if let Some(binary) = std::env::var_os("BENCH_OFFERS_BIN") {
        eprintln!("measuring {}", binary.to_string_lossy());
        return Ok(PathBuf::from(binary));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    eprintln!("building offers (release)");
    let built = offers_tests::cargo()
        .args(["build", "--release", "--quiet", "-p", "offers-cli", "--bin", "offers"])
        .current_dir(&workspace)
        .status()
        .context("cargo runs")?;
    anyhow::ensure!(built.success(), "could not build the offers binary");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| workspace.join("target"), PathBuf::from);
    Ok(target.join("release").join("offers"))
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).map(|l| l.to_string()))
        .and_then(|l| l.split_once(':').map(|(_, m)| m.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into())
}
