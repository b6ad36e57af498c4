//! `partner`: partner activations and references, with the callback worker.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::settings::Upstream;

pub const NEEDS: Needs =
    Needs { database: true, bus: true, clients: true, serves: Some(Upstream::Partner), requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let clients = shared.clients()?;
    let deps = offers_partner::Deps {
        db: shared.db()?,
        cache: shared.cache.clone(),
        bus: shared.bus()?,
        clients: offers_partner::Clients {
            users: clients.users.clone(),
            catalog: clients.catalog.clone(),
            ledger: clients.ledger.clone(),
        },
    };
    Ok(offers_partner::build(&shared.settings.partner, deps)?)
}
