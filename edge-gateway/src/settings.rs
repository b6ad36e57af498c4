//! The edge's own limits.

use std::time::Duration;

use offers_kit::config::{Problems, Validate};
use offers_kit::cors::CorsSettings;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Deadline for one upstream gRPC call of the edge.
    #[serde(with = "humantime_serde")]
    pub upstream_timeout: Duration,
    /// How many proxies of ours stand in front of the edge, each appending
    /// the address it saw to `X-Forwarded-For`: the client is that many
    /// entries from the right. 0 ignores the header (the connection's
    /// address is the client's); anything a client wrote further left is
    /// never trusted.
    pub trusted_proxy_hops: u8,
    /// Browsers on other origins allowed to call the REST paths (off by default).
    pub cors: CorsSettings,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            body_limit_bytes: 64 * 1024,
            upstream_timeout: Duration::from_secs(10),
            trusted_proxy_hops: 0,
            cors: CorsSettings::default(),
        }
    }
}

impl Validate for GatewaySettings {
    fn validate(&self, p: &mut Problems) {
        p.check(self.body_limit_bytes >= 1024, "body_limit_bytes", "must be at least 1024");
        p.within("upstream_timeout", self.upstream_timeout, Duration::from_millis(100)..=Duration::from_mins(5));
        p.check(self.trusted_proxy_hops <= 5, "trusted_proxy_hops", "at most 5");
        p.section("cors", &self.cors);
    }
}
