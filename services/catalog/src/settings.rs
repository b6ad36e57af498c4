use std::time::Duration;

use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// How long a cached offer or list is served before the database is
    /// read again (writes invalidate it at once; this bounds what a missed
    /// invalidation costs).
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { cache_ttl: Duration::from_mins(5) }
    }
}

impl Validate for CatalogSettings {
    fn validate(&self, p: &mut Problems) {
        p.within("cache_ttl", self.cache_ttl, Duration::from_secs(1)..=Duration::from_hours(24));
    }
}
