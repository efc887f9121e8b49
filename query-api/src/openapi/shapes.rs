//! The wire shapes the document names. Most are the real body types of
//! `conflux_schema::api` (handlers build them, and their derived schemas document
//! them); the ones below are still built as JSON by their handlers and only described
//! here — the conformance test checks real answers against them all. The workflow
//! definition (the body of `POST /api/v1/workflows`) is in `definition`.

use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

pub use conflux_schema::api::*;
pub use conflux_schema::EventEnvelope as Envelope;
pub use definition::*;

mod definition;

/// The body of `POST /api/v1/agents`.
#[derive(ToSchema)]
pub struct RegisterAgent {
    /// Not empty.
    pub name: String,
    /// The roles it polls: not empty, no empty names.
    #[schema(min_items = 1)]
    pub roles: Vec<String>,
    /// What it can do.
    #[schema(required = false)]
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once.
    #[schema(required = false, default = 10, minimum = 1)]
    pub capacity: u32,
}

/// A registered agent.
#[derive(ToSchema)]
pub struct AgentRegistered {
    /// Its id.
    pub agent_id: Uuid,
}

/// The tasks a poll leased.
#[derive(ToSchema)]
pub struct PollAnswer {
    /// Empty when the wait passed with nothing to do.
    pub tasks: Vec<Lease>,
}

/// One task attempt leased to the polling agent.
#[derive(ToSchema)]
pub struct Lease {
    /// Names the attempt in `complete`, `fail` and `heartbeat`.
    pub lease_id: Uuid,
    /// The execution.
    pub execution_id: Uuid,
    /// The task.
    pub task_id: String,
    /// 1-based attempt number.
    pub attempt: u32,
    /// Whether this is the task's compensation (saga).
    pub compensation: bool,
    /// The resolved input.
    pub input: Value,
    /// When the attempt times out (`null` without a timeout).
    #[schema(value_type = Option<String>, format = DateTime, required = true)]
    pub deadline: Option<String>,
}

/// The body of `complete`.
#[derive(ToSchema)]
pub struct CompleteTask {
    /// The task's output (`null` when absent).
    pub output: Option<Value>,
}

/// The body of `fail`.
#[derive(ToSchema)]
pub struct FailTask {
    /// What went wrong.
    pub error: String,
    /// Whether the retry policy may run another attempt.
    #[schema(required = false, default = true)]
    pub retryable: bool,
}

/// A result recorded by lease.
#[derive(ToSchema)]
pub struct LeaseRecorded {
    /// The lease.
    pub lease_id: Uuid,
    /// Its execution.
    pub execution_id: Uuid,
    /// Its attempt.
    pub task: Option<LeasedAttempt>,
    /// `completed`, `failed` or `heartbeat`.
    #[schema(example = "completed")]
    pub recorded: String,
}

/// The attempt a lease names.
#[derive(ToSchema)]
pub struct LeasedAttempt {
    /// The task.
    pub task_id: String,
    /// The attempt.
    pub attempt: u32,
}
