//! What must hold once the soak has settled, each printed as a line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use uuid::Uuid;

use super::faults::Window;
use super::workload::{Op, Record, SETTLE_WAIT};
use super::{Callbacks, Report};
use crate::TestSuite;

/// How long after a fault ended an answer may still show it (a request
/// that started during it).
const AFTERMATH: Duration = Duration::from_secs(5);

struct Tx {
    status: String,
    needs_review: bool,
    kind: String,
    reference: Option<String>,
    subscription: Option<Uuid>,
    took: Duration,
}

async fn transactions(suite: &TestSuite) -> Result<HashMap<String, Tx>, sea_orm::DbErr> {
    let sql = "SELECT id, status, needs_review, kind, reference, subscription_id, created_at, updated_at \
               FROM account_transactions";
    let rows = suite.database().query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql)).await?;
    let mut all = HashMap::new();
    for row in rows {
        let id: Uuid = row.try_get("", "id")?;
        let (created, updated): (DateTime<Utc>, DateTime<Utc>) =
            (row.try_get("", "created_at")?, row.try_get("", "updated_at")?);
        all.insert(
            id.to_string(),
            Tx {
                status: row.try_get("", "status")?,
                needs_review: row.try_get("", "needs_review")?,
                kind: row.try_get("", "kind")?,
                reference: row.try_get("", "reference")?,
                subscription: row.try_get("", "subscription_id")?,
                took: (updated - created).to_std().unwrap_or_default(),
            },
        );
    }
    Ok(all)
}

