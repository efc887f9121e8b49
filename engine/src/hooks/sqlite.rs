//! [`SqliteHookStore`]: hooks' delivery state in the embedded store's file (tables
//! `hooks` and `hook_deliveries`, migration 0012, applied by the event store). Uuids and
//! times are text (RFC 3339 with microseconds).

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqlitePool};
use uuid::Uuid;

use super::store::{signed, state, unsigned, DeliveryRecord, HookRow, HookStore};
use crate::store::sqlite::map_err;
use crate::store::StoreError;

/// Hooks' delivery state in the embedded SQLite file, next to the event store.
#[derive(Clone, Debug)]
pub struct SqliteHookStore {
    pool: SqlitePool,
}

impl SqliteHookStore {
    /// The tables over `pool`, whose database the event store has migrated.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }
}

fn text(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn time(row: &SqliteRow, name: &str) -> Result<DateTime<Utc>, StoreError> {
    let raw: String = row.try_get(name).map_err(map_err)?;
    DateTime::parse_from_rfc3339(&raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Backend(format!("a stored {name} {raw:?}: {e}")))
}

fn uuid(row: &SqliteRow, name: &str) -> Result<Uuid, StoreError> {
    let raw: String = row.try_get(name).map_err(map_err)?;
    Uuid::parse_str(&raw)
        .map_err(|e| StoreError::Backend(format!("{name} {raw:?} is not a uuid: {e}")))
}

const COLUMNS: &str = "hook_id, position, event_id, event_type, state, attempts, last_status, \
                       last_error, created_at, updated_at";

fn delivery(row: &SqliteRow) -> Result<DeliveryRecord, StoreError> {
    let status: Option<i64> = row.try_get("last_status").map_err(map_err)?;
    let attempts: i64 = row.try_get("attempts").map_err(map_err)?;
    let kind: String = row.try_get("state").map_err(map_err)?;
    Ok(DeliveryRecord {
        hook_id: uuid(row, "hook_id")?,
        position: unsigned(row.try_get("position").map_err(map_err)?, "position")?,
        event_id: uuid(row, "event_id")?,
        event_type: row.try_get("event_type").map_err(map_err)?,
        state: state(&kind)?,
        attempts: u32::try_from(attempts).unwrap_or(0),
        last_status: status.and_then(|s| u16::try_from(s).ok()),
        last_error: row.try_get("last_error").map_err(map_err)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

#[async_trait]
impl HookStore for SqliteHookStore {
    async fn insert(&self, row: &HookRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO hooks (hook_id, tenant, sealed_secret, last_position, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(row.hook_id.to_string())
        .bind(&row.tenant)
        .bind(&row.sealed_secret)
        .bind(signed(row.cursor)?)
        .bind(text(row.created_at))
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn remove(&self, hook_id: Uuid) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await.map_err(map_err)?;
        sqlx::query("DELETE FROM hook_deliveries WHERE hook_id = ?")
            .bind(hook_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        sqlx::query("DELETE FROM hooks WHERE hook_id = ?")
            .bind(hook_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
    }

    async fn sealed_secret(&self, hook_id: Uuid) -> Result<Option<Vec<u8>>, StoreError> {
        sqlx::query_scalar("SELECT sealed_secret FROM hooks WHERE hook_id = ?")
            .bind(hook_id.to_string())
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
            "UPDATE hooks SET lease_owner = ?2, lease_until_ms = ?4 \
             WHERE hook_id = ?1 \
               AND (lease_owner IS NULL OR lease_owner = ?2 OR lease_until_ms < ?3) \
             RETURNING last_position",
        )
        .bind(hook_id.to_string())
        .bind(owner.to_string())
        .bind(now_ms)
        .bind(until_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_err)?;
        cursor.map(|c| unsigned(c, "cursor")).transpose()
    }

    async fn renew(&self, hook_id: Uuid, owner: Uuid, until_ms: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE hooks SET lease_until_ms = ? WHERE hook_id = ? AND lease_owner = ?",
        )
        .bind(until_ms)
        .bind(hook_id.to_string())
        .bind(owner.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release(&self, hook_id: Uuid, owner: Uuid) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE hooks SET lease_owner = NULL, lease_until_ms = 0 \
             WHERE hook_id = ? AND lease_owner = ?",
        )
        .bind(hook_id.to_string())
        .bind(owner.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn advance(&self, hook_id: Uuid, owner: Uuid, position: u64) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE hooks SET last_position = MAX(last_position, ?) \
             WHERE hook_id = ? AND lease_owner = ?",
        )
        .bind(signed(position)?)
        .bind(hook_id.to_string())
        .bind(owner.to_string())
        .execute(&self.pool)
        .await
        .map_err(map_err)?;
        Ok(done.rows_affected() == 1)
    }

    async fn record(&self, d: &DeliveryRecord, owner: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO hook_deliveries (hook_id, position, event_id, event_type, state, \
                 attempts, last_status, last_error, created_at, updated_at) \
             SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10 \
             WHERE EXISTS (SELECT 1 FROM hooks WHERE hook_id = ?1 AND lease_owner = ?11) \
             ON CONFLICT (hook_id, position) DO UPDATE SET state = excluded.state, \
                 attempts = excluded.attempts, last_status = excluded.last_status, \
                 last_error = excluded.last_error, updated_at = excluded.updated_at",
        )
        .bind(d.hook_id.to_string())
        .bind(signed(d.position)?)
        .bind(d.event_id.to_string())
        .bind(&d.event_type)
        .bind(d.state.as_str())
        .bind(i64::from(d.attempts))
        .bind(d.last_status.map(i64::from))
        .bind(&d.last_error)
        .bind(text(d.created_at))
        .bind(text(d.updated_at))
        .bind(owner.to_string())
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
            format!("SELECT {COLUMNS} FROM hook_deliveries WHERE hook_id = ? AND position = ?");
        sqlx::query(&sql)
            .bind(hook_id.to_string())
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
            "SELECT {COLUMNS} FROM hook_deliveries WHERE hook_id = ? AND position < ? \
             ORDER BY position DESC LIMIT ?"
        );
        sqlx::query(&sql)
            .bind(hook_id.to_string())
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
