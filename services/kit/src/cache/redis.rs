//! The Redis cache, through a deadpool connection pool; every key carries
//! the deployment's prefix.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use deadpool_redis::redis::{self, AsyncCommands};

use super::{Cache, CacheError, VersionedHash};

impl From<deadpool_redis::PoolError> for CacheError {
    fn from(err: deadpool_redis::PoolError) -> Self {
        CacheError::Unavailable(err.to_string())
    }
}

impl From<redis::RedisError> for CacheError {
    fn from(err: redis::RedisError) -> Self {
        CacheError::Unavailable(err.to_string())
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

    /// Deletes every key under this cache's prefix (a deployment or a test
    /// being thrown away); how many there were.
    pub async fn purge(&self) -> Result<usize, CacheError> {
        let mut pattern = String::new();
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('*');
        let mut conn = self.conn().await?;
        let mut keys = Vec::new();
        {
            let mut found = conn.scan_match::<_, String>(&pattern).await?;
            while let Some(key) = found.next_item().await {
                keys.push(key?);
            }
        }
        if !keys.is_empty() {
            let () = conn.del(&keys).await?;
        }
        Ok(keys.len())
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

    async fn hash_set_if_newer(&self, key: &str, hash: VersionedHash<'_>) -> Result<bool, CacheError> {
        let VersionedHash { revision, fields, ttl } = hash;
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
