//! [`PgSecretStore`]: sealed secrets in the Postgres table `secrets` (migration 0006,
//! applied by the event store that shares the pool).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::{SecretError, SecretName, SecretRecord, SecretStore};
use crate::store::postgres::map_err;

/// Secrets in Postgres, next to the event store.
#[derive(Clone, Debug)]
pub struct PgSecretStore {
    pool: PgPool,
}

impl PgSecretStore {
    /// Secrets over `pool`, whose database the event store has migrated.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

type Row = (String, DateTime<Utc>, DateTime<Utc>);

fn record((name, created_at, updated_at): Row) -> SecretRecord {
    SecretRecord {
        name,
        created_at,
        updated_at,
    }
}

#[async_trait]
impl SecretStore for PgSecretStore {
    async fn insert(
        &self,
        tenant: &str,
        name: &SecretName,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<SecretRecord, SecretError> {
        sqlx::query_as::<_, Row>(
            "INSERT INTO secrets (tenant, name, sealed, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (tenant, name) DO NOTHING \
             RETURNING name, created_at, updated_at",
        )
        .bind(tenant)
        .bind(name.as_str())
        .bind(sealed)
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .map(record)
        .ok_or_else(|| SecretError::AlreadyExists(name.to_string()))
    }

    async fn replace(
        &self,
        tenant: &str,
        name: &SecretName,
        sealed: &[u8],
        at: DateTime<Utc>,
    ) -> Result<SecretRecord, SecretError> {
        sqlx::query_as::<_, Row>(
            "UPDATE secrets SET sealed = $3, updated_at = $4 WHERE tenant = $1 AND name = $2 \
             RETURNING name, created_at, updated_at",
        )
        .bind(tenant)
        .bind(name.as_str())
        .bind(sealed)
        .bind(at)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?
        .map(record)
        .ok_or_else(|| SecretError::NotFound(name.to_string()))
    }

    async fn list(&self, tenant: &str) -> Result<Vec<SecretRecord>, SecretError> {
        let rows = sqlx::query_as::<_, Row>(
            "SELECT name, created_at, updated_at FROM secrets WHERE tenant = $1 ORDER BY name COLLATE \"C\"",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(rows.into_iter().map(record).collect())
    }

    async fn get(&self, tenant: &str, name: &str) -> Result<Option<Vec<u8>>, SecretError> {
        Ok(
            sqlx::query_scalar("SELECT sealed FROM secrets WHERE tenant = $1 AND name = $2")
                .bind(tenant)
                .bind(name)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_err)?,
        )
    }

    async fn delete(&self, tenant: &str, name: &SecretName) -> Result<(), SecretError> {
        let done = sqlx::query("DELETE FROM secrets WHERE tenant = $1 AND name = $2")
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
