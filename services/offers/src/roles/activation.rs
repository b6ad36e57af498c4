//! `activation`: activate, renew and status for users.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::settings::Upstream;

pub const NEEDS: Needs =
    Needs { database: false, bus: false, clients: true, serves: Some(Upstream::Activation), requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let clients = shared.clients()?;
    let deps = offers_activation::Deps {
        users: clients.users.clone(),
        catalog: clients.catalog.clone(),
        ledger: clients.ledger.clone(),
        cache: shared.cache.clone(),
    };
    Ok(offers_activation::build(deps))
}
