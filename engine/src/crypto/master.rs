//! Master keys: what wraps the tenant data keys. Given to a server as base64 of 32
//! bytes (`CONFLUX_MASTER_KEY` or `CONFLUX_MASTER_KEY_FILE`); never stored. Each has a
//! key id derived from the key itself, stored beside every key it wraps, so a server
//! knows which master key a row needs — and a wrong key is told apart from a right one
//! before anything is decrypted or written.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::aead::SecretKey;
use super::CryptoError;

/// One master key and its id.
#[derive(Clone, Debug)]
pub struct MasterKey {
    kid: String,
    key: SecretKey,
}

impl MasterKey {
    /// The key of these bytes; its id is `mk-` and 16 hex digits of a SHA-256 over a
    /// fixed label and the key (one-way: the id reveals nothing of the key).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(b"conflux master key id v1\0")
            .chain_update(bytes)
            .finalize();
        Self {
            kid: format!("mk-{}", &hex::encode(digest)[..16]),
            key: SecretKey::from_bytes(bytes),
        }
    }

    /// Parses base64 (standard alphabet, padding optional, surrounding whitespace
    /// ignored) of exactly 32 bytes. The error never repeats the input.
    pub fn parse_base64(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(text))
            .map_err(|_| CryptoError::BadMasterKey("it is not base64".into()))?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            CryptoError::BadMasterKey(format!(
                "it decodes to {} bytes, not 32 (make one with `openssl rand -base64 32`)",
                bytes.len()
            ))
        })?;
        Ok(Self::from_bytes(bytes))
    }

    /// A fresh random master key (tests, `conflux keys new-master`).
    pub fn random() -> Result<Self, CryptoError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| CryptoError::Randomness(e.to_string()))?;
        Ok(Self::from_bytes(bytes))
    }

    /// The key as base64, to hand to an operator once. Never log it.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(self.key.expose())
    }

    /// The key id (`mk-…`), safe to log and store.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key itself.
    pub(crate) fn key(&self) -> &SecretKey {
        &self.key
    }
}

/// The master keys a server accepts: the primary, which wraps every new key, and during
/// a rotation the previous one, whose rows `conflux keys rotate-master` re-wraps.
#[derive(Clone, Debug)]
pub struct MasterKeys {
    primary: MasterKey,
    previous: Option<MasterKey>,
}

impl MasterKeys {
    /// Only `primary`.
    pub fn new(primary: MasterKey) -> Self {
        Self {
            primary,
            previous: None,
        }
    }

    /// Also accepts `previous` (during a rotation).
    pub fn with_previous(mut self, previous: MasterKey) -> Self {
        if previous.kid != self.primary.kid {
            self.previous = Some(previous);
        }
        self
    }

    /// The key that wraps new tenant keys.
    pub fn primary(&self) -> &MasterKey {
        &self.primary
    }

    /// The accepted key with id `kid`, if any.
    pub fn find(&self, kid: &str) -> Option<&MasterKey> {
        std::iter::once(&self.primary)
            .chain(self.previous.as_ref())
            .find(|k| k.kid == kid)
    }

    /// The ids of every accepted key, primary first (for error messages).
    pub fn kids(&self) -> Vec<&str> {
        std::iter::once(&self.primary)
            .chain(self.previous.as_ref())
            .map(|k| k.kid.as_str())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse_from_base64_and_have_stable_ids() {
        let key = MasterKey::random().unwrap();
        let again = MasterKey::parse_base64(&format!("  {}\n", key.to_base64())).unwrap();
        assert_eq!(key.kid(), again.kid());
        assert!(key.kid().starts_with("mk-") && key.kid().len() == 19);
        assert_ne!(key.kid(), MasterKey::random().unwrap().kid());
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let err = MasterKey::parse_base64("c2hvcnQ=").unwrap_err().to_string();
        assert!(err.contains("5 bytes, not 32"), "{err}");
        assert!(!err.contains("c2hvcnQ"));
        assert!(MasterKey::parse_base64("not base64 !!").is_err());
    }

    #[test]
    fn a_rotation_accepts_both_keys() {
        let (old, new) = (MasterKey::random().unwrap(), MasterKey::random().unwrap());
        let keys = MasterKeys::new(new.clone()).with_previous(old.clone());
        assert_eq!(keys.primary().kid(), new.kid());
        assert!(keys.find(old.kid()).is_some() && keys.find(new.kid()).is_some());
        assert_eq!(keys.kids().len(), 2);
    }
}
