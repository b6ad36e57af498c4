//! `offers admin …`: the administrative commands.

use anyhow::Context;
use clap::{Args, Subcommand};
use offers_proto::account::v1::TransactionStatus;
use offers_proto::audit::v1 as audit_pb;
use offers_proto::auth::v1 as auth_pb;
use offers_proto::catalog::v1 as catalog_pb;
use offers_proto::partner::v1::PartnerStatus;

use super::{AdminClient, Created};

#[derive(Subcommand)]
pub enum AdminTask {
    /// Manage users.
    #[command(subcommand)]
    User(UserTask),
    /// Manage offers.
    #[command(subcommand)]
    Offer(OfferTask),
    /// Manage partners, their API keys and their accounts.
    #[command(subcommand)]
    Partner(PartnerTask),
    /// Transactions that wait for an operator.
    #[command(subcommand)]
    Tx(TxTask),
    /// The books.
    #[command(subcommand)]
    Ledger(LedgerTask),
    /// The access-token signing keys.
    #[command(subcommand)]
    Keys(KeysTask),
    /// Jobs parked past the bus's delivery limit.
    #[command(subcommand)]
    Jobs(JobsTask),
    /// The audit trail of administrative acts.
    #[command(subcommand)]
    Audit(AuditTask),
    /// Credit a user's balance (a top-up), once per key.
    Credit {
        /// Username or user id.
        #[arg(long)]
        user: String,
        /// Minor units.
        #[arg(long)]
        amount: i64,
        /// Repeating a credit with the same key credits nothing; a fresh
        /// key is made when none is given.
        #[arg(long)]
        key: Option<String>,
        #[arg(long, default_value = "admin top-up")]
        memo: String,
    },
}

#[derive(Subcommand)]
pub enum UserTask {
    /// Create a user.
    Create {
        #[arg(long)]
        username: String,
        /// Read from OFFERS_NEW_PASSWORD when not given.
        #[arg(long, env = "OFFERS_NEW_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(long, default_value = "")]
        email: String,
        #[arg(long, default_value = "")]
        phone_number: String,
        #[arg(long, default_value = "")]
        first_name: String,
        #[arg(long, default_value = "")]
        last_name: String,
        /// May see inactive offers.
        #[arg(long)]
        admin: bool,
        /// May use the operator console.
        #[arg(long, value_enum, default_value_t = ConsoleAccess::None)]
        console: ConsoleAccess,
    },
    /// Give a user the operator console, or take it away.
    Console {
        /// Username or user id.
        #[arg(long)]
        user: String,
        #[arg(long, value_enum)]
        access: ConsoleAccess,
    },
}

/// What a user may do in the operator console.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsoleAccess {
    /// Nothing (every customer).
    None,
    /// See every page, act on nothing.
    Viewer,
    /// See and act.
    Operator,
}

impl From<ConsoleAccess> for auth_pb::ConsoleRole {
    fn from(access: ConsoleAccess) -> Self {
        match access {
            ConsoleAccess::None => auth_pb::ConsoleRole::Unspecified,
            ConsoleAccess::Viewer => auth_pb::ConsoleRole::Viewer,
            ConsoleAccess::Operator => auth_pb::ConsoleRole::Operator,
        }
    }
}

#[derive(Subcommand)]
pub enum OfferTask {
    /// Create an offer (name, price and duration are required).
    Create {
        #[arg(long)]
        code: String,
        #[command(flatten)]
        offer: OfferArgs,
    },
    /// Change fields of an offer; only the ones given change.
    Update {
        #[arg(long)]
        id: String,
        #[command(flatten)]
        offer: OfferArgs,
    },
}

/// An offer's fields as flags; the ones not given are left out.
#[derive(Args)]
pub struct OfferArgs {
    #[arg(long)]
    name: Option<String>,
    #[arg(long)]
    description: Option<String>,
    /// Price in minor units.
    #[arg(long)]
    price: Option<i64>,
    /// Defaults to the configured currency on create.
    #[arg(long)]
    currency: Option<String>,
    #[arg(long)]
    duration_days: Option<i32>,
    #[arg(long)]
    data_mb: Option<i64>,
    #[arg(long)]
    voice_minutes: Option<i64>,
    #[arg(long)]
    sms: Option<i64>,
    /// On sale (create: true unless given).
    #[arg(long)]
    active: Option<bool>,
}

