//! Choosing the store, the bus and the task queues from the configuration: Postgres +
//! Redis in production, the embedded SQLite store + in-process bus and queues when
//! nothing is configured.

use std::sync::Arc;

use anyhow::Context;
use conflux_engine::access::jwt::{JwtSettings, JwtVerifier};
use conflux_engine::access::Access;
use conflux_engine::bus::local::LocalBus;
use conflux_engine::bus::redis::RedisBus;
use conflux_engine::bus::EventBus;
use conflux_engine::crypto::sealed_store::SealedStore;
use conflux_engine::crypto::vault::postgres::PgKeyVault;
use conflux_engine::crypto::vault::sqlite::SqliteKeyVault;
use conflux_engine::crypto::vault::KeyVault;
use conflux_engine::crypto::{Keyring, PayloadCodec};
use conflux_engine::hooks::postgres::PgHookStore;
use conflux_engine::hooks::sqlite::SqliteHookStore;
use conflux_engine::hooks::{HookStore, Hooks};
use conflux_engine::queue::local::LocalTaskQueue;
use conflux_engine::queue::redis::RedisTaskQueue;
use conflux_engine::queue::TaskQueue;
use conflux_engine::secrets::postgres::PgSecretStore;
use conflux_engine::secrets::sqlite::SqliteSecretStore;
use conflux_engine::secrets::{
    SecretCipher, SecretStore, Secrets, StoreKeyCipher, TenantKeyCipher,
};
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};
use conflux_engine::store::sqlite::SqliteStore;
use conflux_engine::store::EventStore;
use conflux_projector::ReadModels;

use crate::config::Config;

/// The store, bus and queues every role of this process shares.
#[derive(Clone)]
pub struct Backends {
    /// The system of record, as the API and the engine read and write it: with
    /// encryption at rest, payloads are sealed on append and opened on read.
    pub store: Arc<dyn EventStore>,
    /// The same store as stored: sealed payloads stay sealed. The relay (so the bus
    /// carries ciphertext) and the projector (so read models do) use this one.
    pub stored: Arc<dyn EventStore>,
    /// Seals and opens payloads (off without a master key).
    pub codec: PayloadCodec,
    /// What `http` tasks may call (`CONFLUX_EGRESS_ALLOW`).
    pub egress: conflux_engine::runner::egress::EgressPolicy,
    /// The transport.
    pub bus: Arc<dyn EventBus>,
    /// Agent task queues (Redis Streams per role with Redis, else in-process).
    pub queue: Arc<dyn TaskQueue>,
    /// The read models (Postgres tables next to the store, or their own SQLite file).
    pub read_models: ReadModels,
    /// `postgres+redis`, `postgres+in-process`, `embedded+redis` or `embedded`.
    pub mode: &'static str,
    /// The store's identity, which the bus records as its owner.
    pub store_id: uuid::Uuid,
    /// Tenants, API keys and the bootstrap admin token.
    pub access: Access,
    /// The tenants' secrets, sealed in the store's database.
    pub secrets: Secrets,
    /// Webhooks: their definitions in the log, their delivery state (sealed secrets,
    /// cursors, leases, delivery records) in the store's database.
    pub hooks: Hooks,
}

async fn open_read_models(config: &Config) -> anyhow::Result<ReadModels> {
    match &config.database_url {
        Some(url) => ReadModels::connect_postgres(url)
            .await
            .context("opening the read models in Postgres (DATABASE_URL)"),
        None => {
            let path = config.data_dir.join("read-models.db");
            ReadModels::open_sqlite(&path)
                .await
                .with_context(|| format!("opening the embedded read models {}", path.display()))
        }
    }
}

/// What the store's database holds: the log, data keys, secrets, hooks' state.
type Stores = (
    Arc<dyn EventStore>,
    Arc<dyn KeyVault>,
    Arc<dyn SecretStore>,
    Arc<dyn HookStore>,
);

/// The event store, and the data keys, secrets and hooks kept in the same database.
async fn open_store(config: &Config) -> anyhow::Result<Stores> {
    match &config.database_url {
        Some(url) => {
            let options = PgStoreOptions {
                max_connections: config.pg_max_connections,
                ..PgStoreOptions::default()
            };
            let store = PgStore::connect(url, &options)
                .await
                .context("opening the Postgres event store (DATABASE_URL)")?;
            tracing::info!("event store: Postgres");
            let vault = PgKeyVault::connect(url, 4)
                .await
                .context("connecting to the data keys (DATABASE_URL)")?;
            let secrets = PgSecretStore::new(store.pool().clone());
            let hooks = PgHookStore::new(store.pool().clone());
            Ok((
                Arc::new(store),
                Arc::new(vault),
                Arc::new(secrets),
                Arc::new(hooks),
            ))
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
            let vault = SqliteKeyVault::new(store.pool().clone());
            let secrets = SqliteSecretStore::new(store.pool().clone());
            let hooks = SqliteHookStore::new(store.pool().clone());
            Ok((
                Arc::new(store),
                Arc::new(vault),
                Arc::new(secrets),
                Arc::new(hooks),
            ))
        }
    }
}