/// Waits until no transaction is PENDING unless it waits for review, and
/// every finished partner transaction has had its callback; how long that
/// took, or `None` if it did not happen within [`SETTLE_WAIT`].
pub async fn settle(suite: &TestSuite, callbacks: &Callbacks) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < SETTLE_WAIT {
        if let Ok(all) = transactions(suite).await {
            let called: BTreeSet<String> = callbacks.lock().expect("lock").iter().map(|(r, _)| r.clone()).collect();
            let open = all.values().any(|t| t.status == "PENDING" && !t.needs_review);
            let uncalled = all.values().any(|t| {
                t.status != "PENDING" && t.reference.as_ref().is_some_and(|reference| !called.contains(reference))
            });
            if !open && !uncalled {
                return Some(started.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    None
}

/// The answers a client may get to each operation besides success, by
/// status and code.
fn allowed(op: Op, status: u16, code: Option<&str>) -> bool {
    match (op, status, code) {
        (Op::Buy | Op::BuyAgain | Op::Burst | Op::Renew, 400, Some("insufficient_balance")) => true,
        (Op::Renew, 404, Some("not_found")) => true,
        // Another client renewed the same period first.
        (Op::Renew, 409, Some("conflict")) => true,
        // A partner's purchase asked for again, refused again.
        (Op::PartnerActivate | Op::BuyAgain, 400, Some("insufficient_partner_funds")) => true,
        (_, 503, Some("service_unavailable")) => true,
        _ => false,
    }
}

/// The latest fault that held at `at` (or had just ended), if one did.
fn during(windows: &[Window], at: Instant) -> Option<super::Fault> {
    windows.iter().rev().find(|w| at >= w.from && at <= w.to + AFTERMATH).map(|w| w.fault)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Checks {
    lines: Vec<String>,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, name: &str, problems: Vec<String>, passed: String) {
        if problems.is_empty() {
            self.lines.push(format!("CHECK ok    {name}: {passed}"));
        } else {
            self.lines.push(format!("CHECK FAIL  {name}: {} problem(s)", problems.len()));
            for problem in problems.iter().take(10) {
                self.lines.push(format!("      - {problem}"));
            }
            self.failed.push(name.to_string());
        }
    }
}

/// The ledger check scans every transfer under the soak's short call
/// timeout, so on a machine still busy restarting members it may run out of
/// time; a few tries let it finish once the machine calms.
async fn books(suite: &TestSuite) -> offers_proto::account::v1::CheckLedgerResponse {
    let mut tries = 0;
    loop {
        match suite.admin().check_ledger().await {
            Ok(books) => return books,
            Err(e) if tries < 5 => {
                tries += 1;
                eprintln!("the ledger check did not finish ({e:#}); trying again");
                tokio::time::sleep(Duration::from_secs(3)).await;
            }
            Err(e) => panic!("the ledger check runs: {e:#}"),
        }
    }
}

pub async fn check(
    suite: &TestSuite,
    records: &[Record],
    windows: &[Window],
    callbacks: &[(String, String)],
    settled: Option<Duration>,
) -> Report {
    let mut checks = Checks { lines: Vec::new(), failed: Vec::new() };

    let books = books(suite).await;
    let mut problems = books.violations.clone();
    if books.sum != 0 {
        problems.push(format!("the accounts sum to {}", books.sum));
    }
    checks.check(
        "ledger",
        problems,
        format!("{} accounts sum to 0, each equals its transfers and is within its limit", books.totals.len()),
    );

    let all = transactions(suite).await.expect("transactions");
    let accepted: BTreeSet<&str> = records.iter().filter_map(|r| r.transaction.as_deref()).collect();
    let problems: Vec<String> = accepted
        .iter()
        .filter(|id| !all.contains_key(**id))
        .map(|id| format!("{id} was accepted but is no transaction"))
        .collect();
    checks.check("accepted", problems, format!("every one of {} accepted purchases is a transaction", accepted.len()));

    let mut states: BTreeMap<String, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for (id, tx) in &all {
        let state = if tx.needs_review { "REVIEW".to_string() } else { tx.status.clone() };
        *states.entry(state).or_default() += 1;
        if tx.status == "PENDING" && !tx.needs_review {
            problems.push(format!("{id} ({}) still PENDING", tx.kind));
        }
    }
    if settled.is_none() {
        problems.push(format!("not settled within {} s", SETTLE_WAIT.as_secs()));
    }
    let counted: Vec<String> = states.iter().map(|(state, n)| format!("{state} {n}")).collect();
    checks.check("final states", problems, format!("{} transactions: {}", all.len(), counted.join(", ")));

    let sql = "SELECT t.id AS id, t.status AS status, COUNT(*) AS refunds FROM account_transfers x \
               JOIN account_transactions t ON t.id = x.transaction_id WHERE x.kind = 'REFUND' GROUP BY t.id, t.status";
    let rows = suite.database().query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql)).await;
    let mut problems = Vec::new();
    let mut refunded = 0;
    for row in rows.expect("refunds") {
        let (id, status, n): (Uuid, String, i64) = (
            row.try_get("", "id").expect("id"),
            row.try_get("", "status").expect("status"),
            row.try_get("", "refunds").expect("n"),
        );
        refunded += 1;
        if n > 1 || status != "FAILED" {
            problems.push(format!("{id} ({status}) refunded {n} times"));
        }
    }
    checks.check("refunds", problems, format!("{refunded} refunds, each of a FAILED transaction, none twice"));

    let problems: Vec<String> = all
        .iter()
        .filter(|(_, tx)| tx.status == "SUCCESS" && tx.subscription.is_none())
        .map(|(id, _)| format!("{id} succeeded without a subscription"))
        .collect();
    let successes = all.values().filter(|t| t.status == "SUCCESS").count();
    checks.check(
        "subscriptions",
        problems,
        format!(
            "each of {successes} successes has its subscription, each running exactly as far as its successes took it"
        ),
    );

    let mut by_key: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for record in records {
        if let (Some(key), Some(tx)) = (&record.key, &record.transaction) {
            by_key.entry(key).or_default().insert(tx);
        }
    }
    let repeated = records.iter().filter(|r| r.op == Op::BuyAgain).count();
    let problems: Vec<String> = by_key
        .iter()
        .filter(|(_, txs)| txs.len() > 1)
        .map(|(key, txs)| format!("{key} made {} transactions", txs.len()))
        .collect();
    checks.check(
        "idempotency",
        problems,
        format!("{} keys, {repeated} asked again, each one transaction", by_key.len()),
    );

    let mut events: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    for (reference, event) in callbacks {
        events.entry(reference).or_default().insert(event);
    }
    let mut problems = Vec::new();
    let mut finished = 0;
    for (id, tx) in &all {
        let Some(reference) = &tx.reference else { continue };
        match (tx.status.as_str(), events.get(reference.as_str())) {
            ("PENDING", Some(_)) => problems.push(format!("{reference} ({id}) called back while PENDING")),
            ("PENDING", None) => {}
            (_, None) => problems.push(format!("{reference} ({id}) finished but never called back")),
            (_, Some(ids)) if ids.len() > 1 => problems.push(format!("{reference}: {} different events", ids.len())),
            _ => finished += 1,
        }
    }
    checks.check(
        "callbacks",
        problems,
        format!(
            "{finished} finished partner transactions, each called back with one event ({} deliveries)",
            callbacks.len()
        ),
    );

    let problems: Vec<String> = records
        .iter()
        .filter(|r| !matches!(r.status, 200 | 202) && !allowed(r.op, r.status, r.code.as_deref()))
        .map(|r| format!("{:?} answered {} {}", r.op, r.status, r.detail))
        .collect();
    checks.check("answers", problems, "every answer was a success or a refusal the contract names".into());

    // No token expires during a run (an hour's lifetime) and no key is
    // retired, so every 401 refused a token that was good.
    let problems: Vec<String> = records
        .iter()
        .filter(|r| r.status == 401)
        .map(|r| format!("{:?} refused a live token: {}", r.op, r.detail))
        .collect();
    let count = |fault| windows.iter().filter(|w| w.fault == fault).count();
    let fresh: Vec<&Record> = records.iter().filter(|r| r.op == Op::Login && r.status == 200).collect();
    let kids: BTreeSet<&str> = fresh.iter().map(|r| r.detail.as_str()).collect();
    checks.check(
        "tokens",
        problems,
        format!(
            "no live token refused, through {} key rotation(s) and {} auth restart(s); {} fresh tokens used at once, \
             signed by {} key(s)",
            count(super::Fault::RotateKey),
            count(super::Fault::KillAuth),
            fresh.len(),
            kids.len()
        ),
    );

    let unavailable: Vec<&Record> = records.iter().filter(|r| r.status >= 500 || r.status == 0).collect();
    if std::env::var_os("CHAOS_DEBUG").is_some() {
        let first = records.iter().map(|r| r.at).min();
        for r in &unavailable {
            let offset = first.map(|f| r.at.duration_since(f).as_secs_f64()).unwrap_or_default();
            eprintln!("5xx +{offset:.1}s {:?} {}", r.op, r.detail);
        }
    }
    let problems: Vec<String> = unavailable
        .iter()
        .filter(|r| during(windows, r.at).is_none())
        .map(|r| format!("{:?} answered {} outside any fault: {}", r.op, r.status, r.detail))
        .collect();
    let mut by_fault: BTreeMap<&str, (usize, &Record)> = BTreeMap::new();
    for record in &unavailable {
        if let Some(fault) = during(windows, record.at) {
            by_fault.entry(fault.name()).or_insert((0, record)).0 += 1;
        }
    }
    let by_fault: Vec<String> = by_fault
        .iter()
        .map(|(fault, (n, example))| format!("{n} during {fault}, e.g. {:?}: {}", example.op, example.detail))
        .collect();
    checks.check(
        "5xx",
        problems,
        format!(
            "{} answers were 503 service_unavailable, all while a fault held ({})",
            unavailable.len(),
            by_fault.join(", ")
        ),
    );

    let mut took: Vec<Duration> =
        accepted.iter().filter_map(|id| all.get(*id)).filter(|tx| tx.status != "PENDING").map(|tx| tx.took).collect();
    took.sort();
    checks.lines.push(format!(
        "latency: POST → final state p50 {} ms, p99 {} ms, max {} ms (over {} transactions)",
        percentile(&took, 0.5).as_millis(),
        percentile(&took, 0.99).as_millis(),
        took.last().copied().unwrap_or_default().as_millis(),
        took.len()
    ));
    Report { lines: checks.lines, failed: checks.failed }
}

/// How automatic renewal stood when the load ended.
pub struct Renewing {
    /// Subscriptions asking for it.
    pub asked: u64,
    /// Due for a while, their owner's balance covering what they last cost,
    /// and yet neither renewed, nor being renewed, nor noted as refused: a
    /// period the passes skipped.
    pub skipped: u64,
}

/// Lets the renewal passes catch up on what the last faults held back,
/// counts the periods they skipped, then ends automatic renewal everywhere
/// so the scheduler's passes stop making new renewals while the rest
/// settles.
pub async fn stop_renewals(suite: &TestSuite, lead: Duration) -> Renewing {
    let db = suite.database();
    let count = |sql: String| async move {
        let row = db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, sql)).await;
        row.ok().flatten().and_then(|r| r.try_get::<i64>("", "n").ok()).unwrap_or(-1).unsigned_abs()
    };
    // Passes every 2 s: five of them after the load, with no fault left.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let asked = count("SELECT COUNT(*) AS n FROM account_subscriptions WHERE auto_renew".into()).await;
    let skipped = count(format!(
        "SELECT COUNT(*) AS n FROM account_subscriptions s \
         JOIN account_accounts a ON a.id = s.user_id AND a.kind = 'USER' \
         WHERE s.auto_renew AND s.expires_at > now() AND s.expires_at < now() + make_interval(secs => {lead}) \
         AND GREATEST(s.created_at, COALESCE(s.last_renewal_at, s.created_at)) < now() - interval '8 seconds' \
         AND COALESCE(s.last_renewal_status, '') <> 'PENDING' \
         AND NOT (COALESCE(s.last_renewal_status, '') = 'FAILED' \
                  AND COALESCE(s.last_renewal_reason, '') <> 'insufficient_balance') \
         AND a.balance >= (SELECT t.amount FROM account_transactions t \
             WHERE t.subscription_id = s.id AND t.status = 'SUCCESS' ORDER BY t.id DESC LIMIT 1)",
        lead = lead.as_secs()
    ))
    .await;
    let stop = "UPDATE account_subscriptions SET auto_renew = false";
    db.execute_raw(Statement::from_string(DatabaseBackend::Postgres, stop)).await.expect("renewals stopped");
    // A pass already under way finishes its purchases; settling takes them.
    tokio::time::sleep(Duration::from_secs(3)).await;
    Renewing { asked, skipped }
}

