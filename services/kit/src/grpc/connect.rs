//! Client channels to other services, spread over every replica.
//!
//! An upstream is one URL or several separated by commas. A URL whose host
//! is a name is resolved to all its addresses (a Kubernetes headless
//! Service answers with one per ready pod) and resolved again every few
//! seconds; an address that refuses connections is left out until it
//! accepts them again (a replica that stopped, before DNS says so);
//! requests go to one of the remaining addresses by power of two choices.
//! A single URL with an IP address needs none of that and gets a plain
//! channel.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use tokio::sync::Notify;
use tokio::sync::mpsc::Sender;
use tonic::transport::channel::Change;
use tonic::transport::{ClientTlsConfig, Endpoint};

use super::observe::Channel;
use crate::credentials::ServiceCredential;
use crate::error::Error;

/// A channel to an internal listener that presents the service credential.
pub type InternalChannel = tonic::service::interceptor::InterceptedService<Channel, ServiceCredential>;

/// How often names are resolved again: new replicas get traffic within
/// this long, and replicas gone from DNS stop getting it.
const RESOLVE_EVERY: Duration = Duration::from_secs(5);

/// How a process reaches other services: the per-call deadline, and TLS
/// (server verified by the configured CA, our certificate presented for
/// mutual TLS) when the deployment turns it on.
#[derive(Clone)]
pub struct Connector {
    pub timeout: Duration,
    pub tls: Option<ClientTlsConfig>,
}

/// One URL of an upstream, checked.
#[derive(Debug, Clone)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
}

impl Target {
    fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url.trim().parse().map_err(|e| format!("{e}"))?;
        let scheme = uri.scheme_str().filter(|s| matches!(*s, "http" | "https")).ok_or("expected http(s)://")?;
        let host = uri.host().ok_or("no host")?.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Target { scheme: scheme.to_string(), host, port })
    }

    fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    async fn addresses(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self.ip() {
            Some(ip) => Ok(vec![SocketAddr::new(ip, self.port)]),
            None => Ok(tokio::net::lookup_host((self.host.as_str(), self.port)).await?.collect()),
        }
    }
}

/// The URLs of an upstream (`url[,url…]`), or why they are not usable.
pub fn parse_upstream(urls: &str) -> Result<(), String> {
    let targets: Result<Vec<_>, _> = urls.split(',').map(Target::parse).collect();
    targets.map(drop)
}

impl Connector {
    /// A lazily connected channel to `urls`: the targets may start after us.
    pub fn channel(&self, urls: &str) -> Result<Channel, Error> {
        let bad = |e: &dyn std::fmt::Display| Error::invalid_request(format!("bad upstream URL {urls:?}: {e}"));
        let targets: Vec<Target> = urls.split(',').map(Target::parse).collect::<Result<_, _>>().map_err(|e| bad(&e))?;
        if let [target] = targets.as_slice()
            && let Some(ip) = target.ip()
        {
            let endpoint = self.endpoint(target, SocketAddr::new(ip, target.port)).map_err(|e| bad(&e))?;
            return Ok(Channel::new(endpoint.connect_lazy(), self.timeout, None));
        }
        // Room for every change of one resolution round.
        let (channel, changes) = tonic::transport::Channel::balance_channel(64);
        let recheck = Arc::new(Notify::new());
        tokio::spawn(resolve(self.clone(), targets, changes, recheck.clone()));
        Ok(Channel::new(channel, self.timeout, Some(recheck)))
    }

    pub fn internal_channel(&self, urls: &str, credential: ServiceCredential) -> Result<InternalChannel, Error> {
        Ok(InternalChannel::new(self.channel(urls)?, credential))
    }

    /// An endpoint for one address of `target`; TLS still checks the
    /// certificate against the target's name, not the address.
    fn endpoint(&self, target: &Target, addr: SocketAddr) -> Result<Endpoint, tonic::transport::Error> {
        let url = format!("{}://{addr}", target.scheme);
        let mut endpoint = Endpoint::from_shared(url)?
            .connect_timeout(Duration::from_secs(3))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone().domain_name(target.host.clone()))?;
        }
        Ok(endpoint)
    }
}

/// How long a probe may take to connect before its address counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

async fn accepts(addr: SocketAddr) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await, Ok(Ok(_)))
}

