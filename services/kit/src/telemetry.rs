//! Logs, traces and metrics. Installed once per process; later calls (tests
//! start many suites in one process) reuse what is there.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use serde::{Deserialize, Serialize};

use crate::config::{Problems, Validate, is_url, redact_optional_url};

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// `text` or `json`.
    pub log_format: String,
    /// `tracing` filter directives, e.g. `info,offers_auth=debug`.
    pub log_filter: String,
    /// OTLP/gRPC collector; traces are exported only when set.
    #[serde(serialize_with = "redact_optional_url")]
    pub otlp_endpoint: Option<String>,
    pub service_name: String,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            log_format: "text".into(),
            log_filter: "info".into(),
            otlp_endpoint: None,
            service_name: "offers".into(),
        }
    }
}

impl Validate for TelemetrySettings {
    fn validate(&self, p: &mut Problems) {
        let format = &self.log_format;
        p.check(
            matches!(format.as_str(), "text" | "json"),
            "log_format",
            format!("expected text or json, got {format:?}"),
        );
        if let Err(e) = EnvFilter::try_new(&self.log_filter) {
            p.check(false, "log_filter", e);
        }
        if let Some(endpoint) = &self.otlp_endpoint {
            p.check(is_url(endpoint), "otlp_endpoint", "expected an http(s):// URL");
        }
    }
}

/// Flushes buffered spans when dropped at the end of `main`.
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("could not flush traces: {e}");
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("telemetry set-up failed: {0}")]
pub struct TelemetryError(String);

pub fn init(settings: &TelemetrySettings) -> Result<TelemetryGuard, TelemetryError> {
    let filter = EnvFilter::try_new(&settings.log_filter).map_err(|e| TelemetryError(e.to_string()))?;
    let fmt = match settings.log_format.as_str() {
        "json" => tracing_subscriber::fmt::layer().json().with_current_span(true).boxed(),
        _ => tracing_subscriber::fmt::layer().boxed(),
    };
    let provider = match &settings.otlp_endpoint {
        Some(endpoint) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint)
                .build()
                .map_err(|e| TelemetryError(e.to_string()))?;
            let resource =
                opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
            Some(SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource).build())
        }
        None => None,
    };
    let otel = provider.as_ref().map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("offers")));
    // Already installed (a second suite in a test process) is fine.
    let _ = tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init();
    metrics_handle();
    Ok(TelemetryGuard { provider })
}

/// The process's Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Another recorder set first (a test harness) only means our
            // metrics go there instead; rendering still works.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}
