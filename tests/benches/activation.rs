//! Activation throughput and latency through the whole suite: REST edge →
//! gRPC → ledger → outbox → bus → worker → provisioning simulator → settle.
//! Prints figures; asserts only that the money adds up.
//!
//! `cargo bench -p offers-tests` runs it on the embedded backends;
//! `BENCH_BACKEND=real` on PostgreSQL, Redis and RabbitMQ. `BENCH_USERS`,
//! `BENCH_REQUESTS` and `BENCH_CONCURRENCY` size the load (defaults 20,
//! 2000, 32).

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use offers_tests::{Backend, TestSuite};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("real") => Backend::Real,
        _ => Backend::Embedded,
    };
    let (users, requests, concurrency) =
        (env("BENCH_USERS", 20), env("BENCH_REQUESTS", 2000), env("BENCH_CONCURRENCY", 32));
    let Some(suite) = TestSuite::spawn_with(backend, |s| {
        s.auth.login_per_address = 1_000_000;
        s.auth.login_per_username = 1_000_000;
    })
    .await
    else {
        eprintln!("backend unreachable");
        return;
    };
    // Every user can afford every request made for them.
    let per_user = requests.div_ceil(users);
    let mut tokens = Vec::new();
    for _ in 0..users {
        let (_, token) = suite.user_with_balance(i64::try_from(per_user).unwrap_or(i64::MAX / 1000) * 500).await;
        tokens.push(token);
    }
    let offer = suite.offer_id(&tokens[0], "DATA-1GB").await;

    let started = Instant::now();
    let results: Vec<(u16, Duration, String, usize)> = futures_util::stream::iter(0..requests)
        .map(|i| {
            let (suite, offer, tokens) = (&suite, &offer, &tokens);
            async move {
                let user = i % tokens.len();
                let sent = Instant::now();
                let reply = suite.activate(&tokens[user], offer).await;
                let id = reply.body["transaction_id"].as_str().unwrap_or_default().to_string();
                (reply.status, sent.elapsed(), id, user)
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let accepting = started.elapsed();
    let mut latencies: Vec<Duration> = results.iter().map(|r| r.1).collect();
    latencies.sort();
    let accepted = results.iter().filter(|r| r.0 == 202).count();

    // Wait for every accepted transaction to settle.
    for (_, _, id, user) in results.iter().filter(|r| r.0 == 202) {
        let done = suite.settled(&tokens[*user], id).await;
        assert_eq!(done.body["status"], "SUCCESS", "{}", done.body);
    }
    let settled = started.elapsed();
    suite.assert_ledger_invariant().await;

    println!("backend: {backend:?}; {users} users, {requests} activations, {concurrency} in flight");
    println!(
        "accepted: {accepted}/{requests} in {:.2} s = {:.0} activations/s",
        accepting.as_secs_f64(),
        accepted as f64 / accepting.as_secs_f64()
    );
    println!(
        "202 latency: p50 {:.1} ms, p90 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.90).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    println!(
        "all settled SUCCESS after {:.2} s ({:.0} settlements/s end to end)",
        settled.as_secs_f64(),
        accepted as f64 / settled.as_secs_f64()
    );
    println!("ledger invariant holds");
    suite.stop().await;
}
