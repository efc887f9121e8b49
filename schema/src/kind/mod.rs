//! Task kinds: what each kind needs of a task and how the engine runs it.
//!
//! A kind is one module here — the rules its fields must meet, whether its input may
//! hold secrets, whether it may undo another task, and how an attempt of it runs — and
//! one entry of [`TaskKind::rules`], the table everything else reads: validation
//! ([`crate::definition`]), dispatch (`conflux-engine`'s execution core) and recovery
//! of built-in attempts all ask the table rather than matching on the kind. Adding a
//! kind is a module, a variant and a table entry; the fields it reads live on
//! [`crate::definition::TaskSpec`] (flat on the wire, as API.md spells them, so a
//! field a request does not define is still refused by name at the HTTP edge).

mod agent;
mod approval;
mod http;
pub mod map;
mod noop;
mod signal;
mod sleep;
pub mod switch;
mod workflow;

pub use agent::{
    check_capability, check_priority, priority_of, queue_at, queue_of, split_queue,
    DEFAULT_PRIORITY, MAX_REQUIRES,
};
pub use approval::Approvers;
pub use signal::check_signal_name;
pub use workflow::ChildWorkflow;

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::definition::{CompensationSpec, HttpSpec, RetryPolicy};
use switch::SwitchCase;

/// How a task is executed.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Does nothing; its output is its resolved input.
    Noop,
    /// Waits `sleep_ms` milliseconds.
    Sleep,
    /// Makes the request in `http`; output `{"status", "body"}`.
    Http,
    /// Executed by an external agent polling `agent_role`.
    Agent,
    /// Takes the first of its `cases` whose `when` holds (else `default`); the
    /// branches not taken are skipped. Output `{"case", "next"}`.
    Switch,
    /// Runs its `template` once per element of `items`; output: the items' outputs in
    /// order.
    Map,
    /// Waits for the signal `signal` (default: the task id); output: its payload.
    Signal,
    /// Waits for `approvers.count` approvals by holders of `approvers.roles`.
    Approval,
    /// Runs a child execution of the workflow `workflow`; output: the child's output.
    Workflow,
}

impl TaskKind {
    /// Every kind, in the order of the enum.
    pub const ALL: [TaskKind; 9] = [
        TaskKind::Noop,
        TaskKind::Sleep,
        TaskKind::Http,
        TaskKind::Agent,
        TaskKind::Switch,
        TaskKind::Map,
        TaskKind::Signal,
        TaskKind::Approval,
        TaskKind::Workflow,
    ];

    /// The kind's entry in the table: its rules and how it runs.
    pub fn rules(self) -> &'static KindRules {
        match self {
            TaskKind::Noop => &noop::RULES,
            TaskKind::Sleep => &sleep::RULES,
            TaskKind::Http => &http::RULES,
            TaskKind::Agent => &agent::RULES,
            TaskKind::Switch => &switch::RULES,
            TaskKind::Map => &map::RULES,
            TaskKind::Signal => &signal::RULES,
            TaskKind::Approval => &approval::RULES,
            TaskKind::Workflow => &workflow::RULES,
        }
    }

    /// The wire name of the kind (`"noop"`, `"sleep"`, `"http"`, `"agent"`).
    pub fn as_str(self) -> &'static str {
        self.rules().name
    }

    /// How an attempt of this kind runs.
    pub fn runs(self) -> Runs {
        self.rules().runs
    }
}

impl fmt::Display for TaskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an attempt of a kind is executed once dispatched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Runs {
    /// In the engine, by its built-in runner (at least once: an attempt a dead
    /// process was running is run again on recovery).
    Builtin,
    /// By an external agent that leases it from its role's queue.
    Agent,
    /// By the execution core itself, in the decision that dispatches it (no runner,
    /// no attempt deadline).
    Inline,
    /// As items: the core runs its template once per element of its `items`, each item
    /// an attempt of its own (id `<task>[<index>]`), and completes it when they are done.
    Items,
    /// By nobody: the attempt starts when dispatched and waits for commands (a signal,
    /// approvals) to complete or fail it. It has no attempt deadline unless the task
    /// names `timeout_seconds`, and nothing re-runs it on recovery.
    Waits,
    /// By a child execution: the attempt starts when dispatched, the engine starts the
    /// child (id derived from the parent, the task and the attempt, so a repeated start
    /// is the same child), and the child's end completes or fails the attempt. Like a
    /// waiting attempt it has no deadline unless the task names `timeout_seconds`.
    Child,
}

