//! `rm_agent_results`: one row per result an agent reported, in either database. The
//! agent body's `completed`, `failed`, `success_rate` and `p50_duration_ms` are read
//! from it, so they are rebuilt from the log like every read model.

use uuid::Uuid;

use crate::rows::{AgentResult, AgentResults};

/// The table (the same DDL works in Postgres and SQLite).
pub const CREATE: &str = "CREATE TABLE IF NOT EXISTS rm_agent_results (
    agent_id TEXT NOT NULL, position BIGINT NOT NULL, ok BOOLEAN NOT NULL,
    duration_ms BIGINT, PRIMARY KEY (agent_id, position))";

/// Results kept for an agent's median.
const RECENT: i64 = 100;

#[derive(sqlx::FromRow)]
pub(super) struct Row {
    agent_id: String,
    position: i64,
    ok: bool,
    duration_ms: Option<i64>,
}

impl Row {
    fn into_result(self) -> Option<AgentResult> {
        Some(AgentResult {
            agent_id: Uuid::parse_str(&self.agent_id).ok()?,
            position: self.position,
            ok: self.ok,
            duration_ms: self.duration_ms,
        })
    }
}

/// Adds `results` in the batch's transaction (a result already there is kept).
pub async fn insert<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    sql: &str,
    results: &[AgentResult],
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> bool: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<i64>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    for r in results {
        sqlx::query(sql)
            .bind(r.agent_id.to_string())
            .bind(r.position)
            .bind(r.ok)
            .bind(r.duration_ms)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// An agent's counts and latest durations.
pub async fn results<DB>(pool: &sqlx::Pool<DB>, agent_id: Uuid) -> Result<AgentResults, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> (i64, i64): sqlx::FromRow<'r, DB::Row>,
    for<'r> (i64,): sqlx::FromRow<'r, DB::Row>,
{
    let id = agent_id.to_string();
    let (completed, failed): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(SUM(CASE WHEN ok THEN 1 ELSE 0 END), 0),
                COALESCE(SUM(CASE WHEN ok THEN 0 ELSE 1 END), 0)
         FROM rm_agent_results WHERE agent_id = $1",
    )
    .bind(id.clone())
    .fetch_one(pool)
    .await?;
    let recent: Vec<(i64,)> = sqlx::query_as(&format!(
        "SELECT duration_ms FROM rm_agent_results
         WHERE agent_id = $1 AND duration_ms IS NOT NULL
         ORDER BY position DESC LIMIT {RECENT}"
    ))
    .bind(id)
    .fetch_all(pool)
    .await?;
    Ok(AgentResults {
        completed: u64::try_from(completed).unwrap_or(0),
        failed: u64::try_from(failed).unwrap_or(0),
        recent_ms: recent
            .into_iter()
            .map(|(ms,)| u64::try_from(ms).unwrap_or(0))
            .collect(),
    })
}

/// Every row, by agent and position.
pub async fn dump<DB>(pool: &sqlx::Pool<DB>) -> Result<Vec<AgentResult>, sqlx::Error>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'r> Row: sqlx::FromRow<'r, DB::Row>,
{
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT agent_id, position, ok, duration_ms FROM rm_agent_results
         ORDER BY agent_id, position",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter_map(Row::into_result).collect())
}
