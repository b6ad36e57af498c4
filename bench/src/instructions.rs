//! Instructions per request, counted by callgrind: a figure that repeats
//! on a busy or an idle machine, for the same binary and inputs (where
//! `perf stat -e instructions` is not supported, as on these machines).
//!
//! Every process of the suite runs under `valgrind --tool=callgrind`
//! (`offers dev`, or each role's own process on the real backend); for each
//! workload one caller warms up, every process's counters are zeroed, a
//! fixed number of requests is sent one after another, and the counters are
//! dumped. The processes also work on their own meanwhile (relays,
//! reconcilers, timers): the same span of idle time is counted next and
//! taken off, process by process. A purchase is counted through its
//! settlement (the worker's and the ledger's share too), since that work is
//! what it costs.

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
    /// Instructions per request in every process together, their idle work
    /// taken off.
    pub per_request: f64,
    /// What the same span of idle time cost, per request (for judging the
    /// correction).
    pub idle_per_request: f64,
    /// Each process's share of `per_request`, by process name.
    pub by_process: Vec<(String, f64)>,
}

/// The callgrind options every process runs under: counters only (no
/// per-instruction detail), one output file per process and dump in `dir`.
pub fn wrapper(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--quiet".into(),
        // Threads take turns in a fixed order: how often the runtime's
        // workers park and wake depends less on the host's timing.
        "--fair-sched=yes".into(),
        format!("--callgrind-out-file={}", dir.join("callgrind.out.%p").display()),
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
                let dump = std::fs::read_to_string(newest)?;
                if finished(&dump) {
                    return summary(&dump).with_context(|| format!("no summary in {}", newest.display()));
                }
            }
            if Instant::now() > deadline {
                bail!("callgrind wrote no finished dump in {}", self.dir.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn dumps(&self) -> anyhow::Result<Vec<PathBuf>> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let mine = format!("callgrind.out.{}.", self.pid);
            if path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&mine)) {
                found.push(path);
            }
        }
        Ok(found)
    }
}

/// Whether callgrind has finished writing a dump: it writes `totals:` last.
fn finished(dump: &str) -> bool {
    dump.lines().any(|l| l.starts_with("totals:"))
}

/// The instructions a callgrind dump counted since the counters were
/// zeroed: its `summary:` line, not `totals:` (the sum of its cost lines).
/// `callgrind_control -z` can leave a thread's earlier costs in the cost
/// lines: W1, counted first after the seeding, carried about 3.8 million
/// instructions from before its zeroing in most runs (`totals:` above
/// `summary:`, which callgrind's format says should not happen), so its count
/// fell in two groups 15% apart.
fn summary(dump: &str) -> Option<u64> {
    let line = dump.lines().find(|l| l.starts_with("summary:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// How many requests warm a workload's paths up before counting.
const WARMUP: u64 = 10;
/// The shortest idle stretch the process's own work is counted over.
const IDLE_AT_LEAST: Duration = Duration::from_secs(3);

/// The processes' counters, each zeroed or dumped in turn.
struct Processes(Vec<(String, Callgrind)>);

impl Processes {
    fn zero(&self) -> anyhow::Result<()> {
        self.0.iter().try_for_each(|(_, callgrind)| callgrind.zero())
    }

    /// Instructions since the zeroing, by process.
    fn dump(&self) -> anyhow::Result<Vec<u64>> {
        self.0.iter().map(|(_, callgrind)| callgrind.dump()).collect()
    }
}

/// Counts each workload of [`workloads::counted`] over `requests` requests.
pub async fn count(target: &Target, people: &Population, dir: &Path, requests: u64) -> anyhow::Result<Vec<Counted>> {
    let processes = Processes(
        target
            .processes_by_name()
            .into_iter()
            .map(|(name, pid)| (name, Callgrind { pid, dir: dir.to_path_buf() }))
            .collect(),
    );
    let mut counted = Vec::new();
    for (workload, connect) in workloads::counted(target, people) {
        let mut caller = connect.caller().await?;
        for _ in 0..WARMUP {
            caller.call().await.map_err(|e| anyhow::anyhow!("{workload}: {e}"))?;
        }
        population::drained(target, Duration::from_secs(600)).await?;
        processes.zero()?;
        let began = Instant::now();
        for _ in 0..requests {
            caller.call().await.map_err(|e| anyhow::anyhow!("{workload}: {e}"))?;
        }
        population::drained(target, Duration::from_secs(600)).await?;
        let busy = processes.dump()?;
        let span = began.elapsed();
        // The idle rate over a longer stretch (its timers fire in bursts),
        // scaled to the busy span.
        let quiet = span.max(IDLE_AT_LEAST);
        processes.zero()?;
        tokio::time::sleep(quiet).await;
        let scale = span.as_secs_f64() / quiet.as_secs_f64();
        let idle: Vec<f64> = processes.dump()?.into_iter().map(|i| i as f64 * scale).collect();
        let n = requests as f64;
        let by_process: Vec<(String, f64)> = processes
            .0
            .iter()
            .zip(busy.iter().zip(&idle))
            .map(|((name, _), (&busy, &idle))| (name.clone(), (busy as f64 - idle).max(0.0) / n))
            .collect();
        let (busy, idle) = (busy.iter().sum::<u64>(), idle.iter().sum::<f64>());
        eprintln!("{workload}: {busy} instructions over {requests} requests in {span:.1?}, {idle:.0} idle");
        counted.push(Counted {
            workload: workload.to_string(),
            requests,
            per_request: by_process.iter().map(|(_, i)| i).sum(),
            idle_per_request: idle / n,
            by_process,
        });
    }
    Ok(counted)
}

#[cfg(test)]
mod tests {
    use super::{finished, summary};

    #[test]
    fn the_count_is_the_summary_not_the_cost_lines() {
        let dump = "events: Ir\nsummary: 32157325\n\nfn=(1) main\n1 35928672\n\ntotals: 35928672\n";
        assert_eq!(summary(dump), Some(32_157_325));
        assert_eq!(summary("events: Ir\ntotals: 5\n"), None);
    }

    #[test]
    fn a_dump_is_read_once_its_totals_are_written() {
        assert!(!finished("events: Ir\nsummary: 7\n\nfn=(1) main\n1 7\n"));
        assert!(finished("events: Ir\nsummary: 7\n\nfn=(1) main\n1 7\n\ntotals: 7\n"));
    }
}
