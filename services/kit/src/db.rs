//! Database connections for both modes: PostgreSQL in production, SQLite
//! in the embedded mode.

use std::time::Duration;

use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, SqlErr};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseSettings;

pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(settings.url.clone());
    options.sqlx_logging(false).connect_timeout(Duration::from_secs(5)).acquire_timeout(settings.acquire_timeout);
    if settings.url.starts_with("sqlite:") {
        // SQLite lets one writer in at a time, and a deferred transaction that
        // upgrades to writing fails with "database is locked" rather than
        // waiting. One connection serialises every transaction; WAL and a busy
        // timeout cover other processes (`offers admin`) touching the file.
        options
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>)
            .map_sqlx_sqlite_opts(|o: SqliteConnectOptions| {
                o.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Normal)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .create_if_missing(true)
            });
    } else {
        options.max_connections(settings.max_connections);
        return Database::connect(options).await;
    }
    let db = Database::connect(options).await?;
    // The flags come from `.cargo/config.toml`, which cargo reads only when
    // it runs inside the repository (not `cargo install --git`, not
    // `--manifest-path` from elsewhere); such a build works, slowly.
    if !compile_options(&db).await?.iter().any(|o| o == "ENABLE_QPSG") {
        tracing::warn!(
            "this SQLite was built without SQLITE_ENABLE_QPSG (build from the repository's root so that \
             .cargo/config.toml applies): every statement with a LIMIT is compiled again on each run"
        );
    }
    Ok(db)
}

/// What the SQLite behind `db` was compiled with (`PRAGMA compile_options`).
async fn compile_options(db: &DatabaseConnection) -> Result<Vec<String>, DbErr> {
    let pragma = sea_orm::Statement::from_string(DbBackend::Sqlite, "PRAGMA compile_options");
    db.query_all_raw(pragma).await?.iter().map(|row| row.try_get_by_index(0)).collect()
}

pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// Whether the database could not be reached (as opposed to refusing the
/// statement): no connection to be had, a connection that broke, or a
/// server shutting down or not yet accepting. Callers may retry these.
pub fn is_unreachable(err: &DbErr) -> bool {
    use sea_orm::sqlx::Error as Sqlx;
    let sqlx = match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e)) | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match sqlx.as_ref() {
        // A connection cut in the middle of an exchange leaves sqlx reading
        // half a message, which it reports as a protocol error, though what
        // broke is the connection (the soak's cuts of PostgreSQL show it).
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed => true,
        // Class 08 (connection exception) and 57P01-57P03 (shutting down,
        // crashed, cannot connect now).
        Sqlx::Database(db) => {
            db.code().is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03"))
        }
        _ => false,
    }
}

/// The connection pool as gauges, every `every` until `shutdown`:
/// `offers_db_pool_connections{state="in_use"|"idle"}` and
/// `offers_db_pool_max`. (sqlx does not say how many callers wait for a
/// connection; those that wait too long show as `service_unavailable`.)
pub async fn report_pool(db: DatabaseConnection, every: Duration, shutdown: CancellationToken) {
    loop {
        let (size, idle, max) = match db.get_database_backend() {
            DbBackend::Postgres => {
                let pool = db.get_postgres_connection_pool();
                (pool.size(), pool.num_idle(), pool.options().get_max_connections())
            }
            DbBackend::Sqlite => {
                let pool = db.get_sqlite_connection_pool();
                (pool.size(), pool.num_idle(), pool.options().get_max_connections())
            }
            _ => return,
        };
        let idle = u32::try_from(idle).unwrap_or(size);
        metrics::gauge!("offers_db_pool_connections", "state" => "in_use").set(f64::from(size.saturating_sub(idle)));
        metrics::gauge!("offers_db_pool_connections", "state" => "idle").set(f64::from(idle));
        metrics::gauge!("offers_db_pool_max").set(f64::from(max));
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use sea_orm::RuntimeErr;
    use sea_orm::sqlx::Error as Sqlx;

    use super::*;

    fn query(error: Sqlx) -> DbErr {
        DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)))
    }

    #[test]
    fn a_broken_connection_is_unreachable_a_refused_statement_is_not() {
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_unreachable(&query(Sqlx::Io(reset))));
        assert!(is_unreachable(&query(Sqlx::Protocol("unexpected response from SSLRequest: 0x00".into()))));
        assert!(is_unreachable(&query(Sqlx::PoolTimedOut)));
        assert!(!is_unreachable(&query(Sqlx::RowNotFound)));
        assert!(!is_unreachable(&DbErr::RecordNotFound("x".into())));
    }

    /// The embedded mode's SQLite is built with the flags in
    /// `.cargo/config.toml`: without the query planner stability guarantee,
    /// every statement with a bound LIMIT is compiled again on each run.
    #[tokio::test]
    async fn the_embedded_sqlite_is_built_as_configured() {
        let settings = DatabaseSettings { url: "sqlite::memory:".into(), max_connections: 1, ..Default::default() };
        let db = connect(&settings).await.expect("an in-memory SQLite opens");
        let options = compile_options(&db).await.expect("SQLite lists its compile options");
        assert!(options.iter().any(|o| o == "ENABLE_QPSG"), "{options:?}");
        for unused in ["ENABLE_FTS3", "ENABLE_FTS5", "ENABLE_RTREE", "ENABLE_DBSTAT_VTAB", "SOUNDEX"] {
            assert!(!options.iter().any(|o| o == unused), "{unused} in {options:?}");
        }
    }
}
