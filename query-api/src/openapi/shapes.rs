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

/// A server → client frame of `/ws/executions/{id}` and `/ws/workflows/{id}`.
#[derive(ToSchema)]
pub struct LiveFrame {
    /// `snapshot` (first, without `after`), `event`, or `lagged` (then close).
    #[schema(rename = "type", example = "event")]
    pub kind: String,
    /// `snapshot`: the position the status reflects; `lagged`: the last position sent.
    pub position: Option<u64>,
    /// `snapshot`: the `GET /api/v1/executions/{id}` (with `position`) or
    /// `/api/v1/workflows/{id}/status` body.
    #[schema(value_type = Option<Object>)]
    pub status: Option<Value>,
    /// `event`: the event.
    pub event: Option<Envelope>,
}

/// Body of `POST /api/v1/keys`.
#[derive(ToSchema)]
pub struct CreateKey {
    /// For humans.
    pub name: String,
    /// `viewer`, `auditor`, `operator`, `developer`, `admin` or `agent`.
    #[schema(example = "developer")]
    pub role: String,
    /// The tenant (default: the caller's).
    #[schema(required = false)]
    pub tenant: Option<String>,
    /// For `agent` keys (required for them): the agent roles it may serve.
    #[schema(required = false)]
    pub agent_roles: Vec<String>,
    /// When it stops working.
    #[schema(required = false, value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
}

/// An API key (never its secret).
#[derive(ToSchema)]
pub struct Key {
    /// The `<key_id>` of its token (32 hex digits).
    pub key_id: String,
    /// For humans.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its role.
    pub role: String,
    /// For agent keys.
    pub agent_roles: Vec<String>,
    /// When it stops working.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
    /// When it was issued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// When it was revoked.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<String>,
}

/// A key just issued: the [`Key`] fields, and its token.
#[derive(ToSchema)]
pub struct KeyCreated {
    /// The `<key_id>` of its token (32 hex digits).
    pub key_id: String,
    /// For humans.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its role.
    pub role: String,
    /// For agent keys.
    pub agent_roles: Vec<String>,
    /// When it stops working.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub expires_at: Option<String>,
    /// When it was issued.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// Null: it was just issued.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<String>,
    /// `cfx_<key_id>_<secret>`: shown only in this answer; only its hash is stored.
    pub token: String,
}

/// `GET /api/v1/keys`.
#[derive(ToSchema)]
pub struct KeyList {
    /// The keys.
    pub items: Vec<Key>,
}

/// Body of `POST /api/v1/tenants`.
#[derive(ToSchema)]
pub struct CreateTenant {
    /// 1 to 63 characters of `a-z`, `0-9` and `-`.
    #[schema(example = "acme")]
    pub tenant: String,
}

/// A tenant.
#[derive(ToSchema)]
pub struct Tenant {
    /// Its name.
    pub tenant: String,
    /// When it was created (null for `default`, which every store has).
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_at: Option<String>,
}

/// `GET /api/v1/tenants`.
#[derive(ToSchema)]
pub struct TenantList {
    /// The tenants, `default` first.
    pub items: Vec<Tenant>,
}
