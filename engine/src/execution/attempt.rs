//! Commands about one attempt: start, heartbeat, complete, fail.
//!
//! They share one rule, fencing by attempt number: only the current attempt, once
//! dispatched (or started), may be acted on. Anything else — an attempt that timed
//! out, was cancelled, already finished or was superseded by a retry — is
//! [`Rejection::StaleAttempt`], so a late or duplicated result never changes state.

use chrono::{DateTime, Utc};
use conflux_schema::Event;
use serde_json::Value;
use uuid::Uuid;

use super::command::{Rejection, TaskRef};
use super::dispatch::deadline_from;
use super::state::{ExecutionState, TaskState};
use super::status::{ExecutionStatus, TaskStatus};

/// The task index and state of the attempt `task` names, once the execution started.
fn locate<'s>(
    state: &'s ExecutionState,
    task: &TaskRef,
) -> Result<(usize, &'s TaskState), Rejection> {
    if state.status == ExecutionStatus::NotStarted {
        return Err(Rejection::NotStarted);
    }
    let index = state
        .index_of(&task.task)
        .ok_or_else(|| Rejection::UnknownTask(task.task.as_str().to_owned()))?;
    let track = state
        .track(index, task.compensation)
        .ok_or_else(|| stale(task, 0))?;
    Ok((index, track))
}

fn stale(task: &TaskRef, current: u32) -> Rejection {
    Rejection::StaleAttempt {
        task: task.task.clone(),
        attempt: task.attempt,
        current,
        compensation: task.compensation,
    }
}

/// A live attempt of a terminal execution cannot exist (termination cancels them all);
/// this keeps the rule explicit rather than implied.
fn not_terminal(state: &ExecutionState) -> Result<(), Rejection> {
    if state.is_terminal() {
        return Err(Rejection::Terminal(state.status));
    }
    Ok(())
}

/// `StartTask`: the current attempt, dispatched and not started, starts now; its
/// deadline is `now` + the spec's `timeout_seconds`.
pub(crate) fn start(
    state: &ExecutionState,
    task: &TaskRef,
    agent_id: Option<Uuid>,
    lease_id: Option<Uuid>,
    routing: Option<conflux_schema::routing::Routing>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let (index, t) = locate(state, task)?;
    if t.attempt != task.attempt || t.status != TaskStatus::Scheduled || !t.dispatched {
        return Err(stale(task, t.attempt));
    }
    not_terminal(state)?;
    let deadline = state
        .spec(index, task.compensation)
        .and_then(|s| deadline_from(&s, now));
    Ok(vec![Event::TaskStarted {
        task_id: task.task.clone(),
        attempt: task.attempt,
        agent_id,
        lease_id,
        deadline,
        compensation: task.compensation,
        routing,
    }])
}

/// `NoteUnroutable`: `TaskUnroutable` for the current attempt while it is dispatched
/// and not started, once per reason; nothing otherwise (the note is advice, not a
/// transition, so a late one is no error).
pub(crate) fn unroutable(state: &ExecutionState, task: TaskRef, reason: String) -> Vec<Event> {
    let Ok((_, t)) = locate(state, &task) else {
        return Vec::new();
    };
    let waiting = t.attempt == task.attempt && t.status == TaskStatus::Scheduled && t.dispatched;
    if !waiting || state.is_terminal() || t.waiting_reason.as_deref() == Some(reason.as_str()) {
        return Vec::new();
    }
    vec![Event::TaskUnroutable {
        task_id: task.task,
        attempt: task.attempt,
        compensation: task.compensation,
        reason,
    }]
}

/// `Annotate`: `TaskAnnotated` for the current attempt of a forward task (a hook
/// answered around it; the attempt may have finished meanwhile — an agent can complete
/// before its `pre` hook's annotations are recorded).
pub(crate) fn annotate(
    state: &ExecutionState,
    task: TaskRef,
    phase: conflux_schema::task_hooks::HookPhase,
    annotations: Value,
) -> Result<Vec<Event>, Rejection> {
    let (_, t) = locate(state, &task)?;
    if t.attempt != task.attempt || task.compensation {
        return Err(stale(&task, t.attempt));
    }
    not_terminal(state)?;
    Ok(vec![Event::TaskAnnotated {
        task_id: task.task,
        attempt: task.attempt,
        phase,
        annotations,
    }])
}

/// `CompleteTask`: `TaskCompleted`, or for a compensation `TaskCompensated`.
pub(crate) fn complete(
    state: &ExecutionState,
    task: TaskRef,
    output: Value,
    usage: Option<conflux_schema::usage::Usage>,
) -> Result<Vec<Event>, Rejection> {
    let (_, t) = locate(state, &task)?;
    if !t.accepts_result(task.attempt) {
        return Err(stale(&task, t.attempt));
    }
    not_terminal(state)?;
    let spent = usage.map(|usage| spent(&task, usage));
    Ok(spent
        .into_iter()
        .chain([if task.compensation {
            Event::TaskCompensated {
                task_id: task.task,
                attempt: Some(task.attempt),
                output,
            }
        } else {
            Event::TaskCompleted {
                task_id: task.task,
                attempt: task.attempt,
                output,
            }
        }])
        .collect())
}

/// `UsageRecorded` of attempt `task`: what its agent reported with its result.
fn spent(task: &TaskRef, usage: conflux_schema::usage::Usage) -> Event {
    Event::UsageRecorded {
        task_id: task.task.clone(),
        attempt: task.attempt,
        compensation: task.compensation,
        usage,
    }
}

/// `FailTask`: `TaskFailed`; whether it is retried is decided by `Advance`.
pub(crate) fn fail(
    state: &ExecutionState,
    task: TaskRef,
    error: String,
    retryable: bool,
    usage: Option<conflux_schema::usage::Usage>,
) -> Result<Vec<Event>, Rejection> {
    let (_, t) = locate(state, &task)?;
    if !t.accepts_result(task.attempt) {
        return Err(stale(&task, t.attempt));
    }
    not_terminal(state)?;
    let spent = usage.map(|usage| spent(&task, usage));
    Ok(spent
        .into_iter()
        .chain([Event::TaskFailed {
            task_id: task.task,
            attempt: task.attempt,
            error,
            retryable,
            compensation: task.compensation,
        }])
        .collect())
}

/// `Heartbeat`: a running attempt with a timeout gets `TaskHeartbeat` with deadline
/// `now` + timeout. Without a timeout, or before the attempt started, there is nothing
/// to extend (an empty decision).
pub(crate) fn heartbeat(
    state: &ExecutionState,
    task: &TaskRef,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, Rejection> {
    let (index, t) = locate(state, task)?;
    if !t.accepts_result(task.attempt) {
        return Err(stale(task, t.attempt));
    }
    not_terminal(state)?;
    if t.status != TaskStatus::Running {
        return Ok(Vec::new());
    }
    let deadline = state
        .spec(index, task.compensation)
        .and_then(|s| deadline_from(&s, now));
    Ok(deadline
        .map(|deadline| Event::TaskHeartbeat {
            task_id: task.task.clone(),
            attempt: task.attempt,
            deadline: Some(deadline),
            compensation: task.compensation,
        })
        .into_iter()
        .collect())
}
