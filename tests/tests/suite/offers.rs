use offers_proto::catalog::v1 as pb;
use offers_tests::{Backend, TestSuite, across_processes, both};

async fn offers_list_and_get(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let list = suite.api.get("/api/v1/offers/", Some(&token)).await;
    assert_eq!(list.status, 200, "{}", list.body);
    let results = list.body["results"].as_array().expect("results");
    assert!(results.len() >= 4, "{}", list.body);
    assert!(list.body["next_cursor"].is_null());
    let codes: Vec<&str> = results.iter().filter_map(|o| o["code"].as_str()).collect();
    assert!(codes.contains(&"SIM-FAIL") && codes.contains(&"SIM-FLAKY"), "{codes:?}");
    for field in [
        "id",
        "code",
        "name",
        "description",
        "price",
        "currency",
        "duration_days",
        "data_mb",
        "voice_minutes",
        "sms",
        "is_active",
    ] {
        assert!(results[0].get(field).is_some(), "offer lacks {field}");
    }

    let id = results[0]["id"].as_str().expect("id");
    let one = suite.api.get(&format!("/api/v1/offers/{id}/"), Some(&token)).await;
    assert_eq!(one.status, 200, "{}", one.body);
    assert_eq!(one.body, results[0]);

    suite.api.get("/api/v1/offers/not-a-uuid/", Some(&token)).await.assert_problem(400, "invalid_id");
    let unknown = uuid::Uuid::now_v7();
    suite.api.get(&format!("/api/v1/offers/{unknown}/"), Some(&token)).await.assert_problem(404, "not_found");
    suite.api.get("/api/v1/offers/", None).await.assert_problem(401, "unauthenticated");
}

async fn offers_paginate_newest_first(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let all = suite.api.get("/api/v1/offers/", Some(&token)).await;
    let all: Vec<String> =
        all.body["results"].as_array().expect("results").iter().map(|o| o["id"].to_string()).collect();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/offers/?limit=2&cursor={c}"),
            None => "/api/v1/offers/?limit=2".to_string(),
        };
        let page = suite.api.get(&path, Some(&token)).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let results = page.body["results"].as_array().expect("results");
        assert!(results.len() <= 2);
        seen.extend(results.iter().map(|o| o["id"].to_string()));
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, all, "pages put together are the whole list, in order");
    suite.api.get("/api/v1/offers/?limit=abc", Some(&token)).await.assert_problem(400, "invalid_request");
    suite.api.get("/api/v1/offers/?cursor=zzz", Some(&token)).await.assert_problem(400, "invalid_request");
}

async fn admin_update_invalidates_the_cache(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let list = suite.api.get("/api/v1/offers/", Some(&token)).await;
    let offer = list.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|o| o["code"] == "DATA-1GB")
        .expect("DATA-1GB")
        .clone();
    let id = offer["id"].as_str().expect("id").to_string();
    let path = format!("/api/v1/offers/{id}/");
    // Both reads are now cached; read again, they come from the catalog's
    // decoded copies too, which the update below must not outlive.
    assert_eq!(suite.api.get(&path, Some(&token)).await.body["price"], 500);
    assert_eq!(suite.api.get(&path, Some(&token)).await.body["price"], 500);
    assert_eq!(suite.api.get("/api/v1/offers/", Some(&token)).await.status, 200);
    if suite.backend == Backend::Real {
        let keys = redis_keys(suite).await;
        assert!(keys.iter().any(|k| k.contains(&id)), "the offer should be cached in Redis: {keys:?}");
    }

    let changed = suite
        .admin()
        .update_offer(
            pb::Offer { id: id.clone(), price: 650, name: "Data 1 GB+".into(), ..Default::default() },
            vec!["price".into(), "name".into()],
        )
        .await
        .expect("update");
    assert_eq!(changed.price, 650);

    let one = suite.api.get(&path, Some(&token)).await;
    assert_eq!((one.body["price"].clone(), one.body["name"].clone()), (650.into(), "Data 1 GB+".into()));
    let list = suite.api.get("/api/v1/offers/", Some(&token)).await;
    let listed = list.body["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|o| o["id"] == id.as_str())
        .expect("listed")
        .clone();
    assert_eq!(listed["price"], 650);

    // Deactivated: gone from the list and from a plain user's view.
    suite
        .admin()
        .update_offer(pb::Offer { id: id.clone(), is_active: false, ..Default::default() }, vec!["is_active".into()])
        .await
        .expect("deactivate");
    let list = suite.api.get("/api/v1/offers/", Some(&token)).await;
    assert!(list.body["results"].as_array().expect("results").iter().all(|o| o["id"] != id.as_str()));
    suite.api.get(&path, Some(&token)).await.assert_problem(404, "not_found");
    suite.api.get("/api/v1/offers/?include_inactive=true", Some(&token)).await.assert_problem(403, "permission_denied");
}

