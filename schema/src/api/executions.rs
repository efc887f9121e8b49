//! Execution bodies: an execution with its tasks, and the answer to a command.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::status::{ExecutionStatus, TaskStatus};

/// An execution (`GET /api/v1/executions/{id}`), folded from its log with the engine's
/// own `evolve` (or read from the read model the projector folds the same way).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Execution {
    /// The execution (null only before its start, which is never served).
    #[schema(value_type = Uuid)]
    pub execution_id: Option<Uuid>,
    /// Its workflow (null only before its start).
    #[schema(value_type = Uuid)]
    pub workflow_id: Option<Uuid>,
    /// Its status.
    pub status: ExecutionStatus,
    /// Its input.
    pub input: Value,
    /// The outputs of its sink tasks (tasks nothing depends on), by task id; null
    /// until it completed.
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// The version of its last event.
    pub version: u64,
    /// The position of its last event (absent in `replay`'s `state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
    /// For a child execution (started by a parent's `workflow` task): that task's
    /// attempt, and how deep the child is. Absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<crate::event::ParentLink>,
    /// What its attempts reported spending, summed (absent before the first report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
    /// How much it may spend, if it was started with a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::usage::Budget>,
    /// The dead letter of the task that failed it (its latest), when a task that failed
    /// for good failed it; absent otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dead_letter: Option<crate::api::DeadLetterRef>,
    /// Its tasks, by task id.
    pub tasks: BTreeMap<String, TaskState>,
}

/// One task of an execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TaskState {
    /// Its status.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the current attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub completed_at: Option<DateTime<Utc>>,
    /// Its output, once completed.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// The agent that leased the current attempt.
    pub agent_id: Option<Uuid>,
    /// What its `pre` and `post` hooks annotated it with, by phase
    /// (`{"pre": {...}, "post": {...}}`); absent when they said nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Value>,
    /// Present once its compensation began.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compensation: Option<CompensationState>,
    /// Present while a `signal` or `approval` task waits: what for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<crate::api::waits::WaitingFor>,
    /// For a `workflow` task once dispatched: the child execution its current attempt
    /// runs (`GET /api/v1/executions/{child_execution_id}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_execution_id: Option<Uuid>,
    /// Why a dispatched agent task is not taken: no registered agent of its role has
    /// every capability it requires (it waits for one that registers later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_reason: Option<String>,
}

/// A task's compensation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompensationState {
    /// Its status.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// Its output.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
}

/// An execution after a command (pause, resume, cancel).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionControlled {
    /// The execution.
    pub execution_id: Uuid,
    /// Its status now.
    pub status: ExecutionStatus,
}

/// Optional body of `POST /api/v1/executions/{id}/cancel`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CancelRequest {
    /// Why, recorded in `ExecutionCancelled`.
    #[serde(default)]
    pub reason: Option<String>,
}
