//! [`SqliteSecretStore`]: sealed secrets in the embedded store's file, table `secrets`
//! (migration 0006, applied by the event store that shares the pool). Times are kept
//! as RFC 3339 text with microseconds.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::SqlitePool;

use super::{SecretError, SecretName, SecretRecord, SecretStore};
use crate::store::sqlite::map_err;
use crate::store::StoreError;

/// Secrets in the embedded SQLite file, next to the event store.
#[derive(Clone, Debug)]
pub struct SqliteSecretStore {
    pool: SqlitePool,
}

impl SqliteSecretStore {
    /// Secrets over `pool`, whose database the event store has migrated.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time(raw: &str) -> Result<DateTime<Utc>, SecretError> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Backend(format!("a stored secret time {raw:?}: {e}")).into())
}

fn record(
    (name, created_at, updated_at): (String, String, String),
) -> Result<SecretRecord, SecretError> {
    Ok(SecretRecord {
        name,
        created_at: time(&created_at)?,
        updated_at: time(&updated_at)?,
    })
}

#[async_trait]
impl SecretStore for SqliteSecretStore {
    async fn insert(
        &self,
        tenant: &str,
        name: &SecretName,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<SecretRecord, SecretError> {
        let done = sqlx::query(
            "INSERT OR IGNORE INTO secrets (tenant, name, sealed, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(tenant)
        .bind(name.as_str())
        .bind(sealed)
        .bind(text(at))
        .bind(text(at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(SecretError::AlreadyExists(name.to_string()));
        }
        Ok(SecretRecord {
            name: name.to_string(),
            created_at: at,
            updated_at: at,
        })
    }

    async fn replace(
        &self,
        tenant: &str,
        name: &SecretName,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<SecretRecord, SecretError> {
        let row = sqlx::query_as::<_, (String, String, String)>(
            "UPDATE secrets SET sealed = ?, updated_at = ? WHERE tenant = ? AND name = ? \
             RETURNING name, created_at, updated_at",
        )
        .bind(sealed)
        .bind(text(at))
        .bind(tenant)
        .bind(name.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        record(row.ok_or_else(|| SecretError::NotFound(name.to_string()))?)
    }

    async fn list(&self, tenant: &str) -> Result<Vec<SecretRecord>, SecretError> {
        sqlx::query_as::<_, (String, String, String)>(
            "SELECT name, created_at, updated_at FROM secrets WHERE tenant = ? ORDER BY name",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?
        .into_iter()
        .map(record)
        .collect()
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, SecretError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM secrets WHERE tenant = ? AND name = ?")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?,
        )
    }

    async fn delete(&self, tenant: &str, name: &SecretName) -> Result<(), SecretError> {
        let done = sqlx::query("DELETE FROM secrets WHERE tenant = ? AND name = ?")
            .bind(tenant)
            .bind(name.as_str())
            .execute(&self.pool)
            .await
            .map_err(map_err)?;
        if done.rows_affected() == 0 {
            return Err(SecretError::NotFound(name.to_string()));
        }
        Ok(())
    }
}
