//! The access-token signing keys: kept in the database with their private
//! halves sealed (ChaCha20-Poly1305 under the configured key encryption key,
//! the key id as associated data), so every auth replica signs with the same
//! key and a rotation needs no file to be shared.
//!
//! Each key has a generation, unique in the table: the database, not a
//! process, decides which key a fresh deployment (or a rotation) gets, so
//! replicas starting together all sign with the one that won the insert.
//! A key is published (in the key set) from its creation and signs only
//! from `signs_from`: a rotation sets that far enough ahead for every
//! verifier to have loaded it first. The life of a key, in order: next,
//! signing, retiring (still verifying the tokens it signed), retired.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use offers_kit::audit::{Act, Deed, Trail};
use offers_kit::token::{Jwk, TokenSigner, generate_keypair};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, TransactionTrait,
};

use crate::entity::signing_key;
use crate::error::AuthError;

/// How long a replica signs with the key it last read before reading again
/// (a retired key stops signing within this).
const REREAD: Duration = Duration::from_secs(5);

/// Where a key is in its life at some moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Published, not signing yet.
    Next,
    Signing,
    /// No longer signing; verifies until its `retire_at`.
    Retiring,
    Retired,
}

/// How long the keys live, from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    /// Of the access tokens a key signs.
    pub token: Duration,
    /// How much longer than its tokens a key that stopped signing verifies
    /// (clocks differ; replicas re-read the keys every few seconds).
    pub retire_margin: Duration,
    /// How long after a rotation the new key starts signing.
    pub publish_delay: Duration,
}

/// The auth service's audit trail.
pub const TRAIL: &str = "auth";

pub struct KeyStore {
    db: DatabaseConnection,
    /// The auth service's audit trail (key acts and users made).
    trail: Trail,
    /// The first seals; every one opens (so a key encryption key can be
    /// replaced: the new one first, the old after, then a re-seal).
    keks: Vec<LessSafeKey>,
    issuer: String,
    audience: String,
    lifetimes: Lifetimes,
    /// Imported as the first key when there is none.
    initial: Option<String>,
    /// The signing key as last read, and until when it may be used
    /// without reading again.
    current: RwLock<Option<(TokenSigner, Instant)>>,
}

/// A signing key as operators see it.
pub struct KeyInfo {
    pub key: signing_key::Model,
    pub state: KeyState,
}

/// The key that signs at `now` among `keys`, for tokens that live `token`:
/// the newest generation whose time has come, if it is in service and
/// verifies for longer than a token it signs now lives. Otherwise (an
/// operator retired it, or retired the key that was to follow it) the
/// earliest newer key signs early (it is published already); with none,
/// a new generation is made. An older key never signs again.
fn signing_of(keys: &[signing_key::Model], now: DateTime<Utc>, token: Duration) -> Option<&signing_key::Model> {
    let outlives = |k: &signing_key::Model| k.retire_at.is_none_or(|at| at >= after(now, token));
    let due = keys.iter().filter(|k| k.signs_from <= now).max_by_key(|k| k.generation);
    if let Some(key) = due.filter(|k| outlives(k)) {
        return Some(key);
    }
    let floor = due.map_or(0, |k| k.generation);
    keys.iter().filter(|k| k.generation > floor && outlives(k)).min_by_key(|k| (k.signs_from, k.generation))
}

fn state_of(key: &signing_key::Model, signing: Option<&str>, now: DateTime<Utc>) -> KeyState {
    match key.retire_at {
        Some(at) if at <= now => KeyState::Retired,
        _ if signing == Some(key.kid.as_str()) => KeyState::Signing,
        _ if key.signs_from > now => KeyState::Next,
        _ => KeyState::Retiring,
    }
}

fn in_service_at(now: DateTime<Utc>) -> Condition {
    Condition::any().add(signing_key::Column::RetireAt.is_null()).add(signing_key::Column::RetireAt.gt(now))
}

fn after(at: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    at + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::days(1))
}

