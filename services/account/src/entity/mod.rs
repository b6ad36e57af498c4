pub mod balance;
pub mod idempotency_key;
pub mod ledger_entry;
pub mod subscription;
pub mod transaction;
