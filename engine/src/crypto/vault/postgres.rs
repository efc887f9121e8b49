//! The data-key tables in Postgres.

use async_trait::async_trait;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::{KeyVault, MasterKeyUse, StoredExecutionKey, StoredTenantKey};
use crate::store::postgres::map_err;
use crate::store::StoreError;

/// [`KeyVault`] over the Postgres store's pool.
#[derive(Clone, Debug)]
pub struct PgKeyVault {
    pool: PgPool,
}

impl PgKeyVault {
    /// The vault of the database behind `pool` (migrated by the store).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The vault of the database at `url`, on a small pool of its own whose commits do
    /// not wait for the WAL flush: a new key's row is always written (and awaited)
    /// before the first event sealed with it is appended, and that event's commit
    /// flushes the WAL up to itself, so a key is durable whenever anything sealed with
    /// it is — without one more flush per execution. Erasure and re-wrapping, whose
    /// answer promises durability, commit synchronously.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        use sqlx::postgres::PgConnectOptions;
        use std::str::FromStr;
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Backend(format!("bad DATABASE_URL: {e}")))?
            .options([("synchronous_commit", "off")]);
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .connect_with(options)
            .await
            .map_err(map_err)?;
        Ok(Self { pool })
    }
}

/// Makes the transaction's commit wait for the WAL flush (the pool's default is not to).
async fn durable(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), StoreError> {
    sqlx::query("SET LOCAL synchronous_commit = on")
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    Ok(())
}

fn tenant_key(row: &PgRow) -> Result<StoredTenantKey, StoreError> {
    Ok(StoredTenantKey {
        key_id: row.try_get("key_id").map_err(map_err)?,
        tenant: row.try_get("tenant").map_err(map_err)?,
        master_kid: row.try_get("master_kid").map_err(map_err)?,
        wrapped: row.try_get("wrapped").map_err(map_err)?,
    })
}

fn execution_key(row: &PgRow) -> Result<StoredExecutionKey, StoreError> {
    Ok(StoredExecutionKey {
        execution_id: row.try_get("execution_id").map_err(map_err)?,
        tenant: row.try_get("tenant").map_err(map_err)?,
        tenant_key_id: row.try_get("tenant_key_id").map_err(map_err)?,
        wrapped: row.try_get("wrapped").map_err(map_err)?,
    })
}

const TENANT_COLUMNS: &str = "key_id, tenant, master_kid, wrapped";
const EXECUTION_COLUMNS: &str = "execution_id, tenant, tenant_key_id, wrapped";

#[async_trait]
impl KeyVault for PgKeyVault {
    async fn active_tenant_key(&self, tenant: &str) -> Result<Option<StoredTenantKey>, StoreError> {
        let sql = format!(
            "SELECT {TENANT_COLUMNS} FROM tenant_keys WHERE tenant = $1 AND erased_at IS NULL"
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
            "INSERT INTO tenant_keys (key_id, tenant, master_kid, wrapped) VALUES ($1, $2, $3, $4) \
             ON CONFLICT DO NOTHING",
        )
        .bind(key.key_id)
        .bind(&key.tenant)
        .bind(&key.master_kid)
        .bind(&key.wrapped)
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
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenant_keys WHERE key_id = $1");
        let row = sqlx::query(&sql)
            .bind(key_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(tenant_key).transpose()
    }

    async fn create_execution_key(
        &self,
        key: &StoredExecutionKey,
    ) -> Result<Option<StoredExecutionKey>, StoreError> {
        // One round trip: insert while the tenant key is live; on a conflict, the no-op
        // update makes RETURNING hand back the row that is there.
        let sql = format!(
            "INSERT INTO execution_keys ({EXECUTION_COLUMNS}) \
             SELECT $1, $2, $3, $4 WHERE EXISTS \
               (SELECT 1 FROM tenant_keys WHERE key_id = $3 AND erased_at IS NULL) \
             ON CONFLICT (execution_id) DO UPDATE SET execution_id = EXCLUDED.execution_id \
             RETURNING {EXECUTION_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(key.execution_id)
            .bind(&key.tenant)
            .bind(key.tenant_key_id)
            .bind(&key.wrapped)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        match row {
            Some(row) => execution_key(&row).map(Some),
            // The tenant key was erased; but another process may have stored this
            // execution's key before that.
            None => self.execution_key(key.execution_id).await,
        }
    }

    async fn create_execution_keys(
        &self,
        keys: &[StoredExecutionKey],
    ) -> Result<Vec<Option<StoredExecutionKey>>, StoreError> {
        // One statement for the batch (the caller never repeats an execution in one).
        let sql = format!(
            "INSERT INTO execution_keys ({EXECUTION_COLUMNS}) \
             SELECT u.e, u.t, u.k, u.w \
             FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::bytea[]) AS u(e, t, k, w) \
             WHERE EXISTS (SELECT 1 FROM tenant_keys tk WHERE tk.key_id = u.k AND tk.erased_at IS NULL) \
             ON CONFLICT (execution_id) DO UPDATE SET execution_id = EXCLUDED.execution_id \
             RETURNING {EXECUTION_COLUMNS}"
        );
        let rows = sqlx::query(&sql)
            .bind(keys.iter().map(|k| k.execution_id).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.tenant.clone()).collect::<Vec<_>>())
            .bind(keys.iter().map(|k| k.tenant_key_id).collect::<Vec<_>>())
            .bind(
                keys.iter()
                    .map(|k| k.wrapped.clone().unwrap_or_default())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?;
        let mut stored = std::collections::HashMap::with_capacity(rows.len());
        for row in &rows {
            let key = execution_key(row)?;
            stored.insert(key.execution_id, key);
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(match stored.remove(&key.execution_id) {
                Some(row) => Some(row),
                // Its tenant key was erased; another process may have stored it first.
                None => self.execution_key(key.execution_id).await?,
            });
        }
        Ok(out)
    }

    async fn execution_key(
        &self,
        execution: Uuid,
    ) -> Result<Option<StoredExecutionKey>, StoreError> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM execution_keys WHERE execution_id = $1");
        let row = sqlx::query(&sql)
            .bind(execution)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?;
        row.as_ref().map(execution_key).transpose()
    }

    async fn erase_tenant(&self, tenant: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        durable(&mut tx).await?;
        let executions = sqlx::query(
            "UPDATE execution_keys SET wrapped = NULL, erased_at = now() \
             WHERE tenant = $1 AND erased_at IS NULL",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        let tenants = sqlx::query(
            "UPDATE tenant_keys SET wrapped = NULL, erased_at = now() \
             WHERE tenant = $1 AND erased_at IS NULL",
        )
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?
        .rows_affected();
        tx.commit().await.map_err(map_err)?;
        Ok(executions + tenants)
    }

    async fn erase_execution(&self, execution: Uuid) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        durable(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE execution_keys SET wrapped = NULL, erased_at = now() \
             WHERE execution_id = $1 AND erased_at IS NULL",
        )
        .bind(execution)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
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
             WHERE erased_at IS NULL AND master_kid <> $1 ORDER BY key_id LIMIT $2"
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
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        durable(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE tenant_keys SET wrapped = $4, master_kid = $3 \
             WHERE key_id = $1 AND master_kid = $2 AND erased_at IS NULL",
        )
        .bind(key_id)
        .bind(old_kid)
        .bind(new_kid)
        .bind(wrapped)
        .execute(&mut *tx)
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }
}
