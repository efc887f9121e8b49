//! The keyring: finds, creates and caches the data keys that seal payloads.
//!
//! Three levels, each wrapped by the one above with AES-256-GCM:
//! master key (given to the server, never stored) → tenant key (one live per tenant,
//! `tenant_keys`) → execution key (one per execution, `execution_keys`) → payloads.
//! Rotating the master key re-wraps only tenant keys; erasing a tenant destroys its
//! tenant key and every execution key under it; erasing an execution destroys one key.
//! Events are never touched by either.
//!
//! Keys are cached in memory once unwrapped. Every server polls the vault's erasure
//! count ([`Keyring::refresh`], every 250 ms from [`Keyring::spawn_refresh`]) and drops
//! its cache when it changes, so an erasure anywhere reaches every server's reads within
//! a second.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::aead::SecretKey;
use super::key_writer::{store_execution_keys, NewKey, MAX_KEY_BATCH};
use super::master::MasterKeys;
use super::vault::{KeyVault, StoredExecutionKey, StoredTenantKey};
use super::CryptoError;

/// The owner of the store's own tenant key (not a valid tenant name, so no tenant can
/// have it or erase it).
pub const STORE_KEY_OWNER: &str = "*";

/// Execution keys kept in memory before the cache is cleared.
const MAX_CACHED_EXECUTIONS: usize = 200_000;

/// What the keyring knows of an execution's key.
#[derive(Clone, Debug)]
pub enum KeyState {
    /// The key: payloads seal and open with it.
    Live(Arc<SecretKey>),
    /// The key was destroyed: its payloads read as erased, and new ones are not kept.
    Erased,
    /// The execution has no key (nothing of it was ever sealed).
    Missing,
    /// Its key is stored but does not unwrap (a corrupted row, or a master key this
    /// server lacks): its payloads read as tampered.
    Unreadable,
}

#[derive(Default)]
struct Cache {
    /// Live tenant keys by id.
    tenant_keys: HashMap<Uuid, Arc<SecretKey>>,
    /// Each tenant's live key id.
    active: HashMap<String, Uuid>,
    /// Execution keys (live or erased).
    executions: HashMap<Uuid, KeyState>,
    /// The vault's erasure count when the cache was last known good.
    erasures_seen: u64,
    /// Moves whenever keys are dropped (an erasure here or elsewhere): a key read from
    /// the vault before that is used for the read in flight, but never cached.
    epoch: u64,
}

/// Data keys for one store, under the configured master keys.
pub struct Keyring {
    master: MasterKeys,
    vault: Arc<dyn KeyVault>,
    cache: Mutex<Cache>,
    /// New execution keys, stored in batches by [`store_execution_keys`].
    new_keys: mpsc::Sender<NewKey>,
}

fn tenant_key_aad(key_id: Uuid, tenant: &str) -> Vec<u8> {
    let mut aad = b"conflux/tenant-key/v1/".to_vec();
    aad.extend_from_slice(key_id.as_bytes());
    aad.extend_from_slice(tenant.as_bytes());
    aad
}

fn execution_key_aad(execution: Uuid, tenant_key_id: Uuid) -> Vec<u8> {
    let mut aad = b"conflux/execution-key/v1/".to_vec();
    aad.extend_from_slice(execution.as_bytes());
    aad.extend_from_slice(tenant_key_id.as_bytes());
    aad
}

