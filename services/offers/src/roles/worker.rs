//! `worker`: takes provisioning jobs and drives the provisioning system.

use offers_kit::Parts;

use super::{Needs, Shared};

pub const NEEDS: Needs =
    Needs { database: false, bus: true, clients: true, serves: None, requires: &[&["provisioning.url"]] };

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let deps = offers_activation::WorkerDeps { ledger: shared.clients()?.ledger.clone(), bus: shared.bus()? };
    Ok(offers_activation::build_worker(&shared.settings.provisioning, deps)?)
}
