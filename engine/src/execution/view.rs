//! What the outside reads from an execution state: the API body ([`ExecutionState::to_json`])
//! and what a restarted engine must re-arm or re-send ([`ExecutionState::pending_timers`],
//! [`ExecutionState::pending_dispatches`]).
//!
//! These are derived views: they read the state and never change it, so the same log
//! always gives the same body, timers and dispatches.

use conflux_schema::api;
use serde_json::Value;

use super::command::TaskRef;
use super::effect::{dispatch_effect, Effect, Timer};
use super::state::{ExecutionState, TaskState};
use super::status::{ExecutionStatus, TaskStatus};

impl ExecutionState {
    /// The execution body of `GET /api/v1/executions/{id}` (API.md), without
    /// `position`, which the read side adds:
    ///
    /// `{"execution_id", "workflow_id", "status", "input", "output", "error",
    /// "started_at", "completed_at", "version", "tasks": {"<id>": {"status",
    /// "attempts", "started_at", "completed_at", "output", "error", "agent_id"}}}`.
    ///
    /// Absent values are `null`. A task whose compensation began also has
    /// `"compensation": {"status", "attempts", "output", "error"}`. Before the start,
    /// `status` is `"pending"` and the ids are `null`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.view()).unwrap_or(Value::Null)
    }

    /// The execution body as its type (what [`ExecutionState::to_json`] serialises).
    pub fn view(&self) -> api::Execution {
        let tasks = (0..self.tasks.len())
            .filter_map(|i| self.task_entry(i))
            .collect();
        let mut view = self.summary_view();
        view.tasks = tasks;
        view
    }

    /// [`ExecutionState::view`] without its tasks (`tasks` empty): what a read model
    /// that keeps task rows apart rewrites when only some tasks changed.
    pub fn summary_view(&self) -> api::Execution {
        let tasks = Default::default();
        api::Execution {
            execution_id: self.execution_id,
            workflow_id: self.workflow_id,
            status: self.status,
            input: self.input.clone(),
            output: self.output.clone().unwrap_or(Value::Null),
            error: self.error.clone(),
            started_at: self.started_at,
            completed_at: self.completed_at,
            version: self.version,
            position: None,
            parent: self.parent.clone(),
            usage: self.usage,
            budget: self.budget,
            dead_letter: self.dead_letters.last().map(|d| api::DeadLetterRef {
                id: d.id.clone(),
                task_id: d.task_id.to_string(),
                state: d.state,
            }),
            tasks,
        }
    }

    /// How many task slots the execution has: its declared tasks, then the items of
    /// its dispatched maps. [`ExecutionState::task_entry`] reads each.
    pub fn slots(&self) -> usize {
        self.tasks.len()
    }

    /// The slot of task (or map item) `id`.
    pub fn slot(&self, id: &str) -> Option<usize> {
        self.index_of_str(id)
    }

    /// The id and API entry (with its compensation) of the task or item at `slot`.
    pub fn task_entry(&self, slot: usize) -> Option<(String, api::TaskState)> {
        let id = self.id(slot)?;
        let mut view = task_view(self.tasks.get(slot)?);
        view.waiting_for = self.waiting_for(slot);
        view.child_execution_id = self.child_of(slot);
        view.compensation = self
            .compensations
            .get(&slot)
            .map(|c| api::CompensationState {
                status: c.status,
                attempts: c.attempts,
                output: c.output.clone(),
                error: c.error.clone(),
            });
        Some((id.as_str().to_owned(), view))
    }

    /// Every timer that should be armed in this state, to rebuild the timer index after
    /// a restart: the workflow deadline (while running or paused), each running
    /// attempt's deadline and each planned retry (tasks in index order, a task's own
    /// attempt before its compensation's).
    pub fn pending_timers(&self) -> Vec<Timer> {
        let mut timers = Vec::new();
        if let (
            Some(deadline),
            ExecutionStatus::Running | ExecutionStatus::Paused | ExecutionStatus::Queued,
        ) = (self.deadline, self.status)
        {
            timers.push(Timer::ExecutionDeadline { deadline });
        }
        if self.is_terminal() {
            return timers;
        }
        for (i, task) in self.tasks.iter().enumerate() {
            let tracks = [(task, false)]
                .into_iter()
                .chain(self.compensations.get(&i).map(|c| (c, true)));
            for (t, compensation) in tracks {
                let Some(task) = self.attempt_ref(i, t, compensation) else {
                    continue;
                };
                match (t.status, t.deadline, t.retry_due_at) {
                    (TaskStatus::Running, Some(deadline), _) => {
                        timers.push(Timer::AttemptDeadline { task, deadline });
                    }
                    (TaskStatus::Retrying, _, Some(due_at)) => {
                        timers.push(Timer::Retry { task, due_at })
                    }
                    _ => {}
                }
            }
        }
        timers
    }

    /// The dispatch effects of every attempt that was dispatched but has not started,
    /// rebuilt from the recorded resolved input: what a restarted engine re-sends (a
    /// runner or queue must treat `(execution, task, attempt, compensation)` as
    /// idempotent). Started attempts are the agent's, or time out.
    pub fn pending_dispatches(&self) -> Vec<Effect> {
        if self.is_terminal() {
            return Vec::new();
        }
        let mut effects = Vec::new();
        for (i, task) in self.tasks.iter().enumerate() {
            let tracks = [(task, false)]
                .into_iter()
                .chain(self.compensations.get(&i).map(|c| (c, true)));
            for (t, compensation) in tracks {
                if t.status != TaskStatus::Scheduled || !t.dispatched {
                    continue;
                }
                let Some(task) = self.attempt_ref(i, t, compensation) else {
                    continue;
                };
                let input = t.input.clone().unwrap_or(Value::Null);
                let effect =
                    dispatch_effect(&self.workflow, task, input, t.http.clone(), t.priority);
                // Its `pre` hook said go on already: not asked again.
                let passed = t.pre_hook_passed == Some(t.attempt);
                effects.extend(effect.map(|e| if passed { e.without_pre_hook() } else { e }));
            }
        }
        effects
    }

    fn attempt_ref(&self, index: usize, t: &TaskState, compensation: bool) -> Option<TaskRef> {
        Some(TaskRef {
            task: self.id(index)?.clone(),
            attempt: t.attempt,
            compensation,
        })
    }
}

fn task_view(t: &TaskState) -> api::TaskState {
    api::TaskState {
        status: t.status,
        attempts: t.attempts,
        started_at: t.started_at,
        completed_at: t.completed_at,
        output: t.output.clone(),
        error: t.error.clone(),
        agent_id: t.agent_id,
        compensation: None,
        waiting_for: None,
        child_execution_id: None,
        waiting_reason: t.waiting_reason.clone(),
        annotations: t.annotations.clone(),
    }
}
