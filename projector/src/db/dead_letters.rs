//! `rm_dead_letters`: one row per dead letter (a task that failed for good and failed
//! its execution), in either database — what `GET /api/v1/dead-letters` lists and an
//! execution's body names. Folded from the executions' own state like every read model,
//! so a rebuild gives the same rows. The row keeps the API body as JSON text (its
//! `error` sealed when payloads are encrypted at rest; the query API opens it).

use conflux_schema::api::{DeadLetter, DeadLetterState};
use uuid::Uuid;

use crate::rows::DeadLetterRow;

/// The table and its list index (the same DDL works in Postgres and SQLite).
pub const CREATE: [&str; 3] = [
    "CREATE TABLE IF NOT EXISTS rm_dead_letters (
        id TEXT PRIMARY KEY, tenant_id TEXT NOT NULL, execution_id TEXT NOT NULL,
        state TEXT NOT NULL, at_us BIGINT NOT NULL, body TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS rm_dead_letters_list ON rm_dead_letters (tenant_id, at_us DESC)",
    "CREATE INDEX IF NOT EXISTS rm_dead_letters_execution ON rm_dead_letters (execution_id, at_us DESC)",
];

/// Upserts `rows` in the batch's transaction (`sql` is the backend's upsert).
pub async fn upsert<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    sql: &str,
    rows: &[DeadLetterRow],
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for r in rows {
        sqlx::query(sql)
            .bind(r.body.id.clone())
            .bind(r.tenant_id.clone())
            .bind(r.body.execution_id.to_string())
            .bind(r.body.state.as_str().to_owned())
            .bind(r.body.dead_lettered_at.timestamp_micros())
            .bind(serde_json::to_string(&r.body).unwrap_or_default())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// `tenant`'s dead letters in `state` (all states: None), newest first, at most `limit`.
pub async fn list<DB>(
    pool: &sqlx::Pool<DB>,
    tenant: &str,
    state: Option<DeadLetterState>,
    limit: i64,
) -> Result<Vec<DeadLetter>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<(String,)> = sqlx::query_as(
        "SELECT body FROM rm_dead_letters
         WHERE tenant_id = $1 AND ($2 IS NULL OR state = $2)
         ORDER BY at_us DESC, id LIMIT $3",
    )
    .bind(tenant.to_owned())
    .bind(state.map(|s| s.as_str().to_owned()))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(body,)| serde_json::from_str(&body).ok())
        .collect())
}

/// Dead letter `id`, if it is `tenant`'s.
pub async fn get<DB>(
    pool: &sqlx::Pool<DB>,
    tenant: &str,
    id: &str,
) -> Result<Option<DeadLetter>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    one(
        pool,
        "SELECT body FROM rm_dead_letters WHERE id = $1 AND tenant_id = $2",
        [id, tenant],
    )
    .await
}

/// Every row, by id (tests and the rebuild check).
pub async fn dump<DB>(pool: &sqlx::Pool<DB>) -> Result<Vec<DeadLetterRow>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> (String, String): sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT tenant_id, body FROM rm_dead_letters ORDER BY id")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(tenant_id, body)| {
            Some(DeadLetterRow {
                tenant_id,
                body: serde_json::from_str(&body).ok()?,
            })
        })
        .collect())
}

/// The latest dead letter of execution `execution_id`.
pub async fn latest_of<DB>(
    pool: &sqlx::Pool<DB>,
    execution_id: Uuid,
) -> Result<Option<DeadLetter>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let execution = execution_id.to_string();
    one(
        pool,
        "SELECT body FROM rm_dead_letters WHERE execution_id = $1
         ORDER BY at_us DESC, id DESC LIMIT 1",
        [execution.as_str()],
    )
    .await
}

/// The dead letter `sql` (selecting `body`, with `params` bound in order) finds, if any.
async fn one<DB, const N: usize>(
    pool: &sqlx::Pool<DB>,
    sql: &str,
    params: [&str; N],
) -> Result<Option<DeadLetter>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (String,): sqlx::FromRow<'r, DB::Row>,
{
    let mut query = sqlx::query_as::<DB, (String,)>(sql);
    for p in params {
        query = query.bind(p.to_owned());
    }
    let row = query.fetch_optional(pool).await?;
    Ok(row.and_then(|(body,)| serde_json::from_str(&body).ok()))
}
