//! What the workloads need in place: the offers, many users with balances
//! (tokens signed with the suite's key, so seeding needs no logins), a few
//! real users for partner activations and logins, transactions to poll, and
//! one user with a long history.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::Utc;
use http::{Method, StatusCode};
use offers::admin::{AdminClient, Created};
use offers_account::entity::{transaction, transfer};
use offers_proto::auth::v1 as auth_pb;
use offers_proto::catalog::v1 as catalog_pb;
use sea_orm::{ActiveValue::Set, EntityTrait};
use uuid::Uuid;

use crate::driver;
use crate::target::Target;

/// How big the population is.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Size {
    pub users: usize,
    pub offers: usize,
    /// Users who exist in auth (partner activations and logins need them).
    pub members: usize,
    /// Transactions of the one user whose history W7 lists.
    pub history: usize,
}

pub struct Population {
    pub users: Vec<(Uuid, String)>,
    pub members: Vec<(String, String)>,
    pub offer_id: String,
    pub price: i64,
    /// (index into `users`, transaction id) to poll.
    pub statuses: Vec<(usize, String)>,
    pub historian_token: String,
    pub partner_key: String,
    /// What seeding took, for the report.
    pub seeded_in: Duration,
}

/// How many purchases each user can afford: more than the workloads ask
/// of anyone.
const PURCHASES_EACH: i64 = 200;
const SEEDERS: usize = 16;
pub const MEMBER_PASSWORD: &str = "bench-password-1";

pub async fn seed(target: &Target, size: Size) -> anyhow::Result<Population> {
    let started = Instant::now();
    let currency = target.settings.currency.clone();
    let mut admin = target.admin()?;
    // Looked up before the bench's own offers push the seeded ones off the
    // first page (newest first).
    let (offer_id, price, seeded) = data_offer(target).await?;
    for n in 0..size.offers.saturating_sub(seeded) {
        let offer = catalog_pb::Offer {
            code: format!("BENCH-{n:03}"),
            name: format!("Bench bundle {n}"),
            description: "A bundle for the benchmark's catalog".into(),
            price: 100 + i64::try_from(n)? * 10,
            currency_code: currency.clone(),
            duration_days: 30,
            data_mb: 1024,
            voice_minutes: 100,
            sms: 50,
            is_active: true,
            ..Default::default()
        };
        admin.create_offer(offer).await?;
    }

    let users: Vec<(Uuid, String)> = (0..size.users)
        .map(|_| {
            let id = Uuid::new_v4();
            Ok((id, target.signer.sign(id, false)?))
        })
        .collect::<anyhow::Result<_>>()?;
    let ids: Vec<Uuid> = users.iter().map(|(id, _)| *id).collect();
    credit_all(target, &ids, price * PURCHASES_EACH, &currency).await?;

    let mut members = Vec::with_capacity(size.members);
    for n in 0..size.members {
        let username = format!("bench{n:04}");
        let request = auth_pb::CreateUserRequest {
            username: username.clone(),
            password: MEMBER_PASSWORD.into(),
            email: format!("{username}@example.com"),
            ..Default::default()
        };
        let Created::New(user) = admin.create_user(request).await? else { anyhow::bail!("{username} exists") };
        members.push((user.id, username));
    }
    let partner = admin.partner(offers::dev::DEMO_PARTNER).await?;
    admin.fund_partner(&partner.id, price * 10_000_000, &currency, "bench-float").await?;

    let statuses = purchases(target, &users, &offer_id, 256).await?;
    let (historian, historian_token) = users[0].clone();
    history(target, &mut admin, historian, &offer_id, price, size.history).await?;

    Ok(Population {
        users,
        members,
        offer_id,
        price,
        statuses,
        historian_token,
        partner_key: offers::dev::DEMO_PARTNER_KEY.into(),
        seeded_in: started.elapsed(),
    })
}

/// The seeded DATA-1GB offer (id and price) and how many offers the
/// catalog already holds.
async fn data_offer(target: &Target) -> anyhow::Result<(String, i64, usize)> {
    let token = target.signer.sign(Uuid::new_v4(), false)?;
    let mut sender = driver::http_connection(target.edge).await?;
    let auth = format!("Bearer {token}");
    let request = driver::request(target.edge, Method::GET, "/api/v1/offers/", &[("authorization", &auth)], None);
    let answer = sender.send_request(request).await?;
    let body = http_body_util::BodyExt::collect(answer.into_body()).await?.to_bytes();
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    let all = list["results"].as_array().context("no offer list")?;
    let offer = all.iter().find(|o| o["code"] == "DATA-1GB").context("no DATA-1GB offer")?;
    Ok((offer["id"].as_str().context("id")?.to_string(), offer["price"].as_i64().context("price")?, all.len()))
}