/// One kind's entry in the table.
#[derive(Debug)]
pub struct KindRules {
    /// The kind's wire name.
    pub name: &'static str,
    /// Where its attempts run.
    pub runs: Runs,
    /// Whether its `input` may reference `${secrets.NAME}` (never where the input is
    /// recorded as the output).
    pub secrets_in_input: bool,
    /// Whether it may be the `compensate` of another task.
    pub compensates: bool,
    /// The rules of its own fields; the error names the field (after `prefix`).
    pub check: fn(&TaskBody<'_>, &str) -> Result<(), String>,
}

/// What one attempt runs: a task's own fields, or its `compensate` fields. Both have
/// the same shape, so dispatch, retries and deadlines treat them alike.
#[derive(Clone, Copy, Debug)]
pub struct TaskBody<'a> {
    /// How the attempt is executed.
    pub kind: TaskKind,
    /// For `agent`: the role whose agents execute it.
    pub agent_role: Option<&'a str>,
    /// The input template.
    pub input: &'a Value,
    /// For `http`: the request template.
    pub http: Option<&'a HttpSpec>,
    /// For `sleep`: how long, in milliseconds.
    pub sleep_ms: Option<u64>,
    /// The retry policy, if given.
    pub retry: Option<&'a RetryPolicy>,
    /// The start-to-close limit of one attempt, in seconds, if given.
    pub timeout_seconds: Option<u64>,
    /// For `switch`: its cases (empty for every other kind and for compensations).
    pub cases: &'a [SwitchCase],
    /// For `switch`: the tasks run when no case holds.
    pub default_next: Option<&'a [String]>,
    /// For `map`: the items (a reference or a literal array).
    pub items: Option<&'a Value>,
    /// For `map`: what each item runs.
    pub template: Option<&'a CompensationSpec>,
    /// For `map`: most items running at once.
    pub max_parallel: Option<u32>,
    /// For `signal`: the signal's name, if given (default: the task id).
    pub signal: Option<&'a str>,
    /// For `approval`: who must approve.
    pub approvers: Option<&'a Approvers>,
    /// For `workflow`: the workflow its child execution runs.
    pub workflow: Option<&'a ChildWorkflow>,
    /// For `agent`: the capabilities an agent must have to take it (empty for every
    /// other kind and for compensations and map items).
    pub requires: &'a [String],
    /// For `agent`: its priority (1 to 10), if it sets one over its execution's.
    pub priority: Option<u8>,
    /// For `agent`, `http`, `sleep`: the rate limit its attempts wait for.
    pub rate_limit: Option<&'a crate::rate_limit::RateLimit>,
}

impl KindRules {
    /// Whether an attempt that names no `timeout_seconds` gets the configured default
    /// deadline: agent attempts only (an agent may die holding one). Built-ins are
    /// bounded by what they do, waiting kinds wait for people, inline kinds and maps
    /// have no attempt of their own to bound.
    pub fn default_timeout(&self) -> bool {
        self.runs == Runs::Agent
    }
}

impl<'a> TaskBody<'a> {
    /// The name of the signal a `signal` task waits for: its `signal`, else its id.
    pub fn signal_name(&self, task_id: &'a str) -> &'a str {
        self.signal.unwrap_or(task_id)
    }
}

impl<'a> TaskBody<'a> {
    /// A body of the fields every kind has (a task's or a compensation's), without the
    /// fields of switches, maps and waiting kinds.
    pub fn common(
        kind: TaskKind,
        agent_role: Option<&'a str>,
        input: &'a Value,
        http: Option<&'a HttpSpec>,
        sleep_ms: Option<u64>,
        retry: Option<&'a RetryPolicy>,
        timeout_seconds: Option<u64>,
    ) -> Self {
        TaskBody {
            kind,
            agent_role,
            input,
            http,
            sleep_ms,
            retry,
            timeout_seconds,
            cases: &[],
            default_next: None,
            items: None,
            template: None,
            max_parallel: None,
            signal: None,
            approvers: None,
            workflow: None,
            requires: &[],
            priority: None,
            rate_limit: None,
        }
    }
}

impl TaskBody<'_> {
    /// Attempts in all (at least 1).
    pub fn max_attempts(&self) -> u32 {
        self.retry.map_or(1, |r| r.max_attempts.max(1))
    }

    /// The backoff before the attempt after `failed_attempt`.
    pub fn delay_after(&self, failed_attempt: u32) -> Duration {
        self.retry
            .map_or(Duration::ZERO, |r| r.delay_for_attempt(failed_attempt))
    }

    /// The start-to-close limit of one attempt, as the definition gives it.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout_seconds.map(Duration::from_secs)
    }
}
