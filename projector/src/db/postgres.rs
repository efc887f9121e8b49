//! The read models in Postgres. A batch's rows go in with one `INSERT … SELECT FROM
//! UNNEST(…) ON CONFLICT DO UPDATE` per table (three statements whatever the batch
//! size), which is what lets a rebuild replay tens of thousands of events a second.

use sqlx::PgPool;
use uuid::Uuid;

use super::raw::{self, counts_text, EXECUTION_COLUMNS, TASK_COLUMNS, WORKFLOW_COLUMNS};
use super::{ReadModelError, CHECKPOINT};
use crate::rows::{Changes, ExecutionView, WorkflowFilter};

const CREATE: [&str; 12] = [
    "CREATE TABLE IF NOT EXISTS rm_checkpoints (name TEXT PRIMARY KEY, position BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rm_workflows (
        workflow_id UUID PRIMARY KEY, name TEXT NOT NULL, version BIGINT NOT NULL,
        task_count BIGINT NOT NULL, created_at TIMESTAMPTZ NOT NULL,
        created_position BIGINT NOT NULL, definition TEXT NOT NULL, status TEXT NOT NULL,
        latest_execution_id UUID, executions TEXT NOT NULL, position BIGINT NOT NULL,
        tenant_id TEXT NOT NULL DEFAULT 'default')",
    "CREATE INDEX IF NOT EXISTS rm_workflows_list ON rm_workflows (created_position DESC)",
    "CREATE TABLE IF NOT EXISTS rm_executions (
        execution_id UUID PRIMARY KEY, workflow_id UUID NOT NULL, status TEXT NOT NULL,
        version BIGINT NOT NULL, position BIGINT NOT NULL, started_at TIMESTAMPTZ,
        completed_at TIMESTAMPTZ, input TEXT NOT NULL, output TEXT, error TEXT,
        tenant_id TEXT NOT NULL DEFAULT 'default')",
    "CREATE INDEX IF NOT EXISTS rm_executions_workflow ON rm_executions (workflow_id, position)",
    "CREATE TABLE IF NOT EXISTS rm_tasks (
        execution_id UUID NOT NULL, task_id TEXT NOT NULL, ordinal BIGINT NOT NULL,
        status TEXT NOT NULL, attempts BIGINT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (execution_id, task_id))",
    // Read models written before tenants: every row is `default`'s.
    "ALTER TABLE rm_workflows ADD COLUMN IF NOT EXISTS tenant_id TEXT NOT NULL DEFAULT 'default'",
    "ALTER TABLE rm_executions ADD COLUMN IF NOT EXISTS tenant_id TEXT NOT NULL DEFAULT 'default'",
    "CREATE INDEX IF NOT EXISTS rm_workflows_tenant_list ON rm_workflows (tenant_id, created_position DESC)",
    "CREATE INDEX IF NOT EXISTS rm_executions_tenant ON rm_executions (tenant_id, execution_id)",
    // Read models written before child executions and budgets: none has a parent,
    // usage or budget. `budget` is added last, so that its presence says every
    // statement above ran.
    "ALTER TABLE rm_executions ADD COLUMN IF NOT EXISTS parent TEXT",
    "ALTER TABLE rm_executions ADD COLUMN IF NOT EXISTS usage TEXT, ADD COLUMN IF NOT EXISTS budget TEXT",
];

pub async fn migrate(pool: &PgPool) -> Result<(), ReadModelError> {
    // The DDL below takes table locks even when there is nothing to do (`ALTER TABLE …
    // IF NOT EXISTS` an exclusive one), and a process starting beside a running
    // projector would deadlock with its commits. The last column is added in the same
    // transaction as everything else: when it exists, the tables are current.
    let current: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.tables WHERE \
         table_schema = current_schema() AND table_name = 'rm_dead_letters')",
    )
    .fetch_one(pool)
    .await?;
    if current {
        return Ok(());
    }
    // Two processes starting together may both create: serialise on an advisory lock.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7263541)")
        .execute(&mut *tx)
        .await?;
    for ddl in CREATE {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    sqlx::query(super::agents::CREATE).execute(&mut *tx).await?;
    // Created last: its presence says every statement above ran.
    for ddl in super::dead_letters::CREATE {
        sqlx::query(ddl).execute(&mut *tx).await?;
    }
    sqlx::query(
        "INSERT INTO rm_checkpoints (name, position) VALUES ($1, 0) ON CONFLICT DO NOTHING",
    )
    .bind(CHECKPOINT)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn reset(pool: &PgPool) -> Result<(), ReadModelError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7263541)")
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "DROP TABLE IF EXISTS rm_tasks, rm_executions, rm_workflows, rm_agent_results, rm_dead_letters, rm_checkpoints",
    )
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    migrate(pool).await
}

