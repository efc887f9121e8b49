//! The event model: every state change in Conflux is one of these events, in one stream,
//! at one version, chained to its predecessor by a sha-256 hash.
//!
//! Event types are a closed enum serialised as `{"type": "...", "data": {...}}`: adding a
//! type is a code change, never a free string. Each stored event also records its schema
//! version ([`SCHEMA_VERSION`]) so a later shape change can upcast old events.

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::definition::{HttpSpec, WorkflowDefinition};
use crate::ids::{StreamId, StreamType, TaskId};

/// The schema version written with every event of this build.
pub const SCHEMA_VERSION: u16 = 1;

/// The hash a stream's first event chains from.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// Who or what caused an event; copied from the request or the event that caused it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct EventMetadata {
    /// The request or flow this event belongs to (the `x-request-id` of the first request).
    #[serde(default)]
    pub correlation_id: Option<String>,
    /// The event id or request id that directly caused this event.
    #[serde(default)]
    pub causation_id: Option<String>,
    /// Who acted: `api`, `engine`, `agent:<id>`…
    #[serde(default)]
    pub actor: Option<String>,
    /// The tenant of the stream the event belongs to. None only on events recorded
    /// before tenants existed: those belong to [`crate::access::DEFAULT_TENANT`].
    #[serde(default)]
    pub tenant_id: Option<String>,
    /// The HTTP request that caused it, if any.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl EventMetadata {
    /// The tenant the event belongs to: `tenant_id`, or `default` for an event recorded
    /// before tenants existed.
    pub fn tenant(&self) -> &str {
        self.tenant_id
            .as_deref()
            .unwrap_or(crate::access::DEFAULT_TENANT)
    }
}

