//! The fault-injection soak (see `offers_tests::chaos`). Not part of the
//! ordinary test run: `.ci/run` runs the quick one on every submission,
//!
//!     cargo test -p offers-tests --test chaos -- --ignored --nocapture quick
//!
//! and the long one is run by hand (`long` instead of `quick`).
//! `CHAOS_SEED`, `CHAOS_SECONDS`, `CHAOS_OPERATIONS` and `CHAOS_CLIENTS`
//! change a run; the same seed makes the same workload and faults.

use offers_tests::chaos::{self, Config};

async fn soak(config: Config) {
    let Some(report) = chaos::run(config.from_env()).await else { return };
    for line in &report.lines {
        println!("{line}");
    }
    assert!(report.failed.is_empty(), "checks failed: {:?}", report.failed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of a minute and more; run with --ignored"]
async fn quick() {
    soak(Config::quick()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a soak of ten minutes; run with --ignored"]
async fn long() {
    soak(Config::long()).await;
}
