//! `account`: the ledger, with its outbox relay and reconciler, and the
//! administration of the bus's parked jobs.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::settings::Upstream;

pub const NEEDS: Needs =
    Needs { database: true, bus: true, clients: false, serves: Some(Upstream::Account), requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let bus = shared.bus()?;
    let db = shared.db()?;
    let trail = offers_kit::audit::Trail::new(offers_account::TRAIL, db.clone());
    let deps = offers_account::Deps {
        db,
        cache: shared.cache.clone(),
        bus: bus.clone(),
        currency: shared.settings.currency.clone(),
    };
    let mut parts = offers_account::build(&shared.settings.ledger, &shared.settings.gifting, deps);
    parts.internal.add(crate::parked_jobs::server(bus, trail));
    Ok(parts)
}
