//! The load generator: a fixed number of connections, each with its own
//! caller, driven closed-loop (as fast as answers come: the maximum) or
//! open-loop at a constant rate (each request has its appointed time, and
//! its latency is counted from then, so a stall shows as the queue it
//! builds instead of as fewer requests sent).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One request's outcome: `Err` names what went wrong (a status and the
/// start of the body, or the transport's error).
pub type Call<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// Sends one request over its own connection and checks the answer.
pub trait Caller: Send + 'static {
    fn call(&mut self) -> Call<'_>;
}

type Connecting = Pin<Box<dyn Future<Output = anyhow::Result<Box<dyn Caller>>> + Send>>;

/// Makes one caller per connection.
#[derive(Clone)]
pub struct Connect(Arc<dyn Fn() -> Connecting + Send + Sync>);

impl Connect {
    pub fn new<F, C>(make: F) -> Self
    where
        F: Fn() -> C + Send + Sync + 'static,
        C: Future<Output = anyhow::Result<Box<dyn Caller>>> + Send + 'static,
    {
        Self(Arc::new(move || Box::pin(make())))
    }

    /// One caller on its own connection.
    pub async fn caller(&self) -> anyhow::Result<Box<dyn Caller>> {
        (self.0)().await
    }
}

/// What a run measured after its warm-up.
#[derive(Debug, Default)]
pub struct Measured {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub seconds: f64,
    /// Of the successful requests, sorted.
    pub latencies: Vec<Duration>,
}

impl Measured {
    pub fn per_second(&self) -> f64 {
        if self.seconds > 0.0 { self.ok as f64 / self.seconds } else { 0.0 }
    }

    pub fn percentile(&self, p: f64) -> Duration {
        percentile(&self.latencies, p)
    }

    fn merge(parts: Vec<Part>, seconds: f64) -> Self {
        let mut all = Measured { seconds, ..Default::default() };
        for part in parts {
            all.ok += part.latencies.len() as u64;
            all.errors += part.errors;
            all.first_error = all.first_error.or(part.first_error);
            all.latencies.extend(part.latencies);
        }
        all.latencies.sort_unstable();
        all
    }
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Part {
    latencies: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

impl Part {
    fn record(&mut self, outcome: Result<(), String>, took: Duration) {
        match outcome {
            Ok(()) => self.latencies.push(took),
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert(e);
            }
        }
    }
}

/// How a run is paced.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Each connection sends its next request when the last is answered.
    Closed,
    /// Requests at this many per second, whatever the answers do.
    Rate(f64),
}

/// Runs `connections` callers for `warmup` and then `measure`; only what
/// was sent after the warm-up counts.
pub async fn run(
    connect: &Connect,
    connections: usize,
    pace: Pace,
    warmup: Duration,
    measure: Duration,
) -> anyhow::Result<Measured> {
    let mut callers = Vec::with_capacity(connections);
    for _ in 0..connections {
        callers.push((connect.0)().await?);
    }
    let start = Instant::now() + Duration::from_millis(50);
    let (counted, end) = (start + warmup, start + warmup + measure);
    let tickets = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(connections);
    for mut caller in callers {
        let tickets = tickets.clone();
        tasks.push(tokio::spawn(async move {
            let mut part = Part::default();
            tokio::time::sleep_until(start.into()).await;
            loop {
                let appointed = match pace {
                    Pace::Closed => Instant::now(),
                    Pace::Rate(rate) => {
                        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
                        let at = start + Duration::from_secs_f64(ticket as f64 / rate);
                        tokio::time::sleep_until(at.into()).await;
                        at
                    }
                };
                if appointed >= end {
                    break;
                }
                let outcome = caller.call().await;
                if appointed >= counted {
                    part.record(outcome, appointed.elapsed());
                }
            }
            part
        }));
    }
    let mut parts = Vec::with_capacity(tasks.len());
    for task in tasks {
        parts.push(task.await?);
    }
    Ok(Measured::merge(parts, measure.as_secs_f64()))
}

/// An HTTP/1.1 connection with `TCP_NODELAY`, as a client in production
/// would hold one.
pub async fn http_connection(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(sender)
}

/// Makes the next request (each call its own: keys and users vary).
pub type MakeRequest = dyn Fn() -> http::Request<Full<Bytes>> + Send + Sync;
/// Looks at a successful answer's body and when its request was sent (to
/// keep what later phases need).
pub type OnAnswer = dyn Fn(&[u8], SystemTime) + Send + Sync;

/// Sends HTTP requests and expects one status.
pub struct Http {
    sender: SendRequest<Full<Bytes>>,
    make: Arc<MakeRequest>,
    expect: http::StatusCode,
    on_answer: Option<Arc<OnAnswer>>,
}

impl Caller for Http {
    fn call(&mut self) -> Call<'_> {
        Box::pin(async move {
            self.sender.ready().await.map_err(|e| e.to_string())?;
            let sent = SystemTime::now();
            let answer = self.sender.send_request((self.make)()).await.map_err(|e| e.to_string())?;
            let status = answer.status();
            let body = answer.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
            if status != self.expect {
                let start = String::from_utf8_lossy(&body[..body.len().min(160)]).into_owned();
                return Err(format!("{status}: {start}"));
            }
            if let Some(on_answer) = &self.on_answer {
                on_answer(&body, sent);
            }
            Ok(())
        })
    }
}

/// Callers of `make` against `addr`, one connection each.
pub fn http(
    addr: SocketAddr,
    expect: http::StatusCode,
    make: Arc<MakeRequest>,
    on_answer: Option<Arc<OnAnswer>>,
) -> Connect {
    Connect::new(move || {
        let (make, on_answer) = (make.clone(), on_answer.clone());
        async move {
            let sender = http_connection(addr).await?;
            Ok(Box::new(Http { sender, make, expect, on_answer }) as Box<dyn Caller>)
        }
    })
}

/// A request to `addr` with `path`, and a body if given.
pub fn request(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Bytes>,
) -> http::Request<Full<Bytes>> {
    let mut builder = http::Request::builder().method(method).uri(path).header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    if body.is_some() {
        builder = builder.header(http::header::CONTENT_TYPE, "application/json");
    }
    builder.body(Full::new(body.unwrap_or_default())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Sleepy(Duration);

    impl Caller for Sleepy {
        fn call(&mut self) -> Call<'_> {
            Box::pin(async move {
                tokio::time::sleep(self.0).await;
                Ok(())
            })
        }
    }

    #[tokio::test]
    async fn an_open_loop_counts_the_queue_a_slow_answer_builds() {
        // One connection, 100 requests a second, answers taking 20 ms: the
        // connection keeps up with only half, so later requests wait longer
        // and longer — which a closed loop would never show.
        let slow = Connect::new(|| async { Ok(Box::new(Sleepy(Duration::from_millis(20))) as Box<dyn Caller>) });
        let measured = run(&slow, 1, Pace::Rate(100.0), Duration::ZERO, Duration::from_millis(500)).await.expect("run");
        assert!(measured.percentile(1.0) > Duration::from_millis(200), "{:?}", measured.percentile(1.0));
        let closed = run(&slow, 1, Pace::Closed, Duration::ZERO, Duration::from_millis(500)).await.expect("run");
        assert!(closed.percentile(1.0) < Duration::from_millis(60), "{:?}", closed.percentile(1.0));
    }

    #[test]
    fn percentiles_come_from_the_sorted_samples() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&samples, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 1.0), Duration::from_millis(100));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
