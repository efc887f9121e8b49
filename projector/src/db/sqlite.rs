//! The read models in the embedded SQLite file: the same tables as Postgres, rows
//! upserted one prepared statement at a time inside the batch's transaction (SQLite
//! statements are in-process calls, so per-row statements cost no round trips).

use sqlx::SqlitePool;
use uuid::Uuid;

use super::raw::{self, counts_text, EXECUTION_COLUMNS, TASK_COLUMNS, WORKFLOW_COLUMNS};
use super::{ReadModelError, CHECKPOINT};
use crate::rows::{Changes, ExecutionView, WorkflowFilter};

const CREATE: [&str; 6] = [
    "CREATE TABLE IF NOT EXISTS rm_checkpoints (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rm_workflows (
        workflow_id BLOB PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,
        task_count INTEGER NOT NULL, created_at TEXT NOT NULL,
        created_position INTEGER NOT NULL, definition TEXT NOT NULL, status TEXT NOT NULL,
        latest_execution_id BLOB, executions TEXT NOT NULL, position INTEGER NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default')",
    "CREATE INDEX IF NOT EXISTS rm_workflows_list ON rm_workflows (created_position DESC)",
    "CREATE TABLE IF NOT EXISTS rm_executions (
        execution_id BLOB PRIMARY KEY, workflow_id BLOB NOT NULL, status TEXT NOT NULL,
        version INTEGER NOT NULL, position INTEGER NOT NULL, started_at TEXT,
        completed_at TEXT, input TEXT NOT NULL, output TEXT, error TEXT,
        tenant_id TEXT NOT NULL DEFAULT 'default')",
    "CREATE INDEX IF NOT EXISTS rm_executions_workflow ON rm_executions (workflow_id, position)",
    "CREATE TABLE IF NOT EXISTS rm_tasks (
        execution_id BLOB NOT NULL, task_id TEXT NOT NULL, ordinal INTEGER NOT NULL,
        status TEXT NOT NULL, attempts INTEGER NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (execution_id, task_id))",
];

/// Indexes of the tenant column (created once the column exists).
const TENANT_INDEXES: [&str; 2] = [
    "CREATE INDEX IF NOT EXISTS rm_workflows_tenant_list ON rm_workflows (tenant_id, created_position DESC)",
    "CREATE INDEX IF NOT EXISTS rm_executions_tenant ON rm_executions (tenant_id, execution_id)",
];