impl OfferArgs {
    /// The offer these flags describe, and the field names (update-mask
    /// paths) of the flags given. Exhaustive on both sides, so a new offer
    /// field is a compile error here until it has its flag.
    fn offer(self) -> (catalog_pb::Offer, Vec<String>) {
        let OfferArgs { name, description, price, currency, duration_days, data_mb, voice_minutes, sms, active } = self;
        let given = [
            ("name", name.is_some()),
            ("description", description.is_some()),
            ("price", price.is_some()),
            ("currency_code", currency.is_some()),
            ("duration_days", duration_days.is_some()),
            ("data_mb", data_mb.is_some()),
            ("voice_minutes", voice_minutes.is_some()),
            ("sms", sms.is_some()),
            ("is_active", active.is_some()),
        ];
        let offer = catalog_pb::Offer {
            id: String::new(),
            code: String::new(),
            name: name.unwrap_or_default(),
            description: description.unwrap_or_default(),
            price: price.unwrap_or_default(),
            currency_code: currency.unwrap_or_default(),
            duration_days: duration_days.unwrap_or_default(),
            data_mb: data_mb.unwrap_or_default(),
            voice_minutes: voice_minutes.unwrap_or_default(),
            sms: sms.unwrap_or_default(),
            is_active: active.unwrap_or(true),
        };
        (offer, given.into_iter().filter(|(_, g)| *g).map(|(path, _)| path.to_string()).collect())
    }
}

#[derive(Subcommand)]
pub enum PartnerTask {
    /// Create a partner; prints its first API key, once.
    Create {
        #[arg(long)]
        name: String,
    },
    /// Suspend a partner: every key of it is refused until reactivated.
    Suspend {
        #[arg(long)]
        name: String,
    },
    /// Reactivate a suspended partner.
    Activate {
        #[arg(long)]
        name: String,
    },
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyTask),
    /// Add to a partner's float (its prepaid account), once per key.
    Fund {
        #[arg(long)]
        name: String,
        /// Minor units.
        #[arg(long)]
        amount: i64,
        /// Repeating a funding with the same key moves nothing; a fresh key
        /// is made when none is given.
        #[arg(long)]
        key: Option<String>,
    },
    /// Set how far below zero a partner's account may go.
    CreditLimit {
        #[arg(long)]
        name: String,
        /// Minor units; 0 for none.
        #[arg(long)]
        amount: i64,
    },
    /// List a partner's completion-callback deliveries, newest first.
    Callbacks {
        #[arg(long)]
        name: String,
    },
    /// Send an abandoned completion callback again.
    Redeliver {
        /// The delivery's event id (from `partner callbacks`).
        #[arg(long)]
        event: String,
    },
}

#[derive(Subcommand)]
pub enum TxTask {
    /// List the transactions the provider could not tell the outcome of,
    /// waiting for an operator (nothing was refunded).
    Review,
    /// Settle a transaction waiting for review as the provider or the
    /// customer confirmed, with a record of who and why.
    Resolve {
        #[arg(long)]
        id: String,
        #[arg(long, value_enum)]
        outcome: Outcome,
        /// Why: what the provider or the customer said.
        #[arg(long)]
        note: String,
    },
}

