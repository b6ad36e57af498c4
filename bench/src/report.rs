//! One table of every figure, printed and written as JSON.

use std::path::Path;

use serde::Serialize;

use crate::driver::Measured;

/// Open-loop latencies, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latencies {
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub errors: u64,
}

impl Latencies {
    pub fn of(measured: &Measured) -> Self {
        let ms = |p: f64| measured.percentile(p).as_secs_f64() * 1000.0;
        Self { p50_ms: ms(0.5), p90_ms: ms(0.9), p99_ms: ms(0.99), max_ms: ms(1.0), errors: measured.errors }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub backend: String,
    pub workload: String,
    /// Closed-loop successes per second.
    pub max_per_second: f64,
    pub max_errors: u64,
    /// The open-loop rate the latencies were measured at.
    pub rate: f64,
    pub latencies: Latencies,
    /// What this is measured against, and the share of it reached.
    pub baseline: Option<(String, f64)>,
    pub first_error: Option<String>,
    pub note: Option<String>,
    /// The largest process's peak RSS (`VmHWM`) once this workload was
    /// done: where the peak grows, workload by workload.
    pub peak_after: Option<(String, f64)>,
}

impl Row {
    pub fn new(backend: &str, workload: &str, max: &Measured, rate: f64, latencies: Latencies) -> Self {
        Row {
            backend: backend.into(),
            workload: workload.into(),
            max_per_second: max.per_second(),
            max_errors: max.errors,
            rate,
            latencies,
            baseline: None,
            first_error: max.first_error.clone(),
            note: None,
            peak_after: None,
        }
    }

    pub fn peak_after(mut self, peak: Option<(String, f64)>) -> Self {
        self.peak_after = peak;
        self
    }

    pub fn note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }

    pub fn against(&mut self, name: &str, per_second: f64) {
        if per_second > 0.0 {
            self.baseline = Some((name.into(), self.max_per_second / per_second));
        }
    }
}

/// The peak resident memory of one process.
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub backend: String,
    pub process: String,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub date: String,
    pub cpu: String,
    pub cores: usize,
    pub command: String,
    pub population: crate::population::Size,
    pub connections: usize,
    pub warmup_secs: f64,
    pub measure_secs: f64,
    pub rows: Vec<Row>,
    pub memory: Vec<Memory>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn print(&self) {
        println!("\noffers-bench {} on {} ({} cores): {}", self.date, self.cpu, self.cores, self.command);
        println!(
            "population: {} users, {} offers, {} members, {} past transactions; {} connections, {:.1} s warm-up, {:.1} s measured\n",
            self.population.users,
            self.population.offers,
            self.population.members,
            self.population.history,
            self.connections,
            self.warmup_secs,
            self.measure_secs
        );
        println!(
            "{:<9} {:<52} {:>10} {:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>6}  baseline",
            "backend", "workload", "max/s", "errors", "at /s", "p50 ms", "p90 ms", "p99 ms", "max ms", "errors"
        );
        for r in &self.rows {
            let l = &r.latencies;
            let baseline =
                r.baseline.as_ref().map_or(String::new(), |(name, share)| format!("{:.1}% of {name}", share * 100.0));
            println!(
                "{:<9} {:<52} {:>10.0} {:>7} {:>9.0} {:>8.2} {:>8.2} {:>8.2} {:>8.2} {:>6}  {baseline}",
                r.backend,
                r.workload,
                r.max_per_second,
                r.max_errors,
                r.rate,
                l.p50_ms,
                l.p90_ms,
                l.p99_ms,
                l.max_ms,
                l.errors
            );
        }
        println!();
        for r in self.rows.iter().filter(|r| r.note.is_some() || r.first_error.is_some()) {
            if let Some(note) = &r.note {
                println!("{} {}: {note}", r.backend, r.workload);
            }
            if let Some(error) = &r.first_error {
                println!("{} {}: first error: {error}", r.backend, r.workload);
            }
        }
        let mut backends: Vec<&str> = self.rows.iter().map(|r| r.backend.as_str()).collect();
        backends.dedup();
        for backend in backends {
            let growth: Vec<String> = self
                .rows
                .iter()
                .filter(|r| r.backend == backend)
                .filter_map(|r| {
                    let (process, mib) = r.peak_after.as_ref()?;
                    Some(format!("{} {process} {mib:.0}", r.workload.split(' ').next().unwrap_or_default()))
                })
                .collect();
            if !growth.is_empty() {
                println!("{backend}: peak RSS after each workload (MiB, largest process): {}", growth.join(", "));
            }
        }
        let memory: Vec<String> =
            self.memory.iter().map(|m| format!("{}/{} {:.0}", m.backend, m.process, m.peak_rss_mib)).collect();
        println!("peak RSS (MiB): {}", memory.join(", "));
        for note in &self.notes {
            println!("{note}");
        }
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string_pretty(self)?)?;
        println!("written to {}", path.display());
        Ok(())
    }
}
