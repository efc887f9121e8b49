//! Dead letters: tasks that failed for good and failed their execution with them
//! (`GET /api/v1/dead-letters`, `POST /api/v1/dead-letters/{id}/retry`,
//! `DELETE /api/v1/dead-letters/{id}`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Where a dead letter stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterState {
    /// Listed: it may be redriven or acknowledged.
    Open,
    /// Its task was run again (`POST …/retry`).
    Redriven,
    /// Acknowledged (`DELETE`): kept for the record, no longer open.
    Acknowledged,
}

impl DeadLetterState {
    /// The word the API uses.
    pub fn as_str(self) -> &'static str {
        match self {
            DeadLetterState::Open => "open",
            DeadLetterState::Redriven => "redriven",
            DeadLetterState::Acknowledged => "acknowledged",
        }
    }
}

/// One dead letter.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct DeadLetter {
    /// Its id: `<execution id>.<attempt>.<task id>`.
    #[schema(example = "0194f0c4-5b1e-7c3a-9d2e-4f6a8b0c1d2e.3.charge")]
    pub id: String,
    /// The execution it failed.
    pub execution_id: Uuid,
    /// That execution's workflow.
    pub workflow_id: Uuid,
    /// The task.
    pub task_id: String,
    /// Attempts the task had made.
    pub attempts: u32,
    /// Why its last attempt failed.
    pub error: Option<String>,
    /// Where it stands.
    pub state: DeadLetterState,
    /// When it was dead-lettered.
    pub dead_lettered_at: DateTime<Utc>,
    /// When it was redriven or acknowledged.
    pub closed_at: Option<DateTime<Utc>>,
    /// Who redrove or acknowledged it (the event's actor).
    pub closed_by: Option<String>,
}

/// `GET /api/v1/dead-letters`: the caller's tenant's dead letters, newest first.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct DeadLetterList {
    /// The dead letters.
    pub dead_letters: Vec<DeadLetter>,
}

/// What an execution's body says about the dead letter that failed it (its latest).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct DeadLetterRef {
    /// The dead letter.
    pub id: String,
    /// Its task.
    pub task_id: String,
    /// Where it stands.
    pub state: DeadLetterState,
}

/// `202` answer of `POST /api/v1/dead-letters/{id}/retry`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, ToSchema)]
pub struct DeadLetterRedriven {
    /// The dead letter.
    pub dead_letter_id: String,
    /// Its execution, running again.
    pub execution_id: Uuid,
    /// The task run again.
    pub task_id: String,
    /// The execution's status after the redrive (`running`).
    pub status: crate::status::ExecutionStatus,
}
