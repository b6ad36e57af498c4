//! Where callbacks may go: only to addresses on the public internet. A
//! partner names the host, so a name could be pointed inside our network
//! after it was checked (DNS rebinding): the callback client resolves
//! through [`PinnedResolver`], which checks the very addresses the
//! connection will use — there is no second lookup to steer.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Whether an address is on the public internet: not loopback, private,
/// shared, link-local, unspecified, reserved, documentation, benchmarking,
/// multicast or broadcast — nor an IPv6 form of such an IPv4 address
/// (mapped, compatible, NAT64, 6to4), a unique-local or site-local one,
/// Teredo, or a local-use NAT64 prefix.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    let reserved = match a {
        0 | 10 | 127 => true,
        100 => (64..128).contains(&b),
        169 => b == 254,
        172 => (16..32).contains(&b),
        192 => (b == 0 && (c == 0 || c == 2)) || (b == 88 && c == 99) || b == 168,
        198 => b == 18 || b == 19 || (b == 51 && c == 100),
        203 => b == 0 && c == 113,
        224..=255 => true,
        _ => false,
    };
    !reserved
}

fn is_public_v6(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    let embedded = |high: u16, low: u16| Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    match s {
        // Unspecified and loopback.
        [0, 0, 0, 0, 0, 0, 0, 0 | 1] => false,
        // IPv4-mapped and IPv4-compatible: the IPv4 address decides.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded(hi, lo)),
        // NAT64 well-known prefix 64:ff9b::/96: the IPv4 address decides.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => is_public_v4(embedded(hi, lo)),
        // 6to4 2002::/16: the IPv4 address is in the second and third groups.
        [0x2002, hi, lo, ..] => is_public_v4(embedded(hi, lo)),
        // Local-use NAT64 (64:ff9b:1::/48), discard (100::/64), Teredo
        // (2001::/32), documentation (2001:db8::/32).
        [0x64, 0xff9b, 1, ..] | [0x100, 0, 0, 0, ..] | [0x2001, 0 | 0xdb8, ..] => false,
        // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10,
        // multicast ff00::/8.
        [first, ..] => {
            (first & 0xfe00) != 0xfc00
                && (first & 0xffc0) != 0xfe80
                && (first & 0xffc0) != 0xfec0
                && (first & 0xff00) != 0xff00
        }
    }
}

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
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(PinnedResolver::new(lookup, allow_private)))
        .build()
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

/// A name that resolved to an address off the public internet.
#[derive(Debug, thiserror::Error)]
#[error("{0} does not resolve to a public address only")]
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
                return Err(Box::new(NotPublic(host)) as Box<dyn std::error::Error + Send + Sync>);
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

    #[test]
    fn only_public_addresses_are_public() {
        for private in [
            "0.1.2.3",
            "10.1.2.3",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "192.88.99.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.1",
            "198.51.100.7",
            "203.0.113.7",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:10.0.0.1",
            "::ffff:127.0.0.1",
            "::10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:0a00:0001::1",
            "2002:c0a8:0101::1",
            "2001::1",
            "2001:db8::1",
            "100::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
        ] {
            assert!(!is_public(private.parse().expect("ip")), "{private}");
        }
        for public in
            ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808", "2002:0808:0808::1"]
        {
            assert!(is_public(public.parse().expect("ip")), "{public}");
        }
    }

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

    /// However the name's answers change between lookups, the callback
    /// never reaches the private address: each connection uses exactly the
    /// addresses that were checked.
    #[tokio::test]
    async fn a_rebinding_name_never_reaches_inside() {
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
}
