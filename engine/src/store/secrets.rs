//! Signing secrets: 32 random bytes per name, created once in the store by whichever
//! process asks first (an insert that keeps an existing row, then a read), so every
//! process of one store — every server of a cluster — signs and verifies with the same
//! key. Kept in `signing_secrets` (migration 0005), never in the event log, never logged.

use sqlx::{PgPool, SqlitePool};

use super::StoreError;

/// A 32-byte secret every process of one store shares (see
/// [`super::EventStore::signing_secret`]). Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret([u8; 32]);

impl SigningSecret {
    /// The secret of these bytes (tests; a store makes its own with
    /// [`super::EventStore::signing_secret`]).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// 32 fresh random bytes.
    fn random() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| StoreError::Backend(format!("no randomness for a secret: {e}")))?;
        Ok(Self(bytes))
    }

    /// The secret `name` as stored, which must be 32 bytes.
    fn from_stored(name: &str, bytes: Option<Vec<u8>>) -> Result<Self, StoreError> {
        let bytes = bytes.ok_or_else(|| {
            StoreError::Backend(format!("the secret {name:?} was written but is not there"))
        })?;
        <[u8; 32]>::try_from(bytes.as_slice())
            .map(Self)
            .map_err(|_| StoreError::Backend(format!("the stored secret {name:?} is not 32 bytes")))
    }

    /// The bytes, to key a MAC with. Never log them.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(***)")
    }
}

/// The secret `name` of a Postgres store, created if missing.
pub(super) async fn postgres(pool: &PgPool, name: &str) -> Result<SigningSecret, StoreError> {
    use super::postgres::map_err;
    let read = || async {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT secret FROM signing_secrets WHERE name = $1")
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(map_err)
    };
    if let Some(stored) = read().await? {
        return SigningSecret::from_stored(name, Some(stored));
    }
    // Two processes may both get here: the first insert wins, both read it back.
    let fresh = SigningSecret::random()?;
    sqlx::query(
        "INSERT INTO signing_secrets (name, secret) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(fresh.expose().as_slice())
    .execute(pool)
    .await
    .map_err(map_err)?;
    SigningSecret::from_stored(name, read().await?)
}

/// The secret `name` of a SQLite store, created if missing.
pub(super) async fn sqlite(pool: &SqlitePool, name: &str) -> Result<SigningSecret, StoreError> {
    use super::sqlite::map_err;
    let read = || async {
        sqlx::query_scalar::<_, Vec<u8>>("SELECT secret FROM signing_secrets WHERE name = ?")
            .bind(name)
            .fetch_optional(pool)
            .await
            .map_err(map_err)
    };
    if let Some(stored) = read().await? {
        return SigningSecret::from_stored(name, Some(stored));
    }
    let fresh = SigningSecret::random()?;
    sqlx::query(
        "INSERT OR IGNORE INTO signing_secrets (name, secret, created_at) \
         VALUES (?, ?, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))",
    )
    .bind(name)
    .bind(fresh.expose().as_slice())
    .execute(pool)
    .await
    .map_err(map_err)?;
    SigningSecret::from_stored(name, read().await?)
}
