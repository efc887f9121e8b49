//! Agent bodies: registration, the long-poll's leases, and results by lease.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// The body of `POST /api/v1/agents`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RegisterAgent {
    /// Not empty.
    pub name: String,
    /// The roles it polls: not empty, no empty names.
    #[schema(min_items = 1)]
    pub roles: Vec<String>,
    /// What it can do.
    #[serde(default)]
    #[schema(required = false)]
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once.
    #[serde(default = "default_capacity")]
    #[schema(required = false, default = 10, minimum = 1)]
    pub capacity: u32,
    /// What one of its tasks costs (a finite number, at least 0), if it declares it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0.0)]
    pub cost: Option<f64>,
}

fn default_capacity() -> u32 {
    10
}

/// A registered agent (`201` of `POST /api/v1/agents`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentRegistered {
    /// Its id.
    pub agent_id: Uuid,
}

/// Where an agent is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// It takes work.
    Active,
    /// It takes nothing new (`POST /api/v1/agents/{id}/drain`); it finishes what it holds.
    Draining,
    /// It was deregistered (`DELETE /api/v1/agents/{id}`): gone from the fleet.
    Deregistered,
}

/// How recently an agent was heard from (its last poll or heartbeat): `online` within
/// `CONFLUX_AGENT_STALE_AFTER_SECONDS` (30), `stale` within
/// `CONFLUX_AGENT_OFFLINE_AFTER_SECONDS` (90), `offline` after that or never.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentStatus {
    /// Heard from recently.
    Online,
    /// Not heard from for a while: perhaps busy without heartbeats, perhaps dying.
    Stale,
    /// Not heard from for long, or never since it registered.
    Offline,
}

impl AgentStatus {
    /// The wire word.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Online => "online",
            AgentStatus::Stale => "stale",
            AgentStatus::Offline => "offline",
        }
    }
}

/// One agent of the fleet (`GET /api/v1/agents/{id}`, and each entry of the list).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentView {
    /// Its id.
    pub agent_id: Uuid,
    /// Its name.
    pub name: String,
    /// The roles it polls.
    pub roles: Vec<String>,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// How many tasks it runs at once.
    pub capacity: u32,
    /// What one of its tasks costs, as it declared it.
    #[schema(required = true)]
    pub cost: Option<f64>,
    /// Leases it holds now (never more than `capacity`).
    pub leases_held: u64,
    /// Its results recorded as completed.
    pub completed: u64,
    /// Its results recorded as failed.
    pub failed: u64,
    /// `completed / (completed + failed)` (`null` before its first result).
    #[schema(required = true)]
    pub success_rate: Option<f64>,
    /// The median time from lease to result of its last 100 results, in milliseconds
    /// (`null` before its first result).
    #[schema(required = true)]
    pub p50_duration_ms: Option<u64>,
    /// Whether it takes work.
    pub state: AgentState,
    /// How recently it was heard from.
    pub status: AgentStatus,
    /// Its last poll or heartbeat (`null`: none since it registered).
    #[schema(required = true)]
    pub last_seen_at: Option<DateTime<Utc>>,
    /// When it registered.
    pub registered_at: DateTime<Utc>,
}

/// `GET /api/v1/agents`: the tenant's agents, oldest registration first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentList {
    /// The agents that match the filters.
    pub agents: Vec<AgentView>,
}

/// The answer to a heartbeat, drain or deregistration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AgentChanged {
    /// The agent.
    pub agent_id: Uuid,
    /// Its lifecycle state now.
    pub state: AgentState,
    /// For a deregistration: the attempts it held that were failed for their retry
    /// policy (0 otherwise).
    #[serde(default)]
    pub released: u32,
}

/// The tasks a poll leased.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PollAnswer {
    /// Empty when the wait passed with nothing to do.
    pub tasks: Vec<Lease>,
}

/// One attempt leased to the polling agent: `TaskStarted` with this lease id is in the
/// execution's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// When the attempt times out unless a result or a heartbeat comes first (`null`
    /// without a timeout).
    #[schema(required = true)]
    pub deadline: Option<DateTime<Utc>>,
}

/// The body of `POST /api/v1/tasks/{lease_id}/complete` (optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CompleteTask {
    /// The task's output (`null` when absent).
    #[serde(default)]
    pub output: Value,
    /// What the attempt spent (LLM cost and tokens), recorded as `UsageRecorded` and
    /// counted against the execution's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
}

/// The body of `POST /api/v1/tasks/{lease_id}/fail`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FailTask {
    /// What went wrong.
    pub error: String,
    /// Whether the retry policy may run another attempt.
    #[serde(default = "retryable")]
    #[schema(required = false, default = true)]
    pub retryable: bool,
    /// What the attempt spent before it failed, recorded as `UsageRecorded` and
    /// counted against the execution's budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<crate::usage::Usage>,
}

fn retryable() -> bool {
    true
}

/// A result recorded by lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeaseRecorded {
    /// The lease.
    pub lease_id: Uuid,
    /// Its execution.
    pub execution_id: Uuid,
    /// Its attempt.
    pub task: LeasedAttempt,
    /// `completed`, `failed` or `heartbeat`.
    #[schema(example = "completed")]
    pub recorded: String,
}

/// The attempt a lease names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LeasedAttempt {
    /// The task.
    pub task_id: String,
    /// The attempt.
    pub attempt: u32,
}