async fn redis_keys(suite: &TestSuite) -> Vec<String> {
    use deadpool_redis::redis;
    let client = redis::Client::open(suite.settings.cache.url.as_str()).expect("redis");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    redis::cmd("KEYS").arg(format!("{}*", suite.settings.cache.prefix)).query_async(&mut conn).await.expect("keys")
}

async fn offer_admin_validates_input(suite: &TestSuite) {
    let mut admin = suite.admin();
    let bad = pb::Offer {
        code: "lower".into(),
        name: "x".into(),
        price: 100,
        currency_code: "EUR".into(),
        duration_days: 1,
        ..Default::default()
    };
    let err = admin.create_offer(bad).await.err().expect("refused");
    assert!(err.to_string().contains("code"), "{err}");
    let negative = pb::Offer {
        code: "NEG".into(),
        name: "x".into(),
        price: -5,
        currency_code: "EUR".into(),
        duration_days: 1,
        ..Default::default()
    };
    assert!(admin.create_offer(negative).await.is_err());
    let duplicate = pb::Offer {
        code: "SIM-FAIL".into(),
        name: "x".into(),
        price: 5,
        currency_code: "EUR".into(),
        duration_days: 1,
        ..Default::default()
    };
    assert!(matches!(admin.create_offer(duplicate).await, Ok(offers::admin::Created::Existing)));
}

/// A caller that holds a page (the edge keeps its JSON) sends its version
/// back: the catalog confirms it without sending the offers while they
/// are unchanged, still checks who asks first, and sends the page again,
/// with a new version, once an offer changed.
async fn the_catalog_confirms_a_held_page_without_sending_it(suite: &TestSuite) {
    use offers_proto::catalog::v1::catalog_service_client::CatalogServiceClient;
    let token = suite.token("demo").await;
    let mut catalog = CatalogServiceClient::new(suite.public_channel().await);
    let ask = |unless_version: &str, show_inactive: bool| {
        let body = pb::ListOffersRequest { unless_version: unless_version.into(), show_inactive, ..Default::default() };
        let mut request = tonic::Request::new(body);
        request.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
        request
    };
    let first = catalog.list_offers(ask("", false)).await.expect("list").into_inner();
    assert!(!first.offers.is_empty() && !first.not_modified);
    assert_eq!(first.version.len(), 32, "a version: {:?}", first.version);

    let held = catalog.list_offers(ask(&first.version, false)).await.expect("list").into_inner();
    assert!(held.not_modified, "the same offers: confirmed");
    assert!(held.offers.is_empty() && held.next_page_token.is_empty(), "and not sent again");
    assert_eq!(held.version, first.version);

    let other = catalog.list_offers(ask("0123456789abcdef0123456789abcdef", false)).await.expect("list");
    let other = other.into_inner();
    assert!(!other.not_modified && other.offers == first.offers && other.version == first.version);

    let refused = catalog.list_offers(ask(&first.version, true)).await.expect_err("not an administrator");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "who asks is checked before any version");

    let repriced = pb::Offer { id: first.offers[0].id.clone(), price: first.offers[0].price + 1, ..Default::default() };
    suite.admin().update_offer(repriced, vec!["price".into()]).await.expect("reprice");
    let changed = catalog.list_offers(ask(&first.version, false)).await.expect("list").into_inner();
    assert!(!changed.not_modified && changed.version != first.version, "a new version once an offer changed");
    assert_eq!(changed.offers[0].price, first.offers[0].price + 1);
}

