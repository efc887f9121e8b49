//! AES-256-GCM with random 96-bit nonces: the one cipher every key of Conflux uses
//! (data keys sealing payloads, tenant keys wrapping execution keys, master keys
//! wrapping tenant keys). A sealed blob is `nonce (12 bytes) || ciphertext || tag (16)`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::CryptoError;

/// Bytes of a nonce.
const NONCE_LEN: usize = 12;
/// Bytes of the GCM tag.
const TAG_LEN: usize = 16;

/// A 256-bit AES-GCM key. Its `Debug` never shows it, and it is never serialised.
#[derive(Clone)]
pub struct SecretKey {
    cipher: Aes256Gcm,
    bytes: [u8; 32],
}

impl SecretKey {
    /// The key of these 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(&bytes.into()),
            bytes,
        }
    }

    /// A fresh random key from the operating system's generator.
    pub fn random() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| CryptoError::Randomness(e.to_string()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The raw bytes, to wrap this key under another. Never log them.
    pub(crate) fn expose(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// Encrypts `plaintext`, authenticating `aad` with it, under a fresh random nonce.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(|e| CryptoError::Randomness(e.to_string()))?;
        let ciphertext = self
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut out = Vec::with_capacity(NONCE_LEN + ciphertext.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ciphertext);
        Ok(out)
    }

    /// Decrypts what [`SecretKey::seal`] produced with the same `aad`; fails with
    /// [`CryptoError::Authentication`] if the blob, the aad or the key differ.
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
        if sealed.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptoError::Authentication);
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        self.cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad,
                },
            )
            .map_err(|_| CryptoError::Authentication)
    }

    /// Seals another key's bytes under this one (key wrapping).
    pub fn wrap(&self, aad: &[u8], key: &SecretKey) -> Result<Vec<u8>, CryptoError> {
        self.seal(aad, key.expose())
    }

    /// Opens a key wrapped by [`SecretKey::wrap`].
    pub fn unwrap_key(&self, aad: &[u8], wrapped: &[u8]) -> Result<SecretKey, CryptoError> {
        let bytes = self.open(aad, wrapped)?;
        let bytes: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Authentication)?;
        Ok(SecretKey::from_bytes(bytes))
    }
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealing_round_trips_and_uses_fresh_nonces() {
        let key = SecretKey::random().unwrap();
        let a = key.seal(b"aad", b"hello").unwrap();
        let b = key.seal(b"aad", b"hello").unwrap();
        assert_ne!(a, b, "a nonce is never reused");
        assert_eq!(key.open(b"aad", &a).unwrap(), b"hello");
    }

    #[test]
    fn any_change_fails_authentication() {
        let key = SecretKey::random().unwrap();
        let mut sealed = key.seal(b"aad", b"hello").unwrap();
        assert!(matches!(
            key.open(b"other", &sealed),
            Err(CryptoError::Authentication)
        ));
        let other = SecretKey::random().unwrap();
        assert!(matches!(
            other.open(b"aad", &sealed),
            Err(CryptoError::Authentication)
        ));
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(matches!(
            key.open(b"aad", &sealed),
            Err(CryptoError::Authentication)
        ));
        assert!(matches!(
            key.open(b"aad", &[1, 2, 3]),
            Err(CryptoError::Authentication)
        ));
    }

    #[test]
    fn keys_wrap_and_unwrap() {
        let master = SecretKey::random().unwrap();
        let data = SecretKey::random().unwrap();
        let wrapped = master.wrap(b"t", &data).unwrap();
        let back = master.unwrap_key(b"t", &wrapped).unwrap();
        assert_eq!(back.expose(), data.expose());
        assert!(format!("{back:?}").contains("***"));
    }
}
