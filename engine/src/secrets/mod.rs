//! Secrets: values a tenant's workflows use by name (`${secrets.NAME}`) without the
//! value ever entering the event log, a read model, an export or a log line.
//!
//! The log records references, never values: dispatch leaves `${secrets.NAME}` in the
//! `TaskDispatched` template (see `conflux_schema::reference`), and the value is put in
//! only in memory, by [`Secrets::reveal`], just before the `http` runner sends its
//! request or an agent's poll answer hands out a lease. A secret lives in its own table
//! (`secrets`, migration 0006), outside the log, so rotating or deleting one really
//! forgets the old value.
//!
//! Values are stored sealed, never in plaintext, by a [`SecretCipher`]. The one
//! implementation today, [`StoreKeyCipher`], keys AES-256-GCM with a 32-byte secret kept
//! in the same database (`EventStore::signing_secret("secret-values")`): it keeps values
//! out of dumps of the `secrets` table, logs and exports, not from someone who holds the
//! whole database. A cipher whose keys live elsewhere (per-tenant data keys wrapped by a
//! master key) is another [`SecretCipher`] handed to [`Secrets::new`]; nothing else
//! changes.
//!
//! # Layout
//! - this file: [`SecretName`], [`SecretValue`], [`SecretRecord`], [`SecretError`], the
//!   [`SecretStore`] and [`SecretCipher`] traits, and [`Secrets`], the service over them.
//! - `cipher`: [`StoreKeyCipher`] (AES-256-GCM under the store's own key).
//! - `postgres`, `sqlite`: the two [`SecretStore`] backends.
//! - `reveal`: templates in, values in memory out ([`Secrets::reveal`]), and
//!   [`Redactor`], which takes revealed values back out of what a request answered.

mod cipher;
pub mod postgres;
mod reveal;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::StoreError;

pub use cipher::{StoreKeyCipher, TenantKeyCipher};
pub use reveal::{unescape, Redactor, RevealError};

/// The largest secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A secret's name: `^[A-Za-z_][A-Za-z0-9_]{0,127}$`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretName(String);

