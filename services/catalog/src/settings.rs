use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogSettings {
    /// How long a cached offer or list is served before the database is
    /// read again (writes invalidate it at once; this bounds what a missed
    /// invalidation costs).
    pub cache_ttl_secs: u64,
}

impl Default for CatalogSettings {
    fn default() -> Self {
        Self { cache_ttl_secs: 300 }
    }
}

impl Validate for CatalogSettings {
    fn validate(&self, p: &mut Problems) {
        p.check((1..=86_400).contains(&self.cache_ttl_secs), "cache_ttl_secs", "between 1 and 86400");
    }
}
