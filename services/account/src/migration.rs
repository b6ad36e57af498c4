use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateLedger),
        Box::new(DoubleEntry),
        Box::new(OutboxAttempts),
        Box::new(OutboxTrace),
        Box::new(ExtensionRecorded),
        Box::new(GiftRecipients),
        Box::new(RenewalPeriods),
        Box::new(RenewalPriceNotices),
        Box::new(offers_kit::audit::TrailMigration {
            trail: crate::ledger::TRAIL,
            migration: "m20261207_000380_account_audit",
        }),
        Box::new(TransactionAttempts),
    ]
}

struct CreateLedger;

impl MigrationName for CreateLedger {
    fn name(&self) -> &str {
        "m20261126_000300_account_ledger"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateLedger {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("account_balances")
                .col(uuid("user_id").primary_key())
                .col(big_integer("balance"))
                .col(string_len("currency", 3))
                .col(timestamp_with_time_zone("updated_at"))
                // The last line of defence: no code path may take a balance below zero.
                .check(Expr::col("balance").gte(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("account_transactions")
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(string_len("kind", 32))
                .col(uuid("offer_id"))
                .col(string("offer_code"))
                .col(string("offer_name"))
                .col(integer("duration_days"))
                .col(uuid_null("subscription_id"))
                .col(big_integer("amount"))
                .col(string_len("currency", 3))
                .col(string_len("status", 16))
                .col(string_len_null("reference", 32).unique_key())
                .col(uuid_null("partner_id"))
                .col(text_null("failure_reason"))
                .col(text_null("last_error"))
                .col(integer("attempts"))
                .col(big_integer("revision"))
                .col(timestamp_with_time_zone("redrive_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .check(Expr::col("amount").gt(0))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("account_transactions_user")
                .table("account_transactions")
                .col("user_id")
                .col("id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("account_transactions_pending")
                .table("account_transactions")
                .col("status")
                .col("redrive_at")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("account_ledger_entries")
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(uuid_null("transaction_id"))
                .col(string_len("kind", 32))
                .col(big_integer("amount"))
                .col(string_len("currency", 3))
                .col(string_uniq("idempotency_key"))
                .col(text("memo"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("account_ledger_user").table("account_ledger_entries").col("user_id").to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("account_subscriptions")
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(uuid("offer_id"))
                .col(string("offer_name"))
                .col(timestamp_with_time_zone("activated_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("account_subscriptions_user_offer")
                .table("account_subscriptions")
                .col("user_id")
                .col("offer_id")
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("account_subscriptions_expiry")
                .table("account_subscriptions")
                .col("expires_at")
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("account_idempotency_keys")
                .col(string("scope"))
                .col(string("key"))
                .col(string("request_hash"))
                .col(uuid("transaction_id"))
                .col(timestamp_with_time_zone("created_at"))
                .primary_key(Index::create().col("scope").col("key"))
                .to_owned(),
        )
        .await?;
        offers_kit::outbox::Outbox::create_table(m, "account_outbox").await
    }
}

/// The double-entry ledger: accounts (users' and partners' rows; the
/// system's funding, pending and revenue exist only as the ends of
/// transfers) and transfers between them replace the
/// per-user balances and signed entries. Balances become opening transfers
/// from funding; transactions still PENDING get their hold in the pending
/// account (from funding: the old model had already taken the money); the
/// settled ones are marked legacy, having no transfers. The old entries
/// stay, untouched, for audit.
struct DoubleEntry;

/// Counts refused publishes, so one job the broker refuses waits with a
/// backoff instead of holding up the outbox.
struct OutboxAttempts;

impl MigrationName for OutboxAttempts {
    fn name(&self) -> &str {
        "m20261129_000320_account_outbox_attempts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxAttempts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        offers_kit::outbox::Outbox::add_attempts(m, crate::OUTBOX).await
    }
}

impl MigrationName for DoubleEntry {
    fn name(&self) -> &str {
        "m20261128_000310_account_double_entry"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for DoubleEntry {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("account_accounts")
                .col(uuid("id").primary_key())
                .col(string_len("kind", 16))
                .col(big_integer("balance"))
                .col(big_integer("credit_limit"))
                .col(string_len("currency", 3))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("updated_at"))
                // The last line of defence: no code path may take an account below its limit.
                .check(Expr::col("balance").add(Expr::col("credit_limit")).gte(0))
                .check(Expr::col("credit_limit").gte(0))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("account_transfers")
                .col(uuid("id").primary_key())
                .col(uuid("from_account"))
                .col(uuid("to_account"))
                .col(big_integer("amount"))
                .col(string_len("currency", 3))
                .col(string_len("kind", 16))
                .col(uuid_null("transaction_id"))
                .col(string_uniq("key"))
                .col(text("memo"))
                .col(timestamp_with_time_zone("created_at"))
                .check(Expr::col("amount").gt(0))
                .check(Expr::col("from_account").ne(Expr::col("to_account")))
                .to_owned(),
        )
        .await?;
        for column in ["from_account", "to_account", "transaction_id"] {
            m.create_index(
                Index::create()
                    .name(format!("account_transfers_{column}"))
                    .table("account_transfers")
                    .col(column)
                    .to_owned(),
            )
            .await?;
        }
        m.create_table(
            Table::create()
                .table("account_resolutions")
                .col(uuid("transaction_id").primary_key())
                .col(string_len("outcome", 16))
                .col(string("actor"))
                .col(text("note"))
                .col(timestamp_with_time_zone("created_at"))
                .to_owned(),
        )
        .await?;
        // SQLite adds one column per statement.
        let columns = [
            uuid_null("payer_account_id"),
            boolean("needs_review").default(false).to_owned(),
            text_null("review_reason"),
            boolean("legacy").default(false).to_owned(),
        ];
        for column in columns {
            m.alter_table(Table::alter().table("account_transactions").add_column(column).to_owned()).await?;
        }
        m.create_index(
            Index::create()
                .name("account_transactions_payer")
                .table("account_transactions")
                .col("payer_account_id")
                .col("id")
                .to_owned(),
        )
        .await?;
        move_balances(m).await?;
        m.drop_table(Table::drop().table("account_balances").to_owned()).await
    }
}

async fn move_balances(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    use sea_orm::{ConnectionTrait, QueryResult};
    let db = m.get_connection();
    let now = chrono::Utc::now();
    let currency = |row: &QueryResult| row.try_get::<String>("", "currency");
    let balances = db
        .query_all(&Query::select().columns(["user_id", "balance", "currency"]).from("account_balances").to_owned())
        .await?;
    let account = |id: uuid::Uuid, balance: i64, currency: &str| {
        Query::insert()
            .into_table("account_accounts")
            .columns(["id", "kind", "balance", "credit_limit", "currency", "created_at", "updated_at"])
            .values_panic([
                id.into(),
                "USER".into(),
                balance.into(),
                0i64.into(),
                currency.into(),
                now.into(),
                now.into(),
            ])
            .to_owned()
    };
    let transfer = |to: uuid::Uuid, amount: i64, currency: &str, kind: &str, tx: Option<uuid::Uuid>, key: String| {
        Query::insert()
            .into_table("account_transfers")
            .columns([
                "id",
                "from_account",
                "to_account",
                "amount",
                "currency",
                "kind",
                "transaction_id",
                "key",
                "memo",
                "created_at",
            ])
            .values_panic([
                uuid::Uuid::now_v7().into(),
                crate::ledger::FUNDING.into(),
                to.into(),
                amount.into(),
                currency.into(),
                kind.into(),
                tx.into(),
                key.into(),
                "moved into the double-entry ledger".into(),
                now.into(),
            ])
            .to_owned()
    };
    for row in balances {
        let user: uuid::Uuid = row.try_get("", "user_id")?;
        let balance: i64 = row.try_get("", "balance")?;
        let currency = currency(&row)?;
        db.execute(&account(user, balance, &currency)).await?;
        if balance > 0 {
            db.execute(&transfer(user, balance, &currency, "OPENING", None, format!("opening:{user}"))).await?;
        }
    }
    let transactions = Query::select()
        .columns(["id", "user_id", "kind", "amount", "currency", "status"])
        .from("account_transactions")
        .to_owned();
    for row in db.query_all(&transactions).await? {
        let id: uuid::Uuid = row.try_get("", "id")?;
        let user: uuid::Uuid = row.try_get("", "user_id")?;
        let kind: String = row.try_get("", "kind")?;
        let status: String = row.try_get("", "status")?;
        // A partner activation was paid to the partner, not to us: what it
        // held came from funding, and goes back there if it fails.
        let payer = if kind == "PARTNER_ACTIVATION" { crate::ledger::FUNDING } else { user };
        let pending = status == "PENDING";
        let update = Query::update()
            .table("account_transactions")
            .values([("payer_account_id", payer.into()), ("legacy", (!pending).into())])
            .and_where(Expr::col("id").eq(id))
            .to_owned();
        db.execute(&update).await?;
        if pending {
            let amount: i64 = row.try_get("", "amount")?;
            let currency = currency(&row)?;
            let hold = transfer(crate::ledger::PENDING, amount, &currency, "HOLD", Some(id), format!("hold:{id}"));
            db.execute(&hold).await?;
        }
    }
    Ok(())
}

/// The trace each outbox job belongs to, so its handler continues it.
struct OutboxTrace;

impl MigrationName for OutboxTrace {
    fn name(&self) -> &str {
        "m20261130_000330_account_outbox_trace"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for OutboxTrace {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        offers_kit::outbox::Outbox::add_trace_context(m, crate::OUTBOX).await
    }
}

/// The expiry each successful transaction gave its subscription, so the
/// ledger check can tell a subscription extended once per success from
/// one extended twice (or by nothing). Null for what settled before.
struct ExtensionRecorded;

impl MigrationName for ExtensionRecorded {
    fn name(&self) -> &str {
        "m20261202_000340_account_transaction_extensions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ExtensionRecorded {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let column = timestamp_with_time_zone_null("extended_to");
        m.alter_table(Table::alter().table("account_transactions").add_column(column).to_owned()).await?;
        // What settled before: as far as its subscription runs now (an
        // upper bound, which is all the check compares against).
        m.get_connection()
            .execute_unprepared(
                "UPDATE account_transactions SET extended_to = (SELECT s.expires_at FROM account_subscriptions s \
                 WHERE s.id = account_transactions.subscription_id) \
                 WHERE status = 'SUCCESS' AND subscription_id IS NOT NULL",
            )
            .await?;
        Ok(())
    }
}

/// Who got a gift's subscription: the transaction's `user_id` is the payer
/// (whose transaction it is), the recipient is here. Null for every other
/// kind, whose subscription is `user_id`'s.
struct GiftRecipients;

impl MigrationName for GiftRecipients {
    fn name(&self) -> &str {
        "m20261207_000350_account_gift_recipients"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for GiftRecipients {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let column = uuid_null("recipient_id");
        m.alter_table(Table::alter().table("account_transactions").add_column(column).to_owned()).await
    }
}

/// Automatic renewal: the subscription's choice and its latest outcome, the
/// purchase's wish to make it (set on success), and the period each
/// renewal renews, unique among the renewals not failed so one period is
/// never charged twice.
struct RenewalPeriods;

impl MigrationName for RenewalPeriods {
    fn name(&self) -> &str {
        "m20261207_000360_account_renewal_periods"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RenewalPeriods {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let subscriptions = [
            boolean("auto_renew").default(false).to_owned(),
            string_len_null("last_renewal_status", 16),
            timestamp_with_time_zone_null("last_renewal_at"),
            string_null("last_renewal_reason"),
        ];
        for mut column in subscriptions {
            m.alter_table(Table::alter().table("account_subscriptions").add_column(&mut column).to_owned()).await?;
        }
        let wish =
            Table::alter().table("account_transactions").add_column(boolean("auto_renew").default(false)).to_owned();
        m.alter_table(wish).await?;
        let period = timestamp_with_time_zone_null("renews_from");
        m.alter_table(Table::alter().table("account_transactions").add_column(period).to_owned()).await?;
        // Partial: a failed renewal (refunded) leaves its period to renew again.
        m.get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX ux_account_transactions_renewal_period \
                 ON account_transactions (subscription_id, renews_from) \
                 WHERE renews_from IS NOT NULL AND status <> 'FAILED'",
            )
            .await?;
        Ok(())
    }
}

/// The new price a subscription's automatic renewal will charge, as its
/// subscriber was told, and when: a renewal charges a changed price only
/// once it was announced long enough before.
struct RenewalPriceNotices;

impl MigrationName for RenewalPriceNotices {
    fn name(&self) -> &str {
        "m20261207_000370_account_renewal_price_notices"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for RenewalPriceNotices {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for mut column in [big_integer_null("announced_price"), timestamp_with_time_zone_null("price_announced_at")] {
            m.alter_table(Table::alter().table("account_subscriptions").add_column(&mut column).to_owned()).await?;
        }
        Ok(())
    }
}

/// What each provisioning attempt met, for the operator deciding a review.
struct TransactionAttempts;

impl MigrationName for TransactionAttempts {
    fn name(&self) -> &str {
        "m20261207_000600_account_transaction_attempts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TransactionAttempts {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let table = Table::create()
            .table("account_transaction_attempts")
            .col(uuid("id").primary_key())
            .col(uuid("transaction_id"))
            .col(integer("attempt"))
            .col(string_len("outcome", 16))
            .col(text("answer"))
            .col(timestamp_with_time_zone("recorded_at"))
            .to_owned();
        m.create_table(table).await?;
        let by_transaction = Index::create()
            .name("ix_account_transaction_attempts_transaction")
            .table("account_transaction_attempts")
            .col("transaction_id")
            .col("id")
            .to_owned();
        m.create_index(by_transaction).await
    }
}