impl Keyring {
    /// Opens the keyring of `vault` under `master`, refusing — with a message that
    /// names the key ids — when the vault holds live keys wrapped by a master key that
    /// is not configured, or when one of them does not unwrap: a server never writes
    /// under keys it could not read back.
    pub async fn open(master: MasterKeys, vault: Arc<dyn KeyVault>) -> Result<Self, CryptoError> {
        let (new_keys, waiting) = mpsc::channel(4 * MAX_KEY_BATCH);
        tokio::spawn(store_execution_keys(vault.clone(), waiting));
        let keyring = Self {
            master,
            vault,
            cache: Mutex::new(Cache::default()),
            new_keys,
        };
        for used in keyring.vault.master_key_uses().await? {
            if keyring.master.find(&used.master_kid).is_none() {
                return Err(CryptoError::UnknownMasterKey {
                    needed: used.master_kid,
                    keys: used.tenant_keys,
                    configured: keyring.master.kids().join(", "),
                });
            }
        }
        // A key id matches only its own key; still, prove one unwrap per master key.
        let sample = keyring.vault.tenant_keys_not_under("", 1000).await?;
        for kid in keyring.master.kids() {
            if let Some(row) = sample.iter().find(|r| r.master_kid == kid) {
                keyring.unwrap_tenant_key(row)?;
            }
        }
        // The store's own key, under the first master key it was started with: it makes
        // every later start prove its master key (even before any tenant has data), and
        // refuses a keyless server on a store that was ever sealed. Two servers starting
        // together with different keys: one row wins, the other cannot unwrap it.
        keyring.live_tenant_key(STORE_KEY_OWNER).await?;
        let erasures = keyring.vault.erasures().await?;
        keyring.lock().erasures_seen = erasures;
        Ok(keyring)
    }

    /// Whether a vault with no master key configured holds live keys (then payloads
    /// are sealed and a server without the key must not start).
    pub async fn vault_needs_master_key(
        vault: &dyn KeyVault,
    ) -> Result<Option<String>, CryptoError> {
        Ok(vault
            .master_key_uses()
            .await?
            .into_iter()
            .next()
            .map(|u| u.master_kid))
    }

    /// The configured master keys.
    pub fn master(&self) -> &MasterKeys {
        &self.master
    }

    /// The vault.
    pub fn vault(&self) -> &Arc<dyn KeyVault> {
        &self.vault
    }

    fn lock(&self) -> MutexGuard<'_, Cache> {
        self.cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn unwrap_tenant_key(&self, row: &StoredTenantKey) -> Result<Option<SecretKey>, CryptoError> {
        let Some(wrapped) = &row.wrapped else {
            return Ok(None);
        };
        let master =
            self.master
                .find(&row.master_kid)
                .ok_or_else(|| CryptoError::UnknownMasterKey {
                    needed: row.master_kid.clone(),
                    keys: 1,
                    configured: self.master.kids().join(", "),
                })?;
        master
            .key()
            .unwrap_key(&tenant_key_aad(row.key_id, &row.tenant), wrapped)
            .map(Some)
            .map_err(|_| CryptoError::WrongMasterKey(row.master_kid.clone()))
    }

    /// The tenant's live key, created (under the primary master key) if it has none.
    async fn live_tenant_key(&self, tenant: &str) -> Result<(Uuid, Arc<SecretKey>), CryptoError> {
        let epoch = {
            let cache = self.lock();
            if let Some(id) = cache.active.get(tenant) {
                if let Some(key) = cache.tenant_keys.get(id) {
                    return Ok((*id, key.clone()));
                }
            }
            cache.epoch
        };
        let row = match self.vault.active_tenant_key(tenant).await? {
            Some(row) => row,
            None => {
                let key_id = Uuid::now_v7();
                let fresh = SecretKey::random()?;
                let primary = self.master.primary();
                let wrapped = primary
                    .key()
                    .wrap(&tenant_key_aad(key_id, tenant), &fresh)?;
                self.vault
                    .create_tenant_key(&StoredTenantKey {
                        key_id,
                        tenant: tenant.to_owned(),
                        master_kid: primary.kid().to_owned(),
                        wrapped: Some(wrapped),
                    })
                    .await?
            }
        };
        let key = Arc::new(self.unwrap_tenant_key(&row)?.ok_or_else(|| {
            CryptoError::Vault(format!("tenant {tenant:?}'s live key is erased"))
        })?);
        let mut cache = self.lock();
        if cache.epoch == epoch {
            cache.tenant_keys.insert(row.key_id, key.clone());
            cache.active.insert(tenant.to_owned(), row.key_id);
        }
        Ok((row.key_id, key))
    }

