//! The access-token signing keys: kept in the database with their private
//! halves sealed (ChaCha20-Poly1305 under the configured key encryption key,
//! the key id as associated data), so every auth replica signs with the same
//! current key and a rotation needs no file to be shared. The newest key in
//! service signs; the others verify until they retire.

use std::sync::RwLock;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::Utc;
use offers_kit::token::{Jwk, TokenSigner, generate_keypair};
use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder};

use crate::entity::signing_key;
use crate::error::AuthError;

/// How long a replica signs with the key it last read before reading again
/// (so a rotation reaches every replica within this).
const REREAD: Duration = Duration::from_secs(5);

pub struct KeyStore {
    db: DatabaseConnection,
    kek: LessSafeKey,
    issuer: String,
    audience: String,
    ttl_secs: u64,
    /// How much longer than the tokens it signed a retiring key verifies.
    retire_margin_secs: u64,
    /// Imported as the first key when there is none.
    initial: Option<String>,
    current: RwLock<Option<(TokenSigner, Instant)>>,
}

/// A signing key as operators see it.
pub struct KeyInfo {
    pub key: signing_key::Model,
    pub signing: bool,
}

impl KeyStore {
    pub fn new(
        db: DatabaseConnection,
        kek: &[u8; 32],
        (issuer, audience): (&str, &str),
        (ttl_secs, retire_margin_secs): (u64, u64),
        initial: Option<String>,
    ) -> Result<Self, AuthError> {
        let kek = UnboundKey::new(&CHACHA20_POLY1305, kek).map_err(|_| AuthError::Sealing)?;
        Ok(Self {
            db,
            kek: LessSafeKey::new(kek),
            issuer: issuer.into(),
            audience: audience.into(),
            ttl_secs,
            retire_margin_secs,
            initial,
            current: RwLock::new(None),
        })
    }

    fn seal(&self, kid: &str, pem: &str) -> Result<String, AuthError> {
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let mut sealed = pem.as_bytes().to_vec();
        let nonce = Nonce::assume_unique_for_key(nonce_bytes);
        self.kek
            .seal_in_place_append_tag(nonce, Aad::from(kid.as_bytes()), &mut sealed)
            .map_err(|_| AuthError::Sealing)?;
        Ok(STANDARD.encode([nonce_bytes.as_slice(), &sealed].concat()))
    }

    fn open(&self, key: &signing_key::Model) -> Result<String, AuthError> {
        let raw = STANDARD.decode(&key.sealed_private).map_err(|_| AuthError::Sealing)?;
        if raw.len() < NONCE_LEN {
            return Err(AuthError::Sealing);
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| AuthError::Sealing)?;
        let mut sealed = sealed.to_vec();
        let pem = self
            .kek
            .open_in_place(nonce, Aad::from(key.kid.as_bytes()), &mut sealed)
            .map_err(|_| AuthError::Sealing)?;
        String::from_utf8(pem.to_vec()).map_err(|_| AuthError::Sealing)
    }

    fn signer_of(&self, pem: &str) -> Result<TokenSigner, AuthError> {
        Ok(TokenSigner::from_pem(pem, &self.issuer, &self.audience, self.ttl_secs)?)
    }

    /// Stores a key (once: its id is its thumbprint) and returns its signer.
    async fn store(&self, pem: &str) -> Result<TokenSigner, AuthError> {
        let signer = self.signer_of(pem)?;
        let jwk = signer.jwk();
        let row = signing_key::ActiveModel {
            kid: Set(jwk.kid.clone()),
            public_x: Set(jwk.x.clone()),
            sealed_private: Set(self.seal(&jwk.kid, pem)?),
            created_at: Set(Utc::now()),
            retire_at: Set(None),
        };
        signing_key::Entity::insert(row)
            .on_conflict(OnConflict::column(signing_key::Column::Kid).do_nothing().to_owned())
            .exec_without_returning(&self.db)
            .await?;
        Ok(signer)
    }

    fn in_service() -> Condition {
        Condition::any().add(signing_key::Column::RetireAt.is_null()).add(signing_key::Column::RetireAt.gt(Utc::now()))
    }

    /// The key new tokens are signed with: the newest in service, read again
    /// every few seconds; the first one imported or made when there is none.
    pub async fn signer(&self) -> Result<TokenSigner, AuthError> {
        if let Ok(current) = self.current.read()
            && let Some((signer, read)) = current.as_ref()
            && read.elapsed() < REREAD
        {
            return Ok(signer.clone());
        }
        let newest = signing_key::Entity::find()
            .filter(Self::in_service())
            .order_by_desc(signing_key::Column::CreatedAt)
            .one(&self.db)
            .await?;
        let signer = match newest {
            Some(key) => self.signer_of(&self.open(&key)?)?,
            None => {
                let pem = match &self.initial {
                    Some(pem) => pem.clone(),
                    None => generate_keypair()?.0,
                };
                self.store(&pem).await?
            }
        };
        if let Ok(mut current) = self.current.write() {
            *current = Some((signer.clone(), Instant::now()));
        }
        Ok(signer)
    }

    /// The public keys still in service.
    pub async fn jwks(&self) -> Result<Vec<Jwk>, AuthError> {
        // There is always a signing key to publish.
        self.signer().await?;
        let keys = signing_key::Entity::find().filter(Self::in_service()).all(&self.db).await?;
        Ok(keys.into_iter().map(|k| Jwk::from_parts(&k.kid, &k.public_x)).collect())
    }

    /// A new signing key; the ones in service before retire once every token
    /// they signed has expired.
    pub async fn rotate(&self) -> Result<signing_key::Model, AuthError> {
        let seconds = |s: u64| chrono::Duration::seconds(i64::try_from(s).unwrap_or(86_400));
        let retire = Utc::now() + seconds(self.ttl_secs) + seconds(self.retire_margin_secs);
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetireAt, Expr::value(retire))
            .filter(signing_key::Column::RetireAt.is_null())
            .exec(&self.db)
            .await?;
        let signer = self.store(&generate_keypair()?.0).await?;
        if let Ok(mut current) = self.current.write() {
            *current = Some((signer.clone(), Instant::now()));
        }
        tracing::info!(kid = %signer.jwk().kid, "signing key rotated");
        self.key(&signer.jwk().kid).await
    }

    /// Takes a key out of service now.
    pub async fn retire(&self, kid: &str) -> Result<signing_key::Model, AuthError> {
        signing_key::Entity::update_many()
            .col_expr(signing_key::Column::RetireAt, Expr::value(Utc::now()))
            .filter(signing_key::Column::Kid.eq(kid))
            .filter(Self::in_service())
            .exec(&self.db)
            .await?;
        if let Ok(mut current) = self.current.write() {
            *current = None;
        }
        tracing::warn!(kid, "signing key retired");
        self.key(kid).await
    }

    async fn key(&self, kid: &str) -> Result<signing_key::Model, AuthError> {
        signing_key::Entity::find_by_id(kid).one(&self.db).await?.ok_or(AuthError::UnknownKey)
    }

    /// Every key, newest first, with the one that signs marked.
    pub async fn list(&self) -> Result<Vec<KeyInfo>, AuthError> {
        let signing = self.signer().await?.jwk().kid.clone();
        let keys = signing_key::Entity::find().order_by_desc(signing_key::Column::CreatedAt).all(&self.db).await?;
        Ok(keys.into_iter().map(|key| KeyInfo { signing: key.kid == signing, key }).collect())
    }
}

/// A key encryption key from its configured form: 32 bytes, base64.
pub fn parse_kek(encoded: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD.decode(encoded.trim()).or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim())).ok()?;
    bytes.try_into().ok()
}
