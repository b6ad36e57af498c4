//! A provisioning system for tests, on a random local port, that answers
//! as each scenario scripts it: the POSTs by their number, the inquiries
//! (`GET /v1/activations/{key}`) by theirs, and anything else it is asked
//! (a followed redirect would show up there).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// One scripted answer.
#[derive(Clone)]
pub enum Answer {
    /// This status with this JSON body.
    Json(u16, Value),
    /// Never answer (the caller times out).
    Hang,
    /// Wait this long, then answer.
    Late(Duration, Box<Answer>),
    /// A redirect to a path of this server that answers 200 to anything.
    Redirect(&'static str),
}

impl Answer {
    pub fn ok() -> Self {
        Answer::Json(200, json!({"status": "ACTIVE"}))
    }

    pub fn status(status: u16) -> Self {
        Answer::Json(status, json!({"error": format!("answered {status}")}))
    }

    pub fn provisioned() -> Self {
        Answer::Json(200, json!({"status": "provisioned"}))
    }

    pub fn not_found() -> Self {
        Answer::Json(404, json!({"status": "not_found"}))
    }
}

type Script = dyn Fn(usize) -> Answer + Send + Sync;

#[derive(Clone)]
struct Stub {
    post: Arc<Script>,
    inquire: Arc<Script>,
    posts: Arc<AtomicUsize>,
    inquiries: Arc<AtomicUsize>,
    elsewhere: Arc<Mutex<Vec<String>>>,
    traceparents: Arc<Mutex<Vec<String>>>,
}

pub struct StubProvider {
    pub url: String,
    posts: Arc<AtomicUsize>,
    inquiries: Arc<AtomicUsize>,
    elsewhere: Arc<Mutex<Vec<String>>>,
    traceparents: Arc<Mutex<Vec<String>>>,
}

impl StubProvider {
    /// Serves until the test ends; `on_post(n)` and `on_inquiry(n)` answer
    /// the n-th (from 1) request of each kind.
    pub async fn start(
        on_post: impl Fn(usize) -> Answer + Send + Sync + 'static,
        on_inquiry: impl Fn(usize) -> Answer + Send + Sync + 'static,
    ) -> Self {
        let stub = Stub {
            post: Arc::new(on_post),
            inquire: Arc::new(on_inquiry),
            posts: Arc::default(),
            inquiries: Arc::default(),
            elsewhere: Arc::default(),
            traceparents: Arc::default(),
        };
        let this = StubProvider {
            url: String::new(),
            posts: stub.posts.clone(),
            inquiries: stub.inquiries.clone(),
            elsewhere: stub.elsewhere.clone(),
            traceparents: stub.traceparents.clone(),
        };
        let app = axum::Router::new()
            .route("/v1/activations", post(activate))
            .route("/v1/activations/{key}", get(inquire))
            .fallback(elsewhere)
            .with_state(stub);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        StubProvider { url: format!("http://{addr}"), ..this }
    }

    pub fn posts(&self) -> usize {
        self.posts.load(Ordering::SeqCst)
    }

    pub fn inquiries(&self) -> usize {
        self.inquiries.load(Ordering::SeqCst)
    }

    /// The `traceparent` header of every POST, in order.
    pub fn traceparents(&self) -> Vec<String> {
        self.traceparents.lock().expect("lock").clone()
    }

    /// Requests to anything but the contract's two paths.
    pub fn elsewhere(&self) -> Vec<String> {
        self.elsewhere.lock().expect("lock").clone()
    }
}

async fn answer(answer: Answer) -> Response {
    match answer {
        Answer::Json(status, body) => (StatusCode::from_u16(status).expect("status"), axum::Json(body)).into_response(),
        Answer::Hang => std::future::pending().await,
        Answer::Late(wait, then) => {
            tokio::time::sleep(wait).await;
            Box::pin(self::answer(*then)).await
        }
        Answer::Redirect(to) => (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, to)]).into_response(),
    }
}

async fn activate(State(stub): State<Stub>, headers: axum::http::HeaderMap) -> Response {
    let traceparent = headers.get("traceparent").and_then(|v| v.to_str().ok()).unwrap_or_default();
    stub.traceparents.lock().expect("lock").push(traceparent.to_string());
    let n = stub.posts.fetch_add(1, Ordering::SeqCst) + 1;
    answer((stub.post)(n)).await
}

async fn inquire(State(stub): State<Stub>, Path(_key): Path<String>) -> Response {
    let n = stub.inquiries.fetch_add(1, Ordering::SeqCst) + 1;
    answer((stub.inquire)(n)).await
}

async fn elsewhere(State(stub): State<Stub>, uri: Uri) -> Response {
    stub.elsewhere.lock().expect("lock").push(uri.to_string());
    axum::Json(json!({"status": "ACTIVE"})).into_response()
}
