//! The edge's own limits.

use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewaySettings {
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Deadline for one upstream gRPC call, in milliseconds.
    pub upstream_timeout_ms: u64,
    /// Trust the last `X-Forwarded-For` hop as the client address (behind a
    /// known proxy only).
    pub trust_forwarded_for: bool,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self { body_limit_bytes: 64 * 1024, upstream_timeout_ms: 10_000, trust_forwarded_for: false }
    }
}

impl Validate for GatewaySettings {
    fn validate(&self, p: &mut Problems) {
        p.check(self.body_limit_bytes >= 1024, "body_limit_bytes", "must be at least 1024");
        p.check((100..=300_000).contains(&self.upstream_timeout_ms), "upstream_timeout_ms", "between 100 and 300000");
    }
}