/// Keeps the balancer's endpoints equal to the targets' addresses that
/// accept connections, until the channel is dropped; a round runs every
/// [`RESOLVE_EVERY`] and at once when a call found its replica gone. A failed lookup keeps
/// what the last one found, and when no address accepts, all are kept: a
/// DNS hiccup or an outage must not empty the pool (calls then fail fast
/// instead of waiting for an endpoint).
async fn resolve(
    connector: Connector,
    targets: Vec<Target>,
    changes: Sender<Change<SocketAddr, Endpoint>>,
    recheck: Arc<Notify>,
) {
    let mut current: HashMap<SocketAddr, usize> = HashMap::new();
    loop {
        let mut found: HashMap<SocketAddr, usize> = HashMap::new();
        for (index, target) in targets.iter().enumerate() {
            match target.addresses().await {
                Ok(addrs) => found.extend(addrs.into_iter().map(|a| (a, index))),
                Err(e) => {
                    tracing::warn!(host = %target.host, error = %e, "cannot resolve an upstream; keeping its last addresses");
                    found.extend(current.iter().filter(|(_, i)| **i == index).map(|(a, i)| (*a, *i)));
                }
            }
        }
        let mut up = HashMap::new();
        for (&addr, &index) in &found {
            if accepts(addr).await {
                up.insert(addr, index);
            }
        }
        if !up.is_empty() {
            found = up;
        }
        let gone: HashSet<SocketAddr> = current.keys().filter(|a| !found.contains_key(a)).copied().collect();
        for addr in gone {
            if changes.send(Change::Remove(addr)).await.is_err() {
                return;
            }
        }
        for (&addr, &index) in found.iter().filter(|(a, _)| !current.contains_key(a)) {
            match connector.endpoint(&targets[index], addr) {
                Ok(endpoint) => {
                    if changes.send(Change::Insert(addr, endpoint)).await.is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot use an upstream address"),
            }
        }
        current = found;
        tokio::select! {
            () = changes.closed() => return,
            () = tokio::time::sleep(RESOLVE_EVERY) => {}
            () = recheck.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstreams_are_one_url_or_several() {
        assert!(parse_upstream("http://catalog:50052").is_ok());
        assert!(parse_upstream("http://127.0.0.1:50061,http://127.0.0.1:50071").is_ok());
        assert!(parse_upstream("https://[::1]:50051").is_ok());
        assert!(parse_upstream("catalog:50052").is_err());
        assert!(parse_upstream("ftp://catalog").is_err());
        assert!(parse_upstream("http://a:1,").is_err());
    }

    /// A health server on a port of its own, until `stop`.
    async fn replica(stop: tokio_util::sync::CancellationToken) -> (SocketAddr, tokio::task::JoinHandle<()>) {
        let incoming = tonic::transport::server::TcpIncoming::bind(([127, 0, 0, 1], 0).into()).expect("bind");
        let addr = incoming.local_addr().expect("address");
        let (_, health) = tonic_health::server::health_reporter();
        let server = tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming_shutdown(incoming, stop.cancelled_owned());
        (addr, tokio::spawn(async move { server.await.expect("serves") }))
    }

    #[tokio::test]
    async fn a_replica_that_went_away_costs_no_call() {
        use tonic_health::pb::HealthCheckRequest;
        use tonic_health::pb::health_client::HealthClient;
        let stop_a = tokio_util::sync::CancellationToken::new();
        let (a, serving_a) = replica(stop_a.clone()).await;
        let (b, _serving_b) = replica(tokio_util::sync::CancellationToken::new()).await;
        let connector = Connector { timeout: Duration::from_secs(5), tls: None };
        let mut client = HealthClient::new(connector.channel(&format!("http://{a},http://{b}")).expect("channel"));
        for _ in 0..20 {
            client.check(HealthCheckRequest::default()).await.expect("both replicas answer");
        }
        stop_a.cancel();
        serving_a.await.expect("stopped");
        // Well inside the resolver's period: only the retry can route
        // around the address that now refuses connections.
        for call in 0..40 {
            client.check(HealthCheckRequest::default()).await.unwrap_or_else(|e| panic!("call {call}: {e}"));
        }
    }

    #[tokio::test]
    async fn names_resolve_to_every_address() {
        let target = Target::parse("http://localhost:50051").expect("target");
        let addrs = target.addresses().await.expect("localhost resolves");
        assert!(addrs.iter().all(|a| a.ip().is_loopback() && a.port() == 50051), "{addrs:?}");
    }
}
