//! The two [`SecretCipher`]s, both AES-256-GCM ([`crate::crypto::aead`]):
//!
//! - [`StoreKeyCipher`], without a master key: a 32-byte key kept in the store itself
//!   (`EventStore::signing_secret("secret-values")`, made once per store, shared by every
//!   server). It keeps values out of dumps of the `secrets` table, logs and exports, but
//!   not from someone holding the whole database. Sealed form: nonce ‖ ciphertext ‖ tag.
//! - [`TenantKeyCipher`], with a master key (`CONFLUX_MASTER_KEY`): the tenant's data key,
//!   wrapped by the master key (see [`crate::crypto::keyring`]), so a copy of the
//!   database holds no value, rotation re-wraps it with the rest, and erasing the tenant
//!   erases its secrets. Sealed form: [`TENANT_KEY_MAGIC`] ‖ tenant key id ‖ nonce ‖
//!   ciphertext ‖ tag. Values sealed before the master key was set still open (under the
//!   store key) until they are rotated.

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use super::{CipherError, SecretCipher};
use crate::crypto::aead::SecretKey;
use crate::crypto::Keyring;
use crate::store::{EventStore, StoreError};

/// The name of the store secret that keys [`StoreKeyCipher`].
pub const KEY_NAME: &str = "secret-values";
/// The first bytes of a value sealed under a tenant key.
pub const TENANT_KEY_MAGIC: &[u8; 3] = b"\xc7T1";

/// AES-256-GCM keyed by the store's `secret-values` secret.
#[derive(Clone, Debug)]
pub struct StoreKeyCipher {
    key: SecretKey,
}

impl StoreKeyCipher {
    /// The cipher of `store` (its key is made on first use and shared by every server).
    pub async fn of(store: &dyn EventStore) -> Result<Self, StoreError> {
        let key = store.signing_secret(KEY_NAME).await?;
        Ok(Self::from_key(key.expose()))
    }

    /// A cipher under `key` (tests, and stores that hold the key elsewhere).
    pub fn from_key(key: &[u8; 32]) -> Self {
        Self {
            key: SecretKey::from_bytes(*key),
        }
    }
}

#[async_trait]
impl SecretCipher for StoreKeyCipher {
    async fn seal(
        &self,
        _tenant: &str,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        self.key
            .seal(aad, plaintext)
            .map_err(|e| CipherError(e.to_string()))
    }

    async fn open(&self, _tenant: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        self.key.open(aad, sealed).map_err(|_| {
            CipherError("it does not open under this store's key for this tenant and name".into())
        })
    }
}

/// AES-256-GCM under the tenant's data key (encryption at rest on).
#[derive(Clone)]
pub struct TenantKeyCipher {
    keyring: Arc<Keyring>,
    /// For values sealed before the master key was set.
    earlier: StoreKeyCipher,
}

impl std::fmt::Debug for TenantKeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TenantKeyCipher(***)")
    }
}

impl TenantKeyCipher {
    /// Seals under `keyring`'s tenant keys; opens what `earlier` sealed too.
    pub fn new(keyring: Arc<Keyring>, earlier: StoreKeyCipher) -> Self {
        Self { keyring, earlier }
    }
}

#[async_trait]
impl SecretCipher for TenantKeyCipher {
    async fn seal(
        &self,
        tenant: &str,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, CipherError> {
        let (key_id, key) = self
            .keyring
            .tenant_key_for_writing(tenant)
            .await
            .map_err(|e| CipherError(e.to_string()))?;
        let sealed = key
            .seal(aad, plaintext)
            .map_err(|e| CipherError(e.to_string()))?;
        Ok([TENANT_KEY_MAGIC.as_slice(), key_id.as_bytes(), &sealed].concat())
    }

    async fn open(&self, tenant: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        let tagged = sealed
            .strip_prefix(TENANT_KEY_MAGIC.as_slice())
            .filter(|rest| rest.len() > 16)
            .map(|rest| rest.split_at(16));
        if let Some((key_id, rest)) = tagged {
            let key_id = Uuid::from_slice(key_id).map_err(|e| CipherError(e.to_string()))?;
            let key = self
                .keyring
                .tenant_key(key_id)
                .await
                .map_err(|e| CipherError(e.to_string()))?;
            match key {
                Some(key) => {
                    if let Ok(plaintext) = key.open(aad, rest) {
                        return Ok(plaintext);
                    }
                }
                None => {
                    return Err(CipherError(
                        "it was erased with its tenant's data; set it again".into(),
                    ))
                }
            }
        }
        // Sealed before the master key was set (a store-key nonce may start like the
        // magic by chance: that is why a failed tenant-key open falls through).
        self.earlier.open(tenant, aad, sealed).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sealed_values_open_only_in_their_place() {
        let cipher = StoreKeyCipher::from_key(&[7; 32]);
        let sealed = cipher.seal("t", b"t\0A", b"hunter2").await.expect("seal");
        assert!(!sealed.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(sealed.len(), 12 + 7 + 16);
        assert_eq!(
            cipher.open("t", b"t\0A", &sealed).await.expect("open"),
            b"hunter2"
        );
        assert!(
            cipher.open("t", b"t\0B", &sealed).await.is_err(),
            "another name"
        );
        let other = StoreKeyCipher::from_key(&[8; 32]);
        assert!(
            other.open("t", b"t\0A", &sealed).await.is_err(),
            "another key"
        );
        let again = cipher.seal("t", b"t\0A", b"hunter2").await.expect("seal");
        assert_ne!(sealed, again, "a fresh nonce each time");
    }
}