/// Every event Conflux records. The variant name is the event's `type`; names are in the
/// past tense and are part of the public contract (API.md, DESIGN.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum Event {
    /// A workflow definition (a version of a name) was created. Stream `workflow-<id>`.
    WorkflowCreated {
        /// The workflow id (also the stream's uuid).
        workflow_id: Uuid,
        /// The name; versions are counted per name.
        name: String,
        /// 1, 2, 3… per name.
        version: u32,
        /// The validated definition as submitted.
        definition: Box<WorkflowDefinition>,
    },
    /// An execution began. Stream `execution-<id>`.
    ExecutionStarted {
        /// The execution id.
        execution_id: Uuid,
        /// The definition it runs.
        workflow_id: Uuid,
        /// The input `${input...}` resolves against.
        #[serde(default)]
        input: Value,
        /// The `Idempotency-Key` it was started with, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        idempotency_key: Option<String>,
        /// For a child execution (started by a `workflow` task): the attempt that
        /// started it. Absent for an execution started by a caller or a schedule.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        parent: Option<ParentLink>,
    },
    /// A task's attempt became ready to run.
    TaskScheduled {
        /// The task.
        task_id: TaskId,
        /// 1-based attempt number.
        attempt: u32,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
    },
    /// An attempt was handed to a runner or an agent queue, with its deadline.
    TaskDispatched {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// The resolved input the runner receives.
        #[serde(default)]
        input: Value,
        /// Start-to-close deadline of this attempt, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<DateTime<Utc>>,
        /// For `http` tasks: the request with every `${...}` resolved, exactly as made.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        http: Option<HttpSpec>,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
        /// For an agent task of a priority other than the default 5: its priority (the
        /// task's, else its execution's), 1 to 10.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        priority: Option<u8>,
    },
    /// An attempt started running (an agent leased it, or a built-in runner began).
    TaskStarted {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// The agent that leased it, for agent tasks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_id: Option<Uuid>,
        /// The lease, for agent tasks.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease_id: Option<Uuid>,
        /// Start-to-close deadline of this attempt (start time + the task's
        /// `timeout_seconds`), if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<DateTime<Utc>>,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
        /// For an agent lease: why this agent got it (every waiting candidate's score).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        routing: Option<crate::routing::Routing>,
    },
    /// The engine found that no registered agent could take this dispatched attempt
    /// (none of its role has every capability it requires): it waits all the same,
    /// and its task shows `waiting_reason` until it starts.
    TaskUnroutable {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// Whether this is an attempt of the task's `compensate` spec.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
        /// Why, for humans.
        reason: String,
    },
    /// A running attempt reported that it is alive; its deadline moves to `deadline`.
    TaskHeartbeat {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// The attempt's new start-to-close deadline, if it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline: Option<DateTime<Utc>>,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
    },
    /// An attempt succeeded.
    TaskCompleted {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// Its output, which downstream `${tasks.<id>.output}` references read.
        #[serde(default)]
        output: Value,
    },
    /// An attempt failed.
    TaskFailed {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// What went wrong.
        error: String,
        /// Whether another attempt may succeed.
        retryable: bool,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
    },
    /// A failed or timed-out attempt will be retried at `due_at`.
    TaskRetryScheduled {
        /// The task.
        task_id: TaskId,
        /// The attempt that will run next.
        attempt: u32,
        /// When it becomes due.
        due_at: DateTime<Utc>,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
    },
    /// An attempt passed its start-to-close deadline.
    TaskTimedOut {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
    },
    /// A task (or a map's item) will not run: its `when` was false, its trigger rule
    /// refused, its map failed, or its execution ended first; `reason` says which.
    TaskSkipped {
        /// The task.
        task_id: TaskId,
        /// Why.
        reason: String,
    },
    /// A running attempt was cancelled.
    TaskCancelled {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// Whether this is an attempt of the task's `compensate` spec (saga) rather than
        /// of the task itself.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
    },
    /// The execution was paused: nothing new is dispatched.
    ExecutionPaused {},
    /// The execution was resumed.
    ExecutionResumed {},
    /// The execution was cancelled.
    ExecutionCancelled {
        /// Why, if given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// The execution failed and its policy is `compensate`: compensations begin.
    CompensationStarted {
        /// The task whose failure started the saga.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed_task: Option<TaskId>,
        /// Why the execution failed (the `error` its final `ExecutionFailed` repeats).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A completed task's compensation succeeded (the success of a compensation
    /// attempt: compensation attempts never record `TaskCompleted`).
    TaskCompensated {
        /// The task that was compensated.
        task_id: TaskId,
        /// The compensation attempt that succeeded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        attempt: Option<u32>,
        /// The compensation's output.
        #[serde(default, skip_serializing_if = "Value::is_null")]
        output: Value,
    },
    /// A compensation failed for good.
    CompensationFailed {
        /// The task whose compensation failed.
        task_id: TaskId,
        /// What went wrong.
        error: String,
    },
    /// Every task completed.
    ExecutionCompleted {
        /// The map of sink task outputs.
        #[serde(default)]
        output: Value,
    },
    /// The execution failed.
    ExecutionFailed {
        /// What went wrong.
        error: String,
        /// The task whose failure failed it, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        failed_task: Option<TaskId>,
    },
    /// Task `task_id` failed for good (its retries exhausted, or a failure that may not
    /// be retried) and failed its execution with it: it is a dead letter, listed until
    /// it is redriven (`ExecutionRedriven`) or acknowledged (`DeadLetterAcknowledged`).
    /// Recorded just before the `ExecutionFailed` (or `CompensationStarted`) it causes.
    TaskDeadLettered {
        /// The task.
        task_id: TaskId,
        /// The dead letter's id: `<execution id>.<attempt>.<task id>`.
        dead_letter_id: String,
        /// Attempts the task made (its last attempt's number).
        attempts: u32,
        /// Why its last attempt failed.
        error: String,
    },
    /// A dead letter was redriven: the execution runs again from where it failed. The
    /// `TaskRedriven` events that follow it in the same decision bring its tasks back.
    ExecutionRedriven {
        /// The dead letter redriven.
        dead_letter_id: String,
        /// Its task.
        task_id: TaskId,
    },
    /// A redrive brings task `task_id` back: a failed or cancelled task gets a fresh
    /// budget of attempts and its next attempt (`attempt`) is due at once; a task the
    /// failure skipped before it ran (`attempt` 0) is pending again.
    TaskRedriven {
        /// The task.
        task_id: TaskId,
        /// The attempt it runs next, or 0 for a task pending again.
        attempt: u32,
    },
    /// A dead letter was acknowledged: it is no longer listed as open and can no longer
    /// be redriven.
    DeadLetterAcknowledged {
        /// The dead letter.
        dead_letter_id: String,
    },
    /// A task's `pre` or `post` hook answered with annotations for attempt `attempt`:
    /// they are kept on the task (its body's `annotations`, by phase).
    TaskAnnotated {
        /// The task.
        task_id: TaskId,
        /// The attempt the hook was called for.
        attempt: u32,
        /// `pre` or `post`.
        phase: crate::task_hooks::HookPhase,
        /// What the hook answered (a JSON object).
        annotations: Value,
    },
    /// An external agent registered. Stream `agent-<id>`.
    AgentRegistered {
        /// The agent id (also the stream's uuid).
        agent_id: Uuid,
        /// Its name, for humans.
        name: String,
        /// The roles whose task queues it polls.
        roles: Vec<String>,
        /// What it can do.
        #[serde(default)]
        capabilities: Vec<String>,
        /// How many tasks it runs at once.
        capacity: u32,
        /// What one of its tasks costs, as it declares it (routing may prefer cheaper
        /// agents).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cost: Option<f64>,
    },
    /// The agent takes nothing new (`POST /api/v1/agents/{id}/drain`): its polls answer
    /// no task; what it holds it may still complete, fail or heartbeat.
    AgentDrained {
        /// The agent.
        agent_id: Uuid,
    },
    /// The agent was deregistered (`DELETE /api/v1/agents/{id}`): it polls and reports
    /// no more, and the attempts it held were failed (retryable) for their retry policy.
    AgentDeregistered {
        /// The agent.
        agent_id: Uuid,
    },
    /// A tenant was created. Stream `tenant-<uuid v5 of its name>`.
    TenantCreated {
        /// The tenant.
        tenant: crate::access::TenantName,
    },
    /// An API key was issued. Stream `key-<key id>`. Holds the secret's SHA-256, never
    /// the secret.
    ApiKeyCreated {
        /// The key id (the `<key_id>` of `cfx_<key_id>_<secret>`, also the stream's uuid).
        key_id: Uuid,
        /// For humans.
        name: String,
        /// The tenant it acts in.
        tenant: crate::access::TenantName,
        /// What it may do.
        role: crate::access::Role,
        /// For `agent` keys: the agent roles (queues) it may serve.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        agent_roles: Vec<String>,
        /// When it stops working (None: never).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        expires_at: Option<chrono::DateTime<chrono::Utc>>,
        /// Hex SHA-256 of the secret (256 random bits, so a fast hash is enough).
        secret_sha256: String,
    },
    /// An API key was revoked: it stops working on every server within a second.
    ApiKeyRevoked {
        /// The key id.
        key_id: Uuid,
    },
    /// Every payload of a tenant was erased: its data keys were destroyed, so what was
    /// sealed under them reads as `{"redacted": "erased"}` forever, while the log and its
    /// hash chains stay as they were. Stream `tenant-<uuid v5 of its name>`.
    TenantDataErased {
        /// The tenant.
        tenant: crate::access::TenantName,
        /// How many data keys were destroyed (its tenant key and its executions' keys).
        keys_destroyed: u64,
    },
    /// The system administrator set a tenant's policy: its own egress allowlist and
    /// quota limits (a quota it does not name takes the configured default). Each one
    /// replaces the previous whole. Stream `tenant-<uuid v5 of its name>`.
    TenantPolicySet {
        /// The tenant.
        tenant: crate::access::TenantName,
        /// What its outbound calls may reach beyond the operator's allowlist (CIDRs,
        /// addresses, host names, `*.suffix` patterns).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        egress_allow: Vec<String>,
        /// Its own limits.
        #[serde(default)]
        quotas: crate::quota::QuotaLimits,
        /// Its agents' routing weights (absent: the defaults).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        routing_weights: Option<crate::routing::RoutingWeights>,
    },
    /// The payloads of one (finished) execution were erased: its data key was destroyed.
    /// Stream `execution-<id>`.
    ExecutionDataErased {
        /// How many data keys were destroyed (0 if it had none left).
        keys_destroyed: u64,
    },
    /// A `map` task was dispatched with `count` items (its `TaskDispatched` input, which
    /// may be sealed, holds them): items `<task_id>[0]`..`[count - 1]` now exist. Not a
    /// payload, so every reader of the log — a read model that cannot open payloads
    /// included — makes the same item slots.
    MapExpanded {
        /// The map task.
        task_id: TaskId,
        /// Its attempt.
        attempt: u32,
        /// How many items.
        count: u32,
    },
    /// A signal was sent to the execution (`POST .../signals/{name}`). It is kept until
    /// a `signal` task waiting for `name` consumes it: the task's `TaskCompleted` (in
    /// this decision, or when the task is dispatched later) carries it as its output.
    SignalReceived {
        /// The signal's name.
        name: String,
        /// Its payload (customer data).
        #[serde(default)]
        payload: Value,
    },
    /// A caller approved or rejected the current attempt of an `approval` task; the
    /// envelope's actor is the caller too.
    ApprovalDecided {
        /// The task.
        task_id: TaskId,
        /// The attempt decided on.
        attempt: u32,
        /// Approved (true) or rejected (false).
        approve: bool,
        /// Who decided (`key:<key_id>`, `jwt:<subject>`, `admin`): one decision each.
        by: String,
        /// Why, if given (customer data).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
    },
    /// An attempt's agent reported what it spent, with its result (recorded just before
    /// the attempt's `TaskCompleted` or `TaskCompensated`). The execution's usage is
    /// the sum of these.
    UsageRecorded {
        /// The task.
        task_id: TaskId,
        /// The attempt.
        attempt: u32,
        /// Whether this is an attempt of the task's `compensate` spec.
        #[serde(default, skip_serializing_if = "is_false")]
        compensation: bool,
        /// What it spent.
        usage: crate::usage::Usage,
    },
    /// The execution was started with a budget (recorded right after its
    /// `ExecutionStarted`): past it, the execution fails with `budget_exceeded`.
    BudgetSet {
        /// The limits.
        budget: crate::usage::Budget,
    },
    /// The execution's workflow limits how many run at once per key, and its key
    /// (`concurrency.key` over its input) is `key`: it is `queued` — it dispatches
    /// nothing — until `ExecutionAdmitted` (recorded right after `ExecutionStarted`).
    ExecutionQueued {
        /// Its concurrency key.
        key: String,
    },
    /// A queued execution got a slot of its key: it runs from now on.
    ExecutionAdmitted {},
    /// Execution `execution_id` holds a slot of this concurrency key. Stream
    /// `concurrency-<uuid>`.
    ConcurrencySlotTaken {
        /// The execution.
        execution_id: Uuid,
    },
    /// Execution `execution_id` waits for a slot of this key (strategy `queue`).
    ConcurrencySlotAwaited {
        /// The execution.
        execution_id: Uuid,
    },
    /// Execution `execution_id` gave back its slot, or stopped waiting for one (it
    /// ended).
    ConcurrencySlotFreed {
        /// The execution.
        execution_id: Uuid,
    },
    /// The execution was started with a priority other than the default 5 (recorded
    /// right after its `ExecutionStarted`): its agent tasks are leased before those of
    /// lower priority in their queues.
    PrioritySet {
        /// 1 to 10; 10 is leased first.
        priority: u8,
    },
    /// A schedule was created: `workflow_id` starts on `cron` in `timezone`. Stream
    /// `schedule-<id>`.
    ScheduleCreated {
        /// The schedule id (also the stream's uuid).
        schedule_id: Uuid,
        /// The workflow each tick starts.
        workflow_id: Uuid,
        /// The cron expression (5 fields, or 6 with seconds first).
        cron: String,
        /// The IANA time zone the expression is read in (`UTC`, `Europe/Paris`…).
        timezone: String,
        /// The input of every execution it starts.
        #[serde(default)]
        input: Value,
        /// What a tick does while the previous execution runs.
        #[serde(default)]
        overlap: crate::schedule::Overlap,
        /// Which missed ticks run.
        #[serde(default)]
        catch_up: crate::schedule::CatchUp,
    },
    /// A schedule was paused: its ticks start nothing until it is resumed.
    SchedulePaused {},
    /// A paused schedule was resumed: ticks after this event start executions again.
    ScheduleResumed {},
    /// A schedule was deleted: it never ticks again.
    ScheduleDeleted {},
    /// A schedule's tick was handled. The execution's id is derived from the schedule
    /// and `tick_at`, so however many servers handle a tick, it starts one execution.
    ScheduleTicked {
        /// The tick's time (whole seconds, UTC).
        tick_at: DateTime<Utc>,
        /// The tick's execution, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        execution_id: Option<Uuid>,
        /// What became of the tick.
        outcome: crate::schedule::TickOutcome,
        /// Why, when the outcome is `failed` or `quota_exceeded`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A webhook was created: its tenant's events named in `events` are delivered to
    /// `url` from the log position after `start_after`. Stream `hook-<id>`. Its signing
    /// secret is never in the log (it is sealed beside it).
    HookCreated {
        /// The hook id (also the stream's uuid).
        hook_id: Uuid,
        /// Where deliveries are POSTed (`http` or `https`).
        url: String,
        /// The event types delivered (`*`: every event of the tenant).
        events: Vec<String>,
        /// The log head when it was created: events after it are delivered.
        start_after: u64,
    },
    /// A webhook was deleted: nothing more is delivered to it.
    HookDeleted {},
}

impl Event {
    /// Whether this event ends its execution: `ExecutionCompleted`, `ExecutionFailed`
    /// or `ExecutionCancelled` (nothing is appended to an execution after one).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Event::ExecutionCompleted { .. }
                | Event::ExecutionFailed { .. }
                | Event::ExecutionCancelled { .. }
        )
    }

    /// The task (or map item) an execution event is about, if it is about one.
    pub fn task_id(&self) -> Option<&TaskId> {
        match self {
            Event::TaskScheduled { task_id, .. }
            | Event::TaskDispatched { task_id, .. }
            | Event::TaskStarted { task_id, .. }
            | Event::TaskUnroutable { task_id, .. }
            | Event::TaskHeartbeat { task_id, .. }
            | Event::TaskCompleted { task_id, .. }
            | Event::TaskFailed { task_id, .. }
            | Event::TaskTimedOut { task_id, .. }
            | Event::TaskRetryScheduled { task_id, .. }
            | Event::TaskCancelled { task_id, .. }
            | Event::TaskSkipped { task_id, .. }
            | Event::TaskCompensated { task_id, .. }
            | Event::CompensationFailed { task_id, .. }
            | Event::MapExpanded { task_id, .. }
            | Event::TaskDeadLettered { task_id, .. }
            | Event::TaskRedriven { task_id, .. }
            | Event::TaskAnnotated { task_id, .. } => Some(task_id),
            _ => None,
        }
    }

    /// The event's `type` name as stored and served.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::WorkflowCreated { .. } => "WorkflowCreated",
            Event::ExecutionStarted { .. } => "ExecutionStarted",
            Event::TaskScheduled { .. } => "TaskScheduled",
            Event::TaskDispatched { .. } => "TaskDispatched",
            Event::TaskStarted { .. } => "TaskStarted",
            Event::TaskUnroutable { .. } => "TaskUnroutable",
            Event::TaskHeartbeat { .. } => "TaskHeartbeat",
            Event::TaskCompleted { .. } => "TaskCompleted",
            Event::TaskFailed { .. } => "TaskFailed",
            Event::TaskRetryScheduled { .. } => "TaskRetryScheduled",
            Event::TaskTimedOut { .. } => "TaskTimedOut",
            Event::TaskSkipped { .. } => "TaskSkipped",
            Event::TaskCancelled { .. } => "TaskCancelled",
            Event::ExecutionPaused {} => "ExecutionPaused",
            Event::ExecutionResumed {} => "ExecutionResumed",
            Event::ExecutionCancelled { .. } => "ExecutionCancelled",
            Event::CompensationStarted { .. } => "CompensationStarted",
            Event::TaskCompensated { .. } => "TaskCompensated",
            Event::CompensationFailed { .. } => "CompensationFailed",
            Event::ExecutionCompleted { .. } => "ExecutionCompleted",
            Event::ExecutionFailed { .. } => "ExecutionFailed",
            Event::TaskDeadLettered { .. } => "TaskDeadLettered",
            Event::ExecutionRedriven { .. } => "ExecutionRedriven",
            Event::TaskRedriven { .. } => "TaskRedriven",
            Event::DeadLetterAcknowledged { .. } => "DeadLetterAcknowledged",
            Event::TaskAnnotated { .. } => "TaskAnnotated",
            Event::AgentRegistered { .. } => "AgentRegistered",
            Event::AgentDrained { .. } => "AgentDrained",
            Event::AgentDeregistered { .. } => "AgentDeregistered",
            Event::TenantCreated { .. } => "TenantCreated",
            Event::ApiKeyCreated { .. } => "ApiKeyCreated",
            Event::ApiKeyRevoked { .. } => "ApiKeyRevoked",
            Event::TenantDataErased { .. } => "TenantDataErased",
            Event::ExecutionDataErased { .. } => "ExecutionDataErased",
            Event::MapExpanded { .. } => "MapExpanded",
            Event::TenantPolicySet { .. } => "TenantPolicySet",
            Event::SignalReceived { .. } => "SignalReceived",
            Event::UsageRecorded { .. } => "UsageRecorded",
            Event::BudgetSet { .. } => "BudgetSet",
            Event::PrioritySet { .. } => "PrioritySet",
            Event::ExecutionQueued { .. } => "ExecutionQueued",
            Event::ExecutionAdmitted { .. } => "ExecutionAdmitted",
            Event::ConcurrencySlotTaken { .. } => "ConcurrencySlotTaken",
            Event::ConcurrencySlotAwaited { .. } => "ConcurrencySlotAwaited",
            Event::ConcurrencySlotFreed { .. } => "ConcurrencySlotFreed",
            Event::ApprovalDecided { .. } => "ApprovalDecided",
            Event::ScheduleCreated { .. } => "ScheduleCreated",
            Event::SchedulePaused {} => "SchedulePaused",
            Event::ScheduleResumed {} => "ScheduleResumed",
            Event::ScheduleDeleted {} => "ScheduleDeleted",
            Event::ScheduleTicked { .. } => "ScheduleTicked",
            Event::HookCreated { .. } => "HookCreated",
            Event::HookDeleted {} => "HookDeleted",
        }
    }

    /// Splits the event into its stored parts: `(type, data)`.
    pub fn to_parts(&self) -> Result<(&'static str, Value), serde_json::Error> {
        let value = serde_json::to_value(self)?;
        let data = match value {
            Value::Object(mut map) => map
                .remove("data")
                .unwrap_or(Value::Object(Default::default())),
            _ => Value::Object(Default::default()),
        };
        Ok((self.type_name(), data))
    }

    /// Rebuilds an event from its stored parts; fails on an unknown type or a bad shape.
    pub fn from_parts(event_type: &str, data: Value) -> Result<Self, serde_json::Error> {
        let mut map = serde_json::Map::with_capacity(2);
        map.insert("type".into(), Value::String(event_type.to_owned()));
        map.insert("data".into(), data);
        serde_json::from_value(Value::Object(map))
    }
}

