//! `/healthz`, `/readyz` and `/metrics`, served by every process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::json;
use tokio::task::JoinSet;

/// One dependency `/readyz` checks.
#[async_trait]
pub trait ReadinessCheck: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    async fn check(&self) -> Result<(), String>;
}

#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<(Arc<dyn ReadinessCheck>, bool)>,
}

impl Readiness {
    /// A dependency without which this process cannot serve.
    pub fn require(mut self, check: impl ReadinessCheck) -> Self {
        self.checks.push((Arc::new(check), true));
        self
    }

    /// A dependency that is reported but does not make the process unready:
    /// the cache (a miss falls back to the database) and the bus (jobs wait
    /// in the outbox).
    pub fn report(mut self, check: impl ReadinessCheck) -> Self {
        self.checks.push((Arc::new(check), false));
        self
    }
}

pub fn router(readiness: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/readyz", get(ready))
        .route("/metrics", get(|| async { offers_kit::telemetry::metrics_handle().render() }))
        .with_state(readiness)
}

/// How long one check may take; they run at once, so this bounds the whole.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

async fn ready(State(readiness): State<Readiness>) -> impl IntoResponse {
    let mut checks = JoinSet::new();
    for (check, required) in readiness.checks.iter().cloned() {
        checks.spawn(async move {
            let state = match tokio::time::timeout(CHECK_TIMEOUT, check.check()).await {
                Ok(Ok(())) => "ok".to_string(),
                Ok(Err(e)) => e,
                Err(_) => "timed out".into(),
            };
            (check.name(), required, state)
        });
    }
    let mut report = serde_json::Map::new();
    let mut ready = true;
    while let Some(done) = checks.join_next().await {
        let (name, required, state) = match done {
            Ok(outcome) => outcome,
            Err(_) => ("readiness", true, "a check failed".to_string()),
        };
        ready &= !required || state == "ok";
        report.insert(name.into(), state.into());
    }
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(json!({"ready": ready, "checks": report})))
}

pub struct DatabaseCheck(pub sea_orm::DatabaseConnection);

#[async_trait]
impl ReadinessCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

pub struct CacheCheck(pub offers_kit::cache::SharedCache);

#[async_trait]
impl ReadinessCheck for CacheCheck {
    fn name(&self) -> &'static str {
        "cache"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

pub struct BusCheck(pub offers_kit::bus::SharedBus);

#[async_trait]
impl ReadinessCheck for BusCheck {
    fn name(&self) -> &'static str {
        "bus"
    }
    async fn check(&self) -> Result<(), String> {
        self.0.ping().await.map_err(|e| e.to_string())
    }
}

/// Access-token keys loaded: without them every token is refused.
pub struct KeysCheck(pub offers_kit::token::TokenVerifier);

#[async_trait]
impl ReadinessCheck for KeysCheck {
    fn name(&self) -> &'static str {
        "token_keys"
    }
    async fn check(&self) -> Result<(), String> {
        if self.0.has_keys() { Ok(()) } else { Err("not loaded from the auth service yet".into()) }
    }
}

/// Something the process must finish before it takes traffic (the
/// embedded mode's demo data): unready until opened.
#[derive(Clone, Default)]
pub struct Gate(Arc<AtomicBool>);

impl Gate {
    pub fn open(&self) {
        self.0.store(true, Ordering::Release);
    }
}

#[async_trait]
impl ReadinessCheck for Gate {
    fn name(&self) -> &'static str {
        "startup"
    }
    async fn check(&self) -> Result<(), String> {
        if self.0.load(Ordering::Acquire) { Ok(()) } else { Err("still setting up".into()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// A dependency that answers after `delay`, or never.
    struct Slow(&'static str, Option<Duration>);

    #[async_trait]
    impl ReadinessCheck for Slow {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn check(&self) -> Result<(), String> {
            match self.1 {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
            Ok(())
        }
    }

    async fn readyz(readiness: Readiness) -> (StatusCode, serde_json::Value, Duration) {
        let started = std::time::Instant::now();
        let request = axum::http::Request::get("/readyz").body(axum::body::Body::empty()).expect("request");
        let response = router(readiness).oneshot(request).await.expect("answer");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.expect("body");
        (status, serde_json::from_slice(&body).expect("json"), started.elapsed())
    }

    #[tokio::test]
    async fn checks_run_together_within_one_bound() {
        // One after another these would take 1.5 + 1.5 + forever.
        let slow = Some(Duration::from_millis(1_500));
        let readiness = Readiness::default()
            .require(Slow("database", slow))
            .require(Slow("token_keys", slow))
            .report(Slow("cache", None));
        let (status, body, took) = readyz(readiness).await;
        assert!(took < Duration::from_secs(4), "answered in {took:?}");
        assert_eq!(status, StatusCode::OK, "a hanging cache is only reported: {body}");
        assert_eq!(body["checks"]["cache"], "timed out");
        assert_eq!(body["checks"]["database"], "ok");

        let (status, body, _) = readyz(Readiness::default().require(Slow("database", None))).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    }

    #[tokio::test]
    async fn a_gate_holds_readiness_until_opened() {
        let gate = Gate::default();
        let readiness = Readiness::default().require(gate.clone());
        let (status, body, _) = readyz(readiness.clone()).await;
        assert_eq!(
            (status, body["checks"]["startup"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("still setting up"))
        );
        gate.open();
        assert_eq!(readyz(readiness).await.0, StatusCode::OK);
    }
}
