//! W3C trace context across process boundaries. A request's trace starts
//! at the edge (or continues the caller's `traceparent`) and is carried in
//! HTTP and gRPC headers, in outbox rows and in job headers, so one
//! activation is one trace from the REST call to the partner callback.
//! Without the telemetry layer installed these are no-ops.

use std::collections::HashMap;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Trace context as text fields (`traceparent`, `tracestate`): what a job
/// or an outbox row carries.
pub type Carrier = HashMap<String, String>;

struct WriteHeaders<'a>(&'a mut HeaderMap);

impl Injector for WriteHeaders<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(key.as_bytes()), HeaderValue::from_str(&value)) {
            self.0.insert(name, value);
        }
    }
}

struct ReadHeaders<'a>(&'a HeaderMap);

impl Extractor for ReadHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

fn inject(span: &Span, injector: &mut dyn Injector) {
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, injector));
}

fn adopt(span: &Span, extractor: &dyn Extractor) {
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(extractor));
    if cx.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started: then
        // there is no trace to continue.
        let _ = span.set_parent(cx);
    }
}

/// Writes the current span's trace context into outgoing headers.
pub fn inject_headers(headers: &mut HeaderMap) {
    inject(&Span::current(), &mut WriteHeaders(headers));
}

/// The current span's trace context, for a job or an outbox row.
pub fn current_carrier() -> Carrier {
    let mut carrier = Carrier::new();
    inject(&Span::current(), &mut carrier);
    carrier
}

/// Makes a new `span` continue the trace named in incoming headers.
pub fn continue_from_headers(span: &Span, headers: &HeaderMap) {
    adopt(span, &ReadHeaders(headers));
}

/// Makes a new `span` continue the trace a job or outbox row carries.
pub fn continue_from(span: &Span, carrier: &Carrier) {
    adopt(span, carrier);
}

/// The trace id of `span` (32 hex digits), when it belongs to a trace.
pub fn trace_id(span: &Span) -> Option<String> {
    let cx = span.context();
    let span_context = cx.span().span_context().clone();
    span_context.is_valid().then(|| span_context.trace_id().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_trace_nothing_is_written() {
        let mut headers = HeaderMap::new();
        inject_headers(&mut headers);
        assert!(headers.is_empty());
        assert!(current_carrier().is_empty());
        assert_eq!(trace_id(&Span::current()), None);
    }
}
