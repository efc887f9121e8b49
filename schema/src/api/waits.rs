//! Bodies of the waiting kinds' routes: signals (`POST /api/v1/executions/{id}/signals/{name}`)
//! and approvals (`POST /api/v1/executions/{id}/tasks/{task_id}/approve | reject`), and
//! what an execution's task shows while it waits (`waiting_for`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::status::{ExecutionStatus, TaskStatus};

/// Body of `POST /api/v1/executions/{id}/signals/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignalRequest {
    /// The signal's payload: the output of the `signal` task that consumes it (`null`
    /// when absent). Limited by the body limit and the tenant's `event_payload_bytes`.
    #[serde(default)]
    pub payload: Value,
}

/// The answer to a signal (`202`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SignalAccepted {
    /// The execution.
    pub execution_id: Uuid,
    /// The signal's name.
    pub signal: String,
    /// The task it completed now, or null when it is kept for a task not reached yet.
    pub delivered_to: Option<String>,
    /// The execution's status.
    pub status: ExecutionStatus,
}

/// Optional body of `POST /api/v1/executions/{id}/tasks/{task_id}/approve | reject`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRequest {
    /// Why, recorded in `ApprovalDecided` (customer data).
    #[serde(default)]
    pub comment: Option<String>,
}

/// The answer to an approval decision (`202`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalRecorded {
    /// The execution.
    pub execution_id: Uuid,
    /// The approval task.
    pub task_id: String,
    /// The attempt decided on.
    pub attempt: u32,
    /// Whether this decision approved.
    pub approve: bool,
    /// The task's status after it: `running` while more approvals are needed,
    /// `completed` once enough approved, `failed` after a reject.
    pub task_status: TaskStatus,
    /// Distinct approvals of this attempt so far.
    pub given: u32,
    /// Approvals needed (`approvers.count`).
    pub needed: u32,
}

/// What a `running` task of a waiting kind waits for (absent on other tasks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct WaitingFor {
    /// A `signal` task: the name of the signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<String>,
    /// An `approval` task: its progress.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<ApprovalProgress>,
}

/// How far an approval attempt is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ApprovalProgress {
    /// Approvals needed.
    pub needed: u32,
    /// Approvals given.
    pub given: u32,
    /// Who approved, in order.
    pub approved_by: Vec<String>,
    /// Roles that may decide.
    pub roles: Vec<String>,
}
