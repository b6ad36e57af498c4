//! The account service: balances, the append-only ledger, transactions,
//! subscriptions, idempotency keys and the outbox. The only writer of money
//! and of transaction state.
#![forbid(unsafe_code)]

mod entity;
mod error;
mod grpc;
mod ledger;
mod migration;
mod reconciler;
mod status_cache;

use std::sync::Arc;
use std::time::Duration;

use offers_kit::bus::SharedBus;
use offers_kit::cache::SharedCache;
use offers_kit::config::LedgerSettings;
use offers_kit::outbox::Outbox;
use offers_proto::account::v1::account_service_server::AccountServiceServer;
use offers_proto::account::v1::ledger_service_server::LedgerServiceServer;
use sea_orm::DatabaseConnection;
use tokio_util::sync::CancellationToken;

pub use error::LedgerError;
pub use grpc::{AccountApi, LedgerApi};
pub use ledger::Ledger;
pub use migration::migrations;

/// The account service with its background work: the outbox relay and
/// the reconciler.
pub struct Account {
    ledger: Arc<Ledger>,
    outbox: Outbox,
    db: DatabaseConnection,
    bus: SharedBus,
    relay_interval: Duration,
}

impl Account {
    pub fn new(
        db: DatabaseConnection,
        cache: SharedCache,
        bus: SharedBus,
        settings: LedgerSettings,
        currency: String,
    ) -> Self {
        let outbox = Outbox::new("account_outbox");
        let status = status_cache::StatusCache::new(cache, Duration::from_secs(settings.status_cache_ttl_secs));
        let relay_interval = Duration::from_millis(settings.relay_interval_ms);
        let ledger = Arc::new(Ledger::new(db.clone(), status, settings, currency, outbox.clone()));
        Self { ledger, outbox, db, bus, relay_interval }
    }

    /// The public and internal gRPC services.
    pub fn servers(&self) -> (AccountServiceServer<AccountApi>, LedgerServiceServer<LedgerApi>) {
        (
            AccountServiceServer::new(AccountApi(self.ledger.clone())),
            LedgerServiceServer::new(LedgerApi(self.ledger.clone())),
        )
    }

    /// Runs the outbox relay and the reconciler until `shutdown`.
    pub async fn run_background(self, shutdown: CancellationToken) {
        let relay = self.outbox.relay(self.db, self.bus, self.relay_interval, shutdown.clone());
        tokio::join!(relay, reconciler::run(self.ledger, shutdown));
    }
}
