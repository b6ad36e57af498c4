//! The operator console: server-rendered pages at `/console/` for the
//! people who run Offers day to day. It holds no state of its own beyond
//! sessions (in the cache) and calls the suite only through the internal
//! gRPC services, as `offers admin` does; every act it makes is stamped
//! with the signed-in operator and their note, so it lands in the audit
//! trail of the service that did it.

mod audit;
mod chart;
mod customers;
mod jobs;
mod offers;
mod overview;
mod page;
mod partners;
mod reviews;
mod session;
mod signin;
mod transactions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use offers_kit::cache::SharedCache;
use offers_kit::config::{Problems, Validate};
use serde::{Deserialize, Serialize};

use crate::admin::AdminClient;
use crate::clients::InternalClients;

/// Where the console is served.
pub const PATH: &str = "/console";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleSettings {
    /// A session unused this long is gone; each page seen renews it.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Marks the session cookie `Secure` (browsers then send it over HTTPS
    /// only). On unless the console is reached over plain HTTP, as in the
    /// embedded mode on loopback.
    pub secure_cookie: bool,
}

impl Default for ConsoleSettings {
    fn default() -> Self {
        Self { idle_timeout: Duration::from_mins(15), secure_cookie: true }
    }
}

impl Validate for ConsoleSettings {
    fn validate(&self, p: &mut Problems) {
        p.within("idle_timeout", self.idle_timeout, Duration::from_secs(1)..=Duration::from_hours(12));
    }
}

/// What every console handler has.
pub struct Console {
    pub clients: InternalClients,
    pub cache: SharedCache,
    pub settings: ConsoleSettings,
    /// The deployment's currency, which new offers are priced in.
    pub currency: String,
    /// How many proxies in front of the console append to
    /// `X-Forwarded-For` (the sign-in's rate limits count by client).
    pub trusted_proxy_hops: u8,
}

type State = Arc<Console>;

impl Console {
    /// Administrative calls as `actor` (no act for reads).
    fn admin(&self) -> AdminClient {
        AdminClient::over(self.clients.clone())
    }
}

/// The console's routes under [`PATH`], with its security headers.
pub fn router(console: Console) -> Router {
    let at = |path: &str| format!("{PATH}{path}");
    Router::new()
        .route(PATH, get(|| async { Redirect::permanent("/console/") }))
        .route(&at("/"), get(overview::show))
        .route(&at("/sign-in"), get(signin::form).post(signin::submit))
        .route(&at("/sign-out"), post(signin::sign_out))
        .route(&at("/reviews"), get(reviews::list))
        .route(&at("/reviews/{id}/resolve"), post(reviews::resolve))
        .route(&at("/transactions/{id}"), get(transactions::show))
        .route(&at("/customers"), get(customers::find))
        .route(&at("/customers/{id}"), get(customers::show))
        .route(&at("/customers/{id}/top-up"), post(customers::top_up))
        .route(&at("/partners"), get(partners::list))
        .route(&at("/partners/{name}"), get(partners::show))
        .route(&at("/partners/{name}/keys"), post(partners::create_key))
        .route(&at("/partners/{name}/keys/{key}/revoke"), post(partners::revoke_key))
        .route(&at("/partners/{name}/status"), post(partners::set_status))
        .route(&at("/partners/{name}/callbacks/{event}/redeliver"), post(partners::redeliver))
        .route(&at("/partners/{name}/credit-limit"), post(partners::set_credit_limit))
        .route(&at("/offers"), get(offers::list).post(offers::create))
        .route(&at("/offers/new"), get(offers::blank))
        .route(&at("/offers/{id}"), get(offers::edit).post(offers::update))
        .route(&at("/jobs"), get(jobs::list))
        .route(&at("/jobs/{topic}/replay"), post(jobs::replay))
        .route(&at("/audit"), get(audit::list))
        .route(&at("/console.css"), get(stylesheet))
        .route(&at("/{*rest}"), get(page::not_found).post(page::not_found))
        .layer(middleware::from_fn(same_origin_posts))
        .layer(middleware::from_fn(security_headers))
        .with_state(Arc::new(console))
}

async fn stylesheet() -> Response {
    let css = include_str!("console.css");
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "max-age=300")], css).into_response()
}

/// No script runs (there is none), nothing is framed, nothing is sniffed,
/// and no page is kept by a cache or sent as a referrer elsewhere.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CSP),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "same-origin"),
        (header::HeaderName::from_static("cross-origin-opener-policy"), "same-origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.entry(header::CACHE_CONTROL).or_insert(HeaderValue::from_static("no-store"));
    response
}

/// A form posted from another site is refused before any handler runs,
/// whatever it carries: browsers say where a request comes from
/// (`Sec-Fetch-Site`, `Origin`). The CSRF token in every form is the
/// second check, for browsers that say neither.
async fn same_origin_posts(request: Request, next: Next) -> Response {
    if request.method() != Method::POST || is_same_origin(&request) {
        return next.run(request).await;
    }
    page::refusal(StatusCode::FORBIDDEN, "A form from another site is refused.").into_response()
}

fn is_same_origin(request: &Request) -> bool {
    let headers = request.headers();
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = text("sec-fetch-site")
        && !matches!(site, "same-origin" | "none")
    {
        return false;
    }
    match (text("origin"), text("host")) {
        (None, _) => true,
        (Some(origin), Some(host)) => origin.split_once("://").is_some_and(|(_, authority)| authority == host),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::extract::Request;
    use proptest::prelude::*;

    use super::is_same_origin;

    fn post(headers: &[(&'static str, &str)]) -> Request {
        let mut request = Request::post("/console/sign-out").body(Body::empty()).expect("a request");
        for (name, value) in headers {
            request.headers_mut().insert(*name, value.parse().expect("a header value"));
        }
        request
    }

    #[test]
    fn a_post_is_same_origin_only_when_the_browser_says_so() {
        let host = ("host", "console.example:8443");
        assert!(is_same_origin(&post(&[host])), "no Origin: an older browser, the token decides");
        assert!(is_same_origin(&post(&[host, ("origin", "https://console.example:8443")])));
        assert!(is_same_origin(&post(&[host, ("sec-fetch-site", "same-origin")])));
        for refused in [
            vec![host, ("origin", "https://evil.example")],
            vec![host, ("origin", "https://console.example:8443.evil.example")],
            vec![host, ("origin", "https://console.example")],
            vec![host, ("origin", "null")],
            vec![("origin", "https://console.example:8443")],
            vec![host, ("sec-fetch-site", "same-site")],
            vec![host, ("sec-fetch-site", "cross-site"), ("origin", "https://console.example:8443")],
        ] {
            assert!(!is_same_origin(&post(&refused)), "{refused:?}");
        }
    }

    proptest! {
        /// Any Origin a page can send is same-origin only if its authority
        /// is the Host the browser reached.
        #[test]
        fn only_the_hosts_own_origin_passes(origin in "[ -~]{0,80}", host in "[a-z0-9.:-]{1,30}") {
            let mut request = post(&[("host", host.as_str())]);
            if let Ok(value) = origin.parse() {
                request.headers_mut().insert("origin", value);
            }
            let passes = is_same_origin(&request);
            prop_assert_eq!(passes, origin.split_once("://").is_some_and(|(_, authority)| authority == host));
        }
    }
}