impl KeyStore {
    pub fn new(
        db: DatabaseConnection,
        keks: &[[u8; 32]],
        (issuer, audience): (&str, &str),
        lifetimes: Lifetimes,
        initial: Option<String>,
    ) -> Result<Self, AuthError> {
        let keks = keks
            .iter()
            .map(|kek| UnboundKey::new(&CHACHA20_POLY1305, kek).map(LessSafeKey::new).map_err(|_| AuthError::Sealing))
            .collect::<Result<Vec<_>, _>>()?;
        if keks.is_empty() {
            return Err(AuthError::Config("auth.key_encryption_key (32 bytes, base64) is required"));
        }
        Ok(Self {
            trail: Trail::new(TRAIL, db.clone()),
            db,
            keks,
            issuer: issuer.into(),
            audience: audience.into(),
            lifetimes,
            initial,
            current: RwLock::new(None),
        })
    }

    fn seal(&self, kid: &str, pem: &str) -> Result<String, AuthError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut sealed = pem.as_bytes().to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        self.keks[0]
            .seal_in_place_append_tag(nonce, Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| AuthError::Sealing)?;
        Ok(STANDARD.encode([nonce_bytes.as_slice(), &sealed].concat()))
    }

    /// The key's private half, and whether the first key encryption key
    /// opened it (if not, a re-seal has something to do).
    fn open(&self, key: &signing_key::Model) -> Result<(String, bool), AuthError> {
        let raw = STANDARD.decode(&key.sealed_private).map_err(|_| AuthError::Sealing)?;
        if raw.len() < NONCE_LEN {
            return Err(AuthError::Sealing);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        for (i, kek) in self.keks.iter().enumerate() {
            let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AuthError::Sealing)?;
            let mut sealed = sealed.to_vec();
            if let Ok(pem) = kek.open_in_place(nonce, Aad::from(key.kid.as_bytes()), &mut sealed) {
                return Ok((String::from_utf8(pem.to_vec()).map_err(|_| AuthError::Sealing)?, i == 0));
            }
        }
        Err(AuthError::Sealing)
    }

    fn signer_of(&self, key: &signing_key::Model) -> Result<TokenSigner, AuthError> {
        let (pem, _) = self.open(key)?;
        let ttl = self.lifetimes.token.as_secs();
        Ok(TokenSigner::from_pem(&pem, &self.issuer, &self.audience, ttl)?)
    }

    /// Every key that opens with none of the configured key encryption keys
    /// while still in service: an auth process with such a key cannot sign
    /// or answer for it, so it does not start (one clear error instead of
    /// one per request).
    pub async fn check_opens(&self) -> Result<(), AuthError> {
        let now = Utc::now();
        let keys = signing_key::Entity::find().all(&self.db).await?;
        let sealed: Vec<String> = keys
            .iter()
            .filter(|k| k.retire_at.is_none_or(|at| at > now))
            .filter(|k| self.open(k).is_err())
            .map(|k| k.kid.clone())
            .collect();
        if sealed.is_empty() { Ok(()) } else { Err(AuthError::ForeignKeys { kids: sealed }) }
    }

    /// Stores `pem` as generation `generation`, signing from `signs_from`,
    /// unless that generation exists already (another replica or operator
    /// won): whether it was stored.
    async fn insert(
        &self,
        db: &impl ConnectionTrait,
        pem: &str,
        generation: i64,
        signs_from: DateTime<Utc>,
    ) -> Result<Option<TokenSigner>, AuthError> {
        let ttl = self.lifetimes.token.as_secs();
        let signer = TokenSigner::from_pem(pem, &self.issuer, &self.audience, ttl)?;
        let jwk = signer.jwk();
        let row = signing_key::ActiveModel {
            kid: Set(jwk.kid.clone()),
            public_x: Set(jwk.x.clone()),
            sealed_private: Set(self.seal(&jwk.kid, pem)?),
            created_at: Set(Utc::now()),
            retire_at: Set(None),
            generation: Set(generation),
            signs_from: Set(signs_from),
        };
        let inserted = signing_key::Entity::insert(row)
            .on_conflict(OnConflict::new().do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        Ok((inserted == 1).then_some(signer))
    }

    async fn newest_generation(db: &impl ConnectionTrait) -> Result<i64, AuthError> {
        let newest = signing_key::Entity::find()
            .select_only()
            .column(signing_key::Column::Generation)
            .order_by_desc(signing_key::Column::Generation)
            .into_tuple::<i64>()
            .one(db)
            .await?;
        Ok(newest.unwrap_or(0))
    }

    /// The key new tokens are signed with, read again every few seconds.
    /// When none is in service (a fresh database, or every key retired),
    /// every replica asking at once tries to add the next generation and
    /// all of them sign with the one stored.
    pub async fn signer(&self) -> Result<TokenSigner, AuthError> {
        if let Ok(current) = self.current.read()
            && let Some((signer, until)) = current.as_ref()
            && Instant::now() < *until
        {
            return Ok(signer.clone());
        }
        let (signing, next) = self.signing_key().await?;
        let signer = match signing {
            Ok(key) => self.signer_of(&key)?,
            Err(newest) => {
                // The generation after the newest of the same read that found
                // none in service: replicas that saw the same table try the
                // same generation, and only one insert of it succeeds.
                let pem = match (&self.initial, newest) {
                    (Some(pem), 0) => pem.clone(),
                    _ => generate_keypair()?.0,
                };
                self.insert(&self.db, &pem, newest + 1, Utc::now()).await?;
                // The winner's insert may not be visible yet: try again later.
                let key = self.signing_key().await?.0.map_err(|_| AuthError::NoSigningKey)?;
                self.signer_of(&key)?
            }
        };
        // Read again after a while, and as soon as the next key's time comes.
        let until = next.map_or(REREAD, |at| (at - Utc::now()).to_std().unwrap_or_default().min(REREAD));
        if let Ok(mut current) = self.current.write() {
            *current = Some((signer.clone(), Instant::now() + until));
        }
        Ok(signer)
    }

    /// The key that signs now (or, when none does, the newest generation
    /// there is, 0 for none), and when a next one starts signing.
    async fn signing_key(&self) -> Result<(Result<signing_key::Model, i64>, Option<DateTime<Utc>>), AuthError> {
        let (keys, now) = (signing_key::Entity::find().all(&self.db).await?, Utc::now());
        let next = keys.iter().filter(|k| k.retire_at.is_none_or(|at| at > now)).map(|k| k.signs_from);
        let next = next.filter(|at| *at > now).min();
        let newest = keys.iter().map(|k| k.generation).max().unwrap_or(0);
        Ok((signing_of(&keys, now, self.lifetimes.token).cloned().ok_or(newest), next))
    }

    async fn in_service(&self) -> Result<Vec<signing_key::Model>, AuthError> {
        let now = Utc::now();
        let keys = signing_key::Entity::find().filter(in_service_at(now)).all(&self.db).await?;
        Ok(keys)
    }

    /// The public keys in service, the next one included.
    pub async fn jwks(&self) -> Result<Vec<Jwk>, AuthError> {
        // There is always a signing key to publish.
        self.signer().await?;
        let keys = self.in_service().await?;
        Ok(keys.into_iter().map(|k| Jwk::from_parts(&k.kid, &k.public_x)).collect())
    }

    /// Adds the next key, published now and signing once every verifier
    /// has had the time to load it; the keys before it stop signing then
    /// and retire once every token they could have signed has expired.
    pub async fn rotate(&self, act: &Act) -> Result<KeyInfo, AuthError> {
        let now = Utc::now();
        let signs_from = after(now, self.lifetimes.publish_delay);
        let retire = after(after(signs_from, self.lifetimes.token), self.lifetimes.retire_margin);
        let txn = self.db.begin().await?;
        let generation = Self::newest_generation(&txn).await? + 1;
        let signer = self.insert(&txn, &generate_keypair()?.0, generation, signs_from).await?;
        let signer = signer.ok_or(AuthError::RotationRaced)?;
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetireAt, Expr::value(retire))
            .filter(signing_key::Column::RetireAt.is_null())
            .filter(signing_key::Column::Generation.lt(generation))
            .exec(&txn)
            .await?;
        let deed = Deed {
            action: "signing_key.rotate",
            target: format!("signing_key:{}", signer.jwk().kid),
            detail: format!("generation={generation} signs_from={}", signs_from.to_rfc3339()),
        };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        // This replica learns of the next key now; the others within REREAD.
        if let Ok(mut current) = self.current.write() {
            *current = None;
        }
        let kid = signer.jwk().kid.clone();
        tracing::info!(kid, signs_from = %signs_from, "signing key rotated: published now, signing from then");
        Ok(KeyInfo { key: self.key(&kid).await?, state: KeyState::Next })
    }

    /// Takes a key out of service now; if it was signing, the next key (or
    /// a new one) signs at once.
    pub async fn retire(&self, kid: &str, act: &Act) -> Result<KeyInfo, AuthError> {
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let retired = signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetireAt, Expr::value(now))
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(in_service_at(now))
            .exec(&txn)
            .await?;
        // Retiring a key out of service changes nothing and records nothing.
        if retired.rows_affected == 1 {
            let deed =
                Deed { action: "signing_key.retire", target: format!("signing_key:{kid}"), detail: String::new() };
            self.trail.record(&txn, act, deed).await?;
        }
        txn.commit().await?;
        if let Ok(mut current) = self.current.write() {
            *current = None;
        }
        tracing::warn!(kid, "signing key retired");
        Ok(KeyInfo { key: self.key(kid).await?, state: KeyState::Retired })
    }

    async fn key(&self, kid: &str) -> Result<signing_key::Model, AuthError> {
        signing_key::Entity::find_by_id(kid).one(&self.db).await?.ok_or(AuthError::UnknownKey)
    }

    /// Every key, newest first, with where it is in its life now.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, AuthError> {
        self.signer().await?;
        let now = Utc::now();
        let keys = signing_key::Entity::find().order_by_desc(signing_key::Column::Generation).all(&self.db).await?;
        let signing = signing_of(&keys, now, self.lifetimes.token).map(|k| k.kid.clone());
        Ok(keys.into_iter().map(|key| KeyInfo { state: state_of(&key, signing.as_deref(), now), key }).collect())
    }

    /// Seals every key that opens under the first key encryption key, so
    /// the others can be dropped from the settings: how many changed.
    pub async fn reseal(&self, act: &Act) -> Result<usize, AuthError> {
        let txn = self.db.begin().await?;
        let keys = signing_key::Entity::find().all(&txn).await?;
        let mut resealed = 0;
        for key in keys {
            let (pem, under_first) = match self.open(&key) {
                Ok(opened) => opened,
                // A retired key never signs or verifies again: nothing to keep.
                Err(_) if key.retire_at.is_some_and(|at| at <= Utc::now()) => continue,
                Err(e) => return Err(e),
            };
            if under_first {
                continue;
            }
            signing_key::Entity::update_many()
                .col_expr(signing_key::Column::SealedPrivate, Expr::value(self.seal(&key.kid, &pem)?))
                .filter(signing_key::Column::Kid.eq(key.kid.as_str()))
                .exec(&txn)
                .await?;
            resealed += 1;
        }
        let deed = Deed {
            action: "signing_keys.reseal",
            target: "signing_keys".into(),
            detail: format!("resealed={resealed}"),
        };
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        tracing::info!(resealed, "signing keys sealed under the first key encryption key");
        Ok(resealed)
    }
}

