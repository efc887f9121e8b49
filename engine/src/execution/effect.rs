//! Side effects as data: what the shell must do once a decision's events are committed.
//!
//! The core never performs I/O. Every effect is a function of one event (and the
//! workflow), computed by [`effects_of`]: `TaskDispatched` runs a built-in or enqueues
//! an agent task, `TaskStarted`/`TaskHeartbeat`/`TaskRetryScheduled`/`ExecutionStarted`
//! arm a timer. So a shell can either perform [`Decision::effects`] after committing its
//! own decision, or perform `effects_of` for every event it reads from the log (which
//! also covers events other processes appended) — one of the two, not both.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conflux_schema::definition::{ChildWorkflow, HttpSpec, Runs, TaskKind};
use conflux_schema::validate::ValidatedWorkflow;
use conflux_schema::Event;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::TaskRef;
use super::dispatch::add;

/// A point in time at which the shell must send [`crate::execution::Command::TimerFired`].
/// Firing a timer that no longer applies is harmless (an empty decision), so timers
/// may be fired late, twice, or after a restart.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "timer", rename_all = "snake_case")]
pub enum Timer {
    /// The planned attempt `task` becomes due.
    Retry {
        /// The planned attempt.
        task: TaskRef,
        /// When it is due.
        due_at: DateTime<Utc>,
    },
    /// The running attempt `task` must have finished by `deadline`.
    AttemptDeadline {
        /// The attempt.
        task: TaskRef,
        /// Its deadline when the timer was armed (a heartbeat may have moved it).
        deadline: DateTime<Utc>,
    },
    /// The whole execution must have finished by `deadline`.
    ExecutionDeadline {
        /// The workflow deadline.
        deadline: DateTime<Utc>,
    },
}

impl Timer {
    /// When the timer is due.
    pub fn due_at(&self) -> DateTime<Utc> {
        match self {
            Timer::Retry { due_at, .. } => *due_at,
            Timer::AttemptDeadline { deadline, .. } | Timer::ExecutionDeadline { deadline } => {
                *deadline
            }
        }
    }
}

/// Something the shell does after the events that caused it are committed.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Run a built-in attempt (`noop`, `sleep`, `http`) in-engine. The runner reports
    /// `StartTask`, then `CompleteTask` or `FailTask`; a `noop`'s output is its input.
    RunBuiltin {
        /// The attempt.
        task: TaskRef,
        /// `noop`, `sleep` or `http`.
        kind: TaskKind,
        /// The resolved input.
        input: Value,
        /// For `http`: the resolved request.
        http: Option<HttpSpec>,
        /// For `sleep`: how long.
        sleep_ms: Option<u64>,
        /// The attempt's start-to-close limit, if any.
        timeout: Option<Duration>,
        /// The task's rate limit: the attempt takes a token before it starts (and is
        /// then not started by the decision that dispatched it, but when it has one).
        rate_limit: Option<conflux_schema::rate_limit::RateLimit>,
        /// The task's `pre` and `post` hooks (forward attempts only).
        hooks: Option<conflux_schema::task_hooks::TaskHooks>,
    },
    /// Put the attempt on the queue `role`: its agent role, or (for a task with
    /// `requires`) the role with its required capabilities
    /// ([`conflux_schema::kind::queue_of`]); the agent's lease reports `StartTask`.
    EnqueueAgentTask {
        /// The agent role.
        role: String,
        /// The attempt.
        task: TaskRef,
        /// The resolved input.
        input: Value,
        /// The task's rate limit: the lease takes a token before it starts.
        rate_limit: Option<conflux_schema::rate_limit::RateLimit>,
        /// The task's `pre` hook, called before the ticket is queued (forward attempts
        /// only; its `post` hook is called when the agent reports success).
        pre_hook: Option<conflux_schema::task_hooks::HookCall>,
    },
    /// Arm a timer (idempotent: arming an equal timer twice fires it once or twice,
    /// both harmless).
    ArmTimer(Timer),
    /// Start the child execution of attempt `task` of a `workflow` task
    /// ([`crate::execution::child_execution_id`]), or, if it already exists, report its
    /// result when it has ended: repeating it is harmless.
    StartChild {
        /// The parent's attempt.
        task: TaskRef,
        /// The workflow the child runs.
        workflow: ChildWorkflow,
        /// The resolved input (a template: `${` escaped).
        input: Value,
    },
    /// Cancel the child execution of attempt `task`, which ended without it (cancelled,
    /// timed out). Cancelling a child that already ended, or that was never started (the
    /// attempt was cancelled before its dispatch), is harmless.
    CancelChild {
        /// The parent's attempt.
        task: TaskRef,
        /// Why, as the child records it.
        reason: String,
    },
}

/// What [`crate::execution::decide`] returns: events to append (all or nothing, at the
/// state's version) and the effects to perform once they are committed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decision {
    /// The events, in order.
    pub events: Vec<Event>,
    /// Exactly `effects_of(event)` for each event in order, with `now` as the time.
    pub effects: Vec<Effect>,
}

impl Decision {
    /// A decision that changes nothing.
    pub fn empty() -> Self {
        Decision::default()
    }

    /// Whether the decision records nothing.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The decision of `events`, with their effects.
    pub(crate) fn new(
        workflow: &ValidatedWorkflow,
        events: Vec<Event>,
        now: DateTime<Utc>,
    ) -> Self {
        let effects = events
            .iter()
            .flat_map(|event| effects_of(workflow, event, now))
            .collect();
        Decision { events, effects }
    }
}

