//! `Advance`: the process-manager step the engine runs after applying any event.
//!
//! Given the state, it emits everything that must happen *now*, in one decision, so
//! that applying that decision and advancing again yields nothing until something else
//! happens (an attempt finishes, a timer fires, a command arrives, time passes a due
//! retry). While running, in this order:
//!
//! 1. every task completed → `ExecutionCompleted` (output: the sink outputs by id);
//! 2. a failure that cannot be retried → the execution fails ([`fail`]);
//! 3. every other failure → `TaskRetryScheduled` (backoff from the task's policy);
//! 4. due retries, scheduled-but-undispatched attempts and ready tasks →
//!    `TaskScheduled` + `TaskDispatched` (inputs resolved); an input that does not
//!    resolve fails its task for good, and the execution with it.
//!
//! While compensating it drives the saga ([`super::saga`]); paused, not started or
//! terminal, it does nothing. Work is proportional to the ready, retrying and failed
//! tasks, never to the whole graph (except once, when the execution fails).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use conflux_schema::definition::OnFailure;
use conflux_schema::Event;
use serde_json::{Map, Value};

use super::dispatch::{add, schedule_and_dispatch_at, spec_of};
use super::saga;
use super::state::ExecutionState;
use super::status::{ExecutionStatus, TaskStatus};

/// The events `Advance` decides on `state` at `now` (see the module docs).
pub(crate) fn advance(state: &ExecutionState, now: DateTime<Utc>) -> Vec<Event> {
    let mut out = Vec::new();
    match state.status {
        ExecutionStatus::Running => running(state, now, &mut out),
        ExecutionStatus::Compensating => saga::advance(state, now, &mut out),
        _ => {}
    }
    out
}

/// Attempts made live by events earlier in the decision being built, which the state
/// does not show yet: a failure later in the same decision must cancel them too.
#[derive(Default)]
pub(crate) struct Overlay {
    /// Task index → the attempt that became live.
    live: BTreeMap<usize, u32>,
    /// Tasks whose first attempt was scheduled (no longer pending).
    scheduled: BTreeSet<usize>,
}

/// Whether the latest failure of task `index` (or of its compensation) may be retried.
pub(crate) fn can_retry(state: &ExecutionState, index: usize, compensation: bool) -> bool {
    let Some(track) = state.track(index, compensation) else {
        return false;
    };
    let max = spec_of(&state.workflow, index, compensation).map_or(1, |s| s.max_attempts());
    track.retryable && track.attempt < max
}

/// `TaskRetryScheduled` for the failed attempt of task `index` (or its compensation);
/// returns the planned attempt and whether it is already due.
pub(crate) fn plan_retry(
    state: &ExecutionState,
    index: usize,
    compensation: bool,
    now: DateTime<Utc>,
    out: &mut Vec<Event>,
) -> Option<(u32, bool)> {
    let track = state.track(index, compensation)?;
    let spec = spec_of(&state.workflow, index, compensation)?;
    let next = track.attempt.saturating_add(1);
    let due_at = add(now, spec.delay_after(track.attempt));
    out.push(Event::TaskRetryScheduled {
        task_id: state.id(index)?.clone(),
        attempt: next,
        due_at,
        compensation,
    });
    Some((next, due_at <= now))
}

fn running(s: &ExecutionState, now: DateTime<Utc>, out: &mut Vec<Event>) {
    if s.completion_order.len() == s.tasks.len() {
        out.push(Event::ExecutionCompleted {
            output: sink_outputs(s),
        });
        return;
    }
    if let Some(&i) = s.unresolved.iter().find(|&&i| !can_retry(s, i, false)) {
        let error = s.tasks[i].error.clone().unwrap_or_default();
        fail(s, Some(i), error, &Overlay::default(), out);
        return;
    }
    let mut overlay = Overlay::default();
    let mut work: Vec<(usize, u32, bool)> = Vec::new();
    for &i in &s.retrying {
        let t = &s.tasks[i];
        if t.retry_due_at.is_none_or(|due| due <= now) {
            work.push((i, t.attempt, true));
        }
    }
    for &i in &s.unresolved {
        if let Some((next, due)) = plan_retry(s, i, false, now, out) {
            overlay.live.insert(i, next);
            if due {
                work.push((i, next, true));
            }
        }
    }
    work.extend(
        s.undispatched
            .iter()
            .map(|&i| (i, s.tasks[i].attempt, false)),
    );
    work.extend(s.ready.iter().map(|i| (i, 1, true)));
    for (i, attempt, schedule) in work {
        overlay.scheduled.insert(i);
        match schedule_and_dispatch_at(s, i, attempt, schedule, now, out) {
            Ok(()) => {
                overlay.live.insert(i, attempt);
            }
            Err(error) => {
                overlay.live.remove(&i);
                fail(s, Some(i), error, &overlay, out);
                return;
            }
        }
    }
}

/// The execution output: each sink task's output under its id.
fn sink_outputs(s: &ExecutionState) -> Value {
    let mut map = Map::new();
    for &i in s.workflow.sinks() {
        let i = i as usize;
        if let Some(id) = s.id(i) {
            let output = s.tasks[i].output.clone().unwrap_or(Value::Null);
            map.insert(id.as_str().to_owned(), output);
        }
    }
    Value::Object(map)
}

/// The execution fails: task `failed` failed for good with `error` (or, with `None`,
/// `error` says why, e.g. the workflow timed out). Every other live attempt is
/// cancelled, every never-scheduled task skipped; then `ExecutionFailed`, or under
/// `on_failure: compensate`, `CompensationStarted` and the saga's first step.
pub(crate) fn fail(
    s: &ExecutionState,
    failed: Option<usize>,
    error: String,
    overlay: &Overlay,
    out: &mut Vec<Event>,
) {
    let mut live: BTreeMap<usize, u32> = s.live.iter().map(|&i| (i, s.tasks[i].attempt)).collect();
    live.extend(overlay.live.iter().map(|(&i, &a)| (i, a)));
    if let Some(f) = failed {
        live.remove(&f);
    }
    for (i, attempt) in live {
        if let Some(task_id) = s.id(i) {
            out.push(Event::TaskCancelled {
                task_id: task_id.clone(),
                attempt,
                compensation: false,
            });
        }
    }
    for (i, t) in s.tasks.iter().enumerate() {
        if t.status == TaskStatus::Pending && !overlay.scheduled.contains(&i) && Some(i) != failed {
            if let Some(task_id) = s.id(i) {
                out.push(Event::TaskSkipped {
                    task_id: task_id.clone(),
                    reason: "the execution failed before the task could run".to_owned(),
                });
            }
        }
    }
    let failed_task = failed.and_then(|i| s.id(i)).cloned();
    let message = match &failed_task {
        Some(id) => format!("task `{id}` failed: {error}"),
        None => error,
    };
    match s.workflow.definition().on_failure {
        OnFailure::Fail => out.push(Event::ExecutionFailed {
            error: message,
            failed_task,
        }),
        OnFailure::Compensate => {
            out.push(Event::CompensationStarted {
                failed_task: failed_task.clone(),
                error: Some(message.clone()),
            });
            saga::next(s, s.completion_order.len(), failed_task, &message, out);
        }
    }
}