pub async fn commit(
    pool: &PgPool,
    from: i64,
    to: i64,
    changes: &Changes,
) -> Result<bool, ReadModelError> {
    let mut tx = pool.begin().await?;
    // Read models are rebuilt from the log: a crash may lose the newest batches (rows
    // and checkpoint together, so they are applied again), never tear one. Not waiting
    // for the WAL flush keeps projector commits off the event appends' fsync path.
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let moved =
        sqlx::query("UPDATE rm_checkpoints SET position = $3 WHERE name = $1 AND position = $2")
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
    if !changes.workflows.is_empty() {
        let w = &changes.workflows;
        sqlx::query(&format!(
            "INSERT INTO rm_workflows ({WORKFLOW_COLUMNS})
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::int8[],
                 $5::timestamptz[], $6::int8[], $7::text[], $8::text[], $9::uuid[], $10::text[],
                 $11::int8[], $12::text[])
             ON CONFLICT (workflow_id) DO UPDATE SET name = EXCLUDED.name,
                 version = EXCLUDED.version, task_count = EXCLUDED.task_count,
                 created_at = EXCLUDED.created_at, created_position = EXCLUDED.created_position,
                 definition = EXCLUDED.definition, status = EXCLUDED.status,
                 latest_execution_id = EXCLUDED.latest_execution_id,
                 executions = EXCLUDED.executions, position = EXCLUDED.position"
        ))
        .bind(w.iter().map(|r| r.workflow_id).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.name.clone()).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.task_count).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.created_position).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.definition.clone()).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.latest_execution_id).collect::<Vec<_>>())
        .bind(w.iter().map(counts_text).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.position).collect::<Vec<_>>())
        .bind(w.iter().map(|r| r.tenant_id.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    if !changes.executions.is_empty() {
        let e = &changes.executions;
        sqlx::query(&format!(
            "INSERT INTO rm_executions ({EXECUTION_COLUMNS})
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::int8[],
                 $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[], $10::text[],
                 $11::text[], $12::text[], $13::text[], $14::text[])
             ON CONFLICT (execution_id) DO UPDATE SET workflow_id = EXCLUDED.workflow_id,
                 status = EXCLUDED.status, version = EXCLUDED.version,
                 position = EXCLUDED.position, started_at = EXCLUDED.started_at,
                 completed_at = EXCLUDED.completed_at, input = EXCLUDED.input,
                 output = EXCLUDED.output, error = EXCLUDED.error, parent = EXCLUDED.parent,
                 usage = EXCLUDED.usage, budget = EXCLUDED.budget"
        ))
        .bind(e.iter().map(|r| r.execution_id).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.workflow_id).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.version).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.position).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.started_at).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.completed_at).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.input.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.output.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.error.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.tenant_id.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.parent.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.usage.clone()).collect::<Vec<_>>())
        .bind(e.iter().map(|r| r.budget.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    if !changes.tasks.is_empty() {
        let t = &changes.tasks;
        sqlx::query(&format!(
            "INSERT INTO rm_tasks ({TASK_COLUMNS})
             SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::int8[], $4::text[], $5::int8[],
                 $6::text[])
             ON CONFLICT (execution_id, task_id) DO UPDATE SET ordinal = EXCLUDED.ordinal,
                 status = EXCLUDED.status, attempts = EXCLUDED.attempts, body = EXCLUDED.body"
        ))
        .bind(t.iter().map(|r| r.execution_id).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.task_id.clone()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.ordinal).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.status.clone()).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.attempts).collect::<Vec<_>>())
        .bind(t.iter().map(|r| r.body.clone()).collect::<Vec<_>>())
        .execute(&mut *tx)
        .await?;
    }
    super::agents::insert(
        &mut tx,
        "INSERT INTO rm_agent_results (agent_id, position, ok, duration_ms)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        &changes.agent_results,
    )
    .await?;
    super::dead_letters::upsert(
        &mut tx,
        "INSERT INTO rm_dead_letters (id, tenant_id, execution_id, state, at_us, body)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (id) DO UPDATE SET state = excluded.state, body = excluded.body",
        &changes.dead_letters,
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

pub async fn workflows(
    pool: &PgPool,
    filter: &WorkflowFilter,
) -> Result<Vec<raw::Workflow>, ReadModelError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {WORKFLOW_COLUMNS} FROM rm_workflows
         WHERE tenant_id = $5
           AND ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR name = $2)
           AND ($3::int8 IS NULL OR created_position < $3)
         ORDER BY created_position DESC LIMIT $4"
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
    pool: &PgPool,
    tenant: &str,
    execution_id: Uuid,
) -> Result<Option<ExecutionView>, ReadModelError> {
    // One snapshot for the execution and its tasks (they commit together).
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let execution: Option<raw::Execution> = sqlx::query_as(&format!(
        "SELECT {EXECUTION_COLUMNS} FROM rm_executions WHERE execution_id = $1 AND tenant_id = $2"
    ))
    .bind(execution_id)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(execution) = execution else {
        return Ok(None);
    };
    let tasks: Vec<raw::Task> = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM rm_tasks WHERE execution_id = $1 ORDER BY ordinal"
    ))
    .bind(execution_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(raw::view(execution, tasks)))
}