/// An event to append: what happened and why. The store assigns id, version, position,
/// time and hash.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// What happened.
    pub event: Event,
    /// Who caused it.
    pub metadata: EventMetadata,
}

impl NewEvent {
    /// An event with the given metadata.
    pub fn new(event: Event, metadata: EventMetadata) -> Self {
        Self { event, metadata }
    }
}

/// A committed event as stored and served (API.md "Envelope").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// uuid v7, unique.
    pub event_id: Uuid,
    /// The stream (aggregate) it belongs to.
    pub stream_id: StreamId,
    /// The stream's type.
    pub stream_type: StreamType,
    /// 1, 2, 3… within the stream, gap-free.
    pub version: u64,
    /// Global order across all streams, assigned by the store. Increasing in commit order
    /// but not gap-free.
    pub position: u64,
    /// The event (`type` and `data`).
    #[serde(flatten)]
    pub event: Event,
    /// The event's schema version.
    #[serde(default = "default_schema_version")]
    pub schema_version: u16,
    /// Who caused it.
    pub metadata: EventMetadata,
    /// Server time when it was recorded (informational; order is by version/position).
    pub recorded_at: DateTime<Utc>,
    /// Hex sha-256 over the previous event's hash and this event's canonical bytes.
    pub hash: String,
}

