//! Cross-origin access for browsers (the REST edge, gRPC-Web): which
//! origins may call, as a setting each listener's owner includes; off by
//! default. Credentials are bearer headers, never cookies, so no
//! `Allow-Credentials` is ever sent.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::config::{Problems, Validate};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSettings {
    /// Origins allowed to call from a browser (`https://app.example.com`,
    /// scheme and host and an optional port), or `["*"]` for any. Empty:
    /// cross-origin calls are not answered (same-origin only).
    pub allowed_origins: Vec<String>,
    /// How long a browser may cache a preflight answer (whole seconds); 0
    /// for the browser's default.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

/// What a listener lets browsers send and read.
pub struct CorsPolicy {
    pub methods: &'static [Method],
    /// Request headers a caller may send.
    pub request_headers: &'static [&'static str],
    /// Response headers (and trailers) its scripts may read.
    pub response_headers: &'static [&'static str],
}

fn is_origin(origin: &str) -> bool {
    let Ok(uri) = origin.parse::<http::Uri>() else { return false };
    let scheme_ok = matches!(uri.scheme_str(), Some("http" | "https"));
    // An origin is exactly scheme://host[:port]: no path, not even "/".
    let bare = uri.path() == "/" && uri.query().is_none() && !origin.ends_with('/');
    scheme_ok && uri.host().is_some_and(|h| !h.is_empty()) && bare
}

impl Validate for CorsSettings {
    fn validate(&self, p: &mut Problems) {
        let any = self.allowed_origins.iter().any(|o| o == "*");
        p.check(!any || self.allowed_origins.len() == 1, "allowed_origins", "\"*\" must stand alone");
        for origin in self.allowed_origins.iter().filter(|o| *o != "*") {
            p.check(
                is_origin(origin),
                "allowed_origins",
                format!("{origin:?} is not an origin (scheme://host[:port])"),
            );
        }
        p.within("max_age", self.max_age, Duration::ZERO..=Duration::from_hours(24));
    }
}

impl CorsSettings {
    /// The layer answering preflights and marking answers for the allowed
    /// origins, or `None` when no origin is allowed.
    pub fn layer(&self, policy: &CorsPolicy) -> Option<CorsLayer> {
        if self.allowed_origins.is_empty() {
            return None;
        }
        let origins = if self.allowed_origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(self.allowed_origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        let names = |list: &[&'static str]| list.iter().map(|h| HeaderName::from_static(h)).collect::<Vec<_>>();
        let mut layer = CorsLayer::new()
            .allow_origin(origins)
            .allow_methods(policy.methods.to_vec())
            .allow_headers(names(policy.request_headers))
            .expose_headers(names(policy.response_headers));
        if !self.max_age.is_zero() {
            layer = layer.max_age(self.max_age);
        }
        Some(layer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(origins: &[&str]) -> Vec<String> {
        let settings =
            CorsSettings { allowed_origins: origins.iter().map(|o| o.to_string()).collect(), max_age: Duration::ZERO };
        let mut p = Problems::default();
        settings.validate(&mut p);
        match p.into_result() {
            Ok(()) => Vec::new(),
            Err(crate::config::ConfigError::Invalid(list)) => list,
            Err(other) => panic!("{other}"),
        }
    }

    #[test]
    fn origins_are_validated() {
        assert!(problems(&[]).is_empty());
        assert!(problems(&["*"]).is_empty());
        assert!(problems(&["https://app.example.com", "http://localhost:5173"]).is_empty());
        assert_eq!(
            problems(&["https://app.example.com/", "ftp://x", "app.example.com", "https://a.example/path"]).len(),
            4
        );
        assert_eq!(problems(&["*", "https://app.example.com"]).len(), 1);
    }
}
