//! [`PgHookStore`]: hooks' delivery state in the Postgres store's database (tables
//! `hooks` and `hook_deliveries`, migration 0012, applied by the event store).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use super::store::{signed, state, unsigned, DeliveryRecord, HookRow, HookStore};
use crate::store::postgres::map_err;
use crate::store::StoreError;

/// Hooks' delivery state in Postgres, next to the event store.
#[derive(Clone, Debug)]
pub struct PgHookStore {
    pool: PgPool,
}

impl PgHookStore {
    /// The tables over `pool`, whose database the event store has migrated.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

const COLUMNS: &str = "hook_id, position, event_id, event_type, state, attempts, last_status, \
                       last_error, created_at, updated_at";

fn delivery(row: &PgRow) -> Result<DeliveryRecord, StoreError> {
    let status: Option<i32> = row.try_get("last_status").map_err(map_err)?;
    let attempts: i32 = row.try_get("attempts").map_err(map_err)?;
    let kind: String = row.try_get("state").map_err(map_err)?;
    Ok(DeliveryRecord {
        hook_id: row.try_get("hook_id").map_err(map_err)?,
        position: unsigned(row.try_get("position").map_err(map_err)?, "position")?,
        event_id: row.try_get("event_id").map_err(map_err)?,
        event_type: row.try_get("event_type").map_err(map_err)?,
        state: state(&kind)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error").map_err(map_err)?,
        created_at: row
            .try_get::<DateTime<Utc>, _>("created_at")
            .map_err(map_err)?,
        updated_at: row
            .try_get::<DateTime<Utc>, _>("updated_at")
            .map_err(map_err)?,
    })
}

#[async_trait]
impl HookStore for PgHookStore {
    async fn insert(&self, row: &HookRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hooks (hook_id, tenant, sealed_secret, last_position, created_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(row.hook_id)
        .bind(&row.tenant)
        .bind(&row.sealed_secret)
        .bind(signed(row.cursor)?)
        .bind(row.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn remove(&self, hook_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("DELETE FROM hook_deliveries WHERE hook_id = $1")
            .bind(hook_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM hooks WHERE hook_id = $1")
            .bind(hook_id)
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn sealed_secret(&self, hook_id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT sealed_secret FROM hooks WHERE hook_id = $1")
            .bind(hook_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)
    }

    async fn acquire(
        &self,
        hook_id: Uuid,
        owner: Uuid,
        now_ms: i64,
        until_ms: i64,
    ) -> Result<Option<u64>, StoreError> {
        let cursor: Option<i64> = sqlx::query_scalar(
            "UPDATE hooks SET lease_owner = $2, lease_until_ms = $4 \
             WHERE hook_id = $1 \
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until_ms < $3) \
             RETURNING last_position",
        )
        .bind(hook_id)
        .bind(owner)
        .bind(now_ms)
        .bind(until_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        cursor.map(|c| unsigned(c, "cursor")).transpose()
    }

    async fn renew(&self, hook_id: Uuid, owner: Uuid, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE hooks SET lease_until_ms = $3 WHERE hook_id = $1 AND lease_owner = $2",
        )
        .bind(hook_id)
        .bind(owner)
        .bind(until_ms)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, hook_id: Uuid, owner: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE hooks SET lease_owner = NULL, lease_until_ms = 0 \
             WHERE hook_id = $1 AND lease_owner = $2",
        )
        .bind(hook_id)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn advance(&self, hook_id: Uuid, owner: Uuid, position: u64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE hooks SET last_position = GREATEST(last_position, $3) \
             WHERE hook_id = $1 AND lease_owner = $2",
        )
        .bind(hook_id)
        .bind(owner)
        .bind(signed(position)?)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record(&self, d: &DeliveryRecord, owner: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO hook_deliveries (hook_id, position, event_id, event_type, state, \
                 attempts, last_status, last_error, created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 \
             WHERE EXISTS (SELECT 1 FROM hooks WHERE hook_id = $1 AND lease_owner = $11) \
             ON CONFLICT (hook_id, position) DO UPDATE SET state = EXCLUDED.state, \
                 attempts = EXCLUDED.attempts, last_status = EXCLUDED.last_status, \
                 last_error = EXCLUDED.last_error, updated_at = EXCLUDED.updated_at",
        )
        .bind(d.hook_id)
        .bind(signed(d.position)?)
        .bind(d.event_id)
        .bind(&d.event_type)
        .bind(d.state.as_str())
        .bind(i32::try_from(d.attempts).unwrap_or(i32::MAX))
        .bind(d.last_status.map(i32::from))
        .bind(&d.last_error)
        .bind(d.created_at)
        .bind(d.updated_at)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delivery(
        &self,
        hook_id: Uuid,
        position: u64,
    ) -> Result<Option<DeliveryRecord>, StoreError> {
        let sql =
            format!("SELECT {COLUMNS} FROM hook_deliveries WHERE hook_id = $1 AND position = $2");
        sqlx::query(&sql)
            .bind(hook_id)
            .bind(signed(position)?)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_err)?
            .as_ref()
            .map(delivery)
            .transpose()
    }

    async fn deliveries(
        &self,
        hook_id: Uuid,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<DeliveryRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM hook_deliveries WHERE hook_id = $1 AND position < $2 \
             ORDER BY position DESC LIMIT $3"
        );
        sqlx::query(&sql)
            .bind(hook_id)
            .bind(before.map_or(Ok(i64::MAX), signed)?)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(map_err)?
            .iter()
            .map(delivery)
            .collect()
    }
}