/// What the scheduler's renewal passes did during the load, and the rules
/// that matter: no period of a subscription charged twice (the ledger
/// check's own `PERIODS` says the same from inside), none skipped while
/// the balance covered it: its report line, and whether they held.
pub async fn renewals(suite: &TestSuite, renewing: &Renewing) -> (String, bool) {
    let db = suite.database();
    let sql = "SELECT status, COUNT(*) AS n FROM account_transactions WHERE kind = 'AUTO_RENEWAL' GROUP BY status";
    let rows = db.query_all_raw(Statement::from_string(DatabaseBackend::Postgres, sql)).await.expect("renewals");
    let by_status: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.try_get::<String>("", "status").unwrap_or_default(),
                r.try_get::<i64>("", "n").unwrap_or(0)
            )
        })
        .collect();
    let twice = "SELECT COUNT(*) AS n FROM (SELECT subscription_id FROM account_transactions \
                 WHERE renews_from IS NOT NULL AND status <> 'FAILED' \
                 GROUP BY subscription_id, renews_from HAVING COUNT(*) > 1) twice";
    let row = db.query_one_raw(Statement::from_string(DatabaseBackend::Postgres, twice)).await.expect("periods");
    let charged_twice: i64 = row.and_then(|r| r.try_get("", "n").ok()).unwrap_or(-1);
    let held = charged_twice == 0 && renewing.skipped == 0;
    let verdict = if held { "CHECK ok   " } else { "CHECK FAIL " };
    let line = format!(
        "{verdict} renewals: {} subscriptions asked for automatic renewal; automatic renewals {}; \
         periods charged twice: {charged_twice}; periods skipped while the balance covered them: {}",
        renewing.asked,
        if by_status.is_empty() { "none".to_string() } else { by_status.join(", ") },
        renewing.skipped,
    );
    (line, held)
}