/// The edge keeps one copy of each page for every caller, but never
/// answers from it before the catalog has checked who asks: an
/// administrator's page with inactive offers, kept and revalidated, is
/// still a 403 for anyone else, with or without its tag.
async fn a_kept_administrators_page_is_never_anyone_elses(suite: &TestSuite) {
    let username = format!("a{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let request = offers_proto::auth::v1::CreateUserRequest {
        username: username.clone(),
        password: offers::dev::DEMO_PASSWORD.into(),
        email: format!("{username}@example.com"),
        is_admin: true,
        ..Default::default()
    };
    suite.admin().create_user(request).await.expect("an administrator");
    let (admin, user) = (suite.token(&username).await, suite.token("demo").await);
    let all = "/api/v1/offers/?include_inactive=true";
    let first = suite.api.get_raw(all, Some(&admin), &[]).await;
    assert_eq!(first.0, 200);
    let tag = first.1.get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_string();
    let again = suite.api.get_raw(all, Some(&admin), &[]).await;
    assert_eq!((again.0, &again.2), (200, &first.2), "the administrator's page again, from the kept copy");
    assert_eq!(suite.api.get_raw(all, Some(&admin), &[("if-none-match", &tag)]).await.0, 304);

    suite.api.get(all, Some(&user)).await.assert_problem(403, "permission_denied");
    let (status, _, body) = suite.api.get_raw(all, Some(&user), &[("if-none-match", &tag)]).await;
    assert_eq!(status, 403, "not a 304 on the administrator's tag: {}", String::from_utf8_lossy(&body));
}

both!(
    a_kept_administrators_page_is_never_anyone_elses,
    the_catalog_confirms_a_held_page_without_sending_it,
    catalog_answers_revalidate_and_compress,
    offers_list_and_get,
    offers_paginate_newest_first,
    admin_update_invalidates_the_cache,
    offer_admin_validates_input
);

// Across every process boundary: each role its own process.
across_processes!(
    offers_list_and_get,
    admin_update_invalidates_the_cache,
    a_kept_administrators_page_is_never_anyone_elses,
);

/// A client that keeps the catalog revalidates it (`If-None-Match`): 304
/// with no body while nothing changed, the new list with a new tag once an
/// offer did; lists come gzipped to clients that accept it.
async fn catalog_answers_revalidate_and_compress(suite: &TestSuite) {
    let token = suite.token("demo").await;
    let list = "/api/v1/offers/?limit=200";
    let (status, headers, body) = suite.api.get_raw(list, Some(&token), &[]).await;
    assert_eq!(status, 200);
    let tag = headers.get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_string();
    assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("private, no-cache"));
    let offers: serde_json::Value = serde_json::from_slice(&body).expect("json");
    for asked in [tag.clone(), format!("W/{tag}"), format!("\"other\", {tag}")] {
        let (status, again, body) = suite.api.get_raw(list, Some(&token), &[("if-none-match", &asked)]).await;
        assert_eq!((status, body.len()), (304, 0), "{asked}");
        assert_eq!(again.get("etag").and_then(|v| v.to_str().ok()), Some(tag.as_str()));
    }
    let (status, _, _) = suite.api.get_raw(list, Some(&token), &[("if-none-match", "\"not-it\"")]).await;
    assert_eq!(status, 200, "another tag is not a match");
    // Without a valid token, never a 304: the check comes first.
    let (status, _, _) = suite.api.get_raw(list, None, &[("if-none-match", &tag)]).await;
    assert_eq!(status, 401);

    let one = offers["results"][0]["id"].as_str().expect("an id").to_string();
    let path = format!("/api/v1/offers/{one}/");
    let (_, headers, _) = suite.api.get_raw(&path, Some(&token), &[]).await;
    let one_tag = headers.get("etag").and_then(|v| v.to_str().ok()).expect("an ETag").to_string();
    assert_eq!(suite.api.get_raw(&path, Some(&token), &[("if-none-match", &one_tag)]).await.0, 304);
    let change = pb::Offer { id: one.clone(), price: 777, ..Default::default() };
    suite.admin().update_offer(change, vec!["price".into()]).await.expect("reprice");
    for (path, old) in [(list, &tag), (path.as_str(), &one_tag)] {
        let (status, headers, body) = suite.api.get_raw(path, Some(&token), &[("if-none-match", old)]).await;
        assert_eq!(status, 200, "{path} changed");
        assert_ne!(headers.get("etag").and_then(|v| v.to_str().ok()), Some(old.as_str()));
        assert!(String::from_utf8_lossy(&body).contains("777"));
    }

    let (status, headers, body) = suite.api.get_raw(list, Some(&token), &[("accept-encoding", "gzip")]).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("content-encoding").and_then(|v| v.to_str().ok()), Some("gzip"));
    let mut plain = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(body.as_slice()), &mut plain).expect("gzip");
    let unzipped: serde_json::Value = serde_json::from_str(&plain).expect("json");
    assert_eq!(unzipped["results"].as_array().map(Vec::len), offers["results"].as_array().map(Vec::len));
    let (_, headers, _) =
        suite.api.get_raw(&format!("/api/v1/offers/{one}/"), Some(&token), &[("accept-encoding", "gzip")]).await;
    assert!(headers.get("content-encoding").is_none(), "one offer is too small to be worth it");
}
