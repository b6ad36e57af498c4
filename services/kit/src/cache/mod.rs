//! The cache: Redis in production, a map in memory for the embedded mode.
//! It is never the truth; callers fall back to the database when it fails.

#[cfg(feature = "redis")]
mod redis;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use hashlink::LruCache;

#[cfg(feature = "redis")]
pub use redis::RedisCache;

/// A key from its parts, joined by `:` with each part's `%` and `:` escaped
/// (`%25`, `%3A`), so different parts always make different keys: a part a
/// caller chose cannot reach into another key's space (the username
/// `demo2:127.0.0.9` is not `demo2` at 127.0.0.9, nor an IPv6 /64 bucket,
/// which holds colons itself). Every key with a part from outside is built
/// here.
pub fn key(parts: &[&str]) -> String {
    let mut key = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            key.push(':');
        }
        for c in part.chars() {
            match c {
                '%' => key.push_str("%25"),
                ':' => key.push_str("%3A"),
                c => key.push(c),
            }
        }
    }
    key
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
    #[error("cache is misconfigured: {0}")]
    Config(String),
}

#[async_trait]
pub trait Cache: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError>;
    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError>;
    async fn delete(&self, keys: &[&str]) -> Result<(), CacheError>;
    /// Replaces a hash (and its time to live) unless it already holds a
    /// `revision` field at least the new one's: a slow writer with an older
    /// copy cannot overwrite a newer one. Returns whether it wrote.
    async fn hash_set_if_newer(&self, key: &str, hash: VersionedHash<'_>) -> Result<bool, CacheError>;
    /// Every field of a hash; empty when it does not exist.
    async fn hash_get(&self, key: &str) -> Result<HashMap<String, String>, CacheError>;
    /// Counts one hit in a fixed window that starts with the first hit.
    /// Returns the hits so far and the seconds until the window closes.
    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, u64), CacheError>;
    async fn ping(&self) -> Result<(), CacheError>;
}

pub type SharedCache = Arc<dyn Cache>;

/// A hash stored with its revision, for [`Cache::hash_set_if_newer`].
pub struct VersionedHash<'a> {
    pub revision: i64,
    pub fields: &'a [(&'a str, String)],
    pub ttl: Duration,
}

/// The cache the settings name: in memory for `memory://`, Redis otherwise.
pub fn from_settings(settings: &crate::config::CacheSettings) -> Result<SharedCache, CacheError> {
    if settings.url == "memory://" {
        return Ok(Arc::new(MemoryCache::default()));
    }
    #[cfg(feature = "redis")]
    return Ok(Arc::new(RedisCache::new(&settings.url, &settings.prefix)?));
    #[cfg(not(feature = "redis"))]
    Err(CacheError::Config("this build has no Redis support".into()))
}

enum Value {
    Text(String),
    Counter(u64),
}

type Hash = HashMap<String, String>;

/// The embedded-mode cache: one process, so maps under a lock will do.
///
/// Hashes (transaction statuses: one per purchase, kept a day) are held in
/// a least-recently-used set of at most [`HASHES`], as Redis under its
/// memory limit would evict them: losing one costs a read of the ledger.
/// Texts and counters (the catalog, console sessions, rate limits) are few
/// or short-lived, and evicting a limit's counter would lift the limit, so
/// they leave only when they expire.
pub struct MemoryCache {
    entries: Mutex<Entries>,
}

struct Entries {
    plain: HashMap<String, (Value, Instant)>,
    hashes: LruCache<String, (Hash, Instant)>,
    /// Operations since the start, for the sweep.
    ops: u64,
}

/// The most hashes the embedded cache holds (about a kilobyte each).
const HASHES: usize = 4_096;

impl Default for MemoryCache {
    fn default() -> Self {
        Self::with_hashes(HASHES)
    }
}

/// Expired entries are dropped when touched, and all of them every so many
/// operations, so no operation pays for a scan of the whole map.
const SWEEP_EVERY: u64 = 1024;

impl MemoryCache {
    fn with_hashes(capacity: usize) -> Self {
        let entries = Entries { plain: HashMap::new(), hashes: LruCache::new(capacity), ops: 0 };
        Self { entries: Mutex::new(entries) }
    }

    fn with<R>(&self, key: &str, f: impl FnOnce(&mut Entries) -> R) -> R {
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        entries.ops += 1;
        if entries.ops.is_multiple_of(SWEEP_EVERY) {
            entries.plain.retain(|_, (_, expires)| *expires > now);
            entries.hashes.retain(|_, (_, expires)| *expires > now);
        } else {
            if entries.plain.get(key).is_some_and(|(_, expires)| *expires <= now) {
                entries.plain.remove(key);
            }
            if entries.hashes.peek(key).is_some_and(|(_, expires)| *expires <= now) {
                entries.hashes.remove(key);
            }
        }
        f(&mut entries)
    }
}

