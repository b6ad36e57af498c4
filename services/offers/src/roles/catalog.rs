//! `catalog`: the offers on sale.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::settings::Upstream;

pub const NEEDS: Needs =
    Needs { database: true, bus: false, clients: false, serves: Some(Upstream::Catalog), requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let deps = offers_catalog::Deps {
        db: shared.db()?,
        cache: shared.cache.clone(),
        currency: shared.settings.currency.clone(),
    };
    Ok(offers_catalog::build(&shared.settings.catalog, deps))
}
