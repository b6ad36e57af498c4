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

use crate::config::TelemetrySettings;

static METRICS: OnceLock<PrometheusHandle> = OnceLock::new();

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
