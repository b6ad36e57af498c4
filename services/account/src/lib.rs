//! The account service: balances, the append-only ledger, transactions,
//! subscriptions, idempotency keys and the outbox. The only writer of money
//! and of transaction state.

/// The ledger's tables (the benchmark seeds a long history straight into them).
pub mod entity;
mod error;
mod grpc;
mod ledger;
mod migration;
mod reconciler;
mod settings;
mod status_cache;

use std::sync::Arc;

use offers_kit::Parts;
use offers_kit::bus::SharedBus;
use offers_kit::cache::SharedCache;
use offers_kit::outbox::Outbox;
use offers_proto::account::v1::account_service_server::AccountServiceServer;
use offers_proto::account::v1::ledger_service_server::LedgerServiceServer;
use sea_orm::DatabaseConnection;

pub use error::LedgerError;
pub use ledger::{FUNDING, PENDING, REVENUE, SETTLE_HISTOGRAM, TRAIL};
pub use migration::migrations;
pub use settings::{GiftingSettings, LedgerSettings};

use crate::grpc::{AccountApi, LedgerApi};
use crate::ledger::Ledger;
use crate::status_cache::StatusCache;

/// The account service's outbox table.
const OUTBOX: &str = "account_outbox";

/// What the account service runs on.
pub struct Deps {
    pub db: DatabaseConnection,
    pub cache: SharedCache,
    pub bus: SharedBus,
    /// The one currency of every balance.
    pub currency: String,
}

/// The public `AccountService`, the internal `LedgerService`, the outbox
/// relay and the reconciler.
pub fn build(settings: &LedgerSettings, gifting: &GiftingSettings, deps: Deps) -> Parts {
    let Deps { db, cache, bus, currency } = deps;
    let outbox = Outbox::new(OUTBOX);
    let status = StatusCache::new(cache, settings.status_cache_ttl, settings.status_fresh);
    let ledger =
        Arc::new(Ledger::new(db.clone(), status, (settings.clone(), gifting.clone()), currency, outbox.clone()));
    let relay_interval = settings.relay_interval;
    let mut parts = Parts::default();
    parts.public.add(AccountServiceServer::new(AccountApi(ledger.clone())));
    parts.internal.add(LedgerServiceServer::new(LedgerApi(ledger.clone())));
    parts
        .task("account outbox relay", move |stop| outbox.relay(db, bus, relay_interval, stop))
        .task("reconciler", move |stop| reconciler::run(ledger, stop))
}
