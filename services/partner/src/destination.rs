//! What a callback URL points to. The HTTP client reads a URL with the
//! `url` crate (WHATWG rules), which turns `2130706433`, `127.1`,
//! `0x7f000001`, `017700000001`, `127.0.0.1.`, `%31%32%37.0.0.1` and
//! full-width digits all into 127.0.0.1; a check that reads the host any
//! other way sees a host *name* there and lets it through. So this is the
//! one decision, made on the very `Url` the client is then given, at
//! registration and again at delivery. It depends on `url` and std only, so
//! the fuzz targets compile it alone.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a callback URL is refused; each message is the client's 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("callback_url is not a URL")]
    NotAUrl,
    #[error("callback_url must be an https URL")]
    Scheme,
    #[error("callback_url may not carry a user name or password")]
    Credentials,
    #[error("callback_url must name a public host")]
    NotPublic,
}

/// The URL a callback may be sent to, as the HTTP client will read it: https
/// (or http with `allow_private`), no userinfo (`https://hooks.example.com@127.1/`
/// goes to 127.1, and credentials in a stored URL would be sent to whoever
/// answers), and a host that is a public address or a name that is not
/// local. A name's addresses are checked again when it is resolved.
pub fn callback_url(raw: &str, allow_private: bool) -> Result<Url, Refused> {
    let url = Url::parse(raw).map_err(|_| Refused::NotAUrl)?;
    match url.scheme() {
        "https" => {}
        "http" if allow_private => {}
        _ => return Err(Refused::Scheme),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    let public = match url.host() {
        Some(Host::Ipv4(ip)) => is_public(ip.into()),
        Some(Host::Ipv6(ip)) => is_public(ip.into()),
        Some(Host::Domain(name)) => !is_local_name(name),
        None => false,
    };
    if public || allow_private { Ok(url) } else { Err(Refused::NotPublic) }
}

/// `localhost` and the names under it (RFC 6761), with or without the root's
/// trailing dot; the parser has already lower-cased and IDNA-mapped it.
fn is_local_name(name: &str) -> bool {
    let name = name.trim_end_matches('.');
    name == "localhost" || name.ends_with(".localhost")
}

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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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

    /// The spellings the review got accepted, then spellings that go
    /// through IDNA's mapping before they are read as an address (full-width
    /// digits, ideographic full stops; the mapping's tables are chosen in
    /// the workspace's Cargo.toml): the client reads each as 127.0.0.1, and
    /// so does the check.
    #[test]
    fn known_spellings_of_loopback_are_refused() {
        for raw in [
            "https://2130706433:8443/cb",
            "https://127.1:8443/cb",
            "https://0x7f000001:8443/cb",
            "https://017700000001:8443/cb",
            "https://127.0.0.1.:8443/cb",
            "https://\u{ff11}\u{ff12}\u{ff17}.0.0.1:8443/cb",
            "https://127\u{3002}0\u{3002}0\u{3002}1:8443/cb",
            "https://127\u{ff0e}1:8443/cb",
            "https://\u{ff10}\u{ff58}7f000001:8443/cb",
        ] {
            let read = reqwest_reads(raw).expect("a URL");
            assert_eq!(read.host(), Some(Host::Ipv4(Ipv4Addr::LOCALHOST)), "{raw}");
            assert_eq!(callback_url(raw, false), Err(Refused::NotPublic), "{raw}");
        }
    }

    /// How the callback client reads a URL (reqwest's `IntoUrl` for `&str`).
    fn reqwest_reads(raw: &str) -> Option<Url> {
        Url::parse(raw).ok()
    }

    #[test]
    fn public_https_urls_pass_and_nothing_else() {
        for ok in [
            "https://hooks.example.com/offers",
            "https://8.8.8.8/cb",
            "https://134744072/cb",
            "https://[2606:4700::1111]:8443/cb",
            "https://localhost.example.com/cb",
        ] {
            assert!(callback_url(ok, false).is_ok(), "{ok}");
        }
        assert_eq!(callback_url("http://hooks.example.com/x", false), Err(Refused::Scheme));
        assert_eq!(callback_url("ftp://hooks.example.com/x", true), Err(Refused::Scheme));
        assert_eq!(callback_url("hooks.example.com/x", false), Err(Refused::NotAUrl));
        assert_eq!(callback_url("https://a:b@hooks.example.com/x", false), Err(Refused::Credentials));
        assert_eq!(callback_url("https://hooks.example.com@8.8.8.8/x", false), Err(Refused::Credentials));
        assert!(callback_url("http://127.0.0.1:9/x", true).is_ok(), "the embedded mode may call itself");
    }

    /// An address inside our network (or otherwise not public).
    fn inside_v4() -> impl Strategy<Value = Ipv4Addr> {
        let from = |a: u8| any::<[u8; 3]>().prop_map(move |[b, c, d]| Ipv4Addr::new(a, b, c, d));
        prop_oneof![
            4 => from(127),
            1 => from(10),
            1 => from(0),
            1 => (16u8..32, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(172, b, c, d)),
            1 => any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(192, 168, c, d)),
            1 => any::<[u8; 2]>().prop_map(|[c, d]| Ipv4Addr::new(169, 254, c, d)),
            1 => (64u8..128, any::<[u8; 2]>()).prop_map(|(b, [c, d])| Ipv4Addr::new(100, b, c, d)),
            1 => (224u8..=255, any::<[u8; 3]>()).prop_map(|(a, [b, c, d])| Ipv4Addr::new(a, b, c, d)),
        ]
    }

    /// A number as the WHATWG IPv4 parser reads one: decimal, octal (a
    /// leading 0) or hex (0x, either case), with extra leading zeros.
    fn number(n: u32, radix: u8, zeros: usize) -> String {
        let pad = "0".repeat(zeros);
        match radix % 4 {
            0 => n.to_string(),
            1 => format!("0{pad}{n:o}"),
            2 => format!("0x{pad}{n:x}"),
            _ => format!("0X{pad}{n:X}"),
        }
    }

    /// An IPv4 address in one, two, three or four parts (the last part
    /// takes the remaining bytes), each in its own radix, maybe with the
    /// root's trailing dot.
    fn v4_spelling() -> impl Strategy<Value = String> {
        v4_spelling_of(inside_v4())
    }

    fn v4_spelling_of(ips: impl Strategy<Value = Ipv4Addr>) -> impl Strategy<Value = String> {
        (ips, 1usize..=4, any::<[u8; 4]>(), 0usize..3, any::<bool>()).prop_map(|(ip, parts, radixes, zeros, dot)| {
            let o = ip.octets().map(u32::from);
            let numbers: Vec<u32> = match parts {
                1 => vec![u32::from(ip)],
                2 => vec![o[0], (o[1] << 16) | (o[2] << 8) | o[3]],
                3 => vec![o[0], o[1], (o[2] << 8) | o[3]],
                _ => o.to_vec(),
            };
            let spelled: Vec<String> = numbers.iter().zip(radixes).map(|(n, radix)| number(*n, radix, zeros)).collect();
            format!("{}{}", spelled.join("."), if dot { "." } else { "" })
        })
    }

    /// IPv6 literals that are, or embed, an inside address.
    fn v6_spelling() -> impl Strategy<Value = String> {
        let embedding = (inside_v4(), 0u8..5).prop_map(|(ip, form)| {
            let [hi, lo] = [(u32::from(ip) >> 16) as u16, u32::from(ip) as u16];
            match form {
                0 => format!("[::ffff:{ip}]"),
                1 => format!("[0:0:0:0:0:FFFF:{hi:X}:{lo:04x}]"),
                2 => format!("[::{ip}]"),
                3 => format!("[64:ff9b::{hi:x}:{lo:x}]"),
                _ => format!("[2002:{hi:x}:{lo:x}::1]"),
            }
        });
        let native = prop_oneof![
            Just("[::1]".to_string()),
            Just("[0000:0000:0000:0000:0000:0000:0000:0001]".to_string()),
            Just("[::]".to_string()),
            any::<u16>().prop_map(|x| format!("[fe80::{x:x}]")),
            any::<u16>().prop_map(|x| format!("[fd00:{x:x}::1]")),
            any::<u16>().prop_map(|x| format!("[fec0::{x:x}]")),
            any::<u16>().prop_map(|x| format!("[ff02::{x:x}]")),
            any::<u16>().prop_map(|x| format!("[64:ff9b:1::{x:x}]")),
            any::<u16>().prop_map(|x| format!("[2001:db8::{x:x}]")),
        ];
        prop_oneof![3 => embedding, 1 => native]
    }

    fn local_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("localhost".to_string()),
            Just("LocalHost.".to_string()),
            Just("localhost..".to_string()),
            "[a-z0-9]{1,12}".prop_map(|label| format!("{label}.localhost")),
        ]
    }

    /// Full-width forms, which IDNA maps back to ASCII; a dot becomes one
    /// of the three stops IDNA maps to '.' (ideographic, full-width,
    /// half-width ideographic), chosen by its position `i`.
    fn full_width(c: char, i: usize) -> char {
        match c {
            '.' => ['\u{3002}', '\u{ff0e}', '\u{ff61}'][i % 3],
            '!'..='~' => char::from_u32(u32::from(c) - 0x21 + 0xff01).unwrap_or(c),
            _ => c,
        }
    }

    /// Obfuscates the characters of a host that `mask` picks: full-width,
    /// percent-encoded (of their UTF-8, full-width ones included), or a tab
    /// or newline before them (the parser drops both anywhere).
    fn obfuscate(host: &str, how: u8, mask: u64) -> String {
        let mut out = String::new();
        for (i, c) in host.chars().enumerate() {
            let picked = mask >> (i % 64) & 1 == 1;
            match how {
                1 if picked => out.push(full_width(c, i)),
                2 | 3 if picked => {
                    let c = if how == 3 { full_width(c, i) } else { c };
                    for byte in c.to_string().bytes() {
                        out.push_str(&format!("%{byte:02X}"));
                    }
                }
                4 if picked => {
                    out.push(if i % 2 == 0 { '\t' } else { '\n' });
                    out.push(c);
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// A callback URL whose host is inside our network, however it is spelled.
    fn inside_url() -> impl Strategy<Value = String> {
        let name_like = (prop_oneof![v4_spelling(), local_name()], 0u8..5, any::<u64>())
            .prop_map(|(host, how, mask)| obfuscate(&host, how, mask));
        let bracketed =
            (v6_spelling(), any::<u64>()).prop_map(|(host, mask)| obfuscate(&host, 4 * u8::from(mask & 1 == 1), mask));
        let host = prop_oneof![3 => name_like, 1 => bracketed];
        let userinfo = prop_oneof![Just(""), Just("hooks.example.com@"), Just("partner:secret@"), Just("8.8.8.8:443@")];
        let port = prop_oneof![Just(String::new()), Just(":".to_string()), any::<u16>().prop_map(|p| format!(":{p}"))];
        let scheme = prop_oneof![Just("https://"), Just("HTTPS://"), Just(" https://"), Just("https:\\\\")];
        let path = prop_oneof![Just(""), Just("/cb"), Just("/cb?x=1#y"), Just("\\cb")];
        (scheme, userinfo, host, port, path).prop_map(|(s, u, h, p, path)| format!("{s}{u}{h}{p}{path}"))
    }

    /// Where the client would connect for this URL, if it can read it.
    fn inside(url: &Url) -> bool {
        match url.host() {
            Some(Host::Ipv4(ip)) => !is_public(ip.into()),
            Some(Host::Ipv6(ip)) => !is_public(ip.into()),
            Some(Host::Domain(name)) => is_local_name(name),
            None => true,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// However an inside address is spelled, registration refuses it,
        /// and wherever the client would read the same string, it reads an
        /// inside address (so the spelling really is one of ours).
        #[test]
        fn every_spelling_of_an_inside_address_is_refused(raw in inside_url()) {
            prop_assert!(callback_url(&raw, false).is_err(), "accepted {raw:?}");
            if let Some(read) = reqwest_reads(&raw) {
                prop_assert!(inside(&read), "{raw:?} reads as {read}");
            }
        }
    }

    /// Spellings of 127.0.0.1 only (so a defect could reach nothing but
    /// this machine), at `port`.
    fn loopback_url(port: u16) -> impl Strategy<Value = String> {
        let v4 = v4_spelling_of(Just(Ipv4Addr::LOCALHOST));
        let v6 = prop_oneof![
            Just("[::ffff:127.0.0.1]".to_string()),
            Just("[0:0:0:0:0:FFFF:7F00:0001]".to_string()),
            Just("[::127.0.0.1]".to_string()),
        ];
        let host = (prop_oneof![3 => v4, 1 => v6, 1 => local_name()], 0u8..5, any::<u64>())
            .prop_map(|(host, how, mask)| if host.starts_with('[') { host } else { obfuscate(&host, how, mask) });
        let scheme = prop_oneof![Just("https://"), Just("HTTPS://"), Just(" https://"), Just("http://")];
        let userinfo = prop_oneof![Just(""), Just("hooks.example.com@")];
        (scheme, userinfo, host).prop_map(move |(s, u, h)| format!("{s}{u}{h}:{port}/cb"))
    }

    /// Resolves every name to loopback: the worst a partner's DNS could do.
    struct ToLoopback;

    impl crate::egress::Lookup for ToLoopback {
        fn lookup(
            &self,
            _: String,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::IpAddr>>> + Send>>
        {
            Box::pin(async { Ok(vec![Ipv4Addr::LOCALHOST.into()]) })
        }
    }

    /// Delivery as the worker does it — the URL checked, then sent on the
    /// callback client — for generated spellings of loopback pointing at a
    /// listener here: not one connection reaches it.
    #[test]
    fn no_spelling_of_loopback_gets_a_connection_at_delivery() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = accepted.clone();
        runtime.spawn(async move {
            while listener.accept().await.is_ok() {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let client = crate::egress::callback_client(
            std::sync::Arc::new(ToLoopback),
            false,
            std::time::Duration::from_millis(300),
        )
        .expect("client");
        let config = ProptestConfig { cases: 256, ..ProptestConfig::default() };
        proptest!(config, |(raw in loopback_url(port))| {
            if let Ok(url) = callback_url(&raw, false) {
                let sent = runtime.block_on(client.post(url).body("{}").send());
                prop_assert!(sent.is_err(), "{raw}: delivered");
            }
            prop_assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 0, "{} reached the listener", raw);
        });
    }
}