pub async fn migrate(pool: &SqlitePool) -> Result<(), ReadModelError> {
    let mut tx = pool.begin().await?;
    for ddl in CREATE {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    sqlx::query(super::agents::CREATE).execute(&mut *tx).await?;
    for ddl in super::dead_letters::CREATE {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    // Read models written before tenants: every row is `default`'s (SQLite has no
    // `ADD COLUMN IF NOT EXISTS`).
    for table in ["rm_workflows", "rm_executions"] {
        let has: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM pragma_table_info('{table}') WHERE name = 'tenant_id'"
        ))
        .fetch_one(&mut *tx)
        .await?;
        if has == 0 {
            sqlx::query(&format!(
                "ALTER TABLE {table} ADD COLUMN tenant_id TEXT NOT NULL DEFAULT 'default'"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    // Read models written before child executions and budgets: none has a parent,
    // usage or budget.
    for column in ["parent", "usage", "budget"] {
        let has: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM pragma_table_info('rm_executions') WHERE name = '{column}'"
        ))
        .fetch_one(&mut *tx)
        .await?;
        if has == 0 {
            sqlx::query(&format!(
                "ALTER TABLE rm_executions ADD COLUMN {column} TEXT"
            ))
            .execute(&mut *tx)
            .await?;
        }
    }
    for ddl in TENANT_INDEXES {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    sqlx::query(
        "INSERT INTO rm_checkpoints (name, position) VALUES (?1, 0) ON CONFLICT DO NOTHING",
    )
    .bind(CHECKPOINT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn reset(pool: &SqlitePool) -> Result<(), ReadModelError> {
    let mut tx = pool.begin().await?;
    for table in [
        "rm_tasks",
        "rm_executions",
        "rm_workflows",
        "rm_agent_results",
        "rm_dead_letters",
        "rm_checkpoints",
    ] {
        sqlx::query(&format!("DROP TABLE IF EXISTS {table}"))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    migrate(pool).await
}

pub async fn commit(
    pool: &SqlitePool,
    from: i64,
    to: i64,
    changes: &Changes,
) -> Result<bool, ReadModelError> {
    let mut tx = pool.begin().await?;
    let moved =
        sqlx::query("UPDATE rm_checkpoints SET position = ?3 WHERE name = ?1 AND position = ?2")
            .bind(CHECKPOINT)
            .bind(from)
            .bind(to)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    if moved != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    let upsert_workflow = format!(
        "INSERT INTO rm_workflows ({WORKFLOW_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
         ON CONFLICT (workflow_id) DO UPDATE SET name = excluded.name,
             version = excluded.version, task_count = excluded.task_count,
             created_at = excluded.created_at, created_position = excluded.created_position,
             definition = excluded.definition, status = excluded.status,
             latest_execution_id = excluded.latest_execution_id,
             executions = excluded.executions, position = excluded.position"
    );
    for r in &changes.workflows {
        sqlx::query(&upsert_workflow)
            .bind(r.workflow_id)
            .bind(&r.name)
            .bind(r.version)
            .bind(r.task_count)
            .bind(r.created_at)
            .bind(r.created_position)
            .bind(&r.definition)
            .bind(&r.status)
            .bind(r.latest_execution_id)
            .bind(counts_text(r))
            .bind(r.position)
            .bind(&r.tenant_id)
            .execute(&mut *tx)
            .await?;
    }
    let upsert_execution = format!(
        "INSERT INTO rm_executions ({EXECUTION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (execution_id) DO UPDATE SET workflow_id = excluded.workflow_id,
             status = excluded.status, version = excluded.version,
             position = excluded.position, started_at = excluded.started_at,
             completed_at = excluded.completed_at, input = excluded.input,
             output = excluded.output, error = excluded.error, parent = excluded.parent,
             usage = excluded.usage, budget = excluded.budget"
    );
    for r in &changes.executions {
        sqlx::query(&upsert_execution)
            .bind(r.execution_id)
            .bind(r.workflow_id)
            .bind(&r.status)
            .bind(r.version)
            .bind(r.position)
            .bind(r.started_at)
            .bind(r.completed_at)
            .bind(&r.input)
            .bind(&r.output)
            .bind(&r.error)
            .bind(&r.tenant_id)
            .bind(&r.parent)
            .bind(&r.usage)
            .bind(&r.budget)
            .execute(&mut *tx)
            .await?;
    }
    let upsert_task = format!(
        "INSERT INTO rm_tasks ({TASK_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (execution_id, task_id) DO UPDATE SET ordinal = excluded.ordinal,
             status = excluded.status, attempts = excluded.attempts, body = excluded.body"
    );
    for r in &changes.tasks {
        sqlx::query(&upsert_task)
            .bind(r.execution_id)
            .bind(&r.task_id)
            .bind(r.ordinal)
            .bind(&r.status)
            .bind(r.attempts)
            .bind(&r.body)
            .execute(&mut *tx)
            .await?;
    }
    super::agents::insert(
        &mut tx,
        "INSERT INTO rm_agent_results (agent_id, position, ok, duration_ms)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT DO NOTHING",
        &changes.agent_results,
    )
    .await?;
    super::dead_letters::upsert(
        &mut tx,
        "INSERT INTO rm_dead_letters (id, tenant_id, execution_id, state, at_us, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body",
        &changes.dead_letters,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn workflows(
    pool: &SqlitePool,
    filter: &WorkflowFilter,
) -> Result<Vec<raw::Workflow>, ReadModelError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {WORKFLOW_COLUMNS} FROM rm_workflows
         WHERE tenant_id = ?5 AND (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR name = ?2)
           AND (?3 IS NULL OR created_position < ?3)
         ORDER BY created_position DESC LIMIT ?4"
    ))
    .bind(&filter.status)
    .bind(&filter.name)
    .bind(filter.before_position)
    .bind(filter.limit)
    .bind(&filter.tenant)
    .fetch_all(pool)
    .await?)
}

pub async fn execution(
    pool: &SqlitePool,
    tenant: &str,
    execution_id: Uuid,
) -> Result<Option<ExecutionView>, ReadModelError> {
    // One read transaction: the execution and its tasks from the same commit.
    let mut tx = pool.begin().await?;
    let execution: Option<raw::Execution> = sqlx::query_as(&format!(
        "SELECT {EXECUTION_COLUMNS} FROM rm_executions WHERE execution_id = ?1 AND tenant_id = ?2"
    ))
    .bind(execution_id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(execution) = execution else {
        return Ok(None);
    };
    let tasks: Vec<raw::Task> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM rm_tasks WHERE execution_id = ?1 ORDER BY ordinal"
    ))
    .bind(execution_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(raw::view(execution, tasks)))
}
