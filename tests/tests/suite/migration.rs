//! Databases from before a migration move into it: balances become opening
//! transfers from funding, transactions still PENDING get their hold, and
//! the books balance before and after they settle; queued reminders get the
//! job they wait for, so the reconciler can re-drive them.

use offers::migrator::Migrator;
use offers::process::{Process, connect_database};
use offers::roles::Role;
use offers::settings::Settings;
use offers_proto::account::v1 as pb;
use offers_tests::backends::Resources;
use offers_tests::{Backend, each_backend};
use sea_orm::sea_query::{Query, SimpleExpr};
use sea_orm::{ConnectionTrait, DatabaseConnection};
use sea_orm_migration::MigratorTrait;
use uuid::Uuid;

/// Migrations before the double-entry ledger: auth, catalog, the first
/// account one.
const BEFORE_DOUBLE_ENTRY: u32 = 3;

async fn insert(db: &DatabaseConnection, table: &'static str, values: Vec<(&'static str, SimpleExpr)>) {
    let (columns, values): (Vec<&str>, Vec<SimpleExpr>) = values.into_iter().unzip();
    let insert = Query::insert().into_table(table).columns(columns).values_panic(values).to_owned();
    db.execute(&insert).await.expect("insert");
}

/// An old-style transaction of `user`, paid by them unless a partner sold it.
async fn old_transaction(
    db: &DatabaseConnection,
    user: Uuid,
    amount: i64,
    status: &str,
    partner: Option<Uuid>,
) -> Uuid {
    let id = Uuid::now_v7();
    let now = chrono::Utc::now();
    let kind = if partner.is_some() { "PARTNER_ACTIVATION" } else { "ACTIVATION" };
    insert(
        db,
        "account_transactions",
        vec![
            ("id", id.into()),
            ("user_id", user.into()),
            ("kind", kind.into()),
            ("offer_id", Uuid::now_v7().into()),
            ("offer_code", "OLD-1".into()),
            ("offer_name", "Old offer".into()),
            ("duration_days", 7.into()),
            ("subscription_id", Option::<Uuid>::None.into()),
            ("amount", amount.into()),
            ("currency", "EUR".into()),
            ("status", status.into()),
            ("reference", partner.map(|_| format!("REF-{}", &id.simple().to_string()[20..]).to_uppercase()).into()),
            ("partner_id", partner.into()),
            ("failure_reason", Option::<String>::None.into()),
            ("last_error", Option::<String>::None.into()),
            ("attempts", 1.into()),
            ("revision", 1i64.into()),
            ("redrive_at", (now + chrono::Duration::hours(1)).into()),
            ("created_at", now.into()),
            ("updated_at", now.into()),
        ],
    )
    .await;
    id
}

async fn old_balances_move_into_the_double_entry_ledger(backend: Backend) {
    let Some(resources) = Resources::provision(backend).await else { return };
    let mut settings = Settings::default().embedded(&resources.scratch_dir()).expect("settings");
    resources.apply(&mut settings);
    let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    (settings.http_addr, settings.grpc_addr, settings.internal_grpc_addr) = (any, any, any);

    let db = connect_database(&settings, false).await.expect("database");
    Migrator::up(&db, Some(BEFORE_DOUBLE_ENTRY)).await.expect("the old schema");
    let (alice, bob, partner) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let now = chrono::Utc::now();
    for (user, balance) in [(alice, 700i64), (bob, 0)] {
        let row = vec![
            ("user_id", user.into()),
            ("balance", balance.into()),
            ("currency", "EUR".into()),
            ("updated_at", now.into()),
        ];
        insert(&db, "account_balances", row).await;
    }
    let held = old_transaction(&db, alice, 500, "PENDING", None).await;
    old_transaction(&db, alice, 300, "SUCCESS", None).await;
    old_transaction(&db, alice, 200, "FAILED", None).await;
    let sold = old_transaction(&db, bob, 100, "PENDING", Some(partner)).await;
    Migrator::up(&db, None).await.expect("the double-entry migration");

    let process = Process::start(settings.clone(), &[Role::Account], false).await.expect("account role");
    let token = process.settings.internal_token().expect("credential").to_string();
    let mut admin = offers::admin::AdminClient::connect(&process.settings, &token).expect("admin");
    let books = admin.check_ledger().await.expect("check");
    assert!(books.violations.is_empty(), "{:#?}", books.violations);
    assert_eq!(books.sum, 0);
    let balance_of = |books: &pb::CheckLedgerResponse, id: Uuid| {
        let total = books.totals.iter().find(|t| t.account.as_ref().is_some_and(|a| a.id == id.to_string()));
        total.map(|t| t.account.as_ref().map_or(0, |a| a.balance)).expect("an account")
    };
    assert_eq!(balance_of(&books, alice), 700, "the balance carried over");
    assert_eq!(balance_of(&books, offers_account::PENDING), 600, "both PENDING transactions are held");

    // The migrated PENDING ones settle like any other: a failure gives the
    // user back what the old ledger took, and what the partner sold outside
    // goes back where it came from, not to the user.
    for id in [held, sold] {
        let settle = pb::SettleTransactionRequest {
            transaction_id: id.to_string(),
            status: pb::TransactionStatus::Failed.into(),
            failure_reason: "migrated and failed".into(),
            attempt: 0,
        };
        assert!(admin.clients.ledger.settle_transaction(settle).await.expect("settle").into_inner().applied);
    }
    let books = admin.check_ledger().await.expect("check");
    assert!(books.violations.is_empty(), "{:#?}", books.violations);
    assert_eq!((balance_of(&books, alice), balance_of(&books, bob)), (1200, 0));
    assert_eq!(balance_of(&books, offers_account::PENDING), 0);
    process.stop().await;
}

