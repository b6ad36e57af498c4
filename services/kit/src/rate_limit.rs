//! Fixed-window rate limits, counted in the cache so every replica shares
//! them. When the cache is down the count falls back to this process's own
//! memory: each replica then limits on its own (the limit is multiplied by
//! the replica count, but never lifted), rather than letting everything
//! through or locking everyone out.

use std::net::IpAddr;
use std::time::Duration;

use crate::cache::{Cache, MemoryCache, SharedCache};

pub struct RateLimiter {
    cache: SharedCache,
    local: MemoryCache,
}

impl RateLimiter {
    pub fn new(cache: SharedCache) -> Self {
        Self { cache, local: MemoryCache::default() }
    }

    /// Counts one hit against `limit` per `window` under `key`;
    /// `Err(seconds)` when over it, with the time until the window closes.
    pub async fn check(&self, key: &str, limit: u64, window: Duration) -> Result<(), u64> {
        let counted = match self.cache.hit(key, window).await {
            Ok(counted) => counted,
            Err(e) => {
                tracing::warn!(key, error = %e, "cache unavailable; rate limiting in this process alone");
                metrics::counter!("offers_rate_limit_fallback_total").increment(1);
                // The memory cache cannot fail.
                self.local.hit(key, window).await.unwrap_or((0, 1))
            }
        };
        match counted {
            (count, retry_after_secs) if count > limit => Err(retry_after_secs),
            _ => Ok(()),
        }
    }
}

/// The bucket an address is counted in: an IPv4 address alone, an IPv6
/// address by its /64 (what one subscriber is usually given), an
/// IPv4-mapped IPv6 address as the IPv4 one.
pub fn address_bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let [a, b, c, d, ..] = v6.segments();
                format!("{a:x}:{b:x}:{c:x}:{d:x}::/64")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;

    use super::*;
    use crate::cache::{CacheError, VersionedHash};

    #[test]
    fn ipv6_addresses_share_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
        let b: IpAddr = "2001:db8:1:2:ffff:ffff:ffff:ffff".parse().expect("ip");
        let c: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        assert_eq!(address_bucket(a), address_bucket(b));
        assert_ne!(address_bucket(a), address_bucket(c));
        assert_eq!(address_bucket("::ffff:203.0.113.9".parse().expect("ip")), "203.0.113.9");
        assert_eq!(address_bucket("203.0.113.9".parse().expect("ip")), "203.0.113.9");
    }

    /// A cache that is down.
    struct Down;

    #[async_trait]
    impl Cache for Down {
        async fn get(&self, _: &str) -> Result<Option<String>, CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
        async fn set(&self, _: &str, _: &str, _: Duration) -> Result<(), CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
        async fn delete(&self, _: &[&str]) -> Result<(), CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
        async fn hash_set_if_newer(&self, _: &str, _: VersionedHash<'_>) -> Result<bool, CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
        async fn hash_get(&self, _: &str) -> Result<std::collections::HashMap<String, String>, CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
        async fn hit(&self, _: &str, _: Duration) -> Result<(u64, u64), CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
        async fn ping(&self) -> Result<(), CacheError> {
            Err(CacheError::Unavailable("down".into()))
        }
    }

    #[tokio::test]
    async fn without_the_cache_the_process_still_limits() {
        let limiter = RateLimiter::new(Arc::new(Down));
        let window = Duration::from_secs(60);
        for _ in 0..3 {
            assert!(limiter.check("k", 3, window).await.is_ok());
        }
        assert!(limiter.check("k", 3, window).await.is_err(), "the fourth is refused");
        assert!(limiter.check("other", 3, window).await.is_ok());
    }
}
