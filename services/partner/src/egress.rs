//! Where callbacks may go: only to addresses on the public internet. The
//! URL is checked first ([`crate::destination`]); then, because a partner
//! names the host, the name could be pointed inside our network after it
//! was checked (DNS rebinding): the callback client resolves through
//! [`PinnedResolver`], which checks the very addresses the connection will
//! use — there is no second lookup to steer. Last, every connection the
//! client makes is held to the address it actually reached
//! ([`PeerCheck`]), names and literals alike, so a spelling no check
//! foresaw still gets no request written to an inside address.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::destination::is_public;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The client every callback goes out on: no redirects (a callback goes
/// where the partner registered it, never where an answer points), no
/// proxy from the environment (a proxy would resolve the name itself, past
/// the check), and connections only to addresses `lookup` gave and the
/// check passed.
pub fn callback_client(
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
    timeout: std::time::Duration,
) -> reqwest::Result<reqwest::Client> {
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PinnedResolver::new(lookup, allow_private)));
    if allow_private { builder.build() } else { builder.connector_layer(PeerCheck).build() }
}

/// Refuses a connection whose peer is off the public internet before the
/// client writes anything on it: the one check that sees the address
/// really reached, whatever the URL said and however it was resolved.
#[derive(Clone)]
struct PeerCheck;

impl<S> tower::Layer<S> for PeerCheck {
    type Service = CheckedPeer<S>;

    fn layer(&self, inner: S) -> CheckedPeer<S> {
        CheckedPeer(inner)
    }
}

#[derive(Clone)]
struct CheckedPeer<S>(S);

impl<S, R> tower::Service<R> for CheckedPeer<S>
where
    S: tower::Service<R, Error = BoxError>,
    S::Response: Connection + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.0.call(request);
        Box::pin(async move {
            let connection = connecting.await?;
            let mut extras = http::Extensions::new();
            connection.connected().get_extras(&mut extras);
            match extras.get::<HttpInfo>().map(|info| info.remote_addr().ip()) {
                Some(peer) if is_public(peer) => Ok(connection),
                peer => {
                    let peer = peer.map_or_else(|| "an unknown address".to_string(), |ip| ip.to_string());
                    Err(Box::new(NotPublic(peer)) as BoxError)
                }
            }
        })
    }
}

/// How a name becomes addresses (the system's resolver, or a test's).
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>>;
}

pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.map(|a| a.ip()).collect()) })
    }
}

/// A name that resolved to, or a connection that reached, an address off
/// the public internet.
#[derive(Debug, thiserror::Error)]
#[error("{0} is not a public address only")]
pub struct NotPublic(String);

/// Resolves for the callback client and hands it only addresses that were
/// checked: a name with any non-public address is refused outright.
pub struct PinnedResolver {
    lookup: Arc<dyn Lookup>,
    allow_private: bool,
}

impl PinnedResolver {
    pub fn new(lookup: Arc<dyn Lookup>, allow_private: bool) -> Self {
        Self { lookup, allow_private }
    }
}

impl Resolve for PinnedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let (lookup, allow_private) = (self.lookup.clone(), self.allow_private);
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addresses = lookup.lookup(host.clone()).await?;
            if addresses.is_empty() || (!allow_private && !addresses.iter().copied().all(is_public)) {
                return Err(Box::new(NotPublic(host)) as BoxError);
            }
            let pinned: Addrs = Box::new(addresses.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(pinned)
        })
    }
}

/// Whether an error of the callback client comes from a refused address.
pub fn refused(error: &reqwest::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<NotPublic>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// A name that answers a public address first, then a private one.
    struct Rebinding {
        calls: AtomicUsize,
        private: IpAddr,
    }

    impl Lookup for Rebinding {
        fn lookup(&self, _: String) -> Pin<Box<dyn Future<Output = std::io::Result<Vec<IpAddr>>> + Send>> {
            let first = self.calls.fetch_add(1, Ordering::SeqCst) == 0;
            let address = if first { "8.8.8.8".parse().expect("ip") } else { self.private };
            Box::pin(async move { Ok(vec![address]) })
        }
    }

    /// A loopback server that counts the requests it gets, and a callback
    /// client whose name lookups answer first public, then loopback.
    async fn counting_listener_and_client() -> (Arc<Mutex<usize>>, u16, Arc<Rebinding>, reqwest::Client) {
        let reached: Arc<Mutex<usize>> = Arc::default();
        let seen = reached.clone();
        let app = axum::Router::new().fallback(move || {
            let seen = seen.clone();
            async move { *seen.lock().expect("lock") += 1 }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let lookup = Arc::new(Rebinding { calls: AtomicUsize::new(0), private: "127.0.0.1".parse().expect("ip") });
        let client = callback_client(lookup.clone(), false, Duration::from_millis(500)).expect("client");
        (reached, port, lookup, client)
    }

    /// However the name's answers change between lookups, the callback
    /// never reaches the private address: each connection uses exactly the
    /// addresses that were checked.
    #[tokio::test]
    async fn a_rebinding_name_never_reaches_inside() {
        let (reached, port, lookup, client) = counting_listener_and_client().await;
        let url = format!("http://partner-hooks.test:{port}/hook");
        for _ in 0..3 {
            let outcome = client.post(&url).body("{}").send().await;
            if let Err(e) = &outcome
                && lookup.calls.load(Ordering::SeqCst) > 1
            {
                assert!(refused(e), "{e:?}");
            }
            assert!(outcome.is_err(), "nothing answers at the public address here");
        }
        assert!(lookup.calls.load(Ordering::SeqCst) >= 2, "the name was looked up again");
        assert_eq!(*reached.lock().expect("lock"), 0, "the private address was reached");
    }

    /// Even a URL that skipped every check (an address literal, which no
    /// resolver sees) has no request written to an inside address: the
    /// connection is refused once its peer is known.
    #[tokio::test]
    async fn a_literal_inside_address_gets_no_request() {
        let (reached, port, lookup, client) = counting_listener_and_client().await;
        for url in [format!("http://127.0.0.1:{port}/hook"), format!("http://2130706433:{port}/hook")] {
            let refusal = client.post(&url).body("{}").send().await.expect_err("refused");
            assert!(refused(&refusal), "{refusal:?}");
        }
        assert_eq!(lookup.calls.load(Ordering::SeqCst), 0, "literals are never looked up");
        assert_eq!(*reached.lock().expect("lock"), 0, "a request reached the inside address");
        let open = callback_client(lookup, true, Duration::from_millis(500)).expect("client");
        open.post(format!("http://127.0.0.1:{port}/hook")).body("{}").send().await.expect("allowed when private is");
        assert_eq!(*reached.lock().expect("lock"), 1);
    }
}