/// Migrations before leased rows recorded their jobs.
const BEFORE_JOBS_RECORDED: u32 = 8;

/// A reminder row as the scheduler wrote it before it recorded jobs.
async fn old_reminder(db: &DatabaseConnection, status: &str, attempts: i32) -> (Uuid, chrono::DateTime<chrono::Utc>) {
    let (id, queued_at) = (Uuid::now_v7(), chrono::Utc::now() - chrono::Duration::hours(1));
    let none = Option::<chrono::DateTime<chrono::Utc>>::None;
    let row = vec![
        ("id", id.into()),
        ("subscription_id", Uuid::now_v7().into()),
        ("window_hours", 72.into()),
        ("expires_at", (queued_at + chrono::Duration::days(2)).into()),
        ("user_id", Uuid::now_v7().into()),
        ("offer_name", "Old offer".into()),
        ("status", status.into()),
        ("sent_channels", "".into()),
        ("attempts", attempts.into()),
        ("lease_until", none.into()),
        ("last_error", Option::<String>::None.into()),
        ("created_at", queued_at.into()),
        ("finished_at", none.into()),
    ];
    insert(db, "notifier_reminders", row).await;
    (id, queued_at)
}

async fn queued_reminders_get_their_job(backend: Backend) {
    let Some(resources) = Resources::provision(backend).await else { return };
    let mut settings = Settings::default().embedded(&resources.scratch_dir()).expect("settings");
    resources.apply(&mut settings);
    let db = connect_database(&settings, false).await.expect("database");
    Migrator::up(&db, Some(BEFORE_JOBS_RECORDED)).await.expect("the old schema");
    let (queued, queued_at) = old_reminder(&db, "QUEUED", 2).await;
    let (sent, _) = old_reminder(&db, "SENT", 1).await;
    Migrator::up(&db, None).await.expect("the migrations that record jobs");

    let job_of = async |id: Uuid| {
        use sea_orm::sea_query::{Expr, ExprTrait};
        let select = Query::select()
            .columns(["job", "job_due_at"])
            .from("notifier_reminders")
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        let row = db.query_one(&select).await.expect("query").expect("the reminder");
        let job: Option<String> = row.try_get("", "job").expect("job");
        let due: Option<chrono::DateTime<chrono::Utc>> = row.try_get("", "job_due_at").expect("job_due_at");
        (job.map(|j| serde_json::from_str::<offers_notifier::ReminderJob>(&j).expect("a reminder job")), due)
    };
    let (job, due) = job_of(queued).await;
    assert_eq!(job, Some(offers_notifier::ReminderJob { reminder_id: queued, attempt: 2 }), "the job it waits for");
    let lag = due.map(|d| (d - queued_at).num_milliseconds().abs());
    assert!(lag.is_some_and(|ms| ms < 1000), "due since it was queued: {due:?} vs {queued_at}");
    assert_eq!(job_of(sent).await, (None, None), "a finished reminder waits for nothing");
}

each_backend!(old_balances_move_into_the_double_entry_ledger, queued_reminders_get_their_job);
