//! The cache: Redis in production, a map in memory for the embedded mode.
//! It is never the truth; callers fall back to the database when it fails.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache connection failed: {0}")]
    Pool(#[from] deadpool_redis::PoolError),
    #[error("cache command failed: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("cache is misconfigured: {0}")]
    Config(String),
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, keys: &[&str]) -> Result<(), CacheError>;
    /// Replaces a hash (and its time to live) unless it already holds a
    /// `revision` field at least `revision`: a slow writer with an older
    /// copy cannot overwrite a newer one. Returns whether it wrote.
    async fn hash_set_if_newer(
        &self,
        key: &str,
        revision: i64,
        fields: &[(&str, String)],
        ttl: Duration,
    ) -> Result<bool, CacheError>;
    /// Every field of a hash; empty when it does not exist.
    async fn hash_get(&self, key: &str) -> Result<HashMap<String, String>, CacheError>;
    /// Counts one hit in a fixed window that starts with the first hit.
    /// Returns the hits so far and the seconds until the window closes.
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, u64), CacheError>;
    async fn ping(&self) -> Result<(), CacheError>;
}

pub type SharedCache = Arc<dyn Cache>;

/// The hash holding a transaction's status: written by the ledger after
/// each change, read first by the status endpoint.
pub fn transaction_status_key(id: uuid::Uuid) -> String {
    format!("tx:{id}")
}

/// Counts one request against `limit` per `window` under `key` (a fixed
/// window, shared by every replica through the cache). `Err(seconds)` when
/// over the limit, with the time until the window closes. Without the cache
/// the request is allowed (and logged): an outage must not lock everyone out.
pub async fn rate_limit(cache: &dyn Cache, key: &str, limit: u64, window: Duration) -> Result<(), u64> {
    match cache.hit(key, window).await {
        Ok((count, retry_after_secs)) if count > limit => Err(retry_after_secs),
        Ok(_) => Ok(()),
        Err(e) => {
            tracing::warn!(key, error = %e, "rate limit unavailable; allowing");
            Ok(())
        }
    }
}

pub fn from_settings(settings: &crate::config::CacheSettings) -> Result<SharedCache, CacheError> {
    if settings.url == "memory://" {
        Ok(Arc::new(MemoryCache::default()))
    } else {
        Ok(Arc::new(RedisCache::new(&settings.url, &settings.prefix)?))
    }
}

pub struct RedisCache {
    pool: deadpool_redis::Pool,
    prefix: String,
}

impl RedisCache {
    pub fn new(url: &str, prefix: &str) -> Result<Self, CacheError> {
        let mut config = deadpool_redis::Config::from_url(url);
        config.pool = Some(deadpool_redis::PoolConfig {
            max_size: 32,
            timeouts: deadpool_redis::Timeouts {
                wait: Some(Duration::from_millis(500)),
                create: Some(Duration::from_millis(500)),
                recycle: Some(Duration::from_millis(500)),
            },
            ..Default::default()
        });
        let pool =
            config.create_pool(Some(deadpool_redis::Runtime::Tokio1)).map_err(|e| CacheError::Config(e.to_string()))?;
        Ok(Self { pool, prefix: prefix.into() })
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    async fn conn(&self) -> Result<deadpool_redis::Connection, CacheError> {
        Ok(self.pool.get().await?)
    }
}

/// KEYS[1] = hash; ARGV = revision, ttl, then field/value pairs.
const SET_IF_NEWER: &str = r"
local current = redis.call('HGET', KEYS[1], 'revision')
if current and tonumber(current) >= tonumber(ARGV[1]) then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'revision', ARGV[1], unpack(ARGV, 3))
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
";

fn ttl_secs(ttl: Duration) -> u64 {
    ttl.as_secs().max(1)
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.conn().await?.get(self.key(key)).await?)
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let _: () = self.conn().await?.set_ex(self.key(key), value, ttl_secs(ttl)).await?;
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<(), CacheError> {
        let keys: Vec<String> = keys.iter().map(|k| self.key(k)).collect();
        let _: () = self.conn().await?.del(keys).await?;
        Ok(())
    }

    async fn hash_set_if_newer(
        &self,
        key: &str,
        revision: i64,
        fields: &[(&str, String)],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(SET_IF_NEWER).arg(1).arg(self.key(key)).arg(revision).arg(ttl_secs(ttl));
        for (field, value) in fields {
            cmd.arg(*field).arg(value);
        }
        let written: i64 = cmd.query_async(&mut self.conn().await?).await?;
        Ok(written == 1)
    }

    async fn hash_get(&self, key: &str) -> Result<HashMap<String, String>, CacheError> {
        Ok(self.conn().await?.hgetall(self.key(key)).await?)
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, u64), CacheError> {
        let key = self.key(key);
        let (count, ttl): (u64, i64) = redis::pipe()
            .atomic()
            .cmd("SET")
            .arg(&key)
            .arg(0)
            .arg("EX")
            .arg(ttl_secs(window))
            .arg("NX")
            .ignore()
            .incr(&key, 1)
            .ttl(&key)
            .query_async(&mut self.conn().await?)
            .await?;
        Ok((count, u64::try_from(ttl).unwrap_or(1).max(1)))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        let _: String = redis::cmd("PING").query_async(&mut self.conn().await?).await?;
        Ok(())
    }
}