/// The key encryption keys from their configured form: one or more keys of
/// 32 bytes, base64, separated by commas (the first seals).
pub fn parse_keks(encoded: &str) -> Option<Vec<[u8; 32]>> {
    let keys: Option<Vec<[u8; 32]>> = encoded.split(',').map(parse_kek).collect();
    keys.filter(|k| !k.is_empty())
}

fn parse_kek(encoded: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(encoded.trim()).or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim())).ok()?;
    bytes.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, generation: i64, signs_from: i64, retire_at: Option<i64>) -> signing_key::Model {
        let at = |s: i64| DateTime::from_timestamp(s, 0).expect("time");
        signing_key::Model {
            kid: kid.into(),
            public_x: String::new(),
            sealed_private: String::new(),
            created_at: at(0),
            retire_at: retire_at.map(at),
            generation,
            signs_from: at(signs_from),
        }
    }

    fn at(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(s, 0).expect("time")
    }

    const TOKEN: Duration = Duration::from_secs(900);

    fn states(keys: &[signing_key::Model], now: i64) -> Vec<KeyState> {
        let signing = signing_of(keys, at(now), TOKEN).map(|k| k.kid.clone());
        keys.iter().map(|k| state_of(k, signing.as_deref(), at(now))).collect()
    }

    #[test]
    fn a_rotated_key_signs_only_from_its_time() {
        // k1 signing since 0; k2 rotated in at 100, signing from 140;
        // k1 retires at 140 + token lifetime (900) + margin (120).
        let keys = [key("k1", 1, 0, Some(1_160)), key("k2", 2, 140, None)];
        assert_eq!(states(&keys, 120), [KeyState::Signing, KeyState::Next]);
        assert_eq!(states(&keys, 140), [KeyState::Retiring, KeyState::Signing]);
        assert_eq!(states(&keys, 1_160), [KeyState::Retired, KeyState::Signing]);
    }

    #[test]
    fn retiring_the_signing_key_lets_the_next_sign_never_an_older_one() {
        // k1 retiring, k2 signing, k3 next; k2 retired early at 300.
        let keys = [key("k1", 1, 0, Some(1_160)), key("k2", 2, 140, Some(300)), key("k3", 3, 400, None)];
        assert_eq!(signing_of(&keys, at(310), TOKEN).map(|k| k.kid.as_str()), Some("k3"), "k3 signs early");
        let without_next = &keys[..2];
        assert!(signing_of(without_next, at(310), TOKEN).is_none(), "not k1: a new key is made");
    }

    #[test]
    fn a_key_that_would_retire_before_its_tokens_expire_does_not_sign() {
        // k2 was to follow k1 from 400, so k1 retires at 1_420; k2 was
        // retired before its time: k1 signs only while its tokens (900 s)
        // still expire before it retires.
        let keys = [key("k1", 1, 0, Some(1_420)), key("k2", 2, 400, Some(130))];
        assert_eq!(signing_of(&keys, at(500), TOKEN).map(|k| k.kid.as_str()), None, "k2 was due: never k1 again");
        let keys = [key("k1", 1, 0, Some(1_420)), key("k2", 2, 600, Some(130))];
        assert_eq!(signing_of(&keys, at(500), TOKEN).map(|k| k.kid.as_str()), Some("k1"));
        assert!(signing_of(&keys, at(530), TOKEN).is_none(), "its tokens would outlive it: a new key is made");
    }

    /// Replicas asking for the signing key of an empty table at the same
    /// moment: the table decides, one key, all of them signing with it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_asking_at_once_on_an_empty_table_make_one_key() {
        use sea_orm_migration::SchemaManager;
        let file = std::env::temp_dir().join(format!("offers-keys-{}.db", uuid::Uuid::new_v4().simple()));
        let db = sea_orm::Database::connect(format!("sqlite://{}?mode=rwc", file.display())).await.expect("sqlite");
        for migration in crate::migration::migrations() {
            migration.up(&SchemaManager::new(&db)).await.expect("migrated");
        }
        let lifetimes = Lifetimes { token: TOKEN, retire_margin: TOKEN, publish_delay: TOKEN };
        let stores: Vec<KeyStore> = (0..8)
            .map(|_| KeyStore::new(db.clone(), &[[7; 32]], ("iss", "aud"), lifetimes, None).expect("store"))
            .collect();
        let signers = futures_util::future::join_all(stores.iter().map(KeyStore::signer)).await;
        let kids: std::collections::BTreeSet<String> =
            signers.into_iter().map(|s| s.expect("a signer").jwk().kid.clone()).collect();
        assert_eq!(kids.len(), 1, "{kids:?}");
        assert_eq!(signing_key::Entity::find().all(&db).await.expect("keys").len(), 1);
        std::fs::remove_file(&file).ok();
    }

    #[test]
    fn key_encryption_keys_are_a_list() {
        let one = STANDARD.encode([1u8; 32]);
        let two = URL_SAFE_NO_PAD.encode([2u8; 32]);
        assert_eq!(parse_keks(&format!("{one}, {two}")), Some(vec![[1u8; 32], [2u8; 32]]));
        assert_eq!(parse_keks(&one), Some(vec![[1u8; 32]]));
        assert_eq!(parse_keks(&format!("{one},short")), None);
        assert_eq!(parse_keks(""), None);
    }
}
