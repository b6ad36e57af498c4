//! The soak's clients: users buying (some with a repeated Idempotency-Key,
//! some several at once against a small balance), renewing, polling their
//! statuses, logging in again and being topped up; partners activating
//! offers near the end of their float. Every answer is kept with when it came, for the checks.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use offers::admin::AdminClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::{Api, Reply};

/// What a client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    Buy,
    BuyAgain,
    Burst,
    Renew,
    Status,
    PartnerActivate,
    TopUp,
    /// A fresh login, its token used at once (signed with whichever key
    /// signs now, which a process may not have loaded yet).
    Login,
}

/// One answer: what was asked, what came back, and when.
#[derive(Debug, Clone)]
pub struct Record {
    pub op: Op,
    pub at: Instant,
    pub status: u16,
    pub code: Option<String>,
    /// The transaction an accepted purchase made (or replayed).
    pub transaction: Option<String>,
    /// `actor/key` for a keyed purchase: the same one must always get the
    /// same transaction.
    pub key: Option<String>,
    pub detail: String,
}

pub struct User {
    pub id: String,
    pub username: String,
    pub token: String,
}

pub struct Partner {
    pub id: String,
    pub key: String,
}

/// Who the clients act as, and what they may buy.
pub struct Population {
    pub users: Vec<User>,
    /// Users whose balance covers only a couple of purchases.
    pub poor: Vec<User>,
    pub partners: Vec<Partner>,
    /// (offer id, price) of every offer on sale.
    pub offers: Vec<(String, i64)>,
    pub currency: String,
}

pub type Journal = Arc<Mutex<Vec<Record>>>;

/// One client's run: `ops` operations spread evenly until `until`.
pub struct Client {
    pub index: usize,
    pub rng: StdRng,
    pub api: Api,
    pub admin: AdminClient,
    pub population: Arc<Population>,
    pub journal: Journal,
}

/// A purchase made before, to be asked for again with its key.
struct Made {
    path: &'static str,
    token: String,
    body: Value,
    key: String,
    scope: String,
}

impl Client {
    pub fn new(
        index: usize,
        seed: u64,
        api: Api,
        admin: AdminClient,
        population: Arc<Population>,
        journal: Journal,
    ) -> Self {
        Self {
            index,
            rng: StdRng::seed_from_u64(seed ^ (index as u64).wrapping_mul(0x9e37_79b9)),
            api,
            admin,
            population,
            journal,
        }
    }

    pub async fn run(mut self, ops: usize, until: Instant) {
        let mut made: Vec<Made> = Vec::new();
        let mut seen: HashMap<usize, Vec<String>> = HashMap::new();
        let started = Instant::now();
        let pace = until.saturating_duration_since(started) / u32::try_from(ops.max(1)).unwrap_or(u32::MAX);
        for n in 0..ops {
            let due = started + pace * u32::try_from(n).unwrap_or(u32::MAX);
            if due >= until {
                break;
            }
            tokio::time::sleep_until(due.into()).await;
            let roll = self.rng.random_range(0..100);
            match roll {
                0..35 => self.buy(n, &mut made, &mut seen).await,
                35..45 => self.buy_again(&made).await,
                45..50 => self.burst(n).await,
                50..57 => self.renew(n).await,
                57..72 => self.status(&seen).await,
                72..75 => self.login().await,
                75..92 => self.partner_activate(n, &mut made).await,
                _ => self.top_up(n).await,
            }
        }
    }

    fn keep(&self, op: Op, reply: &Reply, key: Option<String>) {
        let record = Record {
            op,
            at: Instant::now(),
            status: reply.status,
            code: reply.body.get("code").and_then(Value::as_str).map(str::to_string),
            transaction: (reply.status == 202)
                .then(|| reply.body.get("transaction_id").and_then(Value::as_str).map(str::to_string))
                .flatten(),
            key,
            detail: reply.body.to_string().chars().take(300).collect(),
        };
        self.journal.lock().expect("journal").push(record);
    }

    fn offer(&mut self) -> (String, i64) {
        let offers = &self.population.offers;
        offers[self.rng.random_range(0..offers.len())].clone()
    }

    async fn buy(&mut self, n: usize, made: &mut Vec<Made>, seen: &mut HashMap<usize, Vec<String>>) {
        let who = self.rng.random_range(0..self.population.users.len());
        let (offer, _) = self.offer();
        let key = format!("c{}-{n}", self.index);
        // A third of what is bought asks to be renewed automatically.
        let body = json!({ "offer_id": offer, "auto_renew": self.rng.random_range(0..3) == 0 });
        let token = self.population.users[who].token.clone();
        let reply = self.post("/api/v1/activation/", &token, &body, Some(&key)).await;
        let scope = format!("user:{}", self.population.users[who].id);
        if let Some(tx) = reply.body.get("transaction_id").and_then(Value::as_str) {
            seen.entry(who).or_default().push(tx.to_string());
        }
        self.keep(Op::Buy, &reply, Some(format!("{scope}/{key}")));
        made.push(Made { path: "/api/v1/activation/", token, body, key, scope });
    }

