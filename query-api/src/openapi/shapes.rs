//! The wire shapes, as types whose derived schemas (and doc comments) document them.
//! Nothing constructs them: handlers build their bodies with `serde_json::json!`.
//! The workflow definition (the body of `POST /api/v1/workflows`) is in `definition`.

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

pub use definition::*;

mod definition;

/// The body of every 4xx and 5xx answer.
#[derive(ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code (see each response for the codes it can carry).
    #[schema(example = "not_found")]
    pub code: String,
    /// For humans.
    pub message: String,
    /// Structured details, `{}` when there are none.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// A created workflow.
#[derive(ToSchema)]
pub struct WorkflowCreated {
    /// Its id (derived from name and version).
    pub workflow_id: Uuid,
    /// Its name.
    pub name: String,
    /// 1, 2, 3… per name.
    pub version: u32,
    /// How many tasks it has.
    pub task_count: u64,
    /// When it was recorded.
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
    /// The execution started, with `?execute=true` only.
    pub execution_id: Option<Uuid>,
}

/// A page of workflows.
#[derive(ToSchema)]
pub struct WorkflowList {
    /// Newest first.
    pub items: Vec<WorkflowSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}

/// One workflow of the list.
#[derive(ToSchema)]
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
    #[schema(value_type = String, format = DateTime)]
    pub created_at: String,
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
#[derive(ToSchema)]
pub struct ExecutionCounts {
    pub running: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub paused: u64,
    pub compensating: u64,
    pub compensated: u64,
}

/// The body of `POST /api/v1/workflows/{id}/execute` (optional).
#[derive(ToSchema)]
pub struct ExecuteRequest {
    /// What `${input...}` resolves against; `{}` when absent.
    pub input: Option<Value>,
}

/// An execution that was started (or found again by its `Idempotency-Key`).
#[derive(ToSchema)]
pub struct ExecutionAccepted {
    /// The execution.
    pub execution_id: Uuid,
    /// Its workflow.
    pub workflow_id: Uuid,
    /// `running` when it was just started; its current status for a repeated key.
    pub status: ExecutionStatus,
}

/// Execution status (`pending` only before the start).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ExecutionStatus {
    Pending,
    Running,
    Paused,
    Completed,
    Failed,
    Cancelled,
    Compensating,
    Compensated,
}

/// Task status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TaskStatus {
    Pending,
    Scheduled,
    Running,
    Completed,
    Failed,
    Retrying,
    TimedOut,
    Skipped,
    Cancelled,
    Compensated,
}

/// A workflow's status, folded from its executions' logs.
#[derive(ToSchema)]
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
#[derive(ToSchema)]
pub struct WorkflowControlled {
    /// The workflow.
    pub workflow_id: Uuid,
    /// Each execution that changed, with its new status.
    pub executions: Vec<ExecutionControlled>,
}

/// An execution after a command.
#[derive(ToSchema)]
pub struct ExecutionControlled {
    /// The execution.
    pub execution_id: Uuid,
    /// Its status now.
    pub status: ExecutionStatus,
}

/// Optional body of `cancel`.
#[derive(ToSchema)]
pub struct CancelRequest {
    /// Why, recorded in `ExecutionCancelled`.
    pub reason: Option<String>,
}

/// An execution, folded from its log with the engine's own `evolve`.
#[derive(ToSchema)]
pub struct Execution {
    /// The execution.
    pub execution_id: Uuid,
    /// Its workflow.
    pub workflow_id: Uuid,
    /// Its status.
    pub status: ExecutionStatus,
    /// Its input.
    pub input: Value,
    /// The outputs of its sink tasks (tasks nothing depends on), by task id.
    pub output: Value,
    /// Why it failed.
    pub error: Option<String>,
    /// When it started.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<String>,
    /// The version of its last event.
    pub version: u64,
    /// The position of its last event (absent in `replay`'s `state`).
    pub position: Option<u64>,
    /// Its tasks, by task id.
    pub tasks: BTreeMap<String, TaskState>,
}

