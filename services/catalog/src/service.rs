//! Offers, read through the cache (cache-aside) and written to the database.
//!
//! Cached entries are keyed by a generation number that every write bumps,
//! so a reader that loaded old rows just before a write can only fill a key
//! nobody reads any more; it cannot put stale data back under a live key.
//!
//! Every successful load also keeps a last-known copy under a key of its
//! own, for days: while the database cannot be reached, that copy is
//! served, marked stale, rather than nothing.
//!
//! Each process also keeps what it read decoded, by cache key, for at most
//! the TTL: a read then costs the generation lookup alone, instead of a
//! second round trip and decoding the whole list again. The key names its
//! generation, so a write anywhere still moves every reader off a copy at
//! once; when the generation cannot be read, no copy is used.
//!
//! Every answer also carries a version: a digest of what was read, taken
//! once per read of the shared cache or the database, not per request.
//! Callers that keep what they made of an answer (the edge keeps its JSON)
//! send it back and are told when it still holds. Unlike the generation, a
//! digest cannot repeat for other content when Redis loses the counter.

use std::any::Any;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use hashlink::LruCache;
use offers_kit::audit::{Act, Deed, Trail};
use offers_kit::cache::SharedCache;
use offers_proto::ids::OfferId;
use sea_orm::{ActiveModelTrait, DatabaseConnection, EntityTrait, IntoActiveModel, QueryOrder, TransactionTrait};

use crate::entity;
use crate::error::CatalogError;
use crate::offer::Offer;

const LAST_KNOWN_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const GENERATION: &str = "catalog:generation";
/// The generation counter lives as long as Redis keeps it; a lost counter
/// starts over at zero, and the keys it named are gone with it.
const GENERATION_WINDOW: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What a read answers: the value (shared with the process's decoded
/// copy), whether it is the last-known copy served because the database
/// could not be reached, and its version (empty when stale).
pub struct Served<T> {
    pub value: Arc<T>,
    pub stale: bool,
    pub version: Arc<str>,
}

/// The catalog service's audit trail.
pub const TRAIL: &str = "catalog";

pub struct Catalog {
    db: DatabaseConnection,
    cache: SharedCache,
    currency: String,
    ttl: Duration,
    decoded: Mutex<LruCache<String, Decoded>>,
    /// The administrative acts on offers, each written with the act.
    trail: Trail,
}

/// A value read from the cache, decoded, its version, and when it was read.
struct Decoded {
    at: Instant,
    value: Arc<dyn Any + Send + Sync>,
    version: Arc<str>,
}

/// The version of a value whose JSON is `json`: 128 bits of its SHA-256.
fn version_of(json: &str) -> Arc<str> {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(json)[..16]).into()
}

/// Keys whose decoded values a process keeps: the two lists and every offer.
const DECODED_KEYS: usize = 1_024;

impl Catalog {
    pub fn new(db: DatabaseConnection, cache: SharedCache, currency: String, ttl: Duration) -> Self {
        let trail = Trail::new(TRAIL, db.clone());
        Self { db, cache, currency, ttl, decoded: Mutex::new(LruCache::new(DECODED_KEYS)), trail }
    }

    /// The current generation, or `None` when the cache cannot say.
    async fn generation(&self) -> Option<String> {
        match self.cache.get(GENERATION).await {
            Ok(Some(g)) => Some(g),
            Ok(None) => Some("0".into()),
            Err(e) => {
                tracing::warn!(error = %e, "cache unavailable; reading offers from the database");
                None
            }
        }
    }

