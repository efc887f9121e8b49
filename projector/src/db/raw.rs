//! Rows as both databases return them (`sqlx::FromRow`), and their conversion to the
//! crate's row types. The column lists live here once for both backends.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::Dump;
use crate::rows::{ExecutionRow, ExecutionView, TaskRow, WorkflowRow};

/// The columns of `rm_workflows`, in the order [`Workflow`] reads them.
pub const WORKFLOW_COLUMNS: &str = "workflow_id, name, version, task_count, created_at, \
    created_position, definition, status, latest_execution_id, executions, position, tenant_id";
/// The columns of `rm_executions`.
pub const EXECUTION_COLUMNS: &str = "execution_id, workflow_id, status, version, position, \
    started_at, completed_at, input, output, error, tenant_id, parent, usage, budget";
/// The columns of `rm_tasks`.
pub const TASK_COLUMNS: &str = "execution_id, task_id, ordinal, status, attempts, body";

#[derive(sqlx::FromRow)]
pub struct Workflow {
    workflow_id: Uuid,
    name: String,
    version: i64,
    task_count: i64,
    created_at: DateTime<Utc>,
    created_position: i64,
    definition: String,
    status: String,
    latest_execution_id: Option<Uuid>,
    executions: String,
    position: i64,
    tenant_id: String,
}

impl Workflow {
    pub fn into_row(self) -> WorkflowRow {
        let mut executions = WorkflowRow::zero_counts();
        if let Ok(stored) = serde_json::from_str::<BTreeMap<String, i64>>(&self.executions) {
            executions.extend(stored);
        }
        WorkflowRow {
            workflow_id: self.workflow_id,
            name: self.name,
            version: self.version,
            task_count: self.task_count,
            created_at: self.created_at,
            created_position: self.created_position,
            definition: self.definition,
            status: self.status,
            latest_execution_id: self.latest_execution_id,
            executions,
            position: self.position,
            tenant_id: self.tenant_id,
        }
    }
}

/// The counts column's text.
pub fn counts_text(row: &WorkflowRow) -> String {
    serde_json::to_string(&row.executions).unwrap_or_else(|_| "{}".into())
}

#[derive(sqlx::FromRow)]
pub struct Execution {
    execution_id: Uuid,
    workflow_id: Uuid,
    status: String,
    version: i64,
    position: i64,
    started_at: Option<DateTime<Utc>>,
    completed_at: Option<DateTime<Utc>>,
    input: String,
    output: Option<String>,
    error: Option<String>,
    tenant_id: String,
    parent: Option<String>,
    usage: Option<String>,
    budget: Option<String>,
}

impl Execution {
    pub fn into_row(self) -> ExecutionRow {
        ExecutionRow {
            execution_id: self.execution_id,
            workflow_id: self.workflow_id,
            status: self.status,
            version: self.version,
            position: self.position,
            started_at: self.started_at,
            completed_at: self.completed_at,
            input: self.input,
            output: self.output,
            error: self.error,
            tenant_id: self.tenant_id,
            parent: self.parent,
            usage: self.usage,
            budget: self.budget,
        }
    }
}

#[derive(sqlx::FromRow)]
pub struct Task {
    execution_id: Uuid,
    task_id: String,
    ordinal: i64,
    status: String,
    attempts: i64,
    body: String,
}

impl Task {
    pub fn into_row(self) -> TaskRow {
        TaskRow {
            execution_id: self.execution_id,
            task_id: self.task_id,
            ordinal: self.ordinal,
            status: self.status,
            attempts: self.attempts,
            body: self.body,
        }
    }
}

/// An execution and its tasks (ordered by ordinal by the query).
pub fn view(execution: Execution, tasks: Vec<Task>) -> ExecutionView {
    ExecutionView {
        dead_letter: None,
        execution: execution.into_row(),
        tasks: tasks.into_iter().map(Task::into_row).collect(),
    }
}

/// Every row, executions in id order, tasks grouped under their execution by ordinal.
/// `executions` must be ordered by id, `tasks` by (execution id, ordinal).
pub fn assemble_dump(
    checkpoint: u64,
    workflows: Vec<Workflow>,
    executions: Vec<Execution>,
    tasks: Vec<Task>,
) -> Dump {
    let mut by_execution: BTreeMap<Uuid, Vec<TaskRow>> = BTreeMap::new();
    for t in tasks {
        let row = t.into_row();
        by_execution.entry(row.execution_id).or_default().push(row);
    }
    Dump {
        checkpoint,
        workflows: workflows.into_iter().map(Workflow::into_row).collect(),
        executions: executions
            .into_iter()
            .map(|e| {
                let execution = e.into_row();
                let tasks = by_execution
                    .remove(&execution.execution_id)
                    .unwrap_or_default();
                ExecutionView {
                    execution,
                    tasks,
                    dead_letter: None,
                }
            })
            .collect(),
        agent_results: Vec::new(),
        dead_letters: Vec::new(),
    }
}

/// Every row of every table, in key order, from either database.
pub async fn dump<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
) -> Result<(Vec<Workflow>, Vec<Execution>, Vec<Task>), sqlx::Error>
where
    for<'r> Workflow: sqlx::FromRow<'r, DB::Row>,
    for<'r> Execution: sqlx::FromRow<'r, DB::Row>,
    for<'r> Task: sqlx::FromRow<'r, DB::Row>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
{
    let workflows = sqlx::query_as(&format!(
        "SELECT {WORKFLOW_COLUMNS} FROM rm_workflows ORDER BY workflow_id"
    ))
    .fetch_all(pool)
    .await?;
    let executions = sqlx::query_as(&format!(
        "SELECT {EXECUTION_COLUMNS} FROM rm_executions ORDER BY execution_id"
    ))
    .fetch_all(pool)
    .await?;
    let tasks = sqlx::query_as(&format!(
        "SELECT {TASK_COLUMNS} FROM rm_tasks ORDER BY execution_id, ordinal"
    ))
    .fetch_all(pool)
    .await?;
    Ok((workflows, executions, tasks))
}