fn default_schema_version() -> u16 {
    SCHEMA_VERSION
}

/// `skip_serializing_if` for flags that default to `false`, so events without them
/// keep their original shape.
fn is_false(flag: &bool) -> bool {
    !*flag
}

/// The parts of an event the hash covers, in canonical form. Position is not covered
/// (the store assigns it at commit); everything the author decided is.
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    /// The event id.
    pub event_id: Uuid,
    /// The stream.
    pub stream_id: &'a str,
    /// The version within the stream.
    pub version: u64,
    /// The event type.
    pub event_type: &'a str,
    /// The schema version.
    pub schema_version: u16,
    /// The event data.
    pub data: &'a Value,
    /// The metadata, as JSON.
    pub metadata: &'a Value,
    /// The recorded time (microsecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl HashInput<'_> {
    /// Canonical bytes: a JSON object with keys in sorted order and no white space. Object
    /// keys inside `data` and `metadata` are sorted too (serde_json's default map), so the
    /// bytes survive a round trip through Postgres `jsonb`.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(128);
        crate::canonical::write_value(self.data, &mut data);
        let mut metadata = Vec::with_capacity(64);
        crate::canonical::write_value(self.metadata, &mut metadata);
        CanonicalParts {
            event_id: self.event_id,
            stream_id: self.stream_id,
            version: self.version,
            event_type: self.event_type,
            schema_version: self.schema_version,
            data_json: &data,
            metadata_json: &metadata,
            recorded_at: self.recorded_at,
        }
        .canonical_bytes()
    }

    /// `sha256(prev || canonical_bytes)`.
    pub fn chain_hash(&self, prev: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(prev);
        hasher.update(self.canonical_bytes());
        hasher.finalize().into()
    }
}

