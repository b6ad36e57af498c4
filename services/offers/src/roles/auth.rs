//! `auth`: users, login, access and refresh tokens.

use offers_kit::Parts;

use super::{Needs, Shared};
use crate::settings::Upstream;

pub const NEEDS: Needs = Needs {
    database: true,
    bus: false,
    clients: false,
    serves: Some(Upstream::Auth),
    requires: &[&["auth.key_encryption_key"]],
};

pub async fn build(shared: &Shared) -> anyhow::Result<Parts> {
    let deps = offers_auth::Deps { db: shared.db()?, cache: shared.cache.clone() };
    Ok(offers_auth::build(&shared.settings.auth, deps).await?)
}
