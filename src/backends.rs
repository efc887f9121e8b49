//! Choosing the store and the bus from the configuration: Postgres + Redis in
//! production, the embedded SQLite store + in-process bus when nothing is configured.

use std::sync::Arc;

use anyhow::Context;
use conflux_engine::bus::local::LocalBus;
use conflux_engine::bus::redis::RedisBus;
use conflux_engine::bus::EventBus;
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};
use conflux_engine::store::sqlite::SqliteStore;
use conflux_engine::store::EventStore;

use crate::config::Config;

/// The store and bus every role of this process shares.
#[derive(Clone)]
pub struct Backends {
    /// The system of record.
    pub store: Arc<dyn EventStore>,
    /// The transport.
    pub bus: Arc<dyn EventBus>,
    /// `postgres+redis`, `postgres+in-process` or `embedded`.
    pub mode: &'static str,
}

impl Backends {
    /// Opens the configured backends (running migrations), or the embedded ones.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let (store, pg): (Arc<dyn EventStore>, bool) = match &config.database_url {
            Some(url) => {
                let options = PgStoreOptions {
                    max_connections: config.pg_max_connections,
                    ..PgStoreOptions::default()
                };
                let store = PgStore::connect(url, &options)
                    .await
                    .context("opening the Postgres event store (DATABASE_URL)")?;
                tracing::info!("event store: Postgres");
                (Arc::new(store), true)
            }
            None => {
                std::fs::create_dir_all(&config.data_dir).with_context(|| {
                    format!("creating the data directory {}", config.data_dir.display())
                })?;
                let path = config.data_dir.join("conflux.db");
                let store = SqliteStore::open(&path)
                    .await
                    .with_context(|| format!("opening the embedded store {}", path.display()))?;
                tracing::info!(path = %path.display(), "no DATABASE_URL: using the embedded SQLite store");
                (Arc::new(store), false)
            }
        };
        let (bus, redis): (Arc<dyn EventBus>, bool) = match &config.redis_url {
            Some(url) => {
                let bus = RedisBus::connect(url, &config.redis_prefix)
                    .await
                    .context("connecting to Redis (REDIS_URL)")?;
                tracing::info!(prefix = %config.redis_prefix, "event bus: Redis Streams");
                (Arc::new(bus), true)
            }
            None => {
                tracing::info!(
                    "no REDIS_URL: using the in-process bus (every role must run in this process)"
                );
                (Arc::new(LocalBus::new()), false)
            }
        };
        let mode = match (pg, redis) {
            (true, true) => "postgres+redis",
            (true, false) => "postgres+in-process",
            (false, true) => "embedded+redis",
            (false, false) => "embedded",
        };
        Ok(Self { store, bus, mode })
    }
}
