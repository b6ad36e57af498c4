//! Instructions per request, counted by callgrind: a figure that repeats
//! on a busy or an idle machine, for the same binary and inputs (where
//! `perf stat -e instructions` is not supported, as on these machines).
//!
//! `offers dev` runs under `valgrind --tool=callgrind`; for each workload
//! one caller warms up, the counters are zeroed, a fixed number of requests
//! is sent one after another, and the counters are dumped. The process
//! also works on its own meanwhile (relays, reconcilers, timers): the same
//! span of idle time is counted next and taken off. A purchase is counted
//! through its settlement (the worker's and the ledger's share too), since
//! that work is what it costs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::population::{self, Population};
use crate::target::Target;
use crate::workloads;

/// What one workload cost.
#[derive(Debug, serde::Serialize)]
pub struct Counted {
    pub workload: String,
    pub requests: u64,
    /// Instructions per request, the process's idle work taken off.
    pub per_request: f64,
    /// What the same span of idle time cost, per request (for judging the
    /// correction).
    pub idle_per_request: f64,
}

/// The callgrind options `offers dev` runs under: counters only (no
/// per-instruction detail), one output file per dump in `dir`.
pub fn wrapper(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        // Threads take turns in a fixed order: how often the runtime's
        // workers park and wake depends less on the host's timing.
        "--fair-sched=yes".into(),
        format!("--callgrind-out-file={}", dir.join("callgrind.out").display()),
    ]
}

/// Drives `callgrind_control` for one process.
struct Callgrind {
    pid: u32,
    dir: PathBuf,
}

impl Callgrind {
    fn control(&self, option: &str) -> anyhow::Result<()> {
        let done = Command::new("callgrind_control").args([option, &self.pid.to_string()]).output();
        let done = done.context("callgrind_control runs (Debian's valgrind)")?;
        if !done.status.success() {
            bail!("callgrind_control {option}: {}", String::from_utf8_lossy(&done.stderr));
        }
        Ok(())
    }

    /// Zeroes the counters.
    fn zero(&self) -> anyhow::Result<()> {
        self.control("-z")
    }

    /// Dumps the counters; returns the instructions since they were zeroed.
    fn dump(&self) -> anyhow::Result<u64> {
        let before = self.dumps()?;
        self.control("-d")?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.dumps()?;
            if let Some(newest) = now.iter().find(|d| !before.contains(d)) {
                return total(newest);
            }
            if Instant::now() > deadline {
                bail!("callgrind wrote no dump in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dumps(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("callgrind.out")) {
                found.push(path);
            }
        }
        Ok(found)
    }
}

/// The instruction total a callgrind dump states (`totals:`, or the
/// `summary:` line of older formats).
fn total(dump: &Path) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(dump)?;
    let line = text
        .lines()
        .find(|l| l.starts_with("totals:"))
        .or_else(|| text.lines().find(|l| l.starts_with("summary:")))
        .with_context(|| format!("no totals in {}", dump.display()))?;
    let figure = line.split_whitespace().nth(1).context("an empty totals line")?;
    Ok(figure.parse()?)
}

/// How many requests warm a workload's paths up before counting.
const WARMUP: u64 = 10;
/// The shortest idle stretch the process's own work is counted over.
const IDLE_AT_LEAST: Duration = Duration::from_secs(3);

/// Counts each workload of [`workloads::counted`] over `requests` requests.
pub async fn count(target: &Target, people: &Population, dir: &Path, requests: u64) -> anyhow::Result<Vec<Counted>> {
    let pid = target.dev_pid().context("instruction counts run on offers dev")?;
    let callgrind = Callgrind { pid, dir: dir.to_path_buf() };
    let mut counted = Vec::new();
    for (workload, connect) in workloads::counted(target, people) {
        let mut caller = connect.caller().await?;
        for _ in 0..WARMUP {
            caller.call().await.map_err(|e| anyhow::anyhow!("{workload}: {e}"))?;
        }
        population::drained(target, Duration::from_secs(600)).await?;
        callgrind.zero()?;
        let began = Instant::now();
        for _ in 0..requests {
            caller.call().await.map_err(|e| anyhow::anyhow!("{workload}: {e}"))?;
        }
        population::drained(target, Duration::from_secs(600)).await?;
        let busy = callgrind.dump()?;
        let span = began.elapsed();
        // The idle rate over a longer stretch (its timers fire in bursts),
        // scaled to the busy span.
        let quiet = span.max(IDLE_AT_LEAST);
        callgrind.zero()?;
        tokio::time::sleep(quiet).await;
        let idle = callgrind.dump()? as f64 * span.as_secs_f64() / quiet.as_secs_f64();
        let n = requests as f64;
        eprintln!("{workload}: {busy} instructions over {requests} requests in {span:.1?}, {idle:.0} idle");
        counted.push(Counted {
            workload: workload.to_string(),
            requests,
            per_request: (busy as f64 - idle).max(0.0) / n,
            idle_per_request: idle / n,
        });
    }
    Ok(counted)
}
