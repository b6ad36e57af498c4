//! Offers, read through the cache (cache-aside) and written to the database.
//!
//! Cached entries are keyed by a generation number that every write bumps,
//! so a reader that loaded old rows just before a write can only fill a key
//! nobody reads any more; it cannot put stale data back under a live key.

use std::time::Duration;

use chrono::Utc;
use offers_kit::cache::SharedCache;
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, IntoActiveModel, QueryOrder};
use uuid::Uuid;

use crate::entity::{self as offer, Model as Offer};
use crate::error::CatalogError;

const TTL: Duration = Duration::from_secs(300);
/// Prices above this are mistakes (the ledger refuses such amounts too).
const MAX_PRICE: i64 = 1_000_000_000_000;
/// Allowances above this are mistakes.
const MAX_ALLOWANCE: i64 = 1_000_000_000;
const GENERATION: &str = "catalog:generation";
/// The generation counter lives as long as Redis keeps it; a lost counter
/// starts over at zero, and the keys it named are gone with it.
const GENERATION_WINDOW: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Everything about an offer that can be set, validated.
#[derive(Debug, Clone)]
pub struct OfferFields {
    pub code: String,
    pub name: String,
    pub description: String,
    pub price: i64,
    pub currency: String,
    pub duration_days: i32,
    pub data_mb: i64,
    pub voice_minutes: i64,
    pub sms: i64,
    pub is_active: bool,
}

impl OfferFields {
    pub fn validate(&self, currency: &str) -> Result<(), CatalogError> {
        let code_ok = (2..=32).contains(&self.code.len())
            && self.code.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '-');
        let checks = [
            (code_ok, "code must be 2 to 32 characters of A-Z, 0-9 and '-'".to_string()),
            (!self.name.trim().is_empty() && self.name.len() <= 200, "name must be 1 to 200 characters".into()),
            (self.description.len() <= 2000, "description must be at most 2000 characters".into()),
            (self.price > 0 && self.price <= MAX_PRICE, format!("price must be between 1 and {MAX_PRICE} minor units")),
            (self.currency == currency, format!("currency must be {currency}")),
            ((1..=3650).contains(&self.duration_days), "duration_days must be between 1 and 3650".into()),
            (
                [self.data_mb, self.voice_minutes, self.sms].iter().all(|a| (0..=MAX_ALLOWANCE).contains(a)),
                format!("allowances must be between 0 and {MAX_ALLOWANCE}"),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(CatalogError::Invalid(message)),
            None => Ok(()),
        }
    }
}

pub struct Catalog {
    db: DatabaseConnection,
    cache: SharedCache,
    currency: String,
}

impl Catalog {
    pub fn new(db: DatabaseConnection, cache: SharedCache, currency: String) -> Self {
        Self { db, cache, currency }
    }

    async fn generation(&self) -> String {
        match self.cache.get(GENERATION).await {
            Ok(Some(g)) => g,
            Ok(None) => "0".into(),
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; reading offers from the database");
                "0".into()
            }
        }
    }

    async fn cached<T, F>(&self, key: String, load: F) -> Result<T, CatalogError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
        F: AsyncFnOnce() -> Result<T, CatalogError>,
    {
        if let Ok(Some(hit)) = self.cache.get(&key).await
            && let Ok(value) = serde_json::from_str(&hit)
        {
            metrics::counter!("offers_catalog_cache_total", "result" => "hit").increment(1);
            return Ok(value);
        }
        metrics::counter!("offers_catalog_cache_total", "result" => "miss").increment(1);
        let value = load().await?;
        if let Ok(json) = serde_json::to_string(&value)
            && let Err(e) = self.cache.set(&key, &json, TTL).await
        {
            tracing::warn!(error = %e, "could not fill the offer cache");
        }
        Ok(value)
    }

    /// All offers, newest first; only active ones unless `include_inactive`.
    pub async fn list(&self, include_inactive: bool) -> Result<Vec<Offer>, CatalogError> {
        let key =
            format!("catalog:g{}:offers:{}", self.generation().await, if include_inactive { "all" } else { "active" });
        self.cached(key, async || {
            let mut offers = offer::Entity::find().order_by_desc(offer::Column::Id).all(&self.db).await?;
            offers.retain(|o| include_inactive || o.is_active);
            Ok(offers)
        })
        .await
    }

    pub async fn get(&self, id: Uuid) -> Result<Offer, CatalogError> {
        let key = format!("catalog:g{}:offer:{id}", self.generation().await);
        self.cached(key, async || offer::Entity::find_by_id(id).one(&self.db).await?.ok_or(CatalogError::NotFound))
            .await
    }

    pub async fn create(&self, fields: OfferFields) -> Result<Offer, CatalogError> {
        fields.validate(&self.currency)?;
        let now = Utc::now();
        let model = offer::ActiveModel {
            id: Set(Uuid::now_v7()),
            code: Set(fields.code.clone()),
            name: Set(fields.name),
            description: Set(fields.description),
            price: Set(fields.price),
            currency: Set(fields.currency),
            duration_days: Set(fields.duration_days),
            data_mb: Set(fields.data_mb),
            voice_minutes: Set(fields.voice_minutes),
            sms: Set(fields.sms),
            is_active: Set(fields.is_active),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let created = offer::Entity::insert(model).exec_with_returning(&self.db).await.map_err(|e| {
            if offers_kit::db::is_unique_violation(&e) { CatalogError::CodeTaken(fields.code) } else { e.into() }
        })?;
        self.invalidate().await;
        Ok(created)
    }

    /// Applies `change` to the stored offer; the code never changes.
    pub async fn update(&self, id: Uuid, change: impl FnOnce(&mut OfferFields)) -> Result<Offer, CatalogError> {
        let current = offer::Entity::find_by_id(id).one(&self.db).await?.ok_or(CatalogError::NotFound)?;
        let mut fields = OfferFields {
            code: current.code.clone(),
            name: current.name.clone(),
            description: current.description.clone(),
            price: current.price,
            currency: current.currency.clone(),
            duration_days: current.duration_days,
            data_mb: current.data_mb,
            voice_minutes: current.voice_minutes,
            sms: current.sms,
            is_active: current.is_active,
        };
        change(&mut fields);
        if fields.code != current.code {
            return Err(CatalogError::Invalid("code cannot be changed".into()));
        }
        fields.validate(&self.currency)?;
        let mut model = current.into_active_model();
        model.name = Set(fields.name);
        model.description = Set(fields.description);
        model.price = Set(fields.price);
        model.currency = Set(fields.currency);
        model.duration_days = Set(fields.duration_days);
        model.data_mb = Set(fields.data_mb);
        model.voice_minutes = Set(fields.voice_minutes);
        model.sms = Set(fields.sms);
        model.is_active = Set(fields.is_active);
        model.updated_at = Set(Utc::now());
        let updated = offer::Entity::update(model).exec(&self.db).await?;
        self.invalidate().await;
        Ok(updated)
    }

    /// Moves every reader to a new generation of keys. Should the cache be
    /// down, the old entries expire within the TTL.
    async fn invalidate(&self) {
        if let Err(e) = self.cache.hit(GENERATION, GENERATION_WINDOW).await {
            tracing::warn!(error = %e, "could not invalidate the offer cache; entries expire within {TTL:?}");
        }
    }
}