enum Value {
    Text(String),
    Hash(HashMap<String, String>),
    Counter(u64),
}

type Entries = HashMap<String, (Value, Instant)>;

/// The embedded-mode cache: one process, so a map under a lock will do.
#[derive(Default)]
pub struct MemoryCache {
    /// The entries and the count of operations since the start.
    entries: Mutex<(Entries, u64)>,
}

/// Expired entries are dropped when touched, and all of them every so many
/// operations, so no operation pays for a scan of the whole map.
const SWEEP_EVERY: u64 = 1024;

impl MemoryCache {
    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Entries) -> R) -> R {
        let mut guard = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (entries, ops) = &mut *guard;
        let now = Instant::now();
        *ops += 1;
        if *ops % SWEEP_EVERY == 0 {
            entries.retain(|_, (_, expires)| *expires > now);
        } else if entries.get(key).is_some_and(|(_, expires)| *expires <= now) {
            entries.remove(key);
        }
        f(entries)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.with(key, |m| match m.get(key) {
            Some((Value::Text(v), _)) => Some(v.clone()),
            Some((Value::Counter(n), _)) => Some(n.to_string()),
            _ => None,
        }))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        self.with(key, |m| m.insert(key.into(), (Value::Text(value.into()), Instant::now() + ttl)));
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<(), CacheError> {
        self.with("", |m| keys.iter().for_each(|k| drop(m.remove(*k))));
        Ok(())
    }

    async fn hash_set_if_newer(
        &self,
        key: &str,
        revision: i64,
        fields: &[(&str, String)],
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        Ok(self.with(key, |m| {
            if let Some((Value::Hash(h), _)) = m.get(key)
                && h.get("revision").and_then(|r| r.parse::<i64>().ok()).is_some_and(|r| r >= revision)
            {
                return false;
            }
            let mut hash: HashMap<String, String> = fields.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
            hash.insert("revision".into(), revision.to_string());
            m.insert(key.into(), (Value::Hash(hash), Instant::now() + ttl));
            true
        }))
    }

    async fn hash_get(&self, key: &str) -> Result<HashMap<String, String>, CacheError> {
        Ok(self.with(key, |m| match m.get(key) {
            Some((Value::Hash(h), _)) => h.clone(),
            _ => HashMap::new(),
        }))
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, u64), CacheError> {
        Ok(self.with(key, |m| {
            let now = Instant::now();
            let entry = m.entry(key.into()).or_insert((Value::Counter(0), now + window));
            let count = match &mut entry.0 {
                Value::Counter(n) => {
                    *n += 1;
                    *n
                }
                // Redis would refuse INCR on a non-number; this is a caller's
                // bug, and starting the counter over is the gentler answer.
                other => {
                    *other = Value::Counter(1);
                    1
                }
            };
            (count, entry.1.saturating_duration_since(now).as_secs().max(1))
        }))
    }

    async fn ping(&self) -> Result<(), CacheError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_expires_and_counts() {
        let cache = MemoryCache::default();
        cache.set("a", "1", Duration::from_millis(20)).await.expect("set");
        assert_eq!(cache.get("a").await.expect("get").as_deref(), Some("1"));
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(cache.get("a").await.expect("get"), None);
        assert_eq!(cache.hit("r", Duration::from_secs(60)).await.expect("hit").0, 1);
        assert_eq!(cache.hit("r", Duration::from_secs(60)).await.expect("hit").0, 2);
        assert_eq!(cache.get("r").await.expect("get").as_deref(), Some("2"));
        let ttl = Duration::from_secs(5);
        assert!(cache.hash_set_if_newer("h", 2, &[("status", "SUCCESS".into())], ttl).await.expect("hset"));
        assert!(!cache.hash_set_if_newer("h", 1, &[("status", "PENDING".into())], ttl).await.expect("hset"));
        assert_eq!(cache.hash_get("h").await.expect("hget").get("status").map(String::as_str), Some("SUCCESS"));
    }
}
