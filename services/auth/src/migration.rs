use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![
        Box::new(CreateUsersAndTokens),
        Box::new(TokenFamilies),
        Box::new(SigningKeys),
        Box::new(KeyGenerations),
        Box::new(offers_kit::audit::TrailMigration {
            trail: crate::keys::TRAIL,
            migration: "m20261207_000140_auth_audit",
        }),
        Box::new(ConsoleRoles),
    ]
}

struct CreateUsersAndTokens;

impl MigrationName for CreateUsersAndTokens {
    fn name(&self) -> &str {
        "m20261126_000100_auth_users_and_refresh_tokens"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for CreateUsersAndTokens {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("auth_users")
                .col(uuid("id").primary_key())
                .col(string_uniq("username"))
                .col(string("password_hash"))
                .col(string("email"))
                .col(string("phone_number"))
                .col(string("first_name"))
                .col(string("last_name"))
                .col(boolean("is_active"))
                .col(boolean("is_admin"))
                .col(timestamp_with_time_zone("date_joined"))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table("auth_refresh_tokens")
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(uuid("family_id"))
                .col(string_uniq("token_hash"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone("expires_at"))
                .col(timestamp_with_time_zone_null("spent_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .foreign_key(
                    ForeignKey::create()
                        .from("auth_refresh_tokens", "user_id")
                        .to("auth_users", "id")
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("auth_refresh_tokens_family").table("auth_refresh_tokens").col("family_id").to_owned(),
        )
        .await
    }
}

/// A row per refresh-token family, locked by every rotation and every
/// revocation of it, so the two cannot interleave.
struct TokenFamilies;

impl MigrationName for TokenFamilies {
    fn name(&self) -> &str {
        "m20261128_000110_auth_token_families"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for TokenFamilies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("auth_token_families")
                .col(uuid("id").primary_key())
                .col(uuid("user_id"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("revoked_at"))
                .to_owned(),
        )
        .await?;
        // The families there are; one with a revoked token was revoked whole.
        m.get_connection()
            .execute_unprepared(
                "INSERT INTO auth_token_families (id, user_id, created_at, revoked_at) \
                 SELECT family_id, user_id, MIN(created_at), MAX(revoked_at) \
                 FROM auth_refresh_tokens GROUP BY family_id, user_id",
            )
            .await
            .map(drop)
    }
}

/// Access-token signing keys, so they rotate without files being shared.
struct SigningKeys;

impl MigrationName for SigningKeys {
    fn name(&self) -> &str {
        "m20261128_000120_auth_signing_keys"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for SigningKeys {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table("auth_signing_keys")
                .col(string("kid").primary_key())
                .col(string("public_x"))
                .col(text("sealed_private"))
                .col(timestamp_with_time_zone("created_at"))
                .col(timestamp_with_time_zone_null("retire_at"))
                .to_owned(),
        )
        .await
    }
}

/// A generation per signing key, unique, so the database decides which key
/// a fresh deployment gets when replicas start together; and the moment a
/// key starts signing, so a rotation publishes a key before it signs.
struct KeyGenerations;

impl MigrationName for KeyGenerations {
    fn name(&self) -> &str {
        "m20261206_000130_auth_signing_key_generations"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for KeyGenerations {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters a table one change at a time.
        let table = || Table::alter().table("auth_signing_keys").to_owned();
        m.alter_table(table().add_column(big_integer_null("generation")).to_owned()).await?;
        m.alter_table(table().add_column(timestamp_with_time_zone_null("signs_from")).to_owned()).await?;
        // Existing keys in the order they were made; each signed from its creation.
        m.get_connection()
            .execute_unprepared(
                "UPDATE auth_signing_keys SET signs_from = created_at, generation = (SELECT COUNT(*) \
                 FROM auth_signing_keys older WHERE older.created_at < auth_signing_keys.created_at \
                 OR (older.created_at = auth_signing_keys.created_at AND older.kid <= auth_signing_keys.kid))",
            )
            .await?;
        // Every row has both now; an older binary's insert during a rolling
        // upgrade must fail rather than leave a key this one cannot read.
        // (SQLite cannot tighten a column in place; it runs one process.)
        if m.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            m.get_connection()
                .execute_unprepared(
                    "ALTER TABLE auth_signing_keys ALTER COLUMN generation SET NOT NULL, \
                     ALTER COLUMN signs_from SET NOT NULL",
                )
                .await?;
        }
        m.create_index(
            Index::create()
                .name("auth_signing_keys_generation")
                .table("auth_signing_keys")
                .col("generation")
                .unique()
                .to_owned(),
        )
        .await
    }
}

/// Who may use the operator console, and how: a column, not the `is_admin`
/// flag (which lets a customer token list inactive offers), so console
/// access is given on purpose and to nobody by default.
struct ConsoleRoles;

impl MigrationName for ConsoleRoles {
    fn name(&self) -> &str {
        "m20261207_000150_auth_console_roles"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for ConsoleRoles {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        let column = string_len_null("console_role", 16);
        m.alter_table(Table::alter().table("auth_users").add_column(column).to_owned()).await
    }
}
