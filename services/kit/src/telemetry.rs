//! Logs, traces and metrics. Installed once per process; later calls (tests
//! start many suites in one process) reuse what is there.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{Format, Json, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
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
        "json" => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_span_list(true)
            .event_format(JsonWithTrace(
                tracing_subscriber::fmt::format().json().flatten_event(true).with_span_list(true),
            ))
            .boxed(),
        _ => tracing_subscriber::fmt::layer().boxed(),
    };
    // Spans always get trace ids (logs carry them, and they go out in
    // headers); they are exported only when a collector is configured.
    let resource = opentelemetry_sdk::Resource::builder().with_service_name(settings.service_name.clone()).build();
    let mut provider = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .build()
            .map_err(|e| TelemetryError(e.to_string()))?;
        provider = provider.with_batch_exporter(exporter);
    }
    let provider = provider.build();
    let otel = tracing_opentelemetry::layer().with_tracer(provider.tracer("offers"));
    // Already installed (a second suite in a test process) is fine.
    if tracing_subscriber::registry().with(filter).with(fmt).with(otel).try_init().is_ok() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    }
    Ok(TelemetryGuard { provider: Some(provider) })
}

/// The JSON log line of tracing-subscriber, with the ids a log search joins
/// on lifted to the top: `trace_id` and `span_id` of the current span, and
/// the innermost `request_id` of the spans it runs in.
struct JsonWithTrace(Format<Json>);

impl<S, N> FormatEvent<S, N> for JsonWithTrace
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_str(&line) else {
            return writer.write_str(&line);
        };
        if let Some(span) = ctx.lookup_current() {
            let dispatch = tracing::dispatcher::get_default(|d| d.clone());
            if let Some(cx) = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch) {
                let current = cx.span().span_context().clone();
                if current.is_valid() {
                    fields.insert("trace_id".into(), current.trace_id().to_string().into());
                    fields.insert("span_id".into(), current.span_id().to_string().into());
                }
            }
        }
        let request_id = fields.get("spans").and_then(|s| s.as_array()).and_then(|spans| {
            spans
                .iter()
                .rev()
                .find_map(|s| s.get("request_id").filter(|id| id.as_str().is_some_and(|id| !id.is_empty())))
        });
        if let Some(id) = request_id.cloned() {
            fields.insert("request_id".into(), id);
        }
        writeln!(writer, "{}", serde_json::Value::Object(fields))
    }
}

/// Latency buckets, in seconds, for calls that should take milliseconds.
const CALL_BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A histogram whose values are not a call's milliseconds: its name and
/// its buckets (declared by the crate that records it).
pub type Buckets = (&'static str, &'static [f64]);

/// Installs the process's Prometheus recorder, with `buckets` for the
/// histograms named there and call-latency buckets for every other. The
/// first call installs it; later ones (and [`metrics_handle`]) get it.
pub fn install_metrics(buckets: &[Buckets]) -> PrometheusHandle {
    METRICS
        .get_or_init(|| {
            let builder = PrometheusBuilder::new().set_buckets(CALL_BUCKETS).and_then(|b| {
                buckets
                    .iter()
                    .try_fold(b, |b, (name, buckets)| b.set_buckets_for_metric(Matcher::Full((*name).into()), buckets))
            });
            let recorder = builder.unwrap_or_else(|_| PrometheusBuilder::new()).build_recorder();
            let handle = recorder.handle();
            keep_up(handle.clone());
            // Another recorder set first (a test harness) only means our
            // metrics go there instead; rendering still works.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(1);

/// The recorder holds every histogram sample as it came until something
/// folds them into the buckets; rendering `/metrics` does, but a process no
/// one scrapes (`offers dev`, or Prometheus away) would hold them all: tens
/// of bytes a request, without bound. A thread of its own, not a task,
/// because the recorder outlives any one runtime.
fn keep_up(handle: PrometheusHandle) {
    let started = std::thread::Builder::new().name("metrics-upkeep".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    });
    if let Err(e) = started {
        tracing::warn!(error = %e, "no metrics upkeep thread: histogram samples wait for /metrics");
    }
}

/// The process's Prometheus recorder (installed with no special buckets
/// if [`install_metrics`] has not run).
pub fn metrics_handle() -> PrometheusHandle {
    install_metrics(&[])
}
