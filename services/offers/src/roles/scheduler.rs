//! `scheduler`: the daily expiring-subscriptions pass and its outbox relay.

use offers_kit::Parts;

use super::{Needs, Shared};

pub const NEEDS: Needs = Needs { database: true, bus: true, clients: true, serves: None, requires: &[] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let settings = &shared.settings;
    let deps = offers_notifier::SchedulerDeps {
        db: shared.db()?,
        bus: shared.bus()?,
        ledger: shared.clients()?.ledger.clone(),
    };
    Ok(offers_notifier::build_scheduler(&settings.notifier, deps))
}
