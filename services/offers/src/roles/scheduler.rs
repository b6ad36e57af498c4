//! `scheduler`: the daily expiring-subscriptions pass and its outbox relay,
//! and the renewal pass.

use offers_kit::Parts;

use super::{Needs, Shared};

pub const NEEDS: Needs = Needs { database: true, bus: true, clients: true, serves: None, requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let settings = &shared.settings;
    let clients = shared.clients()?;
    let deps = offers_notifier::SchedulerDeps { db: shared.db()?, bus: shared.bus()?, ledger: clients.ledger.clone() };
    let mut parts = offers_notifier::build_scheduler(&settings.notifier, deps);
    let renewals = offers_activation::RenewalDeps { ledger: clients.ledger.clone(), catalog: clients.catalog.clone() };
    parts.merge(offers_activation::build_renewals(&settings.renewal, renewals));
    Ok(parts)
}