/// The hashed parts of an event whose data and metadata are already in canonical JSON
/// form ([`crate::canonical::write_value`]): lets a writer serialise each event once and
/// use the same text for the hash and for storage.
#[derive(Debug, Clone, Copy)]
pub struct CanonicalParts<'a> {
    /// The event id.
    pub event_id: Uuid,
    /// The stream.
    pub stream_id: &'a str,
    /// The version within the stream.
    pub version: u64,
    /// The event type.
    pub event_type: &'a str,
    /// The schema version.
    pub schema_version: u16,
    /// The event data, canonical JSON.
    pub data_json: &'a [u8],
    /// The metadata, canonical JSON.
    pub metadata_json: &'a [u8],
    /// The recorded time (microsecond precision).
    pub recorded_at: DateTime<Utc>,
}

impl CanonicalParts<'_> {
    /// The same bytes as [`HashInput::canonical_bytes`] for the same event.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        use crate::canonical::write_str;
        let mut out = Vec::with_capacity(160 + self.data_json.len() + self.metadata_json.len());
        out.extend_from_slice(b"{\"data\":");
        out.extend_from_slice(self.data_json);
        out.extend_from_slice(b",\"event_id\":");
        write_str(&self.event_id.to_string(), &mut out);
        out.extend_from_slice(b",\"metadata\":");
        out.extend_from_slice(self.metadata_json);
        out.extend_from_slice(b",\"recorded_at\":");
        write_str(
            &self
                .recorded_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            &mut out,
        );
        out.extend_from_slice(format!(",\"schema_version\":{}", self.schema_version).as_bytes());
        out.extend_from_slice(b",\"stream_id\":");
        write_str(self.stream_id, &mut out);
        out.extend_from_slice(b",\"type\":");
        write_str(self.event_type, &mut out);
        out.extend_from_slice(format!(",\"version\":{}}}", self.version).as_bytes());
        out
    }
}

