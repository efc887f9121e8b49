//! The data-key tables in the embedded SQLite store (uuids and times as text).

use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::{KeyVault, MasterKeyUse, StoredExecutionKey, StoredTenantKey};
use crate::store::sqlite::map_err;
use crate::store::StoreError;

/// [`KeyVault`] over the SQLite store's pool.
#[derive(Clone, Debug)]
pub struct SqliteKeyVault {
    pool: SqlitePool,
}

impl SqliteKeyVault {
    /// The vault of the database behind `pool` (migrated by the store).
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn uuid_column(row: &SqliteRow, name: &str) -> Result<Uuid, StoreError> {
    let text: String = row.try_get(name).map_err(map_err)?;
    Uuid::parse_str(&text)
        .map_err(|e| StoreError::Backend(format!("{name} {text:?} is not a uuid: {e}")))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn tenant_key(row: &SqliteRow) -> Result<StoredTenantKey, StoreError> {
    Ok(StoredTenantKey {
        key_id: uuid_column(row, "key_id")?,
        tenant: row.try_get("tenant").map_err(map_err)?,
        master_kid: row.try_get("master_kid").map_err(map_err)?,
        wrapped: row.try_get("wrapped").map_err(map_err)?,
    })
}

fn execution_key(row: &SqliteRow) -> Result<StoredExecutionKey, StoreError> {
    Ok(StoredExecutionKey {
        execution_id: uuid_column(row, "execution_id")?,
        tenant: row.try_get("tenant").map_err(map_err)?,
        tenant_key_id: uuid_column(row, "tenant_key_id")?,
        wrapped: row.try_get("wrapped").map_err(map_err)?,
    })
}

const TENANT_COLUMNS: &str = "key_id, tenant, master_kid, wrapped";
const EXECUTION_COLUMNS: &str = "execution_id, tenant, tenant_key_id, wrapped";

#[async_trait]
impl KeyVault for SqliteKeyVault {
    async fn active_tenant_key(&self, tenant: &str) -> Result<Option<StoredTenantKey>, StoreError> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenant_keys WHERE tenant = ?1 AND erased_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(tenant)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(tenant_key).transpose()
    }

    async fn create_tenant_key(
        &self,
        key: &StoredTenantKey,
    ) -> Result<StoredTenantKey, StoreError> {
        sqlx::query(
            "INSERT INTO tenant_keys (key_id, tenant, master_kid, wrapped, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .bind(key.key_id.to_string())
        .bind(&key.tenant)
        .bind(&key.master_kid)
        .bind(&key.wrapped)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        self.active_tenant_key(&key.tenant).await?.ok_or_else(|| {
            StoreError::Backend(format!(
                "tenant {:?} has no live key after creating one",
                key.tenant
            ))
        })
    }

    async fn tenant_key(&self, key_id: Uuid) -> Result<Option<StoredTenantKey>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenant_keys WHERE key_id = ?1");
        let row = sqlx::query(&sql)
            .bind(key_id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(tenant_key).transpose()
    }

    async fn create_execution_key(
        &self,
        key: &StoredExecutionKey,
    ) -> Result<Option<StoredExecutionKey>, StoreError> {
        let sql = format!(
            "INSERT INTO execution_keys ({EXECUTION_COLUMNS}, created_at) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE EXISTS \
               (SELECT 1 FROM tenant_keys WHERE key_id = ?3 AND erased_at IS NULL) \
             ON CONFLICT (execution_id) DO UPDATE SET execution_id = excluded.execution_id \
             RETURNING {EXECUTION_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(key.execution_id.to_string())
            .bind(&key.tenant)
            .bind(key.tenant_key_id.to_string())
            .bind(&key.wrapped)
            .bind(now())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match row {
            Some(row) => execution_key(&row).map(Some),
            None => self.execution_key(key.execution_id).await,
        }
    }

    async fn execution_key(
        &self,
        execution: Uuid,
    ) -> Result<Option<StoredExecutionKey>, StoreError> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM execution_keys WHERE execution_id = ?1");
        let row = sqlx::query(&sql)
            .bind(execution.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(execution_key).transpose()
    }

    async fn erase_tenant(&self, tenant: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        let at = now();
        let mut destroyed = 0;
        for table in ["execution_keys", "tenant_keys"] {
            destroyed += sqlx::query(&format!(
                "UPDATE {table} SET wrapped = NULL, erased_at = ?2 \
                 WHERE tenant = ?1 AND erased_at IS NULL"
            ))
            .bind(tenant)
            .bind(&at)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?
            .rows_affected();
        }
        tx.commit().await.map_err(map_err)?;
        Ok(destroyed)
    }

    async fn erase_execution(&self, execution: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE execution_keys SET wrapped = NULL, erased_at = ?2 \
             WHERE execution_id = ?1 AND erased_at IS NULL",
        )
        .bind(execution.to_string())
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn erasures(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM tenant_keys WHERE erased_at IS NOT NULL) \
                  + (SELECT count(*) FROM execution_keys WHERE erased_at IS NOT NULL)",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(n.max(0) as u64)
    }

    async fn master_key_uses(&self) -> Result<Vec<MasterKeyUse>, StoreError> {
        let rows = sqlx::query(
            "SELECT master_kid, count(*) AS n FROM tenant_keys WHERE erased_at IS NULL \
             GROUP BY master_kid ORDER BY master_kid",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(MasterKeyUse {
                    master_kid: r.try_get("master_kid").map_err(map_err)?,
                    tenant_keys: r.try_get::<i64, _>("n").map_err(map_err)?.max(0) as u64,
                })
            })
            .collect()
    }

    async fn tenant_keys_not_under(
        &self,
        kid: &str,
        limit: usize,
    ) -> Result<Vec<StoredTenantKey>, StoreError> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenant_keys \
             WHERE erased_at IS NULL AND master_kid <> ?1 ORDER BY key_id LIMIT ?2"
        );
        let rows = sqlx::query(&sql)
            .bind(kid)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        rows.iter().map(tenant_key).collect()
    }

    async fn rewrap_tenant_key(
        &self,
        key_id: Uuid,
        old_kid: &str,
        new_kid: &str,
        wrapped: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tenant_keys SET wrapped = ?4, master_kid = ?3 \
             WHERE key_id = ?1 AND master_kid = ?2 AND erased_at IS NULL",
        )
        .bind(key_id.to_string())
        .bind(old_kid)
        .bind(new_kid)
        .bind(wrapped)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }
}