/// One task of an execution.
#[derive(ToSchema)]
pub struct TaskState {
    /// Its status.
    pub status: TaskStatus,
    /// Attempts started so far.
    pub attempts: u32,
    /// When the current attempt started.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub started_at: Option<String>,
    /// When it ended.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub completed_at: Option<String>,
    /// Its output, once completed.
    pub output: Option<Value>,
    /// The last error.
    pub error: Option<String>,
    /// The agent that leased the current attempt.
    pub agent_id: Option<Uuid>,
    /// Present once its compensation began.
    pub compensation: Option<CompensationState>,
}

/// A task's compensation.
#[derive(ToSchema)]
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

/// A page of an execution's log.
#[derive(ToSchema)]
pub struct EventPage {
    /// In version order.
    pub events: Vec<Envelope>,
    /// Pass as `after_version` for the next page; `null` when this page is the last.
    #[schema(required = true)]
    pub next_after_version: Option<u64>,
}

/// A page of a workflow's merged log.
#[derive(ToSchema)]
pub struct WorkflowEventPage {
    /// In position order.
    pub events: Vec<Envelope>,
    /// Pass as `after_position` for the next page; `null` when this page is the last.
    #[schema(required = true)]
    pub next_after_position: Option<u64>,
}

/// One stored event.
#[derive(ToSchema)]
pub struct Envelope {
    /// Unique (uuid v7).
    pub event_id: Uuid,
    /// `workflow-<uuid>`, `execution-<uuid>` or `agent-<uuid>`.
    pub stream_id: String,
    /// `workflow`, `execution` or `agent`.
    pub stream_type: String,
    /// 1, 2, 3… within the stream, gap-free.
    pub version: u64,
    /// Global order across streams, increasing in commit order (not gap-free).
    pub position: u64,
    /// The event's name, in the past tense (`ExecutionStarted`, `TaskCompleted`…).
    #[schema(rename = "type", example = "TaskCompleted")]
    pub kind: String,
    /// The event's fields.
    #[schema(value_type = Object)]
    pub data: Value,
    /// The event's schema version.
    pub schema_version: u16,
    /// Who caused it.
    pub metadata: EventMetadata,
    /// Server time when it was recorded.
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: String,
    /// Hex sha-256 over the previous event's hash and this event's canonical bytes.
    pub hash: String,
}

/// Who caused an event.
#[derive(ToSchema)]
pub struct EventMetadata {
    /// The request or flow it belongs to.
    pub correlation_id: Option<String>,
    /// The event or request that directly caused it.
    pub causation_id: Option<String>,
    /// `api`, `engine`, `agent:<id>`…
    pub actor: Option<String>,
    /// The tenant, when multi-tenant.
    pub tenant_id: Option<String>,
    /// The HTTP request that caused it.
    pub request_id: Option<String>,
}

/// An execution as it stood after an event.
#[derive(ToSchema)]
pub struct Replay {
    /// The last event folded.
    pub to_version: u64,
    /// The execution after it.
    pub state: Execution,
}

/// The hash chain, recomputed from the stored columns.
#[derive(ToSchema)]
pub struct Verification {
    /// Every stored hash equals the recomputed one and versions are gap-free.
    pub valid: bool,
    /// How many events were checked.
    pub events: u64,
    /// The hash of the last event (when valid).
    pub head_hash: Option<String>,
    /// The first version that does not verify (when not valid).
    pub first_bad_version: Option<u64>,
}

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

/// `GET /health`.
#[derive(ToSchema)]
pub struct Health {
    /// `ok`.
    #[schema(example = "ok")]
    pub status: String,
}

/// `GET /ready`.
#[derive(ToSchema)]
pub struct Ready {
    /// `ready`.
    #[schema(example = "ready")]
    pub status: String,
    /// `postgres+redis` or `embedded`.
    pub mode: String,
    /// `ok`.
    pub store: String,
    /// `ok`.
    pub bus: String,
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
