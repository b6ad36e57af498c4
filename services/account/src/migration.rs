use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![Box::new(CreateLedger)]
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
