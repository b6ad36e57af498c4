//! The audit trail: every administrative act, whichever service performs
//! it, recorded with who, what, on what, why and the request — refused
//! without its actor, append-only in the database, and a chain of digests
//! that shows an entry changed behind the database's back.

use offers_proto::audit::v1::{AuditEntry, ListAuditEntriesRequest};
use offers_proto::catalog::v1 as catalog_pb;
use offers_tests::{TestSuite, across_processes, both};
use sea_orm::{ConnectionTrait, DatabaseBackend};

both!(
    every_administrative_act_is_in_the_trail,
    a_write_without_its_actor_is_refused,
    the_trail_is_append_only_and_its_chain_shows_tampering,
);

// Each role its own process, each trail behind its own internal address.
across_processes!(trails_of_every_process_list_as_one);

async fn entries(suite: &TestSuite, filter: ListAuditEntriesRequest) -> Vec<AuditEntry> {
    suite.admin().audit_entries(&filter, 500).await.expect("audit")
}

fn by_action(action: &str) -> ListAuditEntriesRequest {
    ListAuditEntriesRequest { action: action.into(), ..Default::default() }
}

/// Acts of all four services that keep a trail, from one operator; each
/// entry names them, and the listing pages newest first across trails.
async fn every_administrative_act_is_in_the_trail(suite: &TestSuite) {
    let mut admin = suite.admin();
    admin.act_as("ana", "quarterly catalogue change");
    let offer = catalog_pb::Offer {
        code: "AUDIT-1".into(),
        name: "Audited".into(),
        price: 250,
        currency_code: "EUR".into(),
        duration_days: 3,
        is_active: true,
        ..Default::default()
    };
    let offers::admin::Created::New(offer) = admin.create_offer(offer).await.expect("offer") else { panic!("exists") };
    let change = catalog_pb::Offer { id: offer.id.clone(), price: 300, ..Default::default() };
    admin.update_offer(change, vec!["price".into()]).await.expect("reprice");
    let (user, _) = suite.user_with_balance(0).await;
    admin.credit(&user, 1_000, "EUR", "goodwill-1", "goodwill").await.expect("credit");
    admin.credit(&user, 1_000, "EUR", "goodwill-1", "goodwill").await.expect("a replay");
    let offers::admin::Created::New(partner) = admin.create_partner("Audited Partner").await.expect("partner") else {
        panic!("exists")
    };
    let partner_id = partner.partner.expect("partner").id;
    admin.set_credit_limit(&partner_id, 5_000).await.expect("limit");
    let key = admin.create_key(&partner_id, None).await.expect("key").api_key.expect("key");
    admin.revoke_key(&key.id).await.expect("revoke");
    admin.revoke_key(&key.id).await.expect("revoking again changes nothing");
    admin.rotate_key().await.expect("rotate");

    let mine = entries(suite, ListAuditEntriesRequest { actor: "ana".into(), ..Default::default() }).await;
    let actions: Vec<&str> = mine.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "signing_key.rotate",
            "api_key.revoke",
            "api_key.create",
            "credit_limit.set",
            "api_key.create",
            "partner.create",
            "credit",
            "offer.update",
            "offer.create",
        ],
        "newest first, a replay and a second revoke recorded nothing: {mine:#?}"
    );
    assert!(mine.iter().all(|e| e.note == "quarterly catalogue change" && !e.request_id.is_empty()));
    let trails: std::collections::BTreeSet<&str> = mine.iter().map(|e| e.trail.as_str()).collect();
    assert_eq!(trails.into_iter().collect::<Vec<_>>(), ["account", "auth", "catalog", "partner"]);
    let update = &entries(suite, by_action("offer.update")).await[0];
    assert_eq!(
        (update.target.as_str(), update.detail.as_str()),
        (format!("offer:{}", offer.id).as_str(), "price: 250 → 300")
    );
    let credit =
        &entries(suite, ListAuditEntriesRequest { target: format!("user:{user}"), ..Default::default() }).await;
    assert_eq!(credit.len(), 2, "the test's own zero credit is none; the user's creation is in auth: {credit:#?}");
    assert_eq!(credit[0].detail, "amount=1000 EUR memo=goodwill");
    let made = entries(suite, by_action("user.create")).await;
    assert!(made.iter().any(|e| e.target == format!("user:{user}") && e.actor == offers_tests::TEST_ACTOR));
    assert!(made.iter().any(|e| e.actor == offers::dev::SEED_ACTOR), "the demo data says who made it");

    // Pages of two walk every entry once, in the same order.
    let mut paged = Vec::new();
    let mut request = ListAuditEntriesRequest { page_size: 2, ..Default::default() };
    let mut client = suite.admin().clients.audit.remove(0);
    loop {
        let page = client.list_audit_entries(request.clone()).await.expect("page").into_inner();
        paged.extend(page.entries);
        if page.next_page_token.is_empty() {
            break;
        }
        request.page_token = page.next_page_token;
    }
    assert_eq!(paged, entries(suite, ListAuditEntriesRequest::default()).await);

    // The CLI lists and checks the same trails.
    let listed = suite.offers_cli(&["admin", "audit", "list", "--by", "ana", "--action", "api_key.revoke"]).await;
    let out = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success() && out.contains("ana  api_key.revoke") && out.contains("quarterly"), "{out}");
    let checked = suite.offers_cli(&["admin", "audit", "check"]).await;
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success() && out.contains("every audit trail intact"), "{out}");
}

