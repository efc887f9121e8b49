//! What may be asked of an execution ([`Command`]) and the typed ways it can say no
//! ([`Rejection`]).
//!
//! Commands are intentions, checked against the state; only [`crate::execution::decide`]
//! turns them into events. A rejection changes nothing and maps to one API error code.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use conflux_schema::TaskId;

use super::effect::Timer;
use super::status::ExecutionStatus;

/// One attempt of one task: of the task itself, or (with `compensation`) of its
/// `compensate` spec. This triple is how every attempt is named in commands, effects,
/// timers and events (`task_id`, `attempt`, `compensation`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TaskRef {
    /// The task.
    pub task: TaskId,
    /// The 1-based attempt number.
    pub attempt: u32,
    /// Whether this is an attempt of the task's compensation.
    #[serde(default)]
    pub compensation: bool,
}

impl TaskRef {
    /// Attempt `attempt` of task `task` itself.
    pub fn new(task: TaskId, attempt: u32) -> Self {
        TaskRef {
            task,
            attempt,
            compensation: false,
        }
    }

    /// Attempt `attempt` of task `task`'s compensation.
    pub fn compensation(task: TaskId, attempt: u32) -> Self {
        TaskRef {
            task,
            attempt,
            compensation: true,
        }
    }
}

/// What a caller asks of an execution. See [`crate::execution::decide`] for what each
/// one records.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Start the execution (only before it started).
    Start {
        /// The new execution's id.
        execution_id: Uuid,
        /// The workflow definition it runs.
        workflow_id: Uuid,
        /// The input `${input...}` resolves against.
        input: Value,
        /// The `Idempotency-Key` of the request, if any.
        idempotency_key: Option<String>,
        /// For a child execution: the parent attempt that starts it.
        parent: Option<conflux_schema::ParentLink>,
        /// How much its attempts may spend ([`conflux_schema::usage::Budget`]).
        budget: Option<conflux_schema::usage::Budget>,
        /// Its priority (recorded as `PrioritySet` unless it is the default 5).
        priority: Option<u8>,
        /// Its concurrency key, when its workflow limits concurrency: it starts
        /// `queued` (`ExecutionQueued`) until admitted.
        concurrency_key: Option<String>,
    },
    /// A queued execution got a slot of its concurrency key (`ExecutionAdmitted`).
    Admit,
    /// No registered agent could take the dispatched attempt `task`
    /// (`TaskUnroutable`); nothing when it is no longer waiting, or already noted.
    NoteUnroutable {
        /// The attempt.
        task: TaskRef,
        /// Why.
        reason: String,
    },
    /// The process-manager step the engine runs after applying any event: schedule and
    /// dispatch what is ready, decide retries, fail, compensate or complete.
    Advance,
    /// An agent leased the attempt, or a built-in runner began it.
    StartTask {
        /// The attempt.
        task: TaskRef,
        /// The agent that leased it.
        agent_id: Option<Uuid>,
        /// The lease.
        lease_id: Option<Uuid>,
        /// Why the agent got it (capability-scored routing), recorded in `TaskStarted`.
        routing: Option<conflux_schema::routing::Routing>,
    },
    /// The attempt succeeded with `output`.
    CompleteTask {
        /// The attempt.
        task: TaskRef,
        /// Its output.
        output: Value,
        /// What it spent, as its agent reported (recorded as `UsageRecorded`).
        usage: Option<conflux_schema::usage::Usage>,
    },
    /// The attempt failed.
    FailTask {
        /// The attempt.
        task: TaskRef,
        /// What went wrong.
        error: String,
        /// Whether another attempt may succeed.
        retryable: bool,
        /// What it spent before failing, as its agent reported (recorded as
        /// `UsageRecorded`).
        usage: Option<conflux_schema::usage::Usage>,
    },
    /// The attempt is alive: extend its deadline.
    Heartbeat {
        /// The attempt.
        task: TaskRef,
    },
    /// A timer armed earlier ([`crate::execution::Effect::ArmTimer`]) is due.
    TimerFired(Timer),
    /// Stop dispatching new work.
    Pause,
    /// Dispatch again what waited.
    Resume,
    /// Cancel the execution and every attempt in flight.
    Cancel {
        /// Why, if given.
        reason: Option<String>,
    },
    /// A signal arrived: kept for, or completing, a `signal` task waiting for `name`.
    Signal {
        /// The signal's name.
        name: String,
        /// Its payload.
        payload: Value,
    },
    /// A caller approved or rejected the current attempt of approval task `task`.
    DecideApproval {
        /// The task id, as given.
        task: String,
        /// Who decides, and how.
        decision: super::waits::ApprovalBy,
    },
    /// Run dead letter `id`'s task again (the execution failed because of it): it and
    /// the tasks the failure stopped come back, the execution runs again.
    Redrive {
        /// The dead letter.
        id: String,
    },
    /// Close dead letter `id` without running its task again.
    AcknowledgeDeadLetter {
        /// The dead letter.
        id: String,
    },
    /// A task's hook answered with annotations for an attempt in flight.
    Annotate {
        /// The attempt.
        task: TaskRef,
        /// Which hook.
        phase: conflux_schema::task_hooks::HookPhase,
        /// What it answered (a JSON object).
        annotations: Value,
    },
}

