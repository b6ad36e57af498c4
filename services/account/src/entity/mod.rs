pub mod account;
pub mod attempt;
pub mod idempotency_key;
pub mod resolution;
pub mod subscription;
pub mod transaction;
pub mod transfer;