/// A write that does not say who acts is refused before anything changes,
/// over gRPC and by the CLI; reads need no actor.
async fn a_write_without_its_actor_is_refused(suite: &TestSuite) {
    let mut anonymous =
        offers::admin::AdminClient::connect(&suite.settings, suite.settings.internal_token().expect("credential"))
            .expect("client");
    let offer = catalog_pb::Offer {
        code: "NOBODY".into(),
        name: "Nobody's".into(),
        price: 100,
        currency_code: "EUR".into(),
        duration_days: 1,
        ..Default::default()
    };
    let refused = anonymous.create_offer(offer).await.err().expect("refused");
    assert!(refused.to_string().contains("needs its actor"), "{refused}");
    let (user, _) = suite.user_with_balance(0).await;
    assert!(anonymous.credit(&user, 100, "EUR", "k", "m").await.is_err());
    assert!(anonymous.reviews().await.is_ok(), "reading needs no actor");
    let token = suite.token("demo").await;
    let listed = suite.api.get("/api/v1/offers/?limit=200", Some(&token)).await;
    assert!(!listed.body.to_string().contains("NOBODY"), "nothing was created");

    let cli = suite.offers_cli(&["admin", "credit", "--user", "demo", "--amount", "100"]).await;
    let err = String::from_utf8_lossy(&cli.stderr);
    assert!(!cli.status.success() && err.contains("--actor (or OFFERS_ACTOR) is required"), "{err}");
    let cli = suite
        .offers_cli(&[
            "admin",
            "--actor",
            "bo",
            "--why",
            "refund of a lost bundle",
            "credit",
            "--user",
            "demo",
            "--amount",
            "100",
        ])
        .await;
    assert!(cli.status.success(), "{}", String::from_utf8_lossy(&cli.stderr));
    let bo = entries(suite, ListAuditEntriesRequest { actor: "bo".into(), ..Default::default() }).await;
    assert_eq!((bo.len(), bo[0].note.as_str()), (1, "refund of a lost bundle"));
}

/// Neither an update nor a delete gets past the database; an entry changed
/// with the guard taken away breaks the chain, and the check says where.
async fn the_trail_is_append_only_and_its_chain_shows_tampering(suite: &TestSuite) {
    let (user, _) = suite.user_with_balance(700).await;
    let db = suite.database();
    let backend = db.get_database_backend();
    for forbidden in ["UPDATE account_audit SET note = 'nothing to see'", "DELETE FROM account_audit"] {
        let refused = db.execute_unprepared(forbidden).await.expect_err("refused");
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }
    let intact = suite.offers_cli(&["admin", "audit", "check"]).await;
    assert!(intact.status.success(), "{}", String::from_utf8_lossy(&intact.stderr));

    let unguard = match backend {
        DatabaseBackend::Postgres => "ALTER TABLE account_audit DISABLE TRIGGER account_audit_append_only",
        _ => "DROP TRIGGER account_audit_no_update",
    };
    db.execute_unprepared(unguard).await.expect("guard taken away");
    let forged = format!("UPDATE account_audit SET detail = 'amount=7 EUR memo=test' WHERE target = 'user:{user}'");
    db.execute_unprepared(&forged).await.expect("forged");
    let broken = suite.offers_cli(&["admin", "audit", "check"]).await;
    let err = String::from_utf8_lossy(&broken.stderr);
    assert!(!broken.status.success(), "a changed entry fails the check");
    assert!(err.contains("account trail: entry") && err.contains("is not what was written"), "{err}");
}

/// With each role in its own process, the listing asks every internal
/// address and merges their pages into one order; the check walks them all.
async fn trails_of_every_process_list_as_one(suite: &TestSuite) {
    let mut admin = suite.admin();
    assert_eq!(admin.clients.audit.len(), 4, "one audit client per trail's process");
    admin.act_as("ana", "split deployment");
    let (user, _) = suite.user_with_balance(0).await;
    admin.credit(&user, 300, "EUR", "split-1", "goodwill").await.expect("credit");
    let offers::admin::Created::New(partner) = admin.create_partner("Split Partner").await.expect("partner") else {
        panic!("exists")
    };
    let partner_id = partner.partner.expect("partner").id;
    admin.set_credit_limit(&partner_id, 100).await.expect("limit");
    admin.rotate_key().await.expect("rotate");
    let mine = entries(suite, ListAuditEntriesRequest { actor: "ana".into(), ..Default::default() }).await;
    let seen: Vec<(&str, &str)> = mine.iter().map(|e| (e.trail.as_str(), e.action.as_str())).collect();
    assert_eq!(
        seen,
        [
            ("auth", "signing_key.rotate"),
            ("account", "credit_limit.set"),
            ("partner", "api_key.create"),
            ("partner", "partner.create"),
            ("account", "credit"),
        ],
        "{mine:#?}"
    );
    let checked = suite.offers_cli(&["admin", "audit", "check"]).await;
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(checked.status.success() && out.contains("every audit trail intact"), "{out}");
}