    /// A client that did not hear the answer and asks again with its key.
    async fn buy_again(&mut self, made: &[Made]) {
        if made.is_empty() {
            return;
        }
        let again = &made[self.rng.random_range(0..made.len())];
        let headers_key = again.key.clone();
        let token = again.token.clone();
        let reply = self.post(again.path, &token, &again.body, Some(&headers_key)).await;
        self.keep(Op::BuyAgain, &reply, Some(format!("{}/{}", again.scope, again.key)));
    }

    /// Several purchases at once from a user who can afford only some.
    async fn burst(&mut self, n: usize) {
        let population = self.population.clone();
        let user = &population.poor[self.rng.random_range(0..population.poor.len())];
        let (offer, _) = self.offer();
        let body = json!({ "offer_id": offer });
        let scope = format!("user:{}", user.id);
        let keys: Vec<String> = (0..4).map(|i| format!("c{}-{n}-burst{i}", self.index)).collect();
        let calls = keys.iter().map(|key| post(&self.api, "/api/v1/activation/", &user.token, &body, Some(key)));
        let replies = futures_util::future::join_all(calls).await;
        for (reply, key) in replies.iter().zip(&keys) {
            self.keep(Op::Burst, reply, Some(format!("{scope}/{key}")));
        }
    }

    async fn renew(&mut self, n: usize) {
        let who = self.rng.random_range(0..self.population.users.len());
        let (offer, _) = self.offer();
        let user = &self.population.users[who];
        let key = format!("c{}-{n}-renew", self.index);
        let scope = format!("user:{}", user.id);
        let reply =
            post(&self.api, "/api/v1/offers/renew/", &user.token, &json!({ "offer_id": offer }), Some(&key)).await;
        self.keep(Op::Renew, &reply, Some(format!("{scope}/{key}")));
    }

    async fn status(&mut self, seen: &HashMap<usize, Vec<String>>) {
        let Some((&who, txs)) = seen.iter().nth(self.rng.random_range(0..seen.len().max(1))) else { return };
        let tx = &txs[self.rng.random_range(0..txs.len())];
        let token = &self.population.users[who].token;
        let reply = self.api.get(&format!("/api/v1/activation/status/{tx}/"), Some(token)).await;
        self.keep(Op::Status, &reply, None);
    }

    async fn login(&mut self) {
        let population = self.population.clone();
        let user = &population.users[self.rng.random_range(0..population.users.len())];
        let login = self.api.login(&user.username, offers::dev::DEMO_PASSWORD).await;
        if login.status != 200 {
            return self.keep(Op::Login, &login, None);
        }
        let token = login.body["access_token"].as_str().unwrap_or_default().to_string();
        let mut reply = self.api.get("/api/v1/account/balance/", Some(&token)).await;
        if reply.status == 200 {
            // Which key signed it, so the report can say the rotated-in one was used.
            let kid = jsonwebtoken::decode_header(&token).ok().and_then(|h| h.kid).unwrap_or_default();
            reply.body = json!({ "kid": kid });
        }
        self.keep(Op::Login, &reply, None);
    }

    async fn partner_activate(&mut self, n: usize, made: &mut Vec<Made>) {
        let population = self.population.clone();
        let partner = &population.partners[self.rng.random_range(0..population.partners.len())];
        let user = &population.users[self.rng.random_range(0..population.users.len())];
        let (offer, price) = self.offer();
        let body = json!({ "user_id": user.id, "offer_id": offer, "amount": price });
        let key = format!("c{}-{n}-partner", self.index);
        let (token, scope) = (partner.key.clone(), format!("partner:{}", partner.id));
        let reply = post(&self.api, "/api/v1/partner/activate/", &token, &body, Some(&key)).await;
        self.keep(Op::PartnerActivate, &reply, Some(format!("{scope}/{key}")));
        made.push(Made { path: "/api/v1/partner/activate/", token, body, key, scope });
    }

    /// A top-up by an operator, sometimes sent twice with its key.
    async fn top_up(&mut self, n: usize) {
        let user = &self.population.users[self.rng.random_range(0..self.population.users.len())];
        let key = format!("c{}-topup-{}", self.index, n - n % 2);
        let amount = 1_000;
        let answer = self.admin.credit(&user.id, amount, &self.population.currency, &key, "chaos top-up").await;
        let reply = match answer {
            Ok(_) => Reply { status: 200, headers: Default::default(), body: json!({}) },
            // As the edge would answer it: the status and code of the error.
            Err(e) => {
                let (status, code) = match e.downcast_ref::<offers_kit::Error>() {
                    Some(error) => (error.code.http_status(), error.code.as_str()),
                    None => (500, "internal"),
                };
                Reply { status, headers: Default::default(), body: json!({ "code": code, "detail": format!("{e:#}") }) }
            }
        };
        self.keep(Op::TopUp, &reply, None);
    }

    async fn post(&self, path: &str, token: &str, body: &Value, key: Option<&str>) -> Reply {
        post(&self.api, path, token, body, key).await
    }
}

async fn post(api: &Api, path: &str, token: &str, body: &Value, key: Option<&str>) -> Reply {
    let headers: Vec<(&str, &str)> = key.map(|k| ("Idempotency-Key", k)).into_iter().collect();
    api.post_with(path, Some(token), body, &headers).await
}

/// How long the soak's clients take for `ops` in all, at most.
pub fn per_client(ops: usize, clients: usize) -> usize {
    ops.div_ceil(clients.max(1))
}

pub const SETTLE_WAIT: Duration = Duration::from_secs(240);