impl SecretName {
    /// Validates `raw`.
    pub fn parse(raw: &str) -> Result<Self, SecretError> {
        if conflux_schema::reference::is_secret_name(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(SecretError::Invalid {
                field: "name",
                reason: format!(
                    "secret name {raw:?} must be 1 to 128 characters of A-Z, a-z, 0-9 and _, not starting with a digit"
                ),
            })
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SecretName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret's value, in memory only. Neither `Debug` nor `Display` shows it; only
/// [`SecretValue::expose`] does.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Validates `raw`: a non-empty string of at most [`MAX_VALUE_BYTES`].
    pub fn parse(raw: String) -> Result<Self, SecretError> {
        let reason = if raw.is_empty() {
            "a secret value must not be empty".to_owned()
        } else if raw.len() > MAX_VALUE_BYTES {
            format!("a secret value must be at most {MAX_VALUE_BYTES} bytes")
        } else {
            return Ok(Self(raw));
        };
        Err(SecretError::Invalid {
            field: "value",
            reason,
        })
    }

    /// The value itself: put it where it is used, never in a log or an error.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

impl std::fmt::Display for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A secret as lists show it: never its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRecord {
    /// Its name.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its value was last set.
    pub updated_at: DateTime<Utc>,
}

/// Why a secret operation did nothing. No variant ever holds a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A name or value that is not valid (`field` says which).
    #[error("{reason}")]
    Invalid {
        /// `name` or `value`.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// Creating a secret whose name the tenant already has.
    #[error("secret {0:?} already exists (PUT /api/v1/secrets/{0} rotates it)")]
    AlreadyExists(String),
    /// No such secret in the tenant.
    #[error("secret {0:?} does not exist")]
    NotFound(String),
    /// Sealing or opening failed (a wrong key, a value moved to another row).
    #[error("secret {name:?} cannot be {action}: {reason}")]
    Cipher {
        /// The secret.
        name: String,
        /// `sealed` or `opened`.
        action: &'static str,
        /// Why (never the value).
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where sealed secret values are kept, per tenant and name. Implementations never see
/// a plaintext value.
#[async_trait]
pub trait SecretStore: Send + Sync + 'static {
    /// Stores a new secret; [`SecretError::AlreadyExists`] if the tenant has `name`.
    async fn insert(
        &self,
        tenant: &str,
        name: &SecretName,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<SecretRecord, SecretError>;

    /// Replaces the sealed value of an existing secret; [`SecretError::NotFound`] if
    /// the tenant has no `name`.
    async fn replace(
        &self,
        tenant: &str,
        name: &SecretName,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<SecretRecord, SecretError>;

    /// The tenant's secrets (names and times), sorted by name.
    async fn list(&self, tenant: &str) -> Result<Vec<SecretRecord>, SecretError>;

    /// The sealed value of `name`, if the tenant has it.
    async fn get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, SecretError>;

    /// Deletes `name`; [`SecretError::NotFound`] if the tenant has no such secret.
    async fn delete(&self, tenant: &str, name: &SecretName) -> Result<(), SecretError>;
}

/// Why a [`SecretCipher`] failed (never holds the plaintext).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct CipherError(pub String);

/// Seals and opens secret values. `aad` (associated data) binds a sealed value to the
/// place it belongs ([`Secrets`] passes tenant and name), so a sealed value copied to
/// another row does not open. `tenant` is there for implementations that key per tenant.
#[async_trait]
pub trait SecretCipher: Send + Sync + 'static {
    /// `plaintext` sealed for `tenant`, bound to `aad`.
    async fn seal(
        &self,
        tenant: &str,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError>;

    /// The plaintext of `sealed`, if it was sealed for `tenant` and `aad`.
    async fn open(&self, tenant: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError>;
}

/// The secrets service: validation, sealing, and the store; cheap to clone.
#[derive(Clone)]
pub struct Secrets {
    store: Arc<dyn SecretStore>,
    cipher: Arc<dyn SecretCipher>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secrets")
    }
}

/// The associated data of a secret: its tenant and name, NUL-separated.
fn aad(tenant: &str, name: &str) -> Vec<u8> {
    [tenant.as_bytes(), b"\0", name.as_bytes()].concat()
}

impl Secrets {
    /// Secrets kept in `store`, sealed by `cipher`.
    pub fn new(store: Arc<dyn SecretStore>, cipher: Arc<dyn SecretCipher>) -> Self {
        Self { store, cipher }
    }

    async fn seal(
        &self,
        tenant: &str,
        name: &SecretName,
        value: &SecretValue,
    ) -> Result<Vec<u8>, SecretError> {
        self.cipher
            .seal(
                tenant,
                &aad(tenant, name.as_str()),
                value.expose().as_bytes(),
            )
            .await
            .map_err(|e| SecretError::Cipher {
                name: name.to_string(),
                action: "sealed",
                reason: e.0,
            })
    }

    /// Creates `name` in `tenant`; [`SecretError::AlreadyExists`] if it exists.
    pub async fn create(
        &self,
        tenant: &str,
        name: &SecretName,
        value: &SecretValue,
    ) -> Result<SecretRecord, SecretError> {
        let sealed = self.seal(tenant, name, value).await?;
        self.store.insert(tenant, name, &sealed, now()).await
    }

    /// Gives `name` a new value (rotation); [`SecretError::NotFound`] if it is missing.
    pub async fn rotate(
        &self,
        tenant: &str,
        name: &SecretName,
        value: &SecretValue,
    ) -> Result<SecretRecord, SecretError> {
        let sealed = self.seal(tenant, name, value).await?;
        self.store.replace(tenant, name, &sealed, now()).await
    }

    /// The tenant's secrets, sorted by name, without values.
    pub async fn list(&self, tenant: &str) -> Result<Vec<SecretRecord>, SecretError> {
        let mut secrets = self.store.list(tenant).await?;
        // Byte order, whatever the database's collation.
        secrets.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(secrets)
    }

    /// Deletes `name`; [`SecretError::NotFound`] if it is missing.
    pub async fn delete(&self, tenant: &str, name: &SecretName) -> Result<(), SecretError> {
        self.store.delete(tenant, name).await
    }

    /// The value of `name` in `tenant`, in memory; None when there is no such secret.
    pub async fn value(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<SecretValue>, SecretError> {
        let Some(sealed) = self.store.get(tenant, name).await? else {
            return Ok(None);
        };
        let open = |reason: String| SecretError::Cipher {
            name: name.to_owned(),
            action: "opened",
            reason,
        };
        let plain = self
            .cipher
            .open(tenant, &aad(tenant, name), &sealed)
            .await
            .map_err(|e| open(e.0))?;
        String::from_utf8(plain)
            .map(|v| Some(SecretValue(v)))
            .map_err(|_| open("it is not UTF-8".into()))
    }

    /// The names among `names` that `tenant` does not have, sorted.
    pub async fn missing(
        &self,
        tenant: &str,
        names: impl IntoIterator<Item = &str>,
    ) -> Result<Vec<String>, SecretError> {
        let have: std::collections::BTreeSet<String> = self
            .store
            .list(tenant)
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect();
        let mut missing: Vec<String> = names
            .into_iter()
            .filter(|n| !have.contains(*n))
            .map(str::to_owned)
            .collect();
        missing.sort();
        missing.dedup();
        Ok(missing)
    }
}

/// Now, to the microsecond (what both stores keep).
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
