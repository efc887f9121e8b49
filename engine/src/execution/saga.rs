//! The saga: undoing completed work when an execution fails under
//! `on_failure: compensate`.
//!
//! Compensations run one at a time, newest completion first, and only for tasks that
//! completed and have a `compensate` spec. Each is an ordinary attempt sequence of that
//! task with `compensation = true` (its own retry policy and timeout; input resolved
//! with the outputs of completed tasks). Success records `TaskCompensated` and moves to
//! the next; a compensation that fails for good records `CompensationFailed` and stops
//! the saga. The end is always `ExecutionFailed`: status `compensated` when every
//! compensation succeeded (or none was needed), `failed` otherwise.

use chrono::{DateTime, Utc};
use conflux_schema::{Event, TaskId};

use super::advance::{can_retry, plan_retry};
use super::dispatch::schedule_and_dispatch;
use super::state::ExecutionState;
use super::status::TaskStatus;

/// The saga step of `Advance` while the execution is compensating.
pub(crate) fn advance(s: &ExecutionState, now: DateTime<Utc>, out: &mut Vec<Event>) {
    let Some(saga) = &s.saga else { return };
    let (failed_task, error) = (saga.failed_task.clone(), saga.error.as_str());
    let current = saga
        .current
        .and_then(|i| Some((i, s.compensations.get(&i)?)));
    if saga.failed {
        // `CompensationFailed` is applied but its `ExecutionFailed` is not (yet).
        let (task, reason) = current
            .map(|(i, t)| (s.id(i), t.error.clone().unwrap_or_default()))
            .unwrap_or_default();
        let error = match task {
            Some(id) => stopped(error, id, &reason),
            None => error.to_owned(),
        };
        out.push(Event::ExecutionFailed { error, failed_task });
        return;
    }
    let Some((i, t)) = current else {
        next(s, saga.cursor, failed_task, error, out);
        return;
    };
    let step = match t.status {
        TaskStatus::Scheduled if !t.dispatched => {
            schedule_and_dispatch(s, i, t.attempt, true, false, out)
        }
        TaskStatus::Retrying if t.retry_due_at.is_none_or(|due| due <= now) => {
            schedule_and_dispatch(s, i, t.attempt, true, true, out)
        }
        TaskStatus::Failed | TaskStatus::TimedOut if can_retry(s, i, true) => {
            match plan_retry(s, i, true, now, out) {
                Some((next, true)) => schedule_and_dispatch(s, i, next, true, true, out),
                _ => Ok(()),
            }
        }
        TaskStatus::Failed | TaskStatus::TimedOut => Err(t.error.clone().unwrap_or_default()),
        TaskStatus::Completed => {
            next(s, saga.cursor, failed_task, error, out);
            return;
        }
        _ => Ok(()),
    };
    if let Err(reason) = step {
        give_up(s, i, &reason, failed_task, error, out);
    }
}

/// Schedules the compensation of the newest task in `completion_order[..cursor]` that
/// completed and has a `compensate` spec; with none left, the saga ends in
/// `ExecutionFailed` (the execution is then `compensated`).
pub(crate) fn next(
    s: &ExecutionState,
    cursor: usize,
    failed_task: Option<TaskId>,
    error: &str,
    out: &mut Vec<Event>,
) {
    let candidates = &s.completion_order[..cursor.min(s.completion_order.len())];
    let target = candidates.iter().rev().copied().find(|&i| {
        s.tasks[i].status == TaskStatus::Completed
            && s.workflow.task(i).is_some_and(|t| t.compensate.is_some())
    });
    match target {
        Some(i) => {
            if let Err(reason) = schedule_and_dispatch(s, i, 1, true, true, out) {
                give_up(s, i, &reason, failed_task, error, out);
            }
        }
        None => out.push(Event::ExecutionFailed {
            error: error.to_owned(),
            failed_task,
        }),
    }
}

/// The compensation of task `index` failed for good: the saga stops.
fn give_up(
    s: &ExecutionState,
    index: usize,
    reason: &str,
    failed_task: Option<TaskId>,
    error: &str,
    out: &mut Vec<Event>,
) {
    let Some(id) = s.id(index) else { return };
    out.push(Event::CompensationFailed {
        task_id: id.clone(),
        error: reason.to_owned(),
    });
    out.push(Event::ExecutionFailed {
        error: stopped(error, id, reason),
        failed_task,
    });
}

/// The final error of a saga stopped by the compensation of `id`.
fn stopped(error: &str, id: &TaskId, reason: &str) -> String {
    format!("{error}; the compensation of task `{id}` failed: {reason}")
}
