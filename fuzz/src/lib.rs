//! What each fuzz target checks of one input: the rule must never panic,
//! and what it accepts must keep the rule's promise. The targets and the
//! regression test (`tests/regressions.rs`, every input a run ever
//! crashed on) call the same functions. The rules are the services' own
//! modules, compiled here by path.

#[path = "../../edge-gateway/src/bodies.rs"]
pub mod bodies;
#[path = "../../services/partner/src/destination.rs"]
pub mod destination;
#[path = "../../edge-gateway/src/formats.rs"]
pub mod formats;
#[path = "../../services/proto/src/username.rs"]
pub mod username;
#[path = "../../services/proto/src/wire.rs"]
pub mod wire;

use serde_json::Value;
use url::Host;

/// A callback URL the check accepts is stored as the HTTP client writes
/// it, reads back as itself, and (unless private callbacks are allowed)
/// is https, without userinfo, to a public address or a name that is
/// neither local nor something a connector would take for an address.
pub fn callback_url(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    for allow_private in [false, true] {
        let Ok(url) = destination::callback_url(raw, allow_private) else { continue };
        let stored = url.as_str();
        let again = destination::callback_url(stored, allow_private);
        assert_eq!(again.as_ref().map(url::Url::as_str), Ok(stored), "{raw:?} is not stable");
        if allow_private {
            continue;
        }
        assert_eq!(url.scheme(), "https", "{raw:?}");
        assert!(url.username().is_empty() && url.password().is_none(), "{raw:?}");
        match url.host() {
            Some(Host::Ipv4(ip)) => assert!(destination::is_public(ip.into()), "{raw:?}"),
            Some(Host::Ipv6(ip)) => assert!(destination::is_public(ip.into()), "{raw:?}"),
            Some(Host::Domain(name)) => {
                let name = name.trim_end_matches('.');
                assert!(name != "localhost" && !name.ends_with(".localhost"), "{raw:?}");
                assert!(name.parse::<std::net::IpAddr>().is_err(), "{raw:?}: a name a connector reads as an address");
            }
            None => panic!("{raw:?} has no host"),
        }
    }
}

/// A cursor (or id) that decodes is a hyphenated UUID, written back the same.
pub fn cursor(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if let Some(id) = wire::hyphenated(raw) {
        assert!(raw.eq_ignore_ascii_case(&id.hyphenated().to_string()), "{raw:?} decoded as {id}");
    }
}

/// A username that passes holds nothing that could pose as a key's
/// separator or escape, a path or a space; an idempotency key that passes
/// travels as a header value unchanged.
pub fn keys_and_names(data: &[u8]) {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    if username::is_valid(raw) {
        assert!((3..=64).contains(&raw.chars().count()), "{raw:?}");
        assert!(!raw.contains([':', '%', '/', ' ', '@']), "{raw:?}");
    }
    if wire::is_idempotency_key(raw) {
        let value = http::HeaderValue::from_str(raw).expect("an accepted key is a header value");
        assert_eq!(value.to_str().ok(), Some(raw));
    }
    // Accepted text can be stored in PostgreSQL's text: no NUL, and within its length.
    if wire::is_text(raw, 100) {
        assert!(!raw.contains('\0') && raw.chars().count() <= 100, "{raw:?}");
    }
}

/// The bodies of the money POSTs: only a JSON object is one; a renewal
/// names exactly one target and nothing else; a partner's amount was a
/// whole number in the JSON; every id the edge passes on can be put to the
/// id rule.
pub fn money_bodies(data: &[u8]) {
    use bodies::{ActivateBody, Object, PartnerActivateBody, RenewBody};
    let value: Option<Value> = serde_json::from_slice(data).ok();
    let object = || value.as_ref().and_then(Value::as_object).expect("an accepted body is a JSON object");
    if let Ok(Object(body)) = serde_json::from_slice::<Object<ActivateBody>>(data) {
        object();
        let _ = wire::hyphenated(&body.offer_id);
    }
    if let Ok(Object(body)) = serde_json::from_slice::<Object<RenewBody>>(data) {
        assert_eq!(object().len(), 1, "{:?}", object());
        let id = match body {
            RenewBody::Subscription(by) => by.subscription_id,
            RenewBody::Offer(by) => by.offer_id,
        };
        let _ = wire::hyphenated(&id);
    }
    if let Ok(Object(body)) = serde_json::from_slice::<Object<PartnerActivateBody>>(data) {
        let amount = &object()["amount"];
        let whole = amount.as_i64() == Some(body.amount)
            || amount.as_f64().is_some_and(|f| f.fract() == 0.0 && f as i64 == body.amount);
        assert!(whole, "{amount} became {}", body.amount);
        let _ = (wire::hyphenated(&body.user_id), wire::hyphenated(&body.offer_id));
    }
}
