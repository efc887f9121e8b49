//! The workflow definition, as `POST /api/v1/workflows` accepts it (the schema crate's
//! `definition` types, documented).

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

/// A workflow definition, as `POST /api/v1/workflows` accepts it. A field not listed here
/// is refused (`400 invalid_request`, `details.field` names it).
#[derive(ToSchema)]
pub struct WorkflowDefinition {
    /// Human name; workflows with the same name are versions of one another.
    #[schema(example = "order-fulfilment")]
    pub name: String,
    /// Free text for humans.
    pub description: Option<String>,
    /// Free-form label of the orchestration pattern (e.g. `custom`); not interpreted.
    pub pattern: Option<String>,
    /// Agent roles this workflow expects, by role name.
    #[schema(required = false)]
    pub agents: BTreeMap<String, AgentSpec>,
    /// What happens when a task fails for good.
    #[schema(required = false, default = "fail")]
    pub on_failure: OnFailure,
    /// Limit on the whole execution, in seconds.
    pub timeout_seconds: Option<u64>,
    /// The tasks, in any order; `depends_on` gives the graph.
    pub tasks: Vec<TaskSpec>,
}

/// What the workflow expects of the agents serving one role.
#[derive(ToSchema)]
pub struct AgentSpec {
    /// Capabilities an agent serving this role should declare.
    #[schema(required = false)]
    pub capabilities: Vec<String>,
}

/// `fail` (the execution fails) or `compensate` (saga: run the `compensate` task of
/// every completed task, newest completion first).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum OnFailure {
    Fail,
    Compensate,
}

/// `noop` (output = its resolved input), `sleep` (`sleep_ms`), `http` (2xx = success,
/// output `{"status", "body"}`; 5xx and connection errors are retryable, 4xx is not),
/// `agent` (executed by an external agent polling `agent_role`).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum TaskKind {
    Noop,
    Sleep,
    Http,
    Agent,
}

/// One task of a definition. `${input.x}` and `${tasks.<id>.output.x}` in `input`,
/// `http.url`, `http.headers` and `http.body` are resolved when it is scheduled.
#[derive(ToSchema)]
pub struct TaskSpec {
    /// Unique id within the workflow.
    pub id: String,
    /// How the task is executed.
    pub kind: TaskKind,
    /// Ids of the tasks that must complete first.
    #[schema(required = false)]
    pub depends_on: Vec<String>,
    /// Input, resolved when the task is scheduled.
    pub input: Option<Value>,
    /// For `agent` tasks: the role whose agents execute it.
    pub agent_role: Option<String>,
    /// Start-to-close limit of one attempt, in seconds.
    pub timeout_seconds: Option<u64>,
    /// Retry policy; absent means one attempt.
    pub retry: Option<RetryPolicy>,
    /// Task run to undo this one when the execution compensates.
    pub compensate: Option<CompensationSpec>,
    /// For `http` tasks: the request.
    pub http: Option<HttpSpec>,
    /// For `sleep` tasks: how long, in milliseconds.
    pub sleep_ms: Option<u64>,
}

/// When and how often a failed attempt is retried.
#[derive(ToSchema)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    #[schema(required = false, default = 1, minimum = 1)]
    pub max_attempts: u32,
    /// Delay before the second attempt, in milliseconds.
    #[schema(required = false, default = 100)]
    pub initial_interval_ms: u64,
    /// Factor by which the delay grows after each failed attempt.
    #[schema(required = false, default = 2.0, minimum = 1.0)]
    pub backoff_coefficient: f64,
    /// Upper bound of the delay, in milliseconds.
    #[schema(required = false, default = 10000)]
    pub max_interval_ms: u64,
}

/// The request an `http` task makes.
#[derive(ToSchema)]
pub struct HttpSpec {
    /// HTTP method.
    #[schema(required = false, default = "GET")]
    pub method: String,
    /// Absolute `http://` or `https://` URL.
    pub url: String,
    /// Request headers.
    #[schema(required = false)]
    pub headers: BTreeMap<String, String>,
    /// JSON body, resolved like a task input.
    pub body: Option<Value>,
}

/// The task that undoes a completed task when an execution compensates.
#[derive(ToSchema)]
pub struct CompensationSpec {
    /// How the compensation is executed.
    pub kind: TaskKind,
    /// For `agent` compensations: the role.
    pub agent_role: Option<String>,
    /// Input, resolved like a task input.
    pub input: Option<Value>,
    /// For `http` compensations: the request.
    pub http: Option<HttpSpec>,
    /// For `sleep` compensations: how long, in milliseconds.
    pub sleep_ms: Option<u64>,
    /// Retry policy; absent means one attempt.
    pub retry: Option<RetryPolicy>,
    /// Start-to-close limit of one attempt, in seconds.
    pub timeout_seconds: Option<u64>,
}