/// The payload codec: on with the configured master keys (refusing to start if the
/// store's keys need another one), off without — unless the store already holds sealed
/// data, which a server without the key could neither read nor extend correctly.
async fn open_codec(config: &Config, vault: Arc<dyn KeyVault>) -> anyhow::Result<PayloadCodec> {
    match config.master_keys()? {
        Some(master) => {
            let primary = master.primary().kid().to_owned();
            let keyring = Keyring::open(master, vault)
                .await
                .context("opening the data keys under the configured master key")?;
            tracing::info!(master_key = %primary, "payload encryption at rest: on (AES-256-GCM)");
            Ok(PayloadCodec::new(Arc::new(keyring)))
        }
        None => {
            if let Some(kid) = Keyring::vault_needs_master_key(&*vault).await? {
                anyhow::bail!(
                    "this store holds payloads encrypted under master key {kid}; set \
                     CONFLUX_MASTER_KEY (or CONFLUX_MASTER_KEY_FILE) to that key to start"
                );
            }
            Ok(PayloadCodec::off())
        }
    }
}

impl Backends {
    /// Opens the configured backends (running migrations), or the embedded ones.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let egress = conflux_engine::runner::egress::EgressPolicy::parse(&config.egress_allow)
            .map_err(|e| anyhow::anyhow!("CONFLUX_EGRESS_ALLOW: {e}"))?;
        let (stored, vault, secret_store, hook_store) = open_store(config).await?;
        let codec = open_codec(config, vault).await?;
        let store: Arc<dyn EventStore> = if codec.is_on() {
            Arc::new(SealedStore::new(stored.clone(), codec.clone()))
        } else {
            stored.clone()
        };
        let store_key = StoreKeyCipher::of(&*stored)
            .await
            .context("reading the key that seals secret values")?;
        // With a master key, secret values are sealed under their tenant's data key.
        let cipher: Arc<dyn SecretCipher> = match codec.keyring() {
            Some(keyring) => Arc::new(TenantKeyCipher::new(keyring.clone(), store_key)),
            None => Arc::new(store_key),
        };
        let secrets = Secrets::new(secret_store, cipher.clone());
        // Hooks' secrets are sealed like secret values; their deliveries read the log
        // as the API does (payloads opened).
        let hooks = Hooks::new(store.clone(), hook_store, cipher, egress.clone());
        let store_id = store
            .store_id()
            .await
            .context("reading the store's identity")?;
        let mut access = Access::open(store.clone(), None)
            .await
            .context("reading tenants, API keys and the stream-token secret")?
            .with_stream_token_ttl(std::time::Duration::from_secs(config.stream_token_ttl_secs));
        if let Some(path) = &config.jwt_jwks_file {
            let (Some(issuer), Some(audience)) = (&config.jwt_issuer, &config.jwt_audience) else {
                anyhow::bail!(
                    "CONFLUX_JWT_JWKS_FILE needs CONFLUX_JWT_ISSUER and CONFLUX_JWT_AUDIENCE"
                );
            };
            let settings = JwtSettings {
                issuer: issuer.clone(),
                audience: audience.clone(),
                tenant_claim: config.jwt_tenant_claim.clone(),
                role_claim: config.jwt_role_claim.clone(),
            };
            access = access.with_jwt(JwtVerifier::from_file(path, settings)?);
            tracing::info!(jwks = %path.display(), %issuer, %audience, "accepting the identity provider's JWTs");
        }
        let read_models = open_read_models(config).await?;
        let (bus, queue): (Arc<dyn EventBus>, Arc<dyn TaskQueue>) = match &config.redis_url {
            Some(url) => {
                let bus = RedisBus::connect(url, &config.redis_prefix)
                    .await
                    .context("connecting to Redis (REDIS_URL)")?
                    .for_store(store_id);
                let queue = RedisTaskQueue::connect(url, &config.redis_prefix)
                    .await
                    .context("connecting the agent task queues to Redis (REDIS_URL)")?;
                tracing::info!(prefix = %config.redis_prefix, "event bus and task queues: Redis Streams");
                (Arc::new(bus), Arc::new(queue))
            }
            None => {
                tracing::info!("no REDIS_URL: using the in-process bus and task queues (every role must run in this process)");
                (Arc::new(LocalBus::new()), Arc::new(LocalTaskQueue::new()))
            }
        };
        let mode = match (config.database_url.is_some(), config.redis_url.is_some()) {
            (true, true) => "postgres+redis",
            (true, false) => "postgres+in-process",
            (false, true) => "embedded+redis",
            (false, false) => "embedded",
        };
        Ok(Self {
            store,
            stored,
            codec,
            egress,
            bus,
            queue,
            read_models,
            mode,
            store_id,
            access,
            secrets,
            hooks,
        })
    }
}
