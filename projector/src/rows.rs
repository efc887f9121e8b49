//! The rows of the read models, as the projector writes them and the query API reads
//! them. Rows are plain data: deriving them from events is [`crate::fold`]'s job,
//! storing them is [`crate::db`]'s.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use conflux_schema::api;
use conflux_schema::status::ExecutionStatus;
use serde_json::{json, Value};
use uuid::Uuid;

/// Execution statuses a workflow summary counts (API.md: `executions` of `/status`).
pub const COUNTED_STATUSES: [&str; 7] = [
    "running",
    "completed",
    "failed",
    "cancelled",
    "paused",
    "compensating",
    "compensated",
];

/// Statuses a workflow can have: `idle` (never executed) or its latest execution's.
pub const WORKFLOW_STATUSES: [&str; 9] = [
    "idle",
    "running",
    "queued",
    "completed",
    "failed",
    "cancelled",
    "paused",
    "compensating",
    "compensated",
];

/// One workflow definition and the summary of its executions (`rm_workflows`).
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRow {
    /// The workflow id.
    pub workflow_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its version within the name.
    pub version: i64,
    /// How many tasks the definition has.
    pub task_count: i64,
    /// When `WorkflowCreated` was recorded.
    pub created_at: DateTime<Utc>,
    /// The position of `WorkflowCreated` (the list's order and cursor).
    pub created_position: i64,
    /// The definition as submitted, JSON text.
    pub definition: String,
    /// `idle`, or the status of the latest execution.
    pub status: String,
    /// The most recently started execution.
    pub latest_execution_id: Option<Uuid>,
    /// Executions by status (every status of [`COUNTED_STATUSES`] present).
    pub executions: BTreeMap<String, i64>,
    /// The last position that changed this row.
    pub position: i64,
    /// The tenant it belongs to (its `WorkflowCreated`'s).
    pub tenant_id: String,
}

impl WorkflowRow {
    /// A summary with zero executions for every counted status.
    pub fn zero_counts() -> BTreeMap<String, i64> {
        COUNTED_STATUSES
            .iter()
            .map(|s| ((*s).to_owned(), 0))
            .collect()
    }

    /// The list item of `GET /api/v1/workflows`.
    pub fn summary(&self) -> api::WorkflowSummary {
        api::WorkflowSummary {
            workflow_id: self.workflow_id,
            name: self.name.clone(),
            version: u32::try_from(self.version).unwrap_or(u32::MAX),
            task_count: u64::try_from(self.task_count).unwrap_or(0),
            created_at: self.created_at,
            status: self.status.clone(),
            latest_execution_id: self.latest_execution_id,
            executions: self.counts(),
            position: u64::try_from(self.position).unwrap_or(0),
        }
    }

    /// The executions by status, as the API counts them.
    pub fn counts(&self) -> api::ExecutionCounts {
        let mut counts = api::ExecutionCounts::default();
        for (status, n) in &self.executions {
            if let Some(slot) = counts.slot(status) {
                *slot = u64::try_from(*n).unwrap_or(0);
            }
        }
        counts
    }

    /// The body of `GET /api/v1/workflows/{id}`: the definition plus its identity.
    pub fn definition_json(&self) -> Value {
        let mut body = serde_json::from_str(&self.definition).unwrap_or_else(|_| json!({}));
        if let Value::Object(map) = &mut body {
            map.insert("workflow_id".into(), json!(self.workflow_id));
            map.insert("name".into(), json!(self.name));
            map.insert("version".into(), json!(self.version));
            map.insert("created_at".into(), json!(self.created_at));
        }
        body
    }
}

/// One execution (`rm_executions`), without its tasks.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    /// The execution id.
    pub execution_id: Uuid,
    /// The workflow it runs.
    pub workflow_id: Uuid,
    /// Its status (API.md execution statuses).
    pub status: String,
    /// The stream version this row reflects.
    pub version: i64,
    /// The position of the last event this row reflects.
    pub position: i64,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a terminal status.
    pub completed_at: Option<DateTime<Utc>>,
    /// The execution input, JSON text.
    pub input: String,
    /// The output (sink tasks' outputs), JSON text, once completed.
    pub output: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The tenant it belongs to (its `ExecutionStarted`'s).
    pub tenant_id: String,
    /// A child execution's `parent` link, JSON text (None for a top-level execution).
    pub parent: Option<String>,
    /// What its attempts reported spending, JSON text (None before the first report).
    pub usage: Option<String>,
    /// Its budget, JSON text (None without one).
    pub budget: Option<String>,
}