    /// The tenant key `key_id`, or None once erased.
    async fn tenant_key_by_id(&self, key_id: Uuid) -> Result<Option<Arc<SecretKey>>, CryptoError> {
        let epoch = {
            let cache = self.lock();
            if let Some(key) = cache.tenant_keys.get(&key_id) {
                return Ok(Some(key.clone()));
            }
            cache.epoch
        };
        let Some(row) = self.vault.tenant_key(key_id).await? else {
            return Ok(None);
        };
        let Some(key) = self.unwrap_tenant_key(&row)? else {
            return Ok(None);
        };
        let key = Arc::new(key);
        let mut cache = self.lock();
        if cache.epoch == epoch {
            cache.tenant_keys.insert(key_id, key.clone());
        }
        Ok(Some(key))
    }

    /// The state of a stored execution key row.
    async fn execution_state(&self, row: &StoredExecutionKey) -> Result<KeyState, CryptoError> {
        let Some(wrapped) = &row.wrapped else {
            return Ok(KeyState::Erased);
        };
        let Some(tenant_key) = self.tenant_key_by_id(row.tenant_key_id).await? else {
            return Ok(KeyState::Erased);
        };
        let key = tenant_key
            .unwrap_key(
                &execution_key_aad(row.execution_id, row.tenant_key_id),
                wrapped,
            )
            .map_err(|_| {
                CryptoError::Vault(format!(
                    "the key of execution {} does not unwrap under its tenant key",
                    row.execution_id
                ))
            })?;
        Ok(KeyState::Live(Arc::new(key)))
    }

    /// Caches `state` unless keys were dropped since `epoch` (it may predate an erasure).
    fn remember(&self, execution: Uuid, state: &KeyState, epoch: u64) {
        if matches!(state, KeyState::Missing | KeyState::Unreadable) {
            return;
        }
        let mut cache = self.lock();
        if cache.epoch != epoch {
            return;
        }
        if cache.executions.len() >= MAX_CACHED_EXECUTIONS {
            cache.executions.clear();
        }
        cache.executions.insert(execution, state.clone());
    }

    /// The key to seal new payloads of `execution` (of `tenant`) with, created if it has
    /// none. [`KeyState::Erased`] if it was erased: new payloads are then not kept.
    pub async fn key_for_writing(
        &self,
        tenant: &str,
        execution: Uuid,
    ) -> Result<KeyState, CryptoError> {
        let epoch = {
            let cache = self.lock();
            if let Some(state) = cache.executions.get(&execution) {
                return Ok(state.clone());
            }
            cache.epoch
        };
        for _ in 0..2 {
            let (tenant_key_id, tenant_key) = self.live_tenant_key(tenant).await?;
            let fresh = SecretKey::random()?;
            let wrapped = tenant_key.wrap(&execution_key_aad(execution, tenant_key_id), &fresh)?;
            let stored = self
                .create_execution_key(StoredExecutionKey {
                    execution_id: execution,
                    tenant: tenant.to_owned(),
                    tenant_key_id,
                    wrapped: Some(wrapped.clone()),
                })
                .await?;
            let Some(row) = stored else {
                // The tenant key was erased meanwhile: take the tenant's new one.
                self.lock().active.remove(tenant);
                continue;
            };
            let state =
                if row.tenant_key_id == tenant_key_id && row.wrapped.as_ref() == Some(&wrapped) {
                    KeyState::Live(Arc::new(fresh))
                } else {
                    self.execution_state(&row).await?
                };
            self.remember(execution, &state, epoch);
            return Ok(state);
        }
        Err(CryptoError::Vault(format!(
            "tenant {tenant:?}'s key was erased twice while creating a key for execution {execution}"
        )))
    }

    /// The tenant's live key and its id, created if it has none (what seals the
    /// tenant's secrets).
    pub async fn tenant_key_for_writing(
        &self,
        tenant: &str,
    ) -> Result<(Uuid, Arc<SecretKey>), CryptoError> {
        self.live_tenant_key(tenant).await
    }

    /// The tenant key `key_id`, or None once erased.
    pub async fn tenant_key(&self, key_id: Uuid) -> Result<Option<Arc<SecretKey>>, CryptoError> {
        self.tenant_key_by_id(key_id).await
    }

