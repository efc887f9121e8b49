//! `Advance`: the process-manager step the engine runs after applying any event.
//!
//! Given the state, it emits everything that must happen *now*, in one decision, so
//! that applying that decision and advancing again yields nothing until something else
//! happens (an attempt finishes, a timer fires, a command arrives, time passes a due
//! retry). While running, in this order:
//!
//! 1. every task settled (completed, skipped, or failed where a downstream trigger
//!    rule tolerates it) → `ExecutionCompleted` (output: the completed sinks by id);
//! 2. a failure that cannot be retried → the execution fails ([`fail`]);
//! 3. every other failure → `TaskRetryScheduled` (backoff from the task's policy);
//! 4. ready tasks are judged ([`super::judge`]): trigger rule and `when` may skip
//!    them (and, in the same decision, what that skip makes ready);
//! 5. due retries, scheduled-but-undispatched attempts and ready tasks to run →
//!    `TaskScheduled` + `TaskDispatched` (inputs resolved; a `switch` also starts and
//!    completes with its choice); an input that does not resolve fails its task for
//!    good, and the execution with it unless a downstream trigger rule tolerates it.
//!
//! While compensating it drives the saga ([`super::saga`]); paused, not started or
//! terminal, it does nothing. Work is proportional to the ready, retrying and failed
//! tasks, never to the whole graph (except once, when the execution fails).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use chrono::{DateTime, Utc};
use conflux_schema::definition::{OnFailure, Runs};
use conflux_schema::{Event, TaskId};
use serde_json::{Map, Value};

use super::dispatch::{add, schedule_and_dispatch_at};
use super::evolve::fold_provisional;
use super::fanout;
use super::judge::{choose, judge, Verdict};
use super::saga;
use super::state::ExecutionState;
use super::status::{ExecutionStatus, TaskStatus};

