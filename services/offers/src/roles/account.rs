//! `account`: the ledger, with its outbox relay and reconciler.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::settings::Upstream;

pub const NEEDS: Needs = Needs { database: true, bus: true, clients: false, serves: Some(Upstream::Account) };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let deps = offers_account::Deps {
        db: shared.db()?,
        cache: shared.cache.clone(),
        bus: shared.bus()?,
        currency: shared.settings.currency.clone(),
    };
    Ok(offers_account::build(&shared.settings.ledger, deps))
}