#[derive(Subcommand)]
pub enum AuditTask {
    /// The newest acts first, from every service's trail.
    List {
        /// Only this actor's acts.
        #[arg(long)]
        by: Option<String>,
        /// Only this action (e.g. credit, offer.update, api_key.revoke).
        #[arg(long)]
        action: Option<String>,
        /// Only acts on this target (e.g. user:<id>, offer:<id>).
        #[arg(long)]
        target: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Check that no entry was changed or removed; exits non-zero if one was.
    Check,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Outcome {
    /// It was provisioned: the held money becomes revenue.
    Success,
    /// It was not: the money goes back to whoever paid.
    Failed,
}

#[derive(Subcommand)]
pub enum KeysTask {
    /// List the keys, newest first: next, signing, retiring or retired, with times.
    List,
    /// Publish a new key now; it signs once every process has loaded it
    /// (one key-set refresh period and a margin later, printed). The others
    /// stop signing then and keep verifying the tokens they signed until
    /// those expire, then retire.
    Rotate,
    /// Take a key out of service at once (a compromised key): its tokens
    /// stop verifying as soon as every process reloads the key set.
    Retire {
        #[arg(long)]
        kid: String,
    },
    /// Seal every key under the first key encryption key of
    /// `auth.key_encryption_key`, after which the others can be removed.
    Reseal,
}

#[derive(Subcommand)]
pub enum JobsTask {
    /// List the parked jobs of each topic (they stay parked): the job, how
    /// often it was delivered, when and why it was parked.
    Parked {
        /// Only this topic (e.g. partner.callback).
        #[arg(long)]
        topic: Option<String>,
        /// Show at most this many jobs per topic.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1000))]
        limit: u32,
    },
    /// Move a topic's parked jobs back to its queue, to run again: do it
    /// once what made them fail is fixed.
    Replay {
        #[arg(long)]
        topic: String,
        /// At most this many (by default every job parked now).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        max: Option<u32>,
    },
}

#[derive(Subcommand)]
pub enum LedgerTask {
    /// Print every account's total and check the books; exits non-zero when
    /// anything is wrong (for an operator or a CronJob).
    Check,
}

#[derive(Subcommand)]
pub enum KeyTask {
    /// Add a key (the old ones keep working until revoked: rotation
    /// without downtime); prints it once.
    Create {
        #[arg(long)]
        partner: String,
    },
    /// Revoke a key by its id.
    Revoke {
        #[arg(long)]
        id: String,
    },
}

impl AdminTask {
    /// Whether the task changes anything (and so must name its actor).
    pub fn writes(&self) -> bool {
        !matches!(
            self,
            AdminTask::Tx(TxTask::Review)
                | AdminTask::Partner(PartnerTask::Callbacks { .. })
                | AdminTask::Ledger(LedgerTask::Check)
                | AdminTask::Keys(KeysTask::List)
                | AdminTask::Jobs(JobsTask::Parked { .. })
                | AdminTask::Audit(_)
        )
    }
}

/// Runs one administrative task; `currency` is the configured one.
pub async fn run(client: &mut AdminClient, currency: &str, task: AdminTask) -> anyhow::Result<()> {
    match task {
        AdminTask::User(UserTask::Create {
            username,
            password,
            email,
            phone_number,
            first_name,
            last_name,
            admin,
            console,
        }) => {
            let request = auth_pb::CreateUserRequest {
                username,
                password,
                email,
                phone_number,
                first_name,
                last_name,
                is_admin: admin,
                console_role: auth_pb::ConsoleRole::from(console).into(),
            };
            match client.create_user(request).await? {
                Created::New(user) => println!("created user {} ({})", user.username, user.id),
                Created::Existing => anyhow::bail!("that username is taken"),
            }
        }
        AdminTask::User(UserTask::Console { user, access }) => {
            let user = client.user(&user).await?;
            let user = client.set_console_role(&user.id, access.into()).await?;
            println!("{} now has console role {}", user.username, user.console_role().as_str_name());
        }
        AdminTask::Credit { user, amount, key, memo } => {
            let user = client.user(&user).await?;
            let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let (applied, balance) = client.credit(&user.id, amount, currency, &key, &memo).await?;
            let what = if applied { "credited" } else { "already credited with this key" };
            println!("{what}: {} now has {} {} (key {key})", user.username, balance.balance, balance.currency_code);
        }
        AdminTask::Offer(OfferTask::Create { code, offer }) => {
            let (mut offer, _) = offer.offer();
            offer.code = code;
            if offer.currency_code.is_empty() {
                offer.currency_code = currency.to_string();
            }
            match client.create_offer(offer).await? {
                Created::New(o) => println!("created offer {} ({})", o.code, o.id),
                Created::Existing => anyhow::bail!("an offer with that code exists"),
            }
        }
        AdminTask::Offer(OfferTask::Update { id, offer }) => {
            let (mut offer, paths) = offer.offer();
            anyhow::ensure!(!paths.is_empty(), "nothing to change: give at least one field");
            offer.id = id;
            let updated = client.update_offer(offer, paths).await?;
            println!("updated offer {} ({})", updated.code, updated.id);
        }
        AdminTask::Partner(task) => partner(client, currency, task).await?,
        AdminTask::Tx(TxTask::Review) => {
            let waiting = client.reviews().await?;
            println!("{} transaction(s) waiting for review", waiting.len());
            for (tx, reason) in waiting {
                println!(
                    "{}  {} {} {} {}  attempts {}  user {}  reference {}  — {reason}",
                    tx.id,
                    tx.offer_code,
                    tx.amount,
                    tx.currency_code,
                    tx.kind().as_str_name().trim_start_matches("TRANSACTION_KIND_"),
                    tx.attempts,
                    tx.user_id,
                    if tx.reference.is_empty() { "-" } else { &tx.reference },
                );
            }
        }
        AdminTask::Tx(TxTask::Resolve { id, outcome, note }) => {
            let outcome = match outcome {
                Outcome::Success => TransactionStatus::Success,
                Outcome::Failed => TransactionStatus::Failed,
            };
            let tx = client.resolve(&id, outcome, &note).await?;
            println!("{} is now {}", tx.id, tx.status().as_str_name());
        }
        AdminTask::Audit(AuditTask::List { by, action, target, limit }) => {
            let filter = audit_pb::ListAuditEntriesRequest {
                actor: by.unwrap_or_default(),
                action: action.unwrap_or_default(),
                target: target.unwrap_or_default(),
                ..Default::default()
            };
            for e in client.audit_entries(&filter, limit).await? {
                let at = e.time.as_ref().and_then(offers_kit::grpc::from_timestamp).map(|t| t.to_rfc3339());
                println!(
                    "{}  {}#{}  {}  {}  {}  {}  note: {}  request: {}",
                    at.unwrap_or_default(),
                    e.trail,
                    e.seq,
                    e.actor,
                    e.action,
                    e.target,
                    e.detail,
                    if e.note.is_empty() { "-" } else { &e.note },
                    e.request_id
                );
            }
        }
        AdminTask::Audit(AuditTask::Check) => {
            let (entries, breaks) = client.check_audit().await?;
            for b in &breaks {
                eprintln!("VIOLATION: {b}");
            }
            anyhow::ensure!(breaks.is_empty(), "the audit trail is not intact ({} breaks)", breaks.len());
            println!("{entries} entries; every audit trail intact");
        }
        AdminTask::Keys(task) => keys(client, task).await?,
        AdminTask::Jobs(task) => jobs(client, task).await?,
        AdminTask::Ledger(LedgerTask::Check) => {
            let books = client.check_ledger().await?;
            for total in &books.totals {
                let Some(account) = &total.account else { continue };
                let name = if account.name.is_empty() { account.id.as_str() } else { account.name.as_str() };
                let kind = account.kind().as_str_name().trim_start_matches("ACCOUNT_KIND_");
                println!("{kind:<8} {name:<40} {:>16}  (transfers {:>16})", account.balance, total.from_transfers);
            }
            println!("sum over all accounts: {}", books.sum);
            if !books.violations.is_empty() {
                for violation in &books.violations {
                    eprintln!("VIOLATION: {violation}");
                }
                anyhow::bail!("the ledger is not balanced: {} violation(s)", books.violations.len());
            }
            println!("ledger balanced");
        }
    }
    Ok(())
}

async fn partner(client: &mut AdminClient, currency: &str, task: PartnerTask) -> anyhow::Result<()> {
    match task {
        PartnerTask::Create { name } => match client.create_partner(&name).await? {
            Created::New(created) => {
                let partner = created.partner.context("no partner")?;
                let key = created.api_key.context("no key")?;
                println!("created partner {} ({})", partner.name, partner.id);
                println!("API key {} (id {}) — shown once, store it now:\n{}", key.prefix, key.id, created.secret);
            }
            Created::Existing => anyhow::bail!("a partner with that name exists"),
        },
        PartnerTask::Suspend { name } => {
            let partner = client.partner(&name).await?;
            client.set_partner_status(&partner.id, PartnerStatus::Suspended).await?;
            println!("suspended {}", partner.name);
        }
        PartnerTask::Activate { name } => {
            let partner = client.partner(&name).await?;
            client.set_partner_status(&partner.id, PartnerStatus::Active).await?;
            println!("reactivated {}", partner.name);
        }
        PartnerTask::Key(KeyTask::Create { partner }) => {
            let found = client.partner(&partner).await?;
            let created = client.create_key(&found.id, None).await?;
            let key = created.api_key.context("no key")?;
            println!(
                "API key {} (id {}) for {} — shown once, store it now:\n{}",
                key.prefix, key.id, found.name, created.secret
            );
        }
        PartnerTask::Key(KeyTask::Revoke { id }) => {
            let key = client.revoke_key(&id).await?;
            println!("revoked key {} ({})", key.prefix, key.id);
        }
        PartnerTask::Fund { name, amount, key } => {
            let partner = client.partner(&name).await?;
            let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
            let (applied, account) = client.fund_partner(&partner.id, amount, currency, &key).await?;
            let what = if applied { "funded" } else { "already funded with this key" };
            println!("{what}: {} now has {} {} (key {key})", partner.name, account.balance, account.currency_code);
        }
        PartnerTask::CreditLimit { name, amount } => {
            let partner = client.partner(&name).await?;
            let account = client.set_credit_limit(&partner.id, amount).await?;
            println!(
                "{} may now go down to -{} {} (balance {})",
                partner.name, account.credit_limit, account.currency_code, account.balance
            );
        }
        PartnerTask::Callbacks { name } => {
            let partner = client.partner(&name).await?;
            for d in client.callback_deliveries(&partner.id, 200).await? {
                let state = match (&d.deliver_time, &d.abandon_time) {
                    (Some(_), _) => "delivered".to_string(),
                    (None, Some(_)) => format!("abandoned: {}", d.last_error),
                    (None, None) => format!("retrying: {}", d.last_error),
                };
                println!("{} {} {} attempts={} {state}", d.event_id, d.reference, d.status, d.attempts);
            }
        }
        PartnerTask::Redeliver { event } => {
            let delivery = client.redeliver_callback(&event).await?;
            println!("callback {} queued again ({} attempts so far)", delivery.event_id, delivery.attempts);
        }
    }
    Ok(())
}

async fn keys(client: &mut AdminClient, task: KeysTask) -> anyhow::Result<()> {
    let time = |at: Option<&prost_types::Timestamp>| {
        at.and_then(offers_kit::grpc::from_timestamp).map_or_else(|| "-".to_string(), |at| at.to_rfc3339())
    };
    let show = |key: &auth_pb::SigningKey| {
        let (signs, retires) = (time(key.sign_time.as_ref()), time(key.retire_time.as_ref()));
        let state = match key.state() {
            auth_pb::SigningKeyState::Next => format!("next       signs from {signs}"),
            auth_pb::SigningKeyState::Signing => format!("signing    since {signs}, retires {retires}"),
            auth_pb::SigningKeyState::Retiring => format!("retiring   verifies until {retires}"),
            auth_pb::SigningKeyState::Retired => format!("retired    at {retires}"),
            auth_pb::SigningKeyState::Unspecified => "unknown".to_string(),
        };
        println!("{:>3}  {}  {state}", key.generation, key.kid);
    };
    match task {
        KeysTask::List => client.keys().await?.iter().for_each(show),
        KeysTask::Rotate => {
            let key = client.rotate_key().await?;
            show(&key);
            println!(
                "published now; it signs from {}, once every process has reloaded the key set",
                time(key.sign_time.as_ref())
            );
        }
        KeysTask::Retire { kid } => show(&client.retire_key(&kid).await?),
        KeysTask::Reseal => println!("{} key(s) sealed anew", client.reseal_keys().await?),
    }
    Ok(())
}

async fn jobs(client: &mut AdminClient, task: JobsTask) -> anyhow::Result<()> {
    match task {
        JobsTask::Parked { topic, limit } => {
            for parked in client.parked_jobs(topic.as_deref(), limit).await? {
                println!("{}: {} parked", parked.topic, parked.total);
                for job in parked.jobs {
                    let at = job.park_time.as_ref().and_then(offers_kit::grpc::from_timestamp);
                    println!(
                        "  parked {}  {}  deliveries {}  {}",
                        at.map_or_else(|| "-".to_string(), |at| at.to_rfc3339()),
                        if job.reason.is_empty() { "-" } else { &job.reason },
                        if job.delivery_count == 0 { "-".to_string() } else { job.delivery_count.to_string() },
                        String::from_utf8_lossy(&job.payload),
                    );
                }
            }
        }
        JobsTask::Replay { topic, max } => {
            let replayed = client.replay_parked_jobs(&topic, max).await?;
            println!("{replayed} {topic} job(s) back on their queue");
        }
    }
    Ok(())
}
