//! What the auth service does, independent of gRPC.

use base64::Engine;
use chrono::Utc;
use std::net::IpAddr;
use std::sync::Arc;

use offers_kit::audit::{Act, Deed, Trail};
use offers_kit::cache::{self, SharedCache};
use offers_kit::rate_limit::{RateLimiter, address_bucket};
use offers_proto::ids::UserId;
use offers_proto::username;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, DatabaseConnection, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::entity::user::ConsoleRole;
use crate::entity::{family, refresh_token, user};
use crate::error::AuthError;
use crate::keys::KeyStore;
use crate::password::Hasher;
use crate::settings::AuthSettings;

pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
}

pub struct NewUser {
    pub username: String,
    pub password: String,
    pub email: String,
    pub phone_number: String,
    pub first_name: String,
    pub last_name: String,
    pub is_admin: bool,
    pub console_role: Option<ConsoleRole>,
}

pub struct Auth {
    db: DatabaseConnection,
    limiter: RateLimiter,
    hasher: Hasher,
    keys: Arc<KeyStore>,
    settings: AuthSettings,
    trail: Trail,
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_refresh_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!("rt_{}", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl Auth {
    pub fn new(db: DatabaseConnection, cache: SharedCache, keys: Arc<KeyStore>, settings: AuthSettings) -> Self {
        let concurrency = match settings.password_hash_concurrency {
            0 => Hasher::concurrency_for(settings.password_hash_memory_mib),
            n => usize::try_from(n).unwrap_or(1),
        };
        let hasher = Hasher::new(concurrency, settings.password_hash_wait);
        let trail = Trail::new(crate::keys::TRAIL, db.clone());
        Self { db, limiter: RateLimiter::new(cache), hasher, keys, settings, trail }
    }

    pub async fn login(&self, username: &str, password: &str, client: Option<IpAddr>) -> Result<TokenPair, AuthError> {
        let user = self.password_holder(username, password, client).await?;
        self.issue(&user, Uuid::new_v4()).await
    }

    /// The active user whose password this is, counted against the login
    /// rate limits (the API's login and the console's sign-in share them).
    /// An unknown name costs a hash all the same, so timing does not tell.
    async fn password_holder(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<user::Model, AuthError> {
        // Before anything is counted: no user has such a name, and its
        // characters must not reach a rate-limit key.
        validate_username(username)?;
        self.check_login_rate(username, client).await?;
        let found = user::Entity::find().filter(user::Column::Username.eq(username)).one(&self.db).await?;
        let stored = found.as_ref().map(|u| u.password_hash.clone());
        let valid = self.hasher.verify(password.to_string(), stored).await?;
        match found {
            Some(user) if valid && user.is_active => {
                self.renew_hash(&user, password).await;
                Ok(user)
            }
            _ => Err(AuthError::InvalidCredentials),
        }
    }

    /// Replaces a hash made with earlier parameters (19 MiB until 2026-12)
    /// by one made with today's, now that the password is known: otherwise
    /// every login of that user would keep costing the old memory, outside
    /// the budget the slots are sized for. Only while the stored hash is
    /// still the one just checked, so a password changed meanwhile stands.
    /// A failure (no slot free, the database) leaves the old hash, which
    /// still verifies: the next login tries again.
    async fn renew_hash(&self, user: &user::Model, password: &str) {
        if !self.hasher.is_outdated(&user.password_hash) {
            return;
        }
        let renewed = match self.hasher.hash(password.to_string()).await {
            Ok(renewed) => renewed,
            Err(e) => return tracing::warn!(error = %e, "an outdated password hash was not renewed"),
        };
        let replaced = user::Entity::update_many()
            .col_expr(user::Column::PasswordHash, Expr::value(renewed))
            .filter(user::Column::Id.eq(user.id))
            .filter(user::Column::PasswordHash.eq(user.password_hash.as_str()))
            .exec(&self.db)
            .await;
        match replaced {
            Ok(_) => metrics::counter!("offers_auth_password_hashes_renewed_total").increment(1),
            Err(e) => tracing::warn!(error = %e, "an outdated password hash was not renewed"),
        }
    }

    /// Counts the attempt against the client's address (IPv6: its /64),
    /// the username from that address, and the username from everywhere (a
    /// higher ceiling, so one address cannot lock a user out of every other).
    async fn check_login_rate(&self, username: &str, client: Option<IpAddr>) -> Result<(), AuthError> {
        let window = self.settings.login_window;
        let address = client.map_or_else(|| "unknown".to_string(), address_bucket);
        let username = username.to_lowercase();
        // The address first, so every attempt from it counts, whichever
        // username it tries.
        let checks = [
            (cache::key(&["ratelimit", "login", "addr", &address]), self.settings.login_per_address),
            (cache::key(&["ratelimit", "login", "user", &username, &address]), self.settings.login_per_username),
            (cache::key(&["ratelimit", "login", "user", &username]), self.settings.login_per_username_global),
        ];
        for (key, limit) in checks {
            if let Err(retry_after_secs) = self.limiter.check(&key, limit, window).await {
                metrics::counter!("offers_auth_login_rate_limited_total").increment(1);
                return Err(AuthError::RateLimited { retry_after_secs });
            }
        }
        Ok(())
    }

    /// A new family of refresh tokens for a login, and its first pair.
    async fn issue(&self, user: &user::Model, family_id: Uuid) -> Result<TokenPair, AuthError> {
        let signer = self.keys.signer().await?;
        let access_token = signer.sign(user.id, user.is_admin)?;
        let refresh_token = new_refresh_token();
        let txn = self.db.begin().await?;
        let family = family::ActiveModel {
            id: Set(family_id),
            user_id: Set(user.id),
            created_at: Set(Utc::now()),
            revoked_at: Set(None),
        };
        family::Entity::insert(family).exec_without_returning(&txn).await?;
        self.store_refresh(&txn, user.id, family_id, &refresh_token).await?;
        txn.commit().await?;
        Ok(TokenPair { access_token, refresh_token, expires_in: signer.ttl_secs() })
    }

    async fn store_refresh(
        &self,
        db: &impl sea_orm::ConnectionTrait,
        user_id: Uuid,
        family_id: Uuid,
        token: &str,
    ) -> Result<(), AuthError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(self.settings.refresh_ttl).unwrap_or(chrono::Duration::MAX / 2);
        let model = refresh_token::ActiveModel {
            id: Set(Uuid::now_v7()),
            user_id: Set(user_id),
            family_id: Set(family_id),
            token_hash: Set(hash_token(token)),
            created_at: Set(now),
            expires_at: Set(now + ttl),
            spent_at: Set(None),
            revoked_at: Set(None),
        };
        refresh_token::Entity::insert(model).exec_without_returning(db).await?;
        Ok(())
    }

    /// The token with this value, read again once its family is locked (FOR
    /// UPDATE on PostgreSQL; SQLite runs one transaction at a time anyway):
    /// until the transaction ends, no other rotation or revocation of the
    /// family can run, so what is read stays true.
    async fn locked(
        &self,
        txn: &DatabaseTransaction,
        token: &str,
    ) -> Result<(refresh_token::Model, family::Model), AuthError> {
        let by_value = || refresh_token::Entity::find().filter(refresh_token::Column::TokenHash.eq(hash_token(token)));
        let found = by_value().one(txn).await?.ok_or(AuthError::InvalidRefreshToken)?;
        let family = family::Entity::find_by_id(found.family_id)
            .lock_exclusive()
            .one(txn)
            .await?
            .ok_or(AuthError::InvalidRefreshToken)?;
        let found = by_value().one(txn).await?.ok_or(AuthError::InvalidRefreshToken)?;
        Ok((found, family))
    }

    /// Spends a refresh token and issues a new pair in the same family. A
    /// token that was already spent is a sign of theft: its whole family is
    /// revoked, so neither the thief nor the victim can go on refreshing —
    /// and since rotation and revocation both hold the family's lock, a
    /// rotation in flight cannot slip a live token past the revocation.
    pub async fn refresh(&self, token: &str) -> Result<TokenPair, AuthError> {
        // The key first: reading it may take a connection, which the
        // transaction must not be holding (SQLite has one).
        let signer = self.keys.signer().await?;
        let txn = self.db.begin().await?;
        let (found, family) = self.locked(&txn, token).await?;
        let now = Utc::now();
        if family.revoked_at.is_some() || found.revoked_at.is_some() || found.expires_at <= now {
            return Err(AuthError::InvalidRefreshToken);
        }
        if found.spent_at.is_some() {
            self.revoke_family(&txn, family.id, now).await?;
            txn.commit().await?;
            tracing::warn!(user_id = %found.user_id, family_id = %family.id, "spent refresh token reused; family revoked");
            return Err(AuthError::InvalidRefreshToken);
        }
        let user = user::Entity::find_by_id(found.user_id)
            .one(&txn)
            .await?
            .filter(|u| u.is_active)
            .ok_or(AuthError::InvalidRefreshToken)?;
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::SpentAt, Expr::value(now))
            .filter(refresh_token::Column::Id.eq(found.id))
            .exec(&txn)
            .await?;
        let refresh_token = new_refresh_token();
        self.store_refresh(&txn, user.id, family.id, &refresh_token).await?;
        let access_token = signer.sign(user.id, user.is_admin)?;
        txn.commit().await?;
        Ok(TokenPair { access_token, refresh_token, expires_in: signer.ttl_secs() })
    }

    /// Revokes the family of `token`, which must belong to `user_id`.
    pub async fn logout(&self, user_id: Uuid, token: &str) -> Result<(), AuthError> {
        let txn = self.db.begin().await?;
        let (found, family) = self.locked(&txn, token).await?;
        if found.user_id != user_id {
            return Err(AuthError::InvalidRefreshToken);
        }
        self.revoke_family(&txn, family.id, Utc::now()).await?;
        txn.commit().await?;
        Ok(())
    }

    /// Marks the family and every token in it revoked; the caller holds the
    /// family's lock.
    async fn revoke_family(
        &self,
        txn: &DatabaseTransaction,
        family_id: Uuid,
        now: chrono::DateTime<Utc>,
    ) -> Result<(), AuthError> {
        family::Entity::update_many()
            .col_expr(family::Column::RevokedAt, Expr::value(now))
            .filter(family::Column::Id.eq(family_id))
            .filter(family::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        refresh_token::Entity::update_many()
            .col_expr(refresh_token::Column::RevokedAt, Expr::value(now))
            .filter(refresh_token::Column::FamilyId.eq(family_id))
            .filter(refresh_token::Column::RevokedAt.is_null())
            .exec(txn)
            .await?;
        Ok(())
    }

    pub async fn user_by_id(&self, id: UserId) -> Result<user::Model, AuthError> {
        user::Entity::find_by_id(id.uuid()).one(&self.db).await?.ok_or(AuthError::UserNotFound)
    }

    pub async fn user_by_username(&self, username: &str) -> Result<user::Model, AuthError> {
        // No user has a name outside the rule (and a NUL cannot even be queried).
        if !username::is_valid(username) {
            return Err(AuthError::UserNotFound);
        }
        user::Entity::find()
            .filter(user::Column::Username.eq(username))
            .one(&self.db)
            .await?
            .ok_or(AuthError::UserNotFound)
    }

    pub async fn create_user(&self, new: NewUser, act: &Act) -> Result<user::Model, AuthError> {
        validate_username(&new.username)?;
        if new.password.chars().count() < 8 {
            return Err(AuthError::InvalidInput("password must be at least 8 characters".into()));
        }
        if !new.email.is_empty() && !new.email.contains('@') {
            return Err(AuthError::InvalidInput("email is not valid".into()));
        }
        let password_hash = self.hasher.hash(new.password).await?;
        let model = user::ActiveModel {
            id: Set(Uuid::now_v7()),
            username: Set(new.username),
            password_hash: Set(password_hash),
            email: Set(new.email),
            phone_number: Set(new.phone_number),
            first_name: Set(new.first_name),
            last_name: Set(new.last_name),
            is_active: Set(true),
            is_admin: Set(new.is_admin),
            date_joined: Set(Utc::now()),
            console_role: Set(new.console_role),
        };
        let txn = self.db.begin().await?;
        let created = user::Entity::insert(model)
            .exec_with_returning(&txn)
            .await
            .map_err(|e| if offers_kit::db::is_unique_violation(&e) { AuthError::UsernameTaken } else { e.into() })?;
        let deed = Deed {
            action: "user.create",
            target: format!("user:{}", created.id),
            detail: format!(
                "username={} admin={} console_role={}",
                created.username,
                created.is_admin,
                created.console_role.map_or("none", ConsoleRole::name)
            ),
        };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        Ok(created)
    }
}

impl Auth {
    /// Gives `id` the console (`Some`) or takes it away (`None`).
    pub async fn set_console_role(
        &self,
        id: UserId,
        role: Option<ConsoleRole>,
        act: &Act,
    ) -> Result<user::Model, AuthError> {
        let txn = self.db.begin().await?;
        let set = user::Entity::update_many()
            .col_expr(user::Column::ConsoleRole, Expr::value(role))
            .filter(user::Column::Id.eq(id.uuid()))
            .exec(&txn)
            .await?;
        if set.rows_affected != 1 {
            return Err(AuthError::UserNotFound);
        }
        let deed = Deed {
            action: "user.console_role",
            target: format!("user:{id}"),
            detail: format!("console_role={}", role.map_or("none", ConsoleRole::name)),
        };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        self.user_by_id(id).await
    }

    /// The operator behind a console sign-in: the password checked and
    /// counted like a login's; a user without a console role is refused
    /// after the check, so the answer says nothing of a wrong password.
    pub async fn sign_in_operator(
        &self,
        username: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<user::Model, AuthError> {
        let user = self.password_holder(username, password, client).await?;
        match user.console_role {
            Some(_) => Ok(user),
            None => Err(AuthError::NotAnOperator(user.username)),
        }
    }
}

fn validate_username(username: &str) -> Result<(), AuthError> {
    if username::is_valid(username) { Ok(()) } else { Err(AuthError::InvalidInput(username::RULE.into())) }
}
