//! `offers admin ledger check`, as an operator or a CronJob runs it: the
//! account totals and "ledger balanced" on sound books, and a failure
//! naming what is wrong when they are not.

use offers_tests::{TestSuite, both};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

both!(the_ledger_check_tells_sound_books_from_broken_ones);

async fn the_ledger_check_tells_sound_books_from_broken_ones(suite: &TestSuite) {
    let sold = suite.demo_buys("DATA-1GB").await;
    let sold_id = sold.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&sold.token, &sold_id).await.body["status"], "SUCCESS");
    let refused = suite.demo_buys("SIM-FAIL").await;
    let refused_id = refused.reply.str("transaction_id").to_string();
    assert_eq!(suite.settled(&refused.token, &refused_id).await.body["status"], "FAILED");

    let report = suite.offers_cli(&["admin", "ledger", "check"]).await;
    let out = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{out}{}", String::from_utf8_lossy(&report.stderr));
    for line in ["funding", "pending", "revenue", "sum over all accounts: 0", "ledger balanced"] {
        assert!(out.contains(line), "no {line:?} in:\n{out}");
    }

    // A kept balance its transfers do not explain.
    let demo = uuid::Uuid::parse_str(&suite.admin().user("demo").await.expect("demo").id).expect("id");
    let nudge = |by: i64| {
        Query::update()
            .table("account_accounts")
            .value("balance", Expr::col("balance").add(by))
            .and_where(Expr::col("id").eq(demo))
            .to_owned()
    };
    suite.database().execute(&nudge(1)).await.expect("nudged");
    let broken = suite.offers_cli(&["admin", "ledger", "check"]).await;
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success(), "a broken ledger fails the check");
    assert!(err.contains(&format!("VIOLATION: account {demo} holds")), "{err}");
    assert!(err.contains("the accounts sum to 1, not zero"), "{err}");
    suite.database().execute(&nudge(-1)).await.expect("restored");

    // A transaction whose state its transfers contradict.
    let relabel = |status: &str| {
        let id = uuid::Uuid::parse_str(&refused_id).expect("id");
        Query::update()
            .table("account_transactions")
            .value("status", status)
            .and_where(Expr::col("id").eq(id))
            .to_owned()
    };
    suite.database().execute(&relabel("SUCCESS")).await.expect("relabelled");
    let broken = suite.offers_cli(&["admin", "ledger", "check"]).await;
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success());
    assert!(err.contains(&format!("transaction {refused_id}: SUCCESS with 0 sales and 1 refunds")), "{err}");
    suite.database().execute(&relabel("FAILED")).await.expect("restored");

    // A subscription extended once more than its successes say (a success
    // applied twice would look so).
    let detail = suite.transaction(&sold.token, &sold_id).await;
    let subscription = uuid::Uuid::parse_str(detail["subscription_id"].as_str().expect("subscription")).expect("id");
    let expiry = |to: chrono::DateTime<chrono::Utc>| {
        Query::update()
            .table("account_subscriptions")
            .value("expires_at", to)
            .and_where(Expr::col("id").eq(subscription))
            .to_owned()
    };
    let select = Query::select()
        .column("expires_at")
        .from("account_subscriptions")
        .and_where(Expr::col("id").eq(subscription))
        .to_owned();
    let row = suite.database().query_one(&select).await.expect("query").expect("the subscription");
    let current: chrono::DateTime<chrono::Utc> = row.try_get("", "expires_at").expect("expires_at");
    suite.database().execute(&expiry(current + chrono::Duration::days(7))).await.expect("moved");
    let broken = suite.offers_cli(&["admin", "ledger", "check"]).await;
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success());
    assert!(err.contains(&format!("subscription {subscription} runs to")), "{err}");
    suite.database().execute(&expiry(current)).await.expect("restored");
}
