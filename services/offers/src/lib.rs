//! The `offers` binary's library: roles, the suite builder, migrations,
//! the embedded mode and administration. Tests start suites through it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod clients;
pub mod dev;
pub mod jobs;
pub mod migrator;
pub mod roles;
pub mod suite;
