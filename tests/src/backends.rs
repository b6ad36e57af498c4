//! Per-test backend resources: a fresh PostgreSQL database, Redis key
//! prefix and RabbitMQ queue prefix (or a temporary SQLite file), removed
//! again when the test's suite drops.

use std::path::PathBuf;

use deadpool_redis::redis;
use offers::settings::Settings;
use sea_orm::{ConnectionTrait, Database};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite, the in-memory cache and the in-process bus.
    Embedded,
    /// PostgreSQL, Redis and RabbitMQ on this machine.
    Real,
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

pub fn postgres_url() -> String {
    env_or("TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
}

pub fn redis_url() -> String {
    env_or("TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

pub fn amqp_url() -> String {
    env_or("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
}

/// Topics scenarios use besides the suite's own; their queues go with the
/// rest when a suite drops.
pub const TEST_TOPICS: &[&str] = &["test.poison", "test.misdeclared", "test.outbox", "test.batch"];

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0")
}

pub enum Resources {
    Embedded { dir: PathBuf },
    Real { database: String, prefix: String, dir: PathBuf },
}

impl Resources {
    pub async fn provision(backend: Backend) -> Option<Resources> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        match backend {
            Backend::Embedded => {
                let dir = std::env::temp_dir().join(format!("offers-test-{id}"));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(Resources::Embedded { dir })
            }
            Backend::Real => {
                if let Err(why) = reachable().await {
                    assert!(!under_ci(), "CI needs PostgreSQL, Redis and RabbitMQ, but {why}");
                    eprintln!("SKIPPED (real backends unreachable: {why}); set CI=true to make this a failure");
                    return None;
                }
                let database = format!("offers_t_{id}");
                let admin = Database::connect(format!("{}/postgres", postgres_url())).await.expect("postgres");
                admin.execute_unprepared(&format!("CREATE DATABASE {database}")).await.expect("create database");
                admin.close().await.ok();
                let dir = std::env::temp_dir().join(format!("offers-test-{id}"));
                std::fs::create_dir_all(&dir).expect("temp dir");
                Some(Resources::Real { database, prefix: format!("t{id}"), dir })
            }
        }
    }

    /// This test's own scratch directory.
    pub fn scratch_dir(&self) -> PathBuf {
        match self {
            Resources::Embedded { dir } | Resources::Real { dir, .. } => dir.clone(),
        }
    }

    /// Points the settings at this test's backends (the embedded ones are
    /// the scratch directory's, already there).
    pub fn apply(&self, settings: &mut Settings) {
        match self {
            Resources::Embedded { .. } => {}
            Resources::Real { database, prefix, .. } => {
                settings.database.url = format!("{}/{database}", postgres_url());
                settings.database.max_connections = 8;
                settings.cache.url = redis_url();
                settings.cache.prefix = format!("{prefix}:");
                settings.bus.url = amqp_url();
                settings.bus.prefix = prefix.clone();
            }
        }
    }
}

async fn reachable() -> Result<(), String> {
    let pg = Database::connect(format!("{}/postgres", postgres_url())).await.map_err(|e| format!("PostgreSQL: {e}"))?;
    pg.close().await.ok();
    let client = redis::Client::open(redis_url()).map_err(|e| format!("Redis: {e}"))?;
    let mut conn = client.get_multiplexed_async_connection().await.map_err(|e| format!("Redis: {e}"))?;
    let _: String = redis::cmd("PING").query_async(&mut conn).await.map_err(|e| format!("Redis: {e}"))?;
    let amqp = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
        .await
        .map_err(|e| format!("RabbitMQ: {e}"))?;
    amqp.close(0, "probe".into()).await.ok();
    Ok(())
}

impl Drop for Resources {
    fn drop(&mut self) {
        match self {
            Resources::Embedded { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Resources::Real { database, prefix, dir } => {
                let _ = std::fs::remove_dir_all(dir);
                let (database, prefix) = (database.clone(), prefix.clone());
                // Drop cannot await; clean up on a runtime of its own.
                let cleanup = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
                    runtime.block_on(async move {
                        if let Ok(pg) = Database::connect(format!("{}/postgres", postgres_url())).await {
                            let _ = pg
                                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                                .await;
                            pg.close().await.ok();
                        }
                        let bus = offers_kit::bus::RabbitBus::new(&offers_kit::config::BusSettings {
                            url: amqp_url(),
                            prefix: prefix.clone(),
                            ..Default::default()
                        });
                        let tiers: Vec<u64> = (10..=20).map(|p| 1u64 << p).collect();
                        let topics: Vec<&str> = offers::TOPICS.iter().chain(TEST_TOPICS).copied().collect();
                        let _ = bus.delete_topology(&topics, &tiers).await;
                        if let Ok(cache) = offers_kit::cache::RedisCache::new(&redis_url(), &format!("{prefix}:")) {
                            let _ = cache.purge().await;
                        }
                    });
                });
                let _ = cleanup.join();
            }
        }
    }
}
