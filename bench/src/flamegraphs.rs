//! `--flamegraphs`: where each counted workload's time goes. The suite's
//! processes are sampled by `perf record` (call graphs unwound from DWARF:
//! the release build keeps no frame pointers) while the workload runs
//! closed-loop, and through the settling of what it bought; the samples
//! are folded and drawn by inferno (`cargo install inferno`) as one SVG per
//! workload, and the functions that take the most samples themselves are
//! printed: the figures bench/README's profile tables come from.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::driver::{self, Pace};
use crate::population::{self, Population};
use crate::target::Target;
use crate::workloads::{self, Phases};

/// Samples per second and core: enough for a steady top list in a few
/// seconds, few enough that unwinding them stays quick.
const FREQUENCY: &str = "499";

/// One workload's profile: its drawing and its heaviest functions.
#[derive(Debug, serde::Serialize)]
pub struct Profile {
    pub workload: String,
    pub svg: PathBuf,
    /// CPU time sampled, in seconds (every process together).
    pub cpu_seconds: f64,
    /// Functions by their share of every sample spent in their own code.
    pub top: Vec<(String, f64)>,
}

/// Profiles every counted workload on `target`, writing `W1.svg`, … into `out`.
pub async fn draw(target: &Target, people: &Population, phases: Phases, out: &Path) -> anyhow::Result<Vec<Profile>> {
    for tool in ["perf", "inferno-collapse-perf", "inferno-flamegraph"] {
        installed(tool)?;
    }
    std::fs::create_dir_all(out)?;
    let pids: Vec<String> = target.processes_by_name().into_iter().map(|(_, pid)| pid.to_string()).collect();
    let mut profiles = Vec::new();
    for (workload, connect) in workloads::counted(target, people) {
        let short = workload.split_whitespace().next().unwrap_or(workload);
        let data = out.join(format!("{short}.perf.data"));
        let recording = record(&pids, &data)?;
        // perf attaches to every thread of the processes before it samples.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ran = driver::run(&connect, phases.connections, Pace::Closed, phases.warmup, phases.measure).await;
        // What a purchase costs includes its settlement.
        let drained = population::drained(target, Duration::from_secs(300)).await;
        stop(recording)?;
        let measured = ran?;
        drained?;
        eprintln!("{workload}: {:.0}/s while sampled", measured.per_second());
        let folded = fold(&data)?;
        let svg = out.join(format!("{short}.svg"));
        std::fs::write(&svg, pipe("inferno-flamegraph", &["--title", workload], folded.as_bytes())?)?;
        std::fs::remove_file(&data).ok();
        let (weight, top) = heaviest(&folded, 12);
        // Each cpu-clock sample weighs its period, in nanoseconds.
        profiles.push(Profile { workload: workload.to_string(), svg, cpu_seconds: weight as f64 / 1e9, top });
    }
    Ok(profiles)
}

fn installed(tool: &str) -> anyhow::Result<()> {
    match Command::new(tool).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Ok(_) => Ok(()),
        Err(_) => bail!("{tool} is not installed (perf: Debian's linux-perf; inferno: `cargo install inferno`)"),
    }
}

fn record(pids: &[String], data: &Path) -> anyhow::Result<Child> {
    let child = Command::new("perf")
        .args(["record", "--quiet", "-e", "cpu-clock", "-F", FREQUENCY, "--call-graph", "dwarf,16384"])
        .arg("-p")
        .arg(pids.join(","))
        .arg("-o")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("perf record runs")?;
    Ok(child)
}

/// Stops a recording the way Ctrl-C would, so that perf writes its file out.
fn stop(mut recording: Child) -> anyhow::Result<()> {
    offers_harness::local::signal(recording.id(), "INT").context("perf record stopped early")?;
    recording.wait()?;
    Ok(())
}

/// The recording as folded stacks (`frame;frame;… count` per line).
fn fold(data: &Path) -> anyhow::Result<String> {
    let script = Command::new("perf")
        .args(["script", "--no-inline", "-i"])
        .arg(data)
        .stderr(Stdio::null())
        .output()
        .context("perf script runs")?;
    anyhow::ensure!(script.status.success(), "perf script failed on {}", data.display());
    let folded = pipe("inferno-collapse-perf", &[], &script.stdout)?;
    Ok(String::from_utf8_lossy(&folded).into_owned())
}

/// Runs `program` with `input` on its standard input; its standard output.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("{program} runs"))?;
    let mut stdin = child.stdin.take().context("a pipe to write")?;
    let input = input.to_vec();
    // Written from another thread: the program answers while it reads.
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output()?;
    writer.join().map_err(|_| anyhow::anyhow!("the writer to {program} panicked"))??;
    anyhow::ensure!(output.status.success(), "{program} failed");
    Ok(output.stdout)
}

/// The samples' total weight, and the `n` functions with the most of it in
/// their own code (the last frame of each stack), as shares of the total.
fn heaviest(folded: &str, n: usize) -> (u64, Vec<(String, f64)>) {
    let mut own: HashMap<&str, u64> = HashMap::new();
    let mut total = 0;
    for line in folded.lines() {
        let Some((stack, count)) = line.rsplit_once(' ') else { continue };
        let Ok(count) = count.parse::<u64>() else { continue };
        let leaf = stack.rsplit(';').next().unwrap_or(stack);
        *own.entry(leaf).or_default() += count;
        total += count;
    }
    let mut ranked: Vec<(String, f64)> =
        own.into_iter().map(|(f, c)| (f.to_string(), c as f64 * 100.0 / total.max(1) as f64)).collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    ranked.truncate(n);
    (total, ranked)
}

#[cfg(test)]
mod tests {
    use super::heaviest;

    #[test]
    fn the_heaviest_functions_are_the_leaves_with_the_most_samples() {
        let folded = "main;serve;malloc 30\nmain;serve;parse 45\nmain;malloc 25\nnot a line\n";
        let (total, top) = heaviest(folded, 1);
        assert_eq!(total, 100);
        assert_eq!(top, vec![("malloc".to_string(), 55.0)]);
    }
}
