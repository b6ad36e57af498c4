//! What every gRPC call carries and records, on both sides: the trace
//! context and the request id travel with it; its duration is recorded by
//! service, method and status code; and no call waits without bound.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use prost::Message;
use tokio::sync::Notify;
use tonic::{Code, Status};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

use crate::error::{Error, ErrorCode};
use crate::trace;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

const REQUEST_ID: &str = "x-request-id";

tokio::task_local! {
    /// The request id of the call a server is answering, so the calls it
    /// makes in turn carry it on.
    static CURRENT_REQUEST: String;
}

/// `/offers.account.v1.LedgerService/Settle` → (`offers.account.v1.LedgerService`, `Settle`).
fn split(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

/// A client's labels: the path is one of our own generated calls.
fn labels(path: &str) -> (String, String) {
    let (service, method) = split(path);
    (service.to_string(), method.to_string())
}

/// What a server labels a call it did not serve with.
pub const UNKNOWN: &str = "unknown";

/// The gRPC methods a server can answer, from the descriptor sets it
/// serves: the only values its `service` and `method` labels take.
/// Anything else a caller sends is `unknown` (a made-up path per request
/// once grew `/metrics`, and every span name, without bound).
#[derive(Clone, Default)]
pub struct KnownMethods(Arc<HashMap<String, HashSet<String>>>);

impl KnownMethods {
    /// Every method of every service in these encoded `FileDescriptorSet`s.
    pub fn from_descriptor_sets(sets: &[&[u8]]) -> Result<Self, prost::DecodeError> {
        let mut known: HashMap<String, HashSet<String>> = HashMap::new();
        for set in sets {
            for file in prost_types::FileDescriptorSet::decode(*set)?.file {
                for service in &file.service {
                    let name = format!("{}.{}", file.package(), service.name());
                    known.entry(name).or_default().extend(service.method.iter().map(|m| m.name().to_string()));
                }
            }
        }
        Ok(Self(Arc::new(known)))
    }

    /// The labels of a call to `path`: the service and method when served,
    /// `unknown` for whichever part is not.
    pub fn labels(&self, path: &str) -> (String, String) {
        let (service, method) = split(path);
        match self.0.get(service) {
            Some(methods) if methods.contains(method) => (service.to_string(), method.to_string()),
            Some(_) => (service.to_string(), UNKNOWN.to_string()),
            None => (UNKNOWN.to_string(), UNKNOWN.to_string()),
        }
    }
}

/// The canonical name of a gRPC status code, as dashboards know them.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// A unary answer's status is in its headers only when it failed
/// (trailers-only); a success carries it in the trailers.
fn status_of(headers: &http::HeaderMap) -> &'static str {
    match headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok()) {
        Some(code) => code_name(Code::from_i32(code)),
        None => "OK",
    }
}

/// A client channel: the trace context and request id go out with every
/// call, each call is bounded by the connector's deadline (also while it
/// waits for a ready replica) and timed as
/// `offers_grpc_client_duration_seconds{service,method,code}`.
///
/// A call that could not reach a server at all (its replica refused the
/// connection: it stopped or crashed, and the balancer has not yet heard)
/// is sent again, up to [`ATTEMPTS`] times within the deadline, after the
/// resolver is asked to check its addresses now. Nothing was sent, so
/// this is safe for every call; a call that broke after it was sent is
/// not repeated.
#[derive(Clone)]
pub struct Channel {
    inner: tonic::transport::Channel,
    timeout: Duration,
    recheck: Option<Arc<Notify>>,
}

/// How often a call that found its replica gone is tried.
const ATTEMPTS: u32 = 3;

impl Channel {
    pub(super) fn new(inner: tonic::transport::Channel, timeout: Duration, recheck: Option<Arc<Notify>>) -> Self {
        Self { inner, timeout, recheck }
    }
}

/// Whether a transport error means the request never reached a server.
fn never_sent(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        cause = e.source();
    }
    false
}

impl Service<http::Request<tonic::body::Body>> for Channel {
    type Response = http::Response<tonic::body::Body>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: http::Request<tonic::body::Body>) -> Self::Future {
        trace::inject_headers(request.headers_mut());
        if !request.headers().contains_key(REQUEST_ID)
            && let Ok(Ok(id)) = CURRENT_REQUEST.try_with(|id| http::HeaderValue::from_str(id))
        {
            request.headers_mut().insert(REQUEST_ID, id);
        }
        let (service, method) = labels(request.uri().path());
        // The service that was polled ready takes the first attempt.
        let fresh = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, fresh);
        let (timeout, recheck) = (self.timeout, self.recheck.clone());
        Box::pin(async move {
            let started = Instant::now();
            let result = match tokio::time::timeout(timeout, send(ready, request, recheck)).await {
                Ok(Ok(response)) => Ok(response.map(broken_is_unavailable)),
                // A broken connection (a replica going away mid-call) is
                // "unavailable", which callers may retry, not an unknown error.
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "upstream call failed in transport");
                    Err(Box::new(Status::unavailable("the upstream could not be reached")) as BoxError)
                }
                Err(_) => Err(Box::new(Status::deadline_exceeded("the upstream did not answer in time")) as BoxError),
            };
            let code = match &result {
                Ok(response) => status_of(response.headers()),
                Err(e) => e.downcast_ref::<Status>().map_or("UNAVAILABLE", |s| code_name(s.code())),
            };
            metrics::histogram!("offers_grpc_client_duration_seconds", "service" => service, "method" => method, "code" => code)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}

