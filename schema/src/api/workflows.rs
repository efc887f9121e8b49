//! Workflow bodies: creation, the list, a workflow's status, execute, and the
//! workflow-wide pause and resume.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::executions::{Execution, ExecutionControlled};
use crate::status::ExecutionStatus;

/// A created workflow (`201` of `POST /api/v1/workflows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowCreated {
    /// Its id (derived from its tenant, name and version).
    pub workflow_id: Uuid,
    /// Its name.
    pub name: String,
    /// 1, 2, 3… per name (per tenant).
    pub version: u32,
    /// How many tasks it has.
    pub task_count: u64,
    /// When it was recorded.
    pub created_at: DateTime<Utc>,
    /// The execution started, with `?execute=true` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<Uuid>,
}

/// A page of workflows (`GET /api/v1/workflows`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowList {
    /// Newest first.
    pub items: Vec<WorkflowSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One workflow of the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowSummary {
    /// Its id.
    pub workflow_id: Uuid,
    /// Its name.
    pub name: String,
    /// Its version within the name.
    pub version: u32,
    /// How many tasks it has.
    pub task_count: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// `idle` (never executed) or its latest execution's status.
    #[schema(example = "running")]
    pub status: String,
    /// Its most recently started execution.
    #[schema(required = true)]
    pub latest_execution_id: Option<Uuid>,
    /// Its executions by status.
    pub executions: ExecutionCounts,
    /// The position of the last event this summary reflects.
    pub position: u64,
}

/// Executions by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionCounts {
    /// Running.
    pub running: u64,
    /// Completed.
    pub completed: u64,
    /// Failed.
    pub failed: u64,
    /// Cancelled.
    pub cancelled: u64,
    /// Paused.
    pub paused: u64,
    /// Compensating.
    pub compensating: u64,
    /// Compensated.
    pub compensated: u64,
}

impl ExecutionCounts {
    /// Counts one more execution of `status` (`pending` is not counted).
    pub fn add(&mut self, status: ExecutionStatus) {
        if let Some(n) = self.slot(status.as_str()) {
            *n += 1;
        }
    }

    /// The counter of the status word `status`, if it is a counted one.
    pub fn slot(&mut self, status: &str) -> Option<&mut u64> {
        Some(match status {
            "running" => &mut self.running,
            "completed" => &mut self.completed,
            "failed" => &mut self.failed,
            "cancelled" => &mut self.cancelled,
            "paused" => &mut self.paused,
            "compensating" => &mut self.compensating,
            "compensated" => &mut self.compensated,
            _ => return None,
        })
    }
}

/// The body of `POST /api/v1/workflows/{id}/execute` (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecuteRequest {
    /// What `${input...}` resolves against; `{}` when absent.
    #[serde(default)]
    pub input: Option<Value>,
    /// How much the execution's attempts may spend, as their agents report it: past
    /// either limit the execution stops dispatching and fails with `budget_exceeded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::usage::Budget>,
    /// 1 to 10 (default 5): its agent tasks are leased before those of lower priority
    /// in the same queue (a task's own `priority` wins); waiting raises a task's
    /// effective priority by one level per 10 s, so the lowest is never starved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 10)]
    pub priority: Option<u8>,
}

/// An execution that was started (or found again by its `Idempotency-Key`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExecutionAccepted {
    /// The execution.
    pub execution_id: Uuid,
    /// Its workflow.
    pub workflow_id: Uuid,
    /// `running` when it was just started; its current status for a repeated key.
    pub status: ExecutionStatus,
}

/// A workflow's status (`GET /api/v1/workflows/{id}/status`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowStatus {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Its name.
    pub name: String,
    /// `idle` (never executed) or its latest execution's status.
    #[schema(example = "running")]
    pub status: String,
    /// The latest execution (with `position`), `null` if none.
    #[schema(required = true)]
    pub latest_execution: Option<Execution>,
    /// Its executions by status.
    pub executions: ExecutionCounts,
    /// The position of the last event this status reflects.
    pub position: u64,
}

/// The executions a workflow-wide pause or resume changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct WorkflowControlled {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Each execution that changed, with its new status.
    pub executions: Vec<ExecutionControlled>,
}
