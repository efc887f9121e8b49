//! [`StoreKeyCipher`]: AES-256-GCM under a 32-byte key kept in the store itself.
//!
//! Sealed form: a random 96-bit nonce, then the ciphertext with its 16-byte tag. The
//! key is `EventStore::signing_secret("secret-values")`, made once per store and shared
//! by every server. It lives in the same database as the sealed values: this keeps
//! values out of dumps of the `secrets` table, logs and exports, but not from someone
//! holding the whole database (that needs a key kept elsewhere: another
//! [`SecretCipher`]).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use async_trait::async_trait;

use super::{CipherError, SecretCipher};
use crate::store::{EventStore, StoreError};

/// The name of the store secret that keys this cipher.
pub const KEY_NAME: &str = "secret-values";
/// Bytes of a nonce.
const NONCE_BYTES: usize = 12;

/// AES-256-GCM keyed by the store's `secret-values` secret.
#[derive(Clone)]
pub struct StoreKeyCipher {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for StoreKeyCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreKeyCipher(***)")
    }
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
            cipher: Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key)),
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
        let mut nonce = [0u8; NONCE_BYTES];
        getrandom::fill(&mut nonce).map_err(|e| CipherError(format!("no randomness: {e}")))?;
        let sealed = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CipherError("encryption failed".into()))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    async fn open(&self, _tenant: &str, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CipherError> {
        if sealed.len() < NONCE_BYTES {
            return Err(CipherError("the sealed value is too short".into()));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_BYTES);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| {
                CipherError(
                    "it does not open under this store's key for this tenant and name".into(),
                )
            })
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
        assert_eq!(sealed.len(), NONCE_BYTES + 7 + 16);
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
