//! `console`: the operator console on the HTTP listener, calling the
//! services' internal APIs with the service credential.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::console::{self, Console};

pub const NEEDS: Needs = Needs { database: false, bus: false, clients: true, serves: None, requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let settings = &shared.settings;
    let console = Console {
        clients: shared.clients()?.clone(),
        cache: shared.cache.clone(),
        settings: settings.console.clone(),
        currency: settings.currency.clone(),
        trusted_proxy_hops: settings.gateway.trusted_proxy_hops,
    };
    Ok(Parts { http: Some(console::router(console)), ..Parts::default() })
}
