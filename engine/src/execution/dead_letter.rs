//! Dead letters: a task that fails for good and fails its execution with it is kept as
//! a dead letter (`TaskDeadLettered`), which an operator may redrive — run the task
//! again with a fresh budget of attempts, the execution running again from where it
//! failed — or acknowledge.
//!
//! A redrive is recorded as events like everything else: `ExecutionRedriven`, then one
//! `TaskRedriven` per task it brings back (the dead-lettered task, the attempts the
//! failure cancelled, the tasks it skipped before they ran), in task order, so that
//! replaying the log gives the same state. Attempt numbers go on from where they were
//! (fencing still tells a late report of an old attempt from the new one); the retry
//! policy counts attempts from the redrive (`TaskState::redrive_base`).

use chrono::{DateTime, Utc};
use conflux_schema::api::DeadLetterState;
use conflux_schema::definition::Runs;
use conflux_schema::{Event, TaskId};
use uuid::Uuid;

use super::command::Rejection;
use super::state::ExecutionState;
use super::status::{ExecutionStatus, TaskStatus};

/// Why `fail` skips the tasks that never ran; a redrive brings exactly those back.
pub(crate) const SKIPPED_BY_FAILURE: &str = "the execution failed before the task could run";

/// One dead letter of an execution, as folded from its log.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadLetterEntry {
    /// `<execution id>.<attempt>.<task id>`.
    pub id: String,
    /// The task.
    pub task_id: TaskId,
    /// Its attempts when it was dead-lettered.
    pub attempts: u32,
    /// Why its last attempt failed (sealed when payloads are encrypted at rest).
    pub error: String,
    /// Where it stands.
    pub state: DeadLetterState,
    /// When it was dead-lettered.
    pub at: DateTime<Utc>,
    /// When it was redriven or acknowledged.
    pub closed_at: Option<DateTime<Utc>>,
    /// Who redrove or acknowledged it.
    pub closed_by: Option<String>,
}

/// The id of the dead letter of `task`'s attempt `attempt` in `execution_id`.
pub fn dead_letter_id(execution_id: Uuid, attempt: u32, task: &TaskId) -> String {
    format!("{execution_id}.{attempt}.{task}")
}

/// The execution, attempt and task a dead letter id names, if it is well formed.
pub fn parse_dead_letter_id(id: &str) -> Option<(Uuid, u32, TaskId)> {
    let (execution, rest) = id.split_once('.')?;
    let (attempt, task) = rest.split_once('.')?;
    Some((
        Uuid::parse_str(execution).ok()?,
        attempt.parse().ok()?,
        TaskId::parse(task).ok()?,
    ))
}

/// `TaskDeadLettered` for forward task `index`, failed for good with `error`; its
/// attempt is the one failed in `decided` (the decision being built) if it failed
/// there, else the state's.
pub(crate) fn dead_lettered(
    s: &ExecutionState,
    index: usize,
    error: &str,
    decided: &[Event],
) -> Option<Event> {
    let task_id = s.id(index)?.clone();
    let failed_now = decided.iter().rev().find_map(|e| match e {
        Event::TaskFailed {
            task_id: t,
            attempt,
            compensation: false,
            ..
        } if *t == task_id => Some(*attempt),
        _ => None,
    });
    let attempts = failed_now.unwrap_or(s.tasks.get(index)?.attempt);
    Some(Event::TaskDeadLettered {
        dead_letter_id: dead_letter_id(s.execution_id.unwrap_or_default(), attempts, &task_id),
        task_id,
        attempts,
        error: error.to_owned(),
    })
}

/// `Redrive`: the events that run dead letter `id`'s task again (see the module docs).
pub(crate) fn redrive(
    s: &ExecutionState,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let entry = open_entry(s, id)?;
    if s.status != ExecutionStatus::Failed {
        return Err(Rejection::InvalidState {
            status: s.status,
            command: "redrive",
        });
    }
    if s.saga.is_some() {
        return Err(Rejection::NotRedrivable(
            "the execution compensated (its compensations ran)".to_owned(),
        ));
    }
    if let Some(why) = s.over_budget() {
        return Err(Rejection::NotRedrivable(format!(
            "the execution is past its budget ({why})"
        )));
    }
    if s.parent.is_some() {
        return Err(Rejection::NotRedrivable(
            "it failed a child execution, whose parent has been told; redrive the parent's \
             dead letter instead"
                .to_owned(),
        ));
    }
    if s.deadline.is_some_and(|d| d <= now) {
        return Err(Rejection::NotRedrivable(
            "the execution is past its deadline (`timeout_seconds`)".to_owned(),
        ));
    }
    let index = s
        .index_of(&entry.task_id)
        .ok_or_else(|| Rejection::UnknownTask(entry.task_id.to_string()))?;
    let mut out = vec![Event::ExecutionRedriven {
        dead_letter_id: entry.id.clone(),
        task_id: entry.task_id.clone(),
    }];
    for (i, t) in s.tasks.iter().enumerate().take(s.workflow.len()) {
        let attempt = match t.status {
            _ if i == index => t.attempt.saturating_add(1),
            TaskStatus::Cancelled => t.attempt.saturating_add(1),
            // Another task that failed for good in the same step as the dead letter.
            TaskStatus::Failed | TaskStatus::TimedOut if s.unresolved.contains(&i) => {
                t.attempt.saturating_add(1)
            }
            TaskStatus::Skipped if t.error.as_deref() == Some(SKIPPED_BY_FAILURE) => 0,
            _ => continue,
        };
        if attempt > 0
            && s.workflow
                .task(i)
                .is_some_and(|t| t.kind.runs() == Runs::Items)
        {
            return Err(Rejection::NotRedrivable(format!(
                "map task `{}` would run again, and a map runs once",
                s.id(i).map(TaskId::as_str).unwrap_or_default()
            )));
        }
        if let Some(task_id) = s.id(i) {
            out.push(Event::TaskRedriven {
                task_id: task_id.clone(),
                attempt,
            });
        }
    }
    // Its slot was given back when it failed: it waits for one again, like a new start
    // (the caller claims; the engine's sweeps claim again while it is queued).
    if let Some(key) = &s.concurrency_key {
        out.push(Event::ExecutionQueued { key: key.clone() });
    }
    Ok(out)
}