/// The effects a committed `event` of an execution of `workflow` calls for, with
/// `recorded_at` the event's time. Events without effects give an empty list.
pub fn effects_of(
    workflow: &ValidatedWorkflow,
    event: &Event,
    recorded_at: DateTime<Utc>,
) -> Vec<Effect> {
    match event {
        Event::ExecutionStarted { .. } => workflow
            .definition()
            .timeout_seconds
            .map(|secs| {
                Effect::ArmTimer(Timer::ExecutionDeadline {
                    deadline: add(recorded_at, Duration::from_secs(secs)),
                })
            })
            .into_iter()
            .collect(),
        Event::TaskDispatched {
            task_id,
            attempt,
            input,
            http,
            compensation,
            priority,
            ..
        } => {
            let task = TaskRef {
                task: task_id.clone(),
                attempt: *attempt,
                compensation: *compensation,
            };
            dispatch_effect(workflow, task, input.clone(), http.clone(), *priority)
                .into_iter()
                .collect()
        }
        Event::TaskStarted {
            task_id,
            attempt,
            deadline: Some(deadline),
            compensation,
            ..
        }
        | Event::TaskHeartbeat {
            task_id,
            attempt,
            deadline: Some(deadline),
            compensation,
        } => vec![Effect::ArmTimer(Timer::AttemptDeadline {
            task: TaskRef {
                task: task_id.clone(),
                attempt: *attempt,
                compensation: *compensation,
            },
            deadline: *deadline,
        })],
        Event::TaskCancelled {
            task_id,
            attempt,
            compensation: false,
        }
        | Event::TaskTimedOut {
            task_id,
            attempt,
            compensation: false,
        } => {
            let child = workflow
                .body_for(task_id, false)
                .is_some_and(|b| b.kind.runs() == Runs::Child);
            if !child {
                return Vec::new();
            }
            let reason = match event {
                Event::TaskTimedOut { .. } => {
                    format!("attempt {attempt} of parent task `{task_id}` timed out")
                }
                _ => format!("attempt {attempt} of parent task `{task_id}` was cancelled"),
            };
            vec![Effect::CancelChild {
                task: TaskRef::new(task_id.clone(), *attempt),
                reason,
            }]
        }
        Event::TaskRetryScheduled {
            task_id,
            attempt,
            due_at,
            compensation,
        } => vec![Effect::ArmTimer(Timer::Retry {
            task: TaskRef {
                task: task_id.clone(),
                attempt: *attempt,
                compensation: *compensation,
            },
            due_at: *due_at,
        })],
        _ => Vec::new(),
    }
}

impl Effect {
    /// The same effect without its `pre` hook (the hook passed for this attempt).
    pub fn without_pre_hook(mut self) -> Effect {
        match &mut self {
            Effect::EnqueueAgentTask { pre_hook, .. } => *pre_hook = None,
            Effect::RunBuiltin {
                hooks: Some(hooks), ..
            } => hooks.pre = None,
            _ => {}
        }
        self
    }
}

/// The effect that runs attempt `task` of the task at `index` with this resolved input
/// and request: an agent enqueue or a built-in run.
pub(crate) fn dispatch_effect(
    workflow: &ValidatedWorkflow,
    task: TaskRef,
    input: Value,
    http: Option<HttpSpec>,
    priority: Option<u8>,
) -> Option<Effect> {
    let spec = workflow.body_for(&task.task, task.compensation)?;
    let hooks = match task.compensation {
        true => None,
        false => workflow.hooks_of(&task.task).cloned(),
    };
    Some(match spec.kind.runs() {
        // The core runs these; nothing runs a waiting attempt: commands complete it.
        Runs::Inline | Runs::Items | Runs::Waits => return None,
        Runs::Child => Effect::StartChild {
            task,
            workflow: spec.workflow?.clone(),
            input,
        },
        Runs::Agent => Effect::EnqueueAgentTask {
            role: conflux_schema::kind::queue_at(
                &conflux_schema::kind::queue_of(spec.agent_role.unwrap_or_default(), spec.requires),
                priority.unwrap_or(conflux_schema::kind::DEFAULT_PRIORITY),
            ),
            task,
            input,
            rate_limit: spec.rate_limit.cloned(),
            pre_hook: hooks.and_then(|h| h.pre),
        },
        Runs::Builtin => Effect::RunBuiltin {
            task,
            kind: spec.kind,
            input,
            http: http.or_else(|| spec.http.cloned()),
            sleep_ms: spec.sleep_ms,
            timeout: spec.timeout(),
            rate_limit: spec.rate_limit.cloned(),
            hooks,
        },
    })
}

#[cfg(test)]
mod tests {
    use conflux_schema::TaskId;
    use serde_json::json;

    use super::*;

    #[test]
    fn timers_serialise_with_their_kind_and_know_when_they_are_due() {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        let timer = Timer::Retry {
            task: TaskRef::compensation(TaskId::parse("a").unwrap(), 2),
            due_at: at,
        };
        let value = serde_json::to_value(&timer).unwrap();
        assert_eq!(
            value,
            json!({"timer": "retry", "task": {"task": "a", "attempt": 2, "compensation": true},
                   "due_at": "1970-01-01T00:00:00Z"})
        );
        assert_eq!(serde_json::from_value::<Timer>(value).unwrap(), timer);
        assert_eq!(timer.due_at(), at);
        assert_eq!(Timer::ExecutionDeadline { deadline: at }.due_at(), at);
    }
}