    fn decoded<T: Send + Sync + 'static>(&self, key: &str) -> Option<(Arc<T>, Arc<str>)> {
        let mut decoded = self.decoded.lock().ok()?;
        let entry = decoded.get(key)?;
        if entry.at.elapsed() >= self.ttl {
            decoded.remove(key);
            return None;
        }
        let value = entry.value.clone().downcast::<T>().ok()?;
        Some((value, entry.version.clone()))
    }

    fn keep_decoded<T: Send + Sync + 'static>(&self, key: String, value: &Arc<T>, version: &Arc<str>) {
        if let Ok(mut decoded) = self.decoded.lock() {
            decoded.insert(key, Decoded { at: Instant::now(), value: value.clone(), version: version.clone() });
        }
    }

    /// `what` from the cache, else from `load` (filling the cache and the
    /// last-known copy), else, when the database is unreachable, the
    /// last-known copy.
    async fn cached<T, F>(&self, what: &str, load: F) -> Result<Served<T>, CatalogError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
        F: AsyncFnOnce() -> Result<T, CatalogError>,
    {
        let generation = self.generation().await;
        let key = format!("catalog:g{}:{what}", generation.as_deref().unwrap_or("0"));
        let last_known = format!("catalog:last:{what}");
        if generation.is_some()
            && let Some((value, version)) = self.decoded::<T>(&key)
        {
            metrics::counter!("offers_catalog_cache_total", "result" => "hit").increment(1);
            return Ok(Served { value, stale: false, version });
        }
        if let Some((value, version)) = self.read::<T>(&key).await {
            metrics::counter!("offers_catalog_cache_total", "result" => "hit").increment(1);
            let value = Arc::new(value);
            if generation.is_some() {
                self.keep_decoded(key, &value, &version);
            }
            return Ok(Served { value, stale: false, version });
        }
        metrics::counter!("offers_catalog_cache_total", "result" => "miss").increment(1);
        let value = match load().await {
            Ok(value) => value,
            Err(CatalogError::Db(e)) if offers_kit::db::is_unreachable(&e) => match self.read(&last_known).await {
                Some((value, _)) => {
                    tracing::warn!(error = %e, "database unreachable; serving the last-known offers, marked stale");
                    metrics::counter!("offers_catalog_cache_total", "result" => "stale").increment(1);
                    return Ok(Served { value: Arc::new(value), stale: true, version: "".into() });
                }
                None => return Err(CatalogError::Db(e)),
            },
            Err(e) => return Err(e),
        };
        // Offers always serialise; were one not to, it would go uncached
        // and unversioned, which callers take as "keep nothing".
        let mut version: Arc<str> = "".into();
        if let Ok(json) = serde_json::to_string(&value) {
            for (key, ttl) in [(&key, self.ttl), (&last_known, LAST_KNOWN_TTL)] {
                if let Err(e) = self.cache.set(key, &json, ttl).await {
                    tracing::warn!(error = %e, "could not fill the offer cache");
                }
            }
            version = version_of(&json);
        }
        Ok(Served { value: Arc::new(value), stale: false, version })
    }

    /// A cached value, decoded, with its version.
    async fn read<T: serde::de::DeserializeOwned>(&self, key: &str) -> Option<(T, Arc<str>)> {
        let hit = self.cache.get(key).await.ok()??;
        let value = serde_json::from_str(&hit).ok()?;
        Some((value, version_of(&hit)))
    }

    /// All offers, newest first; only active ones unless `include_inactive`.
    pub async fn list(&self, include_inactive: bool) -> Result<Served<Vec<Offer>>, CatalogError> {
        let what = if include_inactive { "offers:all" } else { "offers:active" };
        self.cached(what, async || {
            let mut offers = entity::Entity::find().order_by_desc(entity::Column::Id).all(&self.db).await?;
            offers.retain(|o| include_inactive || o.is_active);
            Ok(offers)
        })
        .await
    }

    pub async fn get(&self, id: OfferId) -> Result<Served<Offer>, CatalogError> {
        self.cached(&format!("offer:{id}"), async || {
            entity::Entity::find_by_id(id.uuid()).one(&self.db).await?.ok_or(CatalogError::NotFound)
        })
        .await
    }

    pub async fn create(&self, offer: offers_proto::catalog::v1::Offer, act: &Act) -> Result<Offer, CatalogError> {
        let offer = Offer::from_proto(&offer, OfferId::generate().uuid(), Utc::now());
        offer.validate(&self.currency)?;
        let code = offer.code.clone();
        let deed = Deed {
            action: "offer.create",
            target: format!("offer:{}", offer.id),
            detail: format!(
                "code={} price={} {} duration_days={}",
                offer.code, offer.price, offer.currency, offer.duration_days
            ),
        };
        let txn = self.db.begin().await?;
        let created =
            entity::Entity::insert(offer.into_active_model().reset_all()).exec_with_returning(&txn).await.map_err(
                |e| if offers_kit::db::is_unique_violation(&e) { CatalogError::CodeTaken(code) } else { e.into() },
            )?;
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        self.invalidate().await;
        Ok(created)
    }

    /// Takes the fields `paths` names (all when empty) from `new`; the code
    /// never changes.
    pub async fn update(
        &self,
        id: OfferId,
        new: offers_proto::catalog::v1::Offer,
        paths: &[String],
        act: &Act,
    ) -> Result<Offer, CatalogError> {
        let txn = self.db.begin().await?;
        let current = entity::Entity::find_by_id(id.uuid()).one(&txn).await?.ok_or(CatalogError::NotFound)?;
        let mut offer = current.clone().updated(&new, paths)?;
        offer.updated_at = Utc::now();
        offer.validate(&self.currency)?;
        let deed =
            Deed { action: "offer.update", target: format!("offer:{}", offer.id), detail: changes(&current, &offer) };
        let updated = entity::Entity::update(offer.into_active_model().reset_all()).exec(&txn).await?;
        self.trail.record(&txn, act, deed).await?;
        txn.commit().await?;
        self.invalidate().await;
        Ok(updated)
    }

    /// Moves every reader to a new generation of keys. Should the cache be
    /// down, the old entries expire within the TTL.
    async fn invalidate(&self) {
        if let Err(e) = self.cache.hit(GENERATION, GENERATION_WINDOW).await {
            tracing::warn!(error = %e, ttl = ?self.ttl, "could not invalidate the offer cache; entries expire within the ttl");
        }
    }
}

/// What an update changed, field by field (`price: 500 → 700`); `no
/// change` when it changed nothing.
fn changes(before: &Offer, after: &Offer) -> String {
    let fields = [
        ("name", before.name.clone(), after.name.clone()),
        ("description", before.description.clone(), after.description.clone()),
        ("price", before.price.to_string(), after.price.to_string()),
        ("currency", before.currency.clone(), after.currency.clone()),
        ("duration_days", before.duration_days.to_string(), after.duration_days.to_string()),
        ("data_mb", before.data_mb.to_string(), after.data_mb.to_string()),
        ("voice_minutes", before.voice_minutes.to_string(), after.voice_minutes.to_string()),
        ("sms", before.sms.to_string(), after.sms.to_string()),
        ("is_active", before.is_active.to_string(), after.is_active.to_string()),
    ];
    let changed: Vec<String> =
        fields.into_iter().filter(|(_, b, a)| b != a).map(|(name, b, a)| format!("{name}: {b} → {a}")).collect();
    if changed.is_empty() { "no change".into() } else { changed.join("; ") }
}
