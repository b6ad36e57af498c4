//! The ledger as its callers meet it: `offers admin ledger check`, as an
//! operator or a CronJob runs it (the account totals and "ledger balanced"
//! on sound books, a failure naming what is wrong when they are not), and
//! `LedgerService/Purchase` as the internal services call it.

use offers_proto::account::v1::{self as pb, ledger_service_client::LedgerServiceClient};
use offers_proto::catalog::v1::Offer;
use offers_tests::{TestSuite, both};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Expr, ExprTrait, Query};

both!(the_ledger_check_tells_sound_books_from_broken_ones, a_purchase_carries_only_what_its_kind_allows);

/// Over the internal listener, with the service credential: a request
/// whose fields belong to another kind of purchase is refused and moves
/// nothing; a keyed purchase is answered again by `ReplayPurchase` (and by
/// the deprecated `replay_only` flag older callers send) and debited once.
async fn a_purchase_carries_only_what_its_kind_allows(suite: &TestSuite) {
    let credential = format!("Bearer {}", suite.settings.internal_token().expect("credential"));
    let bearer: tonic::metadata::MetadataValue<_> = credential.parse().expect("ascii");
    fn with<T>(bearer: &tonic::metadata::MetadataValue<tonic::metadata::Ascii>, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert("authorization", bearer.clone());
        request
    }
    let mut ledger = LedgerServiceClient::new(suite.internal_channel().await);
    let (user_id, token) = suite.user_with_balance(2_000).await;
    let offer = Offer {
        id: suite.offer_id(&token, "DATA-1GB").await,
        code: "DATA-1GB".into(),
        name: "Data 1 GB".into(),
        price: 500,
        currency_code: suite.settings.currency.clone(),
        duration_days: 7,
        is_active: true,
        ..Default::default()
    };
    let scope = format!("user:{user_id}");
    let activation = pb::PurchaseRequest {
        user_id: user_id.clone(),
        kind: pb::TransactionKind::Activation.into(),
        offer: Some(offer),
        idempotency_scope: scope.clone(),
        idempotency_key: "purchase-1".into(),
        request_hash: "fingerprint-1".into(),
        ..Default::default()
    };
    let someone = uuid::Uuid::now_v7().to_string();
    let misfits = [
        pb::PurchaseRequest { partner_id: someone.clone(), ..activation.clone() },
        pb::PurchaseRequest { subscription_id: someone.clone(), ..activation.clone() },
        pb::PurchaseRequest { reference: "REF-000000000001".into(), ..activation.clone() },
        pb::PurchaseRequest { kind: pb::TransactionKind::Renewal.into(), ..activation.clone() },
        pb::PurchaseRequest {
            kind: pb::TransactionKind::PartnerActivation.into(),
            partner_id: someone.clone(),
            ..activation.clone()
        },
        pb::PurchaseRequest { kind: pb::TransactionKind::Unspecified.into(), ..activation.clone() },
        pb::PurchaseRequest { idempotency_scope: String::new(), ..activation.clone() },
    ];
    for misfit in misfits {
        let refused = ledger.purchase(with(&bearer, misfit.clone())).await.expect_err("refused");
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{misfit:?}: {refused:?}");
    }
    assert_eq!(suite.balance(&token).await, 2_000, "a refused purchase moves nothing");

    let bought = ledger.purchase(with(&bearer, activation.clone())).await.expect("bought").into_inner();
    let first = bought.transaction.expect("transaction");
    assert!(!bought.replayed);
    assert_eq!(suite.balance(&token).await, 1_500);

    let replay = pb::ReplayPurchaseRequest {
        idempotency_scope: scope.clone(),
        idempotency_key: "purchase-1".into(),
        request_hash: "fingerprint-1".into(),
    };
    let again = ledger.replay_purchase(with(&bearer, replay.clone())).await.expect("replayed").into_inner();
    assert_eq!(again.transaction.map(|t| t.id), Some(first.id.clone()));
    let older = pb::PurchaseRequest { replay_only: true, offer: None, ..activation.clone() };
    let again = ledger.purchase(with(&bearer, older)).await.expect("replayed the old way").into_inner();
    assert_eq!((again.transaction.map(|t| t.id), again.replayed), (Some(first.id.clone()), true));
    let other = pb::ReplayPurchaseRequest { request_hash: "fingerprint-2".into(), ..replay.clone() };
    let reused = ledger.replay_purchase(with(&bearer, other)).await.expect_err("another request");
    assert_eq!(reused.code(), tonic::Code::FailedPrecondition, "{reused:?}");
    let unknown = pb::ReplayPurchaseRequest { idempotency_key: "purchase-2".into(), ..replay };
    assert_eq!(ledger.replay_purchase(with(&bearer, unknown)).await.expect_err("none").code(), tonic::Code::NotFound);
    assert_eq!(suite.balance(&token).await, 1_500, "one purchase, debited once");
}

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
