//! `notifier`: delivers expiry reminders.

use offers_kit::Parts;

use super::{Needs, Shared};

pub const NEEDS: Needs = Needs {
    database: true,
    bus: true,
    clients: true,
    serves: None,
    requires: &[&["notifier.smtp_url", "notifier.sms_url", "notifier.sink_file"]],
};

pub fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let clients = shared.clients()?;
    let deps = offers_notifier::DeliveryDeps {
        db: shared.db()?,
        bus: shared.bus()?,
        users: clients.users.clone(),
        ledger: clients.ledger.clone(),
    };
    Ok(offers_notifier::build_delivery(&shared.settings.notifier, deps)?)
}