/// Credits every user, `SEEDERS` at a time.
async fn credit_all(target: &Target, ids: &[Uuid], amount: i64, currency: &str) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for chunk in ids.chunks(ids.len().div_ceil(SEEDERS).max(1)) {
        let (mut admin, chunk, currency) = (target.admin()?, chunk.to_vec(), currency.to_string());
        tasks.push(tokio::spawn(async move {
            for id in chunk {
                admin.credit(&id.to_string(), amount, &currency, &format!("bench:{id}"), "bench balance").await?;
            }
            anyhow::Ok(())
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// `count` purchases through the edge, by the first users, for W3 to poll.
async fn purchases(
    target: &Target,
    users: &[(Uuid, String)],
    offer_id: &str,
    count: usize,
) -> anyhow::Result<Vec<(usize, String)>> {
    let mut sender = driver::http_connection(target.edge).await?;
    let body = bytes::Bytes::from(serde_json::to_vec(&serde_json::json!({ "offer_id": offer_id }))?);
    let mut made = Vec::with_capacity(count);
    for n in 0..count {
        let user = n % users.len();
        let (auth, key) = (format!("Bearer {}", users[user].1), format!("bench-seed-{n}"));
        let headers = [("authorization", auth.as_str()), ("idempotency-key", key.as_str())];
        let request = driver::request(target.edge, Method::POST, "/api/v1/activation/", &headers, Some(body.clone()));
        sender.ready().await?;
        let answer = sender.send_request(request).await?;
        let status = answer.status();
        let reply = http_body_util::BodyExt::collect(answer.into_body()).await?.to_bytes();
        anyhow::ensure!(
            status == StatusCode::ACCEPTED,
            "a seeding purchase: {status} {}",
            String::from_utf8_lossy(&reply)
        );
        let reply: serde_json::Value = serde_json::from_slice(&reply)?;
        made.push((user, reply["transaction_id"].as_str().context("transaction_id")?.to_string()));
    }
    Ok(made)
}

/// `count` past purchases of `user`, each refunded, written straight into
/// the ledger's tables in bulk (through the API it would take longer than
/// the rest of the run): a hold and its refund each, so the books balance.
async fn history(
    target: &Target,
    admin: &mut AdminClient,
    user: Uuid,
    offer_id: &str,
    price: i64,
    count: usize,
) -> anyhow::Result<()> {
    // The user's account exists (the credit opened it) before money moves.
    let offer_id = Uuid::parse_str(offer_id)?;
    let currency = target.settings.currency.clone();
    admin.credit(&user.to_string(), price, &currency, "bench-history", "bench history").await?;
    let past = Utc::now() - chrono::Duration::days(1);
    for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
        let mut rows = Vec::with_capacity(chunk.len());
        let mut moves = Vec::with_capacity(chunk.len() * 2);
        for _ in chunk {
            let id = Uuid::now_v7();
            rows.push(transaction::ActiveModel {
                id: Set(id),
                user_id: Set(user),
                kind: Set(transaction::Kind::Activation),
                offer_id: Set(offer_id),
                offer_code: Set("DATA-1GB".into()),
                offer_name: Set("Data 1 GB".into()),
                duration_days: Set(7),
                subscription_id: Set(None),
                amount: Set(price),
                currency: Set(currency.clone()),
                status: Set(transaction::Status::Failed),
                reference: Set(None),
                partner_id: Set(None),
                payer_account_id: Set(user),
                failure_reason: Set(Some("The provisioning system refused the offer".into())),
                last_error: Set(None),
                attempts: Set(1),
                revision: Set(2),
                redrive_at: Set(past),
                needs_review: Set(false),
                review_reason: Set(None),
                legacy: Set(false),
                extended_to: Set(None),
                recipient_id: Set(None),
                auto_renew: Set(false),
                renews_from: Set(None),
                created_at: Set(past),
                updated_at: Set(past),
            });
            for (from, to, kind, what) in [
                (user, offers_account::PENDING, transfer::Kind::Hold, "hold"),
                (offers_account::PENDING, user, transfer::Kind::Refund, "refund"),
            ] {
                moves.push(transfer::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    from_account: Set(from),
                    to_account: Set(to),
                    amount: Set(price),
                    currency: Set(currency.clone()),
                    kind: Set(kind),
                    transaction_id: Set(Some(id)),
                    key: Set(format!("{what}:{id}")),
                    memo: Set(format!("ACTIVATION DATA-1GB {what}")),
                    created_at: Set(past),
                });
            }
        }
        transaction::Entity::insert_many(rows).exec_without_returning(&target.db).await?;
        transfer::Entity::insert_many(moves).exec_without_returning(&target.db).await?;
    }
    Ok(())
}

/// Waits until no activation is PENDING any more; returns how long that took.
pub async fn drained(target: &Target, within: Duration) -> anyhow::Result<Duration> {
    use sea_orm::{ColumnTrait, PaginatorTrait, QueryFilter};
    let started = Instant::now();
    loop {
        let pending = transaction::Entity::find()
            .filter(transaction::Column::Status.eq(transaction::Status::Pending))
            .count(&target.db)
            .await?;
        if pending == 0 {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(started.elapsed() < within, "{pending} activations still PENDING after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
