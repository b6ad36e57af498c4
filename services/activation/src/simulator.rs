//! A stand-in for the external provisioning system, for the embedded mode,
//! the tests and load tests, keeping the provisioning contract: success by
//! default; offer `SIM-FAIL` is always rejected; `SIM-FLAKY` fails twice
//! transiently per transaction, then succeeds; `SIM-SLOW` provisions on the
//! first request but answers it only after two minutes (longer than any
//! caller waits), so that caller cannot know; `SIM-HELD` keeps every request
//! queued for a while (`simulator_hold_ms`) before it reaches the books, so
//! an inquiry overtakes it; `SIM-UNKNOWN` is never answered with an outcome
//! (every request is 503, every inquiry 500), so its transactions end in
//! the review queue for an operator. Optional latency and a random transient failure
//! rate. Like a real provider it is idempotent — a transaction it
//! provisioned stays provisioned however often it is asked — and answers
//! inquiries, `GET /v1/activations/{key}`: a `not_found` fences the key, so
//! a request with it that arrives afterwards is refused, never provisioned.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::Path;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Seen {
    calls: u32,
    provisioned: bool,
    /// Why it was refused for good, if it was.
    rejected: Option<&'static str>,
    /// Reported not found: no request with the key may provision it now.
    fenced: bool,
    /// A `SIM-UNKNOWN` request: the simulator cannot tell what became of it.
    in_doubt: bool,
}

/// What a fenced key's late request is told.
const FENCED: &str = "asked about before this request arrived: it will not be provisioned";

/// How long `SIM-SLOW`'s first request waits before it answers.
const SLOW: Duration = Duration::from_secs(120);

/// How the simulator behaves besides its demo offers.
#[derive(Debug, Clone, Copy)]
pub struct Behaviour {
    /// Added to every request.
    pub latency: Duration,
    /// The share of requests failing transiently at random.
    pub failure_percent: u8,
    /// How long each `SIM-HELD` request waits in the queue.
    pub hold: Duration,
}

impl From<&crate::settings::ProvisioningSettings> for Behaviour {
    fn from(p: &crate::settings::ProvisioningSettings) -> Self {
        Behaviour { latency: p.simulator_latency, failure_percent: p.simulator_failure_percent, hold: p.simulator_hold }
    }
}

#[derive(Clone)]
struct Simulator {
    behaviour: Behaviour,
    seen: Arc<Mutex<HashMap<String, Seen>>>,
}

#[derive(Deserialize)]
struct Activation {
    transaction_id: String,
    offer_code: String,
}

pub fn router(behaviour: Behaviour) -> Router {
    let simulator = Simulator { behaviour, seen: Arc::default() };
    Router::new()
        .route("/v1/activations", post(activate))
        .route("/v1/activations/{key}", get(inquire))
        .with_state(simulator)
}

/// Serves the simulator on `addr` until `shutdown`; returns the bound address.
pub async fn start(addr: SocketAddr, behaviour: Behaviour, shutdown: CancellationToken) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(behaviour);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "provisioning simulator failed");
        }
    });
    Ok(bound)
}

async fn activate(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Activation>,
) -> (StatusCode, axum::Json<serde_json::Value>) {
    if !sim.behaviour.latency.is_zero() {
        tokio::time::sleep(sim.behaviour.latency).await;
    }
    if body.offer_code == "SIM-HELD" {
        tokio::time::sleep(sim.behaviour.hold).await;
    }
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or(&body.transaction_id).to_string();
    let roll: u8 = rand::random_range(0..100);
    let slow_first = body.offer_code == "SIM-SLOW" && {
        let mut seen = sim.seen.lock().unwrap_or_else(|p| p.into_inner());
        let entry = seen.entry(key.clone()).or_default();
        let first = entry.calls == 0 && !entry.fenced;
        if first {
            // Counted now, so a retry arriving meanwhile is not first too.
            (entry.calls, entry.provisioned) = (1, true);
        }
        first
    };
    if slow_first {
        tokio::time::sleep(SLOW).await;
    }
    let mut seen = sim.seen.lock().unwrap_or_else(|p| p.into_inner());
    let entry = seen.entry(key.clone()).or_default();
    entry.calls += 1;
    let answer = if entry.provisioned {
        None
    } else if entry.fenced {
        Some((StatusCode::GONE, FENCED))
    } else if body.offer_code == "SIM-UNKNOWN" {
        entry.in_doubt = true;
        Some((StatusCode::SERVICE_UNAVAILABLE, "the provisioning system cannot take requests now"))
    } else if body.offer_code == "SIM-FAIL" {
        entry.rejected = Some("the offer cannot be provisioned on this line");
        Some((StatusCode::UNPROCESSABLE_ENTITY, "the offer cannot be provisioned on this line"))
    } else if body.offer_code == "SIM-FLAKY" && entry.calls <= 2 {
        Some((StatusCode::SERVICE_UNAVAILABLE, "temporarily unavailable"))
    } else if roll < sim.behaviour.failure_percent {
        Some((StatusCode::SERVICE_UNAVAILABLE, "random failure (simulated)"))
    } else {
        None
    };
    match answer {
        Some((status, error)) => (status, axum::Json(json!({ "error": error }))),
        None => {
            entry.provisioned = true;
            (StatusCode::OK, axum::Json(json!({ "status": "ACTIVE", "provider_reference": format!("SIM-{key}") })))
        }
    }
}

/// What became of a key: provisioned, rejected (and why), or never seen —
/// and then it never will be.
async fn inquire(State(sim): State<Simulator>, Path(key): Path<String>) -> (StatusCode, axum::Json<serde_json::Value>) {
    let mut seen = sim.seen.lock().unwrap_or_else(|p| p.into_inner());
    let entry = seen.entry(key).or_default();
    match entry {
        Seen { in_doubt: true, .. } => {
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({ "error": "the activation records cannot be read" })))
        }
        Seen { provisioned: true, .. } => (StatusCode::OK, axum::Json(json!({ "status": "provisioned" }))),
        Seen { rejected: Some(reason), .. } => {
            (StatusCode::OK, axum::Json(json!({ "status": "rejected", "error": reason })))
        }
        _ => {
            entry.fenced = true;
            (StatusCode::NOT_FOUND, axum::Json(json!({ "status": "not_found" })))
        }
    }
}
