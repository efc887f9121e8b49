//! The two backend pairs the suite runs against: Postgres + Redis Streams, and the
//! embedded SQLite store + the in-process bus. Each setup gets its own database (or
//! file) and its own Redis key prefix, and cleans up after itself.

use std::sync::Arc;

use async_trait::async_trait;
use conflux_engine::bus::local::LocalBus;
use conflux_engine::bus::redis::RedisBus;
use conflux_engine::bus::EventBus;
use conflux_engine::crypto::vault::postgres::PgKeyVault;
use conflux_engine::crypto::vault::sqlite::SqliteKeyVault;
use conflux_engine::crypto::vault::KeyVault;
use conflux_engine::hooks::postgres::PgHookStore;
use conflux_engine::hooks::sqlite::SqliteHookStore;
use conflux_engine::hooks::HookStore;
use conflux_engine::secrets::postgres::PgSecretStore;
use conflux_engine::secrets::sqlite::SqliteSecretStore;
use conflux_engine::secrets::SecretStore;
use conflux_engine::store::postgres::{self, PgStore, PgStoreOptions};
use conflux_engine::store::sqlite::{self, SqliteStore};
use conflux_engine::store::{AppendRequest, EventStore, StoreError};
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use conflux_schema::{EventEnvelope, StreamId};

/// An append whose transaction is open until `commit`.
#[async_trait]
pub trait Held: Send {
    fn positions(&self) -> Vec<u64>;
    async fn commit(self: Box<Self>) -> Result<Vec<EventEnvelope>, StoreError>;
}

#[async_trait]
impl Held for postgres::HeldAppend {
    fn positions(&self) -> Vec<u64> {
        postgres::HeldAppend::positions(self).to_vec()
    }
    async fn commit(self: Box<Self>) -> Result<Vec<EventEnvelope>, StoreError> {
        postgres::HeldAppend::commit(*self).await
    }
}

#[async_trait]
impl Held for sqlite::HeldAppend {
    fn positions(&self) -> Vec<u64> {
        sqlite::HeldAppend::positions(self).to_vec()
    }
    async fn commit(self: Box<Self>) -> Result<Vec<EventEnvelope>, StoreError> {
        sqlite::HeldAppend::commit(*self).await
    }
}

/// What each backend pair provides to the suite.
#[async_trait]
pub trait Fixture: Sized + Send + Sync {
    async fn setup() -> Self;
    fn store(&self) -> Arc<dyn EventStore>;
    /// A second store on the same database, as a second process would have.
    async fn second_store(&self) -> Arc<dyn EventStore>;
    fn bus(&self) -> Arc<dyn EventBus>;
    /// The secret-value store on the same database as [`Fixture::store`].
    fn secret_store(&self) -> Arc<dyn SecretStore>;
    /// The hooks' delivery state on the same database as [`Fixture::store`].
    fn hook_store(&self) -> Arc<dyn HookStore>;
    /// A bus on the same transport and prefix as [`Fixture::bus`], used by another
    /// store (`store_id`): what a second environment sharing the prefix has. None for
    /// an in-process bus, which no other store can reach.
    async fn foreign_bus(&self, store_id: uuid::Uuid) -> Option<Arc<dyn EventBus>>;
    /// Makes the bus lose everything (Redis: FLUSHDB on the test's own database).
    async fn flush_bus(&self);
    async fn hold_open(&self, req: AppendRequest) -> Box<dyn Held>;
    /// The data-key tables of the store's database.
    fn vault(&self) -> Arc<dyn KeyVault>;
    /// The same tables through another connection pool, as a second process has them.
    async fn second_vault(&self) -> Arc<dyn KeyVault>;
    /// Rewrites a stored event's data behind the store's back.
    async fn tamper(&self, stream: &StreamId, version: u64, data: &str);
    /// Rewrites a stored event's type behind the store's back.
    async fn set_type(&self, stream: &StreamId, version: u64, event_type: &str);
    async fn teardown(self);
}

pub struct PgRedis {
    db: TestDatabase,
    store: PgStore,
    bus: RedisBus,
    prefix: String,
    pool: sqlx::PgPool,
}