/// The events `Advance` decides on `state` at `now` (see the module docs).
pub(crate) fn advance(state: &ExecutionState, now: DateTime<Utc>) -> Vec<Event> {
    let mut out = Vec::new();
    // Past its budget, an execution dispatches nothing more: it fails (or compensates).
    if let (ExecutionStatus::Running | ExecutionStatus::Paused, Some(why)) =
        (state.status, state.over_budget())
    {
        fail(state, None, why, &Overlay::default(), &mut out);
        return out;
    }
    let settled_inline = match state.status {
        ExecutionStatus::Running => running(state, now, &mut out),
        ExecutionStatus::Compensating => {
            saga::advance(state, now, &mut out);
            false
        }
        _ => false,
    };
    if settled_inline {
        // A switch completed or tasks were skipped in this decision: what that makes
        // ready (or complete) is decided in it too, step after step on the state the
        // events will make, so that advancing again finds nothing. Each step settles
        // at least one more task, so this ends.
        let mut provisional = fold_provisional(state.clone(), &out, now);
        loop {
            let mut more = Vec::new();
            let again = provisional.status == ExecutionStatus::Running
                && running(&provisional, now, &mut more);
            if more.is_empty() {
                break;
            }
            provisional = fold_provisional(provisional, &more, now);
            out.extend(more);
            if !again {
                break;
            }
        }
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
    let max = state
        .spec(index, compensation)
        .map_or(1, |s| s.max_attempts());
    track.retryable && track.attempt.saturating_sub(track.redrive_base) < max
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
    let spec = state.spec(index, compensation)?;
    let next = track.attempt.saturating_add(1);
    let due_at = add(
        now,
        spec.delay_after(track.attempt.saturating_sub(track.redrive_base)),
    );
    out.push(Event::TaskRetryScheduled {
        task_id: state.id(index)?.clone(),
        attempt: next,
        due_at,
        compensation,
    });
    Some((next, due_at <= now))
}

/// One step while running; returns whether it settled a task without a runner (a
/// skip, a switch's choice, a failure before the task ran that a rule tolerates).
fn running(s: &ExecutionState, now: DateTime<Utc>, out: &mut Vec<Event>) -> bool {
    if s.settled == s.workflow.len() {
        out.push(Event::ExecutionCompleted {
            output: sink_outputs(s),
        });
        return false;
    }
    if let Some(&i) = s.unresolved.iter().find(|&&i| !can_retry(s, i, false)) {
        let error = s.tasks[i].error.clone().unwrap_or_default();
        fail(s, Some(i), error, &Overlay::default(), out);
        return false;
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
    let maps = fanout::step(s, out);
    let Some((ready, mut settled_inline)) = judge_ready(s, &mut overlay, out) else {
        return false;
    };
    settled_inline |= maps.ended;
    // A task's first attempt is 1; one a redrive made pending again goes on from its
    // last attempt.
    work.extend(
        ready
            .into_iter()
            .map(|i| (i, s.tasks[i].attempt.saturating_add(1), true)),
    );
    work.extend(maps.schedule.into_iter().map(|i| (i, 1, true)));
    for (i, attempt, schedule) in work {
        overlay.scheduled.insert(i);
        let runs = s.workflow.task(i).map(|t| t.kind.runs());
        let inline = runs == Some(Runs::Inline);
        let before = out.len();
        let dispatched = schedule_and_dispatch_at(s, i, attempt, schedule, now, out);
        // A waiting task may complete as it is dispatched (a signal kept for it).
        let done_now = out[before..]
            .iter()
            .any(|e| matches!(e, Event::TaskCompleted { task_id, .. } if s.id(i) == Some(task_id)));
        let result = match dispatched {
            Ok(()) if inline => run_inline(s, i, attempt, out),
            Ok(()) if runs == Some(Runs::Items) => {
                start_map(s, i, attempt, out);
                // Its items exist once this is applied: step again.
                settled_inline = true;
                Ok(())
            }
            other => other,
        };
        match result {
            Ok(()) if inline || done_now => settled_inline = true,
            Ok(()) => {
                overlay.live.insert(i, attempt);
            }
            // An item that cannot resolve failed for good: its map decides next step.
            Err(_) if s.is_item(i) => {
                overlay.live.remove(&i);
                settled_inline = true;
            }
            // Failed for good before it ran, where a downstream rule goes on past it.
            Err(_) if s.failure_tolerated(i) => {
                overlay.live.remove(&i);
                settled_inline = true;
            }
            Err(error) => {
                overlay.live.remove(&i);
                fail(s, Some(i), error, &overlay, out);
                return false;
            }
        }
    }
    settled_inline
}

/// Judges every ready task (see [`super::judge`]): skips those whose trigger rule or
/// `when` say so — and, in the same decision, the dependents that skipping makes ready
/// — and fails those whose `when` cannot be evaluated. Returns the tasks to run and
/// whether any task settled here, or `None` when a failure ended the execution (its
/// events are in `out`).
fn judge_ready(
    s: &ExecutionState,
    overlay: &mut Overlay,
    out: &mut Vec<Event>,
) -> Option<(Vec<usize>, bool)> {
    let mut queue: VecDeque<usize> = s.ready.iter().collect();
    let mut skipped_now = BTreeSet::new();
    let mut settled_now: BTreeMap<usize, u32> = BTreeMap::new();
    let mut run = Vec::new();
    let mut settled = false;
    while let Some(i) = queue.pop_front() {
        let Some(task_id) = s.id(i).cloned() else {
            continue;
        };
        match judge(s, i, &skipped_now) {
            Verdict::Run => run.push(i),
            Verdict::Skip(reason) => {
                out.push(Event::TaskSkipped { task_id, reason });
                skipped_now.insert(i);
                settled = true;
                overlay.scheduled.insert(i);
                for &d in s.workflow.dependents(i) {
                    let d = d as usize;
                    let settled = settled_now.entry(d).or_default();
                    *settled += 1;
                    let pending = s
                        .tasks
                        .get(d)
                        .is_some_and(|t| t.status == TaskStatus::Pending);
                    if pending && s.ready.remaining(d) == *settled {
                        queue.push_back(d);
                    }
                }
            }
            Verdict::Fail(error) => {
                overlay.scheduled.insert(i);
                let attempt = s.tasks[i].attempt.saturating_add(1);
                out.push(Event::TaskScheduled {
                    task_id: task_id.clone(),
                    attempt,
                    compensation: false,
                });
                out.push(Event::TaskFailed {
                    task_id,
                    attempt,
                    error: error.clone(),
                    retryable: false,
                    compensation: false,
                });
                if !s.failure_tolerated(i) {
                    fail(s, Some(i), error, overlay, out);
                    return None;
                }
                settled = true;
            }
        }
    }
    Some((run, settled))
}

/// A map just dispatched (its items recorded in the `TaskDispatched` in `out`) starts
/// and makes its item slots (`MapExpanded`); the map step schedules them from the next
/// step on.
fn start_map(s: &ExecutionState, index: usize, attempt: u32, out: &mut Vec<Event>) {
    let count = match out.last() {
        Some(Event::TaskDispatched { input, .. }) => input.as_array().map_or(0, Vec::len),
        _ => 0,
    };
    if let Some(task_id) = s.id(index).cloned() {
        out.push(started_by_the_core(&task_id, attempt));
        out.push(Event::MapExpanded {
            task_id,
            attempt,
            count: u32::try_from(count).unwrap_or(u32::MAX),
        });
    }
}

/// `TaskStarted` of an attempt the core itself runs (no agent, lease or deadline).
fn started_by_the_core(task_id: &TaskId, attempt: u32) -> Event {
    Event::TaskStarted {
        task_id: task_id.clone(),
        attempt,
        agent_id: None,
        lease_id: None,
        deadline: None,
        compensation: false,
        routing: None,
    }
}

/// Runs an inline attempt (a `switch`) just dispatched: `TaskStarted`, then
/// `TaskCompleted` with its choice, or `TaskFailed` (for good) when a case cannot be
/// evaluated, whose error is returned.
fn run_inline(
    s: &ExecutionState,
    index: usize,
    attempt: u32,
    out: &mut Vec<Event>,
) -> Result<(), String> {
    let Some(task_id) = s.id(index).cloned() else {
        return Err(format!("no task at index {index}"));
    };
    out.push(started_by_the_core(&task_id, attempt));
    match choose(s, index) {
        Ok(output) => {
            out.push(Event::TaskCompleted {
                task_id,
                attempt,
                output,
            });
            Ok(())
        }
        Err(error) => {
            out.push(Event::TaskFailed {
                task_id,
                attempt,
                error: error.clone(),
                retryable: false,
                compensation: false,
            });
            Err(error)
        }
    }
}

/// The execution output: each completed sink task's output under its id (a skipped or
/// tolerated-failed sink has none).
fn sink_outputs(s: &ExecutionState) -> Value {
    let mut map = Map::new();
    for &i in s.workflow.sinks() {
        let i = i as usize;
        if s.tasks[i].status != TaskStatus::Completed {
            continue;
        }
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
                    reason: super::dead_letter::SKIPPED_BY_FAILURE.to_owned(),
                });
            }
        }
    }
    let failed_task = failed.and_then(|i| s.id(i)).cloned();
    let dead = failed.and_then(|i| super::dead_letter::dead_lettered(s, i, &error, out));
    out.extend(dead);
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