/// The current time truncated to microseconds, the precision every store keeps, so the
/// hash computed at append equals the hash recomputed from a stored row.
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The attempt of a `workflow` task that started a child execution: recorded in the
/// child's `ExecutionStarted` and shown as its body's `parent`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, utoipa::ToSchema)]
pub struct ParentLink {
    /// The parent execution.
    pub execution_id: Uuid,
    /// The parent's `workflow` task.
    #[schema(value_type = String)]
    pub task_id: TaskId,
    /// The attempt of that task (each attempt starts its own child).
    pub attempt: u32,
    /// How deep the child is: 1 for a child of a top-level execution, 2 for its
    /// children, and so on.
    pub depth: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_as_type_and_data() {
        let e = Event::TaskScheduled {
            task_id: TaskId::parse("a").unwrap(),
            attempt: 1,
            compensation: false,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "TaskScheduled", "data": {"task_id": "a", "attempt": 1}})
        );
        let (t, d) = e.to_parts().unwrap();
        assert_eq!(t, "TaskScheduled");
        assert_eq!(Event::from_parts(t, d).unwrap(), e);
        assert!(Event::from_parts("Nope", serde_json::json!({})).is_err());
        let p = Event::ExecutionPaused {};
        let (t, d) = p.to_parts().unwrap();
        assert_eq!(Event::from_parts(t, d).unwrap(), p);
    }

    #[test]
    fn added_fields_are_optional_and_omitted_at_their_default() {
        let old =
            serde_json::json!({"task_id": "a", "attempt": 2, "error": "x", "retryable": true});
        let e = Event::from_parts("TaskFailed", old.clone()).unwrap();
        assert_eq!(
            e,
            Event::TaskFailed {
                task_id: TaskId::parse("a").unwrap(),
                attempt: 2,
                error: "x".into(),
                retryable: true,
                compensation: false,
            }
        );
        assert_eq!(e.to_parts().unwrap().1, old);
        let beat = Event::TaskHeartbeat {
            task_id: TaskId::parse("a").unwrap(),
            attempt: 1,
            deadline: None,
            compensation: true,
        };
        let (t, d) = beat.to_parts().unwrap();
        assert_eq!(t, "TaskHeartbeat");
        assert_eq!(
            d,
            serde_json::json!({"task_id": "a", "attempt": 1, "compensation": true})
        );
        assert_eq!(Event::from_parts(t, d).unwrap(), beat);
        let done = Event::from_parts("TaskCompensated", serde_json::json!({"task_id": "a"}));
        assert!(matches!(
            done,
            Ok(Event::TaskCompensated { attempt: None, .. })
        ));
    }

    #[test]
    fn schedule_events_round_trip() {
        let created = Event::ScheduleCreated {
            schedule_id: Uuid::nil(),
            workflow_id: Uuid::nil(),
            cron: "*/5 * * * *".into(),
            timezone: "Europe/Paris".into(),
            input: serde_json::json!({"n": 1}),
            overlap: crate::schedule::Overlap::CancelPrevious,
            catch_up: crate::schedule::CatchUp::All,
        };
        let (t, d) = created.to_parts().unwrap();
        assert_eq!(t, "ScheduleCreated");
        assert_eq!(d["overlap"], "cancel_previous");
        assert_eq!(d["catch_up"], "all");
        assert_eq!(Event::from_parts(t, d).unwrap(), created);
        let ticked = Event::ScheduleTicked {
            tick_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            execution_id: None,
            outcome: crate::schedule::TickOutcome::Skipped,
            error: None,
        };
        let (t, d) = ticked.to_parts().unwrap();
        assert_eq!(
            d,
            serde_json::json!({"tick_at": "2023-11-14T22:13:20Z", "outcome": "skipped"})
        );
        assert_eq!(Event::from_parts(t, d).unwrap(), ticked);
        for e in [
            Event::SchedulePaused {},
            Event::ScheduleResumed {},
            Event::ScheduleDeleted {},
        ] {
            let (t, d) = e.to_parts().unwrap();
            assert_eq!(d, serde_json::json!({}));
            assert_eq!(Event::from_parts(t, d).unwrap(), e);
        }
    }

    #[test]
    fn envelope_flattens_type_and_data() {
        let env = EventEnvelope {
            event_id: Uuid::now_v7(),
            stream_id: StreamId::execution(Uuid::now_v7()),
            stream_type: StreamType::Execution,
            version: 1,
            position: 7,
            event: Event::ExecutionResumed {},
            schema_version: SCHEMA_VERSION,
            metadata: EventMetadata::default(),
            recorded_at: now_micros(),
            hash: "00".into(),
        };
        let v = serde_json::to_value(&env).unwrap();
        assert_eq!(v["type"], "ExecutionResumed");
        assert_eq!(v["data"], serde_json::json!({}));
        let back: EventEnvelope = serde_json::from_value(v).unwrap();
        assert_eq!(back, env);
    }

    #[test]
    fn canonical_bytes_are_sorted_compact_json() {
        let data = serde_json::json!({"b": 1, "a": [1.5, "x", {"d": null, "c": true}]});
        let meta = serde_json::json!({"actor": "api"});
        let input = HashInput {
            event_id: Uuid::nil(),
            stream_id: "execution-x",
            version: 3,
            event_type: "T",
            schema_version: 1,
            data: &data,
            metadata: &meta,
            recorded_at: now_micros(),
        };
        let oracle = serde_json::json!({
            "data": data, "event_id": Uuid::nil(), "metadata": meta,
            "recorded_at": input.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            "schema_version": 1, "stream_id": "execution-x", "type": "T", "version": 3,
        });
        assert_eq!(
            input.canonical_bytes(),
            serde_json::to_vec(&oracle).unwrap()
        );
    }

    #[test]
    fn hash_depends_on_every_covered_field() {
        let data = serde_json::json!({"b": 1, "a": [1.5, "x"]});
        let meta = serde_json::json!({});
        let base = HashInput {
            event_id: Uuid::nil(),
            stream_id: "execution-x",
            version: 1,
            event_type: "T",
            schema_version: 1,
            data: &data,
            metadata: &meta,
            recorded_at: now_micros(),
        };
        let h = base.chain_hash(&GENESIS_HASH);
        assert_eq!(h, base.chain_hash(&GENESIS_HASH));
        assert_ne!(
            h,
            HashInput { version: 2, ..base }.chain_hash(&GENESIS_HASH)
        );
        assert_ne!(h, base.chain_hash(&[1; 32]));
        let other = serde_json::json!({"b": 2, "a": [1.5, "x"]});
        assert_ne!(
            h,
            HashInput {
                data: &other,
                ..base
            }
            .chain_hash(&GENESIS_HASH)
        );
    }
}