    /// Stores `key` through the batching task (directly if it is gone).
    async fn create_execution_key(
        &self,
        key: StoredExecutionKey,
    ) -> Result<Option<StoredExecutionKey>, CryptoError> {
        let (stored, row) = oneshot::channel();
        match self.new_keys.send(NewKey { key, stored }).await {
            Ok(()) => match row.await {
                Ok(row) => row,
                Err(_) => Err(CryptoError::Vault("the key writer stopped".into())),
            },
            Err(mpsc::error::SendError(new)) => {
                Ok(self.vault.create_execution_key(&new.key).await?)
            }
        }
    }

    /// The key to open payloads of `execution` with.
    pub async fn key_for_reading(&self, execution: Uuid) -> Result<KeyState, CryptoError> {
        let epoch = {
            let cache = self.lock();
            if let Some(state) = cache.executions.get(&execution) {
                return Ok(state.clone());
            }
            cache.epoch
        };
        let state = match self.vault.execution_key(execution).await? {
            Some(row) => match self.execution_state(&row).await {
                Ok(state) => state,
                // Only an unreachable database fails a read; a key that does not unwrap
                // (a corrupted row, a master key this server lacks) makes this one
                // execution's payloads unreadable, not every tenant's reads.
                Err(CryptoError::Store(e)) => return Err(CryptoError::Store(e)),
                Err(e) => {
                    tracing::warn!(%execution, error = %e, "an execution's data key does not unwrap; its payloads read as tampered");
                    KeyState::Unreadable
                }
            },
            None => KeyState::Missing,
        };
        self.remember(execution, &state, epoch);
        Ok(state)
    }

    /// Destroys every key of `tenant`; returns how many.
    pub async fn erase_tenant(&self, tenant: &str) -> Result<u64, CryptoError> {
        let destroyed = self.vault.erase_tenant(tenant).await?;
        self.forget_all();
        Ok(destroyed)
    }

    /// Destroys the key of `execution`; false if it had no live key.
    pub async fn erase_execution(&self, execution: Uuid) -> Result<bool, CryptoError> {
        let destroyed = self.vault.erase_execution(execution).await?;
        let mut cache = self.lock();
        cache.epoch += 1;
        cache.executions.insert(execution, KeyState::Erased);
        Ok(destroyed)
    }

    fn forget_all(&self) {
        let mut cache = self.lock();
        cache.epoch += 1;
        cache.tenant_keys.clear();
        cache.active.clear();
        cache.executions.clear();
    }

    /// Drops every cached key if any key was erased since the last look (by any server).
    pub async fn refresh(&self) -> Result<(), CryptoError> {
        let erasures = self.vault.erasures().await?;
        let changed = self.lock().erasures_seen != erasures;
        if changed {
            self.forget_all();
            self.lock().erasures_seen = erasures;
            tracing::info!(erasures, "keys were erased: cached data keys dropped");
        }
        Ok(())
    }

    /// Calls [`Keyring::refresh`] every 250 ms until `stop`.
    pub fn spawn_refresh(self: &Arc<Self>, stop: CancellationToken) {
        let keyring = self.clone();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                }
                match keyring.refresh().await {
                    Ok(()) => failures = 0,
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures % 100 == 0 {
                            tracing::warn!(error = %e, "checking for erased keys failed; retrying");
                        }
                    }
                }
            }
        });
    }

    /// Re-wraps every live tenant key that is not under the primary master key with the
    /// primary; events and execution keys are untouched. Returns how many were
    /// re-wrapped. Safe to run while servers run (each row is swapped atomically, and
    /// servers accept both keys during the switch) and to run again.
    pub async fn rotate_master(&self, mut progress: impl FnMut(u64)) -> Result<u64, CryptoError> {
        let primary = self.master.primary();
        let mut done = 0;
        loop {
            let rows = self.vault.tenant_keys_not_under(primary.kid(), 500).await?;
            if rows.is_empty() {
                return Ok(done);
            }
            for row in rows {
                let Some(key) = self.unwrap_tenant_key(&row)? else {
                    continue;
                };
                let wrapped = primary
                    .key()
                    .wrap(&tenant_key_aad(row.key_id, &row.tenant), &key)?;
                if self
                    .vault
                    .rewrap_tenant_key(row.key_id, &row.master_kid, primary.kid(), &wrapped)
                    .await?
                {
                    done += 1;
                    progress(done);
                }
            }
        }
    }
}