/// An answer whose body breaks off (the replica went away after its
/// headers) is "unavailable", which callers may retry, like a connection
/// that broke before; tonic would call it "unknown", and the caller an
/// internal error. (Found by the soak: a renewal answered 500 while an
/// account process was killed.)
fn broken_is_unavailable(body: tonic::body::Body) -> tonic::body::Body {
    tonic::body::Body::new(body.map_err(|broken| {
        tracing::warn!(error = %broken, "upstream answer broke off");
        Status::unavailable("the upstream connection broke")
    }))
}

/// Sends `request` on `channel` (ready), again while it never reached a server.
async fn send(
    mut channel: tonic::transport::Channel,
    request: http::Request<tonic::body::Body>,
    recheck: Option<Arc<Notify>>,
) -> Result<http::Response<tonic::body::Body>, BoxError> {
    let (head, body) = request.into_parts();
    // Unary requests are one small message; keeping it lets it go again.
    let body = body.collect().await?.to_bytes();
    let mut attempt = 1;
    loop {
        let request = http::Request::from_parts(head.clone(), tonic::body::Body::new(Full::new(body.clone())));
        match channel.call(request).await {
            Err(e) if attempt < ATTEMPTS && never_sent(&e) => {
                if let Some(recheck) = &recheck {
                    recheck.notify_one();
                }
                tokio::time::sleep(Duration::from_millis(20 * u64::from(attempt))).await;
                attempt += 1;
                channel.ready().await?;
            }
            other => return other.map_err(Into::into),
        }
    }
}

/// The server side: each call runs in a span that continues the caller's
/// trace and names its request id, is answered `service_unavailable` if it
/// has not finished within `limit` (a stalled database must not hold
/// callers forever), and is timed as
/// `offers_grpc_server_duration_seconds{service,method,code}`, named by
/// `known` (before any credential is checked, so never by the caller).
#[derive(Clone)]
pub struct ServerLayer {
    limit: Duration,
    known: KnownMethods,
}

impl ServerLayer {
    pub fn new(limit: Duration, known: KnownMethods) -> Self {
        Self { limit, known }
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = Observed<S>;

    fn layer(&self, inner: S) -> Observed<S> {
        Observed { inner, limit: self.limit, known: self.known.clone() }
    }
}

#[derive(Clone)]
pub struct Observed<S> {
    inner: S,
    limit: Duration,
    known: KnownMethods,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Observed<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ResBody: http_body::Body<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = self.known.labels(request.uri().path());
        let request_id =
            request.headers().get(REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let span = tracing::info_span!("grpc", otel.name = %format!("{service}/{method}"), otel.kind = "server",
            request_id = %request_id);
        trace::continue_from_headers(&span, request.headers());
        let call = span.in_scope(|| self.inner.call(request));
        let limit = self.limit;
        let answer = async move {
            let started = Instant::now();
            let response = match tokio::time::timeout(limit, call).await {
                Ok(answer) => answer?.map(tonic::body::Body::new),
                Err(_) => {
                    tracing::warn!(
                        limit_ms = limit.as_millis() as u64,
                        "call not finished in time; answered unavailable"
                    );
                    let error = Error::new(ErrorCode::Unavailable, "the service could not finish in time; try again");
                    Status::from(error).into_http()
                }
            };
            let code = status_of(response.headers());
            let elapsed = started.elapsed();
            // One line per call (health checks only at debug): with the
            // trace id the formatter adds, how a request crossed processes.
            if service == "grpc.health.v1.Health" {
                tracing::debug!(code, elapsed_ms = elapsed.as_millis() as u64, "call answered");
            } else {
                tracing::info!(code, elapsed_ms = elapsed.as_millis() as u64, "call answered");
            }
            metrics::histogram!("offers_grpc_server_duration_seconds", "service" => service, "method" => method, "code" => code)
                .record(elapsed.as_secs_f64());
            Ok(response)
        };
        Box::pin(CURRENT_REQUEST.scope(request_id, answer.instrument(span)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            labels("/offers.account.v1.LedgerService/Settle"),
            ("offers.account.v1.LedgerService".into(), "Settle".into())
        );
        assert_eq!(labels("/odd"), ("odd".into(), String::new()));
    }

    #[test]
    fn a_server_labels_only_what_it_serves() {
        let known = KnownMethods::from_descriptor_sets(&[tonic_health::pb::FILE_DESCRIPTOR_SET]).expect("descriptors");
        let health = "grpc.health.v1.Health";
        assert_eq!(known.labels("/grpc.health.v1.Health/Check"), (health.into(), "Check".into()));
        assert_eq!(known.labels("/grpc.health.v1.Health/Made-Up"), (health.into(), UNKNOWN.into()));
        for made_up in ["/x.Y/Z", "/odd", "", "/", &format!("/{}", "a".repeat(8000))] {
            assert_eq!(known.labels(made_up), (UNKNOWN.into(), UNKNOWN.into()), "{made_up}");
        }
    }

    /// A body that breaks off the way hyper's does when the connection goes.
    struct BreaksOff;

    impl http_body::Body for BreaksOff {
        type Data = Bytes;
        type Error = Status;

        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Status>>> {
            Poll::Ready(Some(Err(Status::unknown("h2 protocol error: error reading a body from connection"))))
        }
    }

    #[tokio::test]
    async fn an_answer_that_breaks_off_is_unavailable() {
        let mut body = broken_is_unavailable(tonic::body::Body::new(BreaksOff));
        let broken = body.frame().await.expect("a frame").expect_err("it breaks");
        assert_eq!(broken.code(), Code::Unavailable);
    }

    #[test]
    fn a_status_in_the_headers_is_a_failure() {
        let mut headers = http::HeaderMap::new();
        assert_eq!(status_of(&headers), "OK");
        headers.insert("grpc-status", http::HeaderValue::from_static("14"));
        assert_eq!(status_of(&headers), "UNAVAILABLE");
    }
}
