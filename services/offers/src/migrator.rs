//! Every service's migrations, applied in the order of their names (which
//! begin with their date): one history for the whole database, whatever the
//! order the crates are listed in. Each service owns its tables; they share
//! one migrations table.

use sea_orm_migration::{MigrationTrait, MigratorTrait};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        let mut all = offers_auth::migrations();
        all.extend(offers_catalog::migrations());
        all.extend(offers_account::migrations());
        all.extend(offers_partner::migrations());
        all.extend(offers_notifier::migrations());
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }
}