impl Command {
    /// A short name for messages and logs (`"start"`, `"pause"`, …).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Start { .. } => "start",
            Command::Advance => "advance",
            Command::StartTask { .. } => "start task",
            Command::CompleteTask { .. } => "complete task",
            Command::FailTask { .. } => "fail task",
            Command::Heartbeat { .. } => "heartbeat",
            Command::TimerFired(_) => "fire timer",
            Command::Pause => "pause",
            Command::Admit => "admit",
            Command::NoteUnroutable { .. } => "note unroutable",
            Command::Resume => "resume",
            Command::Cancel { .. } => "cancel",
            Command::Signal { .. } => "signal",
            Command::DecideApproval { .. } => "decide on",
            Command::Redrive { .. } => "redrive",
            Command::AcknowledgeDeadLetter { .. } => "acknowledge",
            Command::Annotate { .. } => "annotate",
        }
    }
}

/// Why a command was refused. A rejected command records nothing.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The execution has not started (code `not_found`: to the outside it does not exist).
    #[error("the execution has not started")]
    NotStarted,
    /// `Start` on an execution that already started (code `conflict`).
    #[error("the execution has already started")]
    AlreadyStarted,
    /// The execution is terminal and cannot change (code `conflict`).
    #[error("the execution is {0}")]
    Terminal(ExecutionStatus),
    /// The command does not apply in the current status, e.g. pause a paused execution
    /// (code `conflict`).
    #[error("cannot {command} an execution that is {status}")]
    InvalidState {
        /// The execution's status.
        status: ExecutionStatus,
        /// The command refused.
        command: &'static str,
    },
    /// A start, heartbeat or result for an attempt that is not the current dispatched or
    /// running one: it timed out, was cancelled, already finished, or was superseded
    /// (code `stale_attempt`).
    #[error("attempt {attempt} of task `{task}`{} is not the current attempt (current: {current})", if *.compensation { " (compensation)" } else { "" })]
    StaleAttempt {
        /// The task.
        task: TaskId,
        /// The attempt named by the command.
        attempt: u32,
        /// The task's current attempt (0: none yet).
        current: u32,
        /// Whether the command named a compensation attempt.
        compensation: bool,
    },
    /// The task id is not a task of this workflow (code `not_found`).
    #[error("`{0}` is not a task of this workflow")]
    UnknownTask(String),
    /// No `signal` task of this workflow waits for a signal of this name (code
    /// `not_found`).
    #[error("no task of this workflow waits for the signal `{0}`")]
    UnknownSignal(String),
    /// An approval decision for a task that is not an approval task waiting now: not
    /// reached yet, already decided, or of another kind (code `conflict`).
    #[error("task `{task}` is not waiting for approval: {reason}")]
    NotWaiting {
        /// The task.
        task: TaskId,
        /// Why not.
        reason: String,
    },
    /// The caller's role is not one of the task's `approvers.roles` (code `forbidden`).
    #[error("role `{role}` may not decide on task `{task}` (approvers: {roles})")]
    NotApprover {
        /// The task.
        task: TaskId,
        /// The caller's role.
        role: String,
        /// The roles that may decide.
        roles: String,
    },
    /// The caller already decided on this attempt (code `conflict`).
    #[error("`{by}` already decided on task `{task}`")]
    AlreadyDecided {
        /// The task.
        task: TaskId,
        /// The caller.
        by: String,
    },
    /// No dead letter of this execution has this id.
    #[error("dead letter `{0}` not found")]
    UnknownDeadLetter(String),
    /// The dead letter was redriven or acknowledged already.
    #[error("dead letter `{id}` is {state}, not open")]
    DeadLetterClosed {
        /// The dead letter.
        id: String,
        /// `redriven` or `acknowledged`.
        state: &'static str,
    },
    /// The dead letter cannot be redriven: why.
    #[error("this dead letter cannot be redriven: {0}")]
    NotRedrivable(String),
}

impl Rejection {
    /// The stable API error code: `not_found` (HTTP 404) for [`Rejection::NotStarted`],
    /// [`Rejection::UnknownTask`] and [`Rejection::UnknownSignal`], `stale_attempt`
    /// (409) for [`Rejection::StaleAttempt`], `forbidden` (403) for
    /// [`Rejection::NotApprover`], `conflict` (409) for the rest.
    pub fn code(&self) -> &'static str {
        match self {
            Rejection::NotStarted | Rejection::UnknownTask(_) => "not_found",
            Rejection::StaleAttempt { .. } => "stale_attempt",
            Rejection::AlreadyStarted | Rejection::Terminal(_) | Rejection::InvalidState { .. } => {
                "conflict"
            }
            Rejection::UnknownSignal(_) => "not_found",
            Rejection::NotWaiting { .. } | Rejection::AlreadyDecided { .. } => "conflict",
            Rejection::NotApprover { .. } => "forbidden",
            Rejection::UnknownDeadLetter(_) => "not_found",
            Rejection::DeadLetterClosed { .. } | Rejection::NotRedrivable(_) => "conflict",
        }
    }
}