#[async_trait]
impl Fixture for PgRedis {
    async fn setup() -> Self {
        let db = TestDatabase::create().await;
        let store = PgStore::connect(&db.url, &PgStoreOptions::default())
            .await
            .expect("store");
        let prefix = unique_prefix();
        let bus = RedisBus::connect(&redis_url(), &prefix).await.unwrap_or_else(|e| {
            panic!("cannot reach Redis: {e}\nstart it with: redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save \"\" --appendonly no")
        });
        let pool = db.pool().await;
        let bus = bus.for_store(store.store_id().await.expect("store id"));
        Self {
            db,
            store,
            bus,
            prefix,
            pool,
        }
    }
    fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }
    async fn second_store(&self) -> Arc<dyn EventStore> {
        Arc::new(
            PgStore::connect(&self.db.url, &PgStoreOptions::default())
                .await
                .expect("second store"),
        )
    }
    fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(self.bus.clone())
    }
    fn vault(&self) -> Arc<dyn KeyVault> {
        Arc::new(PgKeyVault::new(self.pool.clone()))
    }
    async fn second_vault(&self) -> Arc<dyn KeyVault> {
        Arc::new(PgKeyVault::new(self.db.pool().await))
    }
    fn secret_store(&self) -> Arc<dyn SecretStore> {
        Arc::new(PgSecretStore::new(self.store.pool().clone()))
    }
    fn hook_store(&self) -> Arc<dyn HookStore> {
        Arc::new(PgHookStore::new(self.store.pool().clone()))
    }
    async fn foreign_bus(&self, store_id: uuid::Uuid) -> Option<Arc<dyn EventBus>> {
        let bus = RedisBus::connect(&redis_url(), &self.prefix)
            .await
            .expect("second bus");
        Some(Arc::new(bus.for_store(store_id)))
    }
    async fn flush_bus(&self) {
        // Everything this test's bus holds lives under its prefix; deleting it is what a
        // FLUSHALL does to this bus, without disturbing tests running beside it.
        delete_redis_prefix(&self.prefix).await;
    }
    async fn hold_open(&self, req: AppendRequest) -> Box<dyn Held> {
        Box::new(self.store.append_held(req).await.expect("held append"))
    }
    async fn tamper(&self, stream: &StreamId, version: u64, data: &str) {
        sqlx::query("UPDATE events SET data = $1::jsonb WHERE stream_id = $2 AND version = $3")
            .bind(data)
            .bind(stream.as_str())
            .bind(version as i64)
            .execute(&self.pool)
            .await
            .expect("tamper");
    }
    async fn set_type(&self, stream: &StreamId, version: u64, event_type: &str) {
        sqlx::query("UPDATE events SET event_type = $1 WHERE stream_id = $2 AND version = $3")
            .bind(event_type)
            .bind(stream.as_str())
            .bind(version as i64)
            .execute(&self.pool)
            .await
            .expect("set type");
    }
    async fn teardown(self) {
        delete_redis_prefix(&self.prefix).await;
        self.pool.close().await;
        self.db.drop_database().await;
    }
}

pub struct SqliteLocal {
    dir: tempfile::TempDir,
    store: SqliteStore,
    bus: LocalBus,
    pool: sqlx::SqlitePool,
}

#[async_trait]
impl Fixture for SqliteLocal {
    async fn setup() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("conflux.db"))
            .await
            .expect("sqlite store");
        let pool = store.pool().clone();
        Self {
            dir,
            store,
            bus: LocalBus::new(),
            pool,
        }
    }
    fn store(&self) -> Arc<dyn EventStore> {
        Arc::new(self.store.clone())
    }
    async fn second_store(&self) -> Arc<dyn EventStore> {
        Arc::new(
            SqliteStore::open(&self.dir.path().join("conflux.db"))
                .await
                .expect("second store"),
        )
    }
    fn vault(&self) -> Arc<dyn KeyVault> {
        Arc::new(SqliteKeyVault::new(self.pool.clone()))
    }
    async fn second_vault(&self) -> Arc<dyn KeyVault> {
        let second = SqliteStore::open(&self.dir.path().join("conflux.db"))
            .await
            .expect("second store");
        Arc::new(SqliteKeyVault::new(second.pool().clone()))
    }
    fn bus(&self) -> Arc<dyn EventBus> {
        Arc::new(self.bus.clone())
    }
    fn secret_store(&self) -> Arc<dyn SecretStore> {
        Arc::new(SqliteSecretStore::new(self.pool.clone()))
    }
    fn hook_store(&self) -> Arc<dyn HookStore> {
        Arc::new(SqliteHookStore::new(self.pool.clone()))
    }
    async fn foreign_bus(&self, _store_id: uuid::Uuid) -> Option<Arc<dyn EventBus>> {
        None
    }
    async fn flush_bus(&self) {
        self.bus.simulate_data_loss();
    }
    async fn hold_open(&self, req: AppendRequest) -> Box<dyn Held> {
        Box::new(self.store.append_held(req).await.expect("held append"))
    }
    async fn tamper(&self, stream: &StreamId, version: u64, data: &str) {
        sqlx::query("UPDATE events SET data = ? WHERE stream_id = ? AND version = ?")
            .bind(data)
            .bind(stream.as_str())
            .bind(version as i64)
            .execute(&self.pool)
            .await
            .expect("tamper");
    }
    async fn set_type(&self, stream: &StreamId, version: u64, event_type: &str) {
        sqlx::query("UPDATE events SET event_type = ? WHERE stream_id = ? AND version = ?")
            .bind(event_type)
            .bind(stream.as_str())
            .bind(version as i64)
            .execute(&self.pool)
            .await
            .expect("set type");
    }
    async fn teardown(self) {
        self.pool.close().await;
    }
}
