//! Where data keys are kept: the `tenant_keys` and `execution_keys` tables (migration
//! 0007), next to the event log in the same database. Only wrapped keys are stored;
//! erasing a key nulls its wrapped bytes, which is what crypto-shredding means.
//!
//! One trait, a Postgres and a SQLite implementation, one conformance suite
//! (`engine/tests/vault.rs`). The cryptography is not here: see [`super::keyring`].

pub mod postgres;
pub mod sqlite;

use async_trait::async_trait;
use uuid::Uuid;

use crate::store::StoreError;

/// A tenant's data key as stored: wrapped by the master key `master_kid`, or erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTenantKey {
    /// The key's id.
    pub key_id: Uuid,
    /// The tenant it belongs to.
    pub tenant: String,
    /// The id of the master key that wraps it.
    pub master_kid: String,
    /// The wrapped key; None once erased.
    pub wrapped: Option<Vec<u8>>,
}

/// An execution's data key as stored: wrapped by its tenant's key, or erased.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredExecutionKey {
    /// The execution.
    pub execution_id: Uuid,
    /// Its tenant.
    pub tenant: String,
    /// The tenant key that wraps it.
    pub tenant_key_id: Uuid,
    /// The wrapped key; None once erased.
    pub wrapped: Option<Vec<u8>>,
}

/// How many keys of one master key id are still live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MasterKeyUse {
    /// The master key id.
    pub master_kid: String,
    /// Live (not erased) tenant keys it wraps.
    pub tenant_keys: u64,
}

/// The data-key tables. Implementations guarantee:
/// - a tenant has at most one live key, and an execution at most one key, whoever
///   creates them concurrently (the loser gets the winner's row back);
/// - an execution key is only created while the tenant key that wraps it is live;
/// - erasure is final: a nulled key never comes back, and [`KeyVault::erasures`] grows
///   with every erased row.
#[async_trait]
pub trait KeyVault: Send + Sync + 'static {
    /// The tenant's live key, if it has one.
    async fn active_tenant_key(&self, tenant: &str) -> Result<Option<StoredTenantKey>, StoreError>;

    /// Stores `key` as its tenant's live key unless the tenant has one already; returns
    /// the tenant's live key either way.
    async fn create_tenant_key(&self, key: &StoredTenantKey)
        -> Result<StoredTenantKey, StoreError>;

    /// The tenant key `key_id` (live or erased), if it exists.
    async fn tenant_key(&self, key_id: Uuid) -> Result<Option<StoredTenantKey>, StoreError>;

    /// Stores `key` unless its execution has a key already, and only while the tenant
    /// key it names is live. Returns the execution's key, or None when the tenant key
    /// was erased (the caller must take the tenant's new key and try again).
    async fn create_execution_key(
        &self,
        key: &StoredExecutionKey,
    ) -> Result<Option<StoredExecutionKey>, StoreError>;

    /// [`KeyVault::create_execution_key`] for several executions (each at most once) in
    /// as few statements as the backend allows; results in the order given.
    async fn create_execution_keys(
        &self,
        keys: &[StoredExecutionKey],
    ) -> Result<Vec<Option<StoredExecutionKey>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.create_execution_key(key).await?);
        }
        Ok(out)
    }

    /// The execution's key (live or erased), if it has one.
    async fn execution_key(
        &self,
        execution: Uuid,
    ) -> Result<Option<StoredExecutionKey>, StoreError>;

    /// Erases every live key of `tenant` (its tenant key and all its executions' keys);
    /// returns how many keys were destroyed.
    async fn erase_tenant(&self, tenant: &str) -> Result<u64, StoreError>;

    /// Erases the execution's key; false if it had no live key.
    async fn erase_execution(&self, execution: Uuid) -> Result<bool, StoreError>;

    /// How many keys have ever been erased (only grows): servers poll it to drop keys
    /// they hold in memory.
    async fn erasures(&self) -> Result<u64, StoreError>;

    /// Every master key id that wraps a live tenant key, with how many.
    async fn master_key_uses(&self) -> Result<Vec<MasterKeyUse>, StoreError>;

    /// Up to `limit` live tenant keys wrapped by a master key other than `kid`.
    async fn tenant_keys_not_under(
        &self,
        kid: &str,
        limit: usize,
    ) -> Result<Vec<StoredTenantKey>, StoreError>;

    /// Replaces a live tenant key's wrapping if it is still wrapped by `old_kid`;
    /// false if it changed meanwhile (erased, or re-wrapped by someone else).
    async fn rewrap_tenant_key(
        &self,
        key_id: Uuid,
        old_kid: &str,
        new_kid: &str,
        wrapped: &[u8],
    ) -> Result<bool, StoreError>;
}
