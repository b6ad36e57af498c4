pub mod balance;
pub mod idempotency_key;
pub mod ledger_entry;
pub mod outbox;
pub mod subscription;
pub mod transaction;