/// `AcknowledgeDeadLetter`: `DeadLetterAcknowledged` for open dead letter `id`.
pub(crate) fn acknowledge(s: &ExecutionState, id: &str) -> Result<Vec<Event>, Rejection> {
    let entry = open_entry(s, id)?;
    Ok(vec![Event::DeadLetterAcknowledged {
        dead_letter_id: entry.id.clone(),
    }])
}

fn open_entry<'a>(s: &'a ExecutionState, id: &str) -> Result<&'a DeadLetterEntry, Rejection> {
    let entry = s
        .dead_letters
        .iter()
        .find(|d| d.id == id)
        .ok_or_else(|| Rejection::UnknownDeadLetter(id.to_owned()))?;
    match entry.state {
        DeadLetterState::Open => Ok(entry),
        state => Err(Rejection::DeadLetterClosed {
            id: id.to_owned(),
            state: state.as_str(),
        }),
    }
}

impl ExecutionState {
    /// The execution's dead letters, oldest first.
    pub fn dead_letters(&self) -> &[DeadLetterEntry] {
        &self.dead_letters
    }

    /// `TaskDeadLettered`.
    pub(super) fn apply_dead_lettered(&mut self, event: &Event, at: DateTime<Utc>) {
        let Event::TaskDeadLettered {
            task_id,
            dead_letter_id,
            attempts,
            error,
        } = event
        else {
            return;
        };
        if self.dead_letters.iter().any(|d| d.id == *dead_letter_id) {
            return;
        }
        self.dead_letters.push(DeadLetterEntry {
            id: dead_letter_id.clone(),
            task_id: task_id.clone(),
            attempts: *attempts,
            error: error.clone(),
            state: DeadLetterState::Open,
            at,
            closed_at: None,
            closed_by: None,
        });
    }

    /// `ExecutionRedriven` (a failed execution runs again) and `DeadLetterAcknowledged`:
    /// the dead letter closes, by `actor`.
    pub(super) fn apply_dead_letter_closed(
        &mut self,
        event: &Event,
        at: DateTime<Utc>,
        actor: Option<&str>,
    ) {
        let (id, state) = match event {
            Event::ExecutionRedriven { dead_letter_id, .. } => {
                (dead_letter_id, DeadLetterState::Redriven)
            }
            Event::DeadLetterAcknowledged { dead_letter_id } => {
                (dead_letter_id, DeadLetterState::Acknowledged)
            }
            _ => return,
        };
        let redrive = state == DeadLetterState::Redriven;
        if redrive && self.status != ExecutionStatus::Failed {
            return;
        }
        let Some(entry) = self
            .dead_letters
            .iter_mut()
            .find(|d| d.id == *id && d.state == DeadLetterState::Open)
        else {
            return;
        };
        entry.state = state;
        entry.closed_at = Some(at);
        entry.closed_by = actor.map(str::to_owned);
        if redrive {
            self.status = ExecutionStatus::Running;
            self.error = None;
            self.completed_at = None;
        }
    }

    /// `TaskRedriven`: a failed or cancelled task's next attempt is due now, with a
    /// fresh budget of attempts (one that failed before it ran is pending again, to be
    /// judged again); a task skipped by the failure is pending again.
    pub(super) fn apply_task_redriven(&mut self, task_id: &TaskId, attempt: u32) {
        if self.status != ExecutionStatus::Running {
            return;
        }
        let Some(i) = self.index_of(task_id).filter(|&i| i < self.workflow.len()) else {
            return;
        };
        let t = &mut self.tasks[i];
        if attempt == 0 {
            if t.status != TaskStatus::Skipped {
                return;
            }
            t.status = TaskStatus::Pending;
            t.error = None;
            t.completed_at = None;
            self.settled = self.settled.saturating_sub(1);
            let workflow = self.workflow.clone();
            self.ready.unsettled(&workflow, i);
            if self.ready.remaining(i) == 0 {
                self.ready.insert(i);
            }
            return;
        }
        let failed = matches!(
            t.status,
            TaskStatus::Failed | TaskStatus::TimedOut | TaskStatus::Cancelled
        );
        if !failed || attempt != t.attempt.saturating_add(1) {
            return;
        }
        t.redrive_base = t.attempt;
        if !t.dispatched {
            // It failed before it ran (its `when` or its input): it is judged and
            // resolved again, as a pending task, its next attempt `attempt`.
            t.status = TaskStatus::Pending;
            t.completed_at = None;
            self.unresolved.remove(&i);
            if self.ready.remaining(i) == 0 {
                self.ready.insert(i);
            }
            return;
        }
        t.status = TaskStatus::Retrying;
        t.attempt = attempt;
        t.retry_due_at = None;
        t.completed_at = None;
        self.unresolved.remove(&i);
        self.live.insert(i);
        self.retrying.insert(i);
    }
}