/// One task of one execution (`rm_tasks`).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    /// The execution.
    pub execution_id: Uuid,
    /// The task id.
    pub task_id: String,
    /// Its index in the definition (the order tasks are listed in).
    pub ordinal: i64,
    /// Its status.
    pub status: String,
    /// Attempts so far.
    pub attempts: i64,
    /// The whole task body of the execution read, JSON text.
    pub body: String,
}

/// An execution with its tasks: the body of `GET /api/v1/executions/{id}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionView {
    /// The execution row.
    pub execution: ExecutionRow,
    /// Its tasks in definition order.
    pub tasks: Vec<TaskRow>,
    /// The latest dead letter of the execution, if a task failed it (`rm_dead_letters`).
    pub dead_letter: Option<api::DeadLetterRef>,
}

impl ExecutionView {
    /// API.md's execution body (the engine's own view, plus `position`). A task row
    /// whose body does not parse (never written by this projector) is left out.
    pub fn view(&self) -> api::Execution {
        let e = &self.execution;
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap_or(Value::Null);
        let tasks = self
            .tasks
            .iter()
            .filter_map(|t| {
                let task = serde_json::from_str::<api::TaskState>(&t.body).ok()?;
                Some((t.task_id.clone(), task))
            })
            .collect();
        api::Execution {
            execution_id: Some(e.execution_id),
            workflow_id: Some(e.workflow_id),
            status: serde_json::from_value(Value::String(e.status.clone()))
                .unwrap_or(ExecutionStatus::NotStarted),
            input: parse(&e.input),
            output: e.output.as_deref().map_or(Value::Null, parse),
            error: e.error.clone(),
            started_at: e.started_at,
            completed_at: e.completed_at,
            version: u64::try_from(e.version).unwrap_or(0),
            position: Some(u64::try_from(e.position).unwrap_or(0)),
            parent: e
                .parent
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok()),
            usage: e
                .usage
                .as_deref()
                .and_then(|u| serde_json::from_str(u).ok()),
            budget: e
                .budget
                .as_deref()
                .and_then(|b| serde_json::from_str(b).ok()),
            dead_letter: self.dead_letter.clone(),
            tasks,
        }
    }

    /// [`ExecutionView::view`] as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }
}

/// Everything one batch of events changed, written in one transaction together with
/// the checkpoint.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    /// Workflow rows to upsert.
    pub workflows: Vec<WorkflowRow>,
    /// Execution rows to upsert.
    pub executions: Vec<ExecutionRow>,
    /// Task rows to upsert (only those that changed).
    pub tasks: Vec<TaskRow>,
    /// Agents' results to add.
    pub agent_results: Vec<AgentResult>,
    /// Dead letters to upsert (new, or whose state changed).
    pub dead_letters: Vec<DeadLetterRow>,
}

impl Changes {
    /// Nothing to write but the checkpoint.
    pub fn is_empty(&self) -> bool {
        self.workflows.is_empty()
            && self.executions.is_empty()
            && self.tasks.is_empty()
            && self.agent_results.is_empty()
            && self.dead_letters.is_empty()
    }
}

/// One dead letter (`rm_dead_letters`): its API body and its tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRow {
    /// The tenant of its execution.
    pub tenant_id: String,
    /// The body `GET /api/v1/dead-letters` lists.
    pub body: api::DeadLetter,
}

/// One result an agent reported (`rm_agent_results`): a `TaskCompleted`, `TaskFailed`
/// or `TaskCompensated` whose actor is `agent:<id>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentResult {
    /// The agent.
    pub agent_id: Uuid,
    /// The result event's position (unique per agent).
    pub position: i64,
    /// Completed (true) or failed.
    pub ok: bool,
    /// Lease to result, in milliseconds (None when the lease was folded before this
    /// process's checkpoint and its time is not known).
    pub duration_ms: Option<i64>,
}

/// An agent's results as the read model counts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentResults {
    /// Results that completed.
    pub completed: u64,
    /// Results that failed.
    pub failed: u64,
    /// Durations of its latest 100 results, newest first.
    pub recent_ms: Vec<u64>,
}

/// Filters and page of `GET /api/v1/workflows`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkflowFilter {
    /// The tenant whose workflows are listed (always one: lists never cross tenants).
    pub tenant: String,
    /// Only workflows with this status.
    pub status: Option<String>,
    /// Only workflows with this name.
    pub name: Option<String>,
    /// Only workflows created before this position (the cursor), newest first.
    pub before_position: Option<i64>,
    /// Page size.
    pub limit: i64,
}
