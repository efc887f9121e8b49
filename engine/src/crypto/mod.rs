//! Payload encryption at rest, and crypto-shredding.
//!
//! With a master key configured (`CONFLUX_MASTER_KEY`), the payload fields of every
//! execution event (see `conflux_schema::payload`) are sealed with AES-256-GCM under the
//! execution's data key before they reach the log, the bus, the task queues or the read
//! models; they are opened only when a reader needs them. The hash chain covers what is
//! stored — the ciphertext — so verification needs no key, and destroying a key
//! (erasure) leaves every chain valid while its payloads read as erased forever.
//!
//! - [`aead`]: the cipher (AES-256-GCM, random 96-bit nonces) and [`aead::SecretKey`].
//! - [`master`]: master keys and their ids.
//! - [`vault`]: where wrapped data keys are stored (Postgres, SQLite).
//! - [`keyring`]: finding, creating, caching, erasing and re-wrapping data keys
//!   (`key_writer`: new execution keys stored in batches).
//! - [`codec`]: sealing and opening payloads in events, envelopes and JSON documents.
//! - [`sealed_store`]: the event store that seals on append and opens on read.

pub mod aead;
pub mod codec;
pub mod erasure;
mod key_writer;
pub mod keyring;
pub mod master;
pub mod sealed_store;
pub mod vault;

pub use codec::PayloadCodec;
pub use keyring::{KeyState, Keyring};
pub use master::{MasterKey, MasterKeys};

use crate::store::StoreError;

/// What can go wrong with keys. Never carries key material or plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The operating system gave no randomness.
    #[error("no randomness for a key or nonce: {0}")]
    Randomness(String),
    /// Encryption itself failed (cannot happen with valid keys; reported, not hidden).
    #[error("sealing a payload failed")]
    Seal,
    /// A ciphertext failed authentication: altered, or sealed under another key.
    #[error("a ciphertext failed authentication (altered, or sealed under another key)")]
    Authentication,
    /// A configured master key is malformed.
    #[error("the master key is unusable: {0}")]
    BadMasterKey(String),
    /// The store holds keys wrapped by a master key this server was not given.
    #[error(
        "this store's data keys ({keys} tenant key(s)) are wrapped by master key {needed}, \
         which is not configured (configured: {configured}); start with that key as \
         CONFLUX_MASTER_KEY, or as CONFLUX_MASTER_KEY_PREVIOUS during a rotation"
    )]
    UnknownMasterKey {
        /// The key id the store needs.
        needed: String,
        /// How many live tenant keys it wraps.
        keys: u64,
        /// The key ids configured.
        configured: String,
    },
    /// A master key with the right id did not unwrap a key it wrapped.
    #[error("master key {0} does not unwrap the keys stored under it (is the key file altered?)")]
    WrongMasterKey(String),
    /// The key tables are inconsistent.
    #[error("data keys: {0}")]
    Vault(String),
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