#[async_trait]
impl Cache for MemoryCache {
    async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        Ok(self.with(key, |m| match m.plain.get(key) {
            Some((Value::Text(v), _)) => Some(v.clone()),
            Some((Value::Counter(n), _)) => Some(n.to_string()),
            None => None,
        }))
    }

    async fn set(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        self.with(key, |m| {
            m.hashes.remove(key);
            m.plain.insert(key.into(), (Value::Text(value.into()), Instant::now() + ttl))
        });
        Ok(())
    }

    async fn delete(&self, keys: &[&str]) -> Result<(), CacheError> {
        self.with("", |m| {
            for key in keys {
                m.plain.remove(*key);
                m.hashes.remove(*key);
            }
        });
        Ok(())
    }

    async fn hash_set_if_newer(&self, key: &str, hash: VersionedHash<'_>) -> Result<bool, CacheError> {
        let VersionedHash { revision, fields, ttl } = hash;
        Ok(self.with(key, |m| {
            if let Some((h, _)) = m.hashes.peek(key)
                && h.get("revision").and_then(|r| r.parse::<i64>().ok()).is_some_and(|r| r >= revision)
            {
                return false;
            }
            let mut hash: Hash = fields.iter().map(|(k, v)| ((*k).to_string(), v.clone())).collect();
            hash.insert("revision".into(), revision.to_string());
            m.plain.remove(key);
            m.hashes.insert(key.into(), (hash, Instant::now() + ttl));
            true
        }))
    }

    async fn hash_get(&self, key: &str) -> Result<HashMap<String, String>, CacheError> {
        Ok(self.with(key, |m| m.hashes.get(key).map(|(h, _)| h.clone()).unwrap_or_default()))
    }

    async fn hit(&self, key: &str, window: Duration) -> Result<(u64, u64), CacheError> {
        Ok(self.with(key, |m| {
            let now = Instant::now();
            // Redis would refuse INCR on a hash; this is a caller's bug, and
            // starting the counter over is the gentler answer.
            m.hashes.remove(key);
            let entry = m.plain.entry(key.into()).or_insert((Value::Counter(0), now + window));
            let count = match &mut entry.0 {
                Value::Counter(n) => {
                    *n += 1;
                    *n
                }
                // A text is started over too, number or not (Redis would
                // count on from a number); no caller mixes the two.
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
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_part_cannot_pose_as_two() {
        let user_at_address = key(&["ratelimit", "login", "user", "demo2", "127.0.0.9"]);
        assert_eq!(user_at_address, "ratelimit:login:user:demo2:127.0.0.9", "plain parts keep their keys");
        assert_ne!(key(&["ratelimit", "login", "user", "demo2:127.0.0.9"]), user_at_address);
        assert_ne!(
            key(&["ratelimit", "login", "user", "demo2%3A127.0.0.9"]),
            key(&["ratelimit", "login", "user", "demo2:127.0.0.9"])
        );
    }

    proptest! {
        /// Different parts, different keys, whatever the parts hold.
        #[test]
        fn keys_are_injective(a in proptest::collection::vec("[a:%3A5]{0,4}", 0..4), b in proptest::collection::vec("[a:%3A5]{0,4}", 0..4)) {
            let (a, b): (Vec<&str>, Vec<&str>) = (a.iter().map(String::as_str).collect(), b.iter().map(String::as_str).collect());
            prop_assert_eq!(key(&a) == key(&b), a == b || (a.len() <= 1 && b.len() <= 1 && a.concat().is_empty() && b.concat().is_empty()));
        }
    }

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
        let hash = |revision, status: &str| (revision, [("status", status.to_string())]);
        let (revision, fields) = hash(2, "SUCCESS");
        assert!(cache.hash_set_if_newer("h", VersionedHash { revision, fields: &fields, ttl }).await.expect("hset"));
        let (revision, fields) = hash(1, "PENDING");
        assert!(!cache.hash_set_if_newer("h", VersionedHash { revision, fields: &fields, ttl }).await.expect("hset"));
        assert_eq!(cache.hash_get("h").await.expect("hget").get("status").map(String::as_str), Some("SUCCESS"));
    }

    /// Statuses beyond the bound push out the least recently used one, and
    /// never a rate limit's counter, which would lift the limit.
    #[tokio::test]
    async fn memory_cache_bounds_hashes_and_keeps_counters() {
        let cache = MemoryCache::with_hashes(2);
        let ttl = Duration::from_secs(60);
        assert_eq!(cache.hit("limit", ttl).await.expect("hit").0, 1);
        let fields = [("status", "PENDING".to_string())];
        for key in ["a", "b"] {
            assert!(
                cache.hash_set_if_newer(key, VersionedHash { revision: 1, fields: &fields, ttl }).await.expect("hset")
            );
        }
        assert!(!cache.hash_get("a").await.expect("hget").is_empty(), "a read makes `a` the most recent");
        assert!(cache.hash_set_if_newer("c", VersionedHash { revision: 1, fields: &fields, ttl }).await.expect("hset"));
        assert!(cache.hash_get("b").await.expect("hget").is_empty(), "the least recently used hash left");
        for key in ["a", "c"] {
            assert_eq!(cache.hash_get(key).await.expect("hget").get("revision").map(String::as_str), Some("1"));
        }
        assert_eq!(cache.hit("limit", ttl).await.expect("hit").0, 2, "the counter was not evicted");
        cache.set("a", "text", ttl).await.expect("set");
        assert!(cache.hash_get("a").await.expect("hget").is_empty(), "a key holds one kind of value");
        assert_eq!(cache.get("a").await.expect("get").as_deref(), Some("text"));
    }
}
