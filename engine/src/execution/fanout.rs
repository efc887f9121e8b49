//! A `map`'s items: how evolve makes and counts them, and the step of a running map
//! (schedule its next items, or end it).
//!
//! A map's items are slots after the declared tasks (see `ExecutionState::maps`); evolve
//! keeps, per map, how many items were scheduled (in order), how many are done and the
//! first that failed for good, so this step costs what it emits. Items are retried by
//! the ordinary retry machinery with the template's policy; only an item that failed
//! for good reaches the map, which then fails at once (`fail_fast`: live items
//! cancelled, the rest skipped) or carries on (`collect`: its output is `null`).

use conflux_schema::definition::{FailurePolicy, Runs};
use conflux_schema::kind::map::MAX_ITEMS;
use conflux_schema::Event;
use serde_json::Value;

use super::state::{ExecutionState, MapRun, TaskState};
use super::status::{ExecutionStatus, TaskStatus};

impl ExecutionState {
    /// Map task `index` was dispatched with `count` items: its item slots are made
    /// (once; a map is not retried).
    pub(super) fn open_map(&mut self, index: usize, count: usize) {
        let is_map = self
            .workflow
            .task(index)
            .is_some_and(|t| t.kind.runs() == Runs::Items);
        if !is_map || self.maps.contains_key(&index) {
            return;
        }
        let count = count.min(MAX_ITEMS);
        let Some(map_id) = self.id(index).cloned() else {
            return;
        };
        let first = self.tasks.len();
        for k in 0..count {
            self.tasks.push(TaskState::default());
            self.items.push((index, map_id.item(k)));
        }
        let run = MapRun {
            first,
            count,
            scheduled: 0,
            done: 0,
            failed: None,
        };
        self.maps.insert(index, run);
    }

    /// Item slot `index` is done; `failed`: it failed for good.
    pub(super) fn item_done(&mut self, index: usize, failed: bool) {
        let Some((map, k)) = self.item_at(index) else {
            return;
        };
        if let Some(run) = self.maps.get_mut(&map) {
            run.done += 1;
            if failed {
                run.failed.get_or_insert(k);
            }
        }
    }
}

/// What the map steps decided.
#[derive(Default)]
pub(crate) struct MapStep {
    /// Item slots whose first attempt is due now.
    pub(crate) schedule: Vec<usize>,
    /// Whether a map ended (completed or failed) in `out`.
    pub(crate) ended: bool,
}

/// One step of every running map of `s`, appending what ends a map to `out`.
pub(crate) fn step(s: &ExecutionState, out: &mut Vec<Event>) -> MapStep {
    let mut decided = MapStep::default();
    if s.status != ExecutionStatus::Running {
        return decided;
    }
    for (&map, run) in &s.maps {
        let Some(task) = s.workflow.task(map) else {
            continue;
        };
        let running = s
            .tasks
            .get(map)
            .is_some_and(|t| t.status == TaskStatus::Running);
        // A map schedules items only while it runs (not once it completed, failed
        // or was cancelled).
        if !running {
            continue;
        }
        let fail_fast = task.failure_policy == FailurePolicy::FailFast;
        match run.failed {
            Some(k) if fail_fast => {
                fail_map(s, map, run, k, out);
                decided.ended = true;
            }
            _ if run.done >= run.count => {
                complete_map(s, map, run, out);
                decided.ended = true;
            }
            _ => {
                let live = run.scheduled.saturating_sub(run.done);
                let limit = task.max_parallel.map_or(run.count, |m| m as usize);
                let room = limit.saturating_sub(live);
                let next = run.scheduled..run.count.min(run.scheduled + room);
                decided.schedule.extend(next.map(|k| run.first + k));
            }
        }
    }
    decided
}

/// Every item done: the map completes with their outputs in order (`null` for one that
/// did not complete).
fn complete_map(s: &ExecutionState, map: usize, run: &MapRun, out: &mut Vec<Event>) {
    let (Some(task_id), Some(t)) = (s.id(map).cloned(), s.tasks.get(map)) else {
        return;
    };
    let outputs = (0..run.count)
        .map(|k| match s.tasks.get(run.first + k) {
            Some(item) if item.status == TaskStatus::Completed => {
                item.output.clone().unwrap_or(Value::Null)
            }
            _ => Value::Null,
        })
        .collect();
    out.push(Event::TaskCompleted {
        task_id,
        attempt: t.attempt,
        output: Value::Array(outputs),
    });
}

/// Item `k` failed for good under `fail_fast`: live items are cancelled, pending ones
/// skipped, and the map fails for good with the item's error.
fn fail_map(s: &ExecutionState, map: usize, run: &MapRun, k: usize, out: &mut Vec<Event>) {
    let (Some(task_id), Some(t)) = (s.id(map).cloned(), s.tasks.get(map)) else {
        return;
    };
    let end = run.first + run.count;
    for &i in s.live.range(run.first..end) {
        if let Some(id) = s.id(i) {
            out.push(Event::TaskCancelled {
                task_id: id.clone(),
                attempt: s.tasks[i].attempt,
                compensation: false,
            });
        }
    }
    for i in run.first + run.scheduled..end {
        if let Some(id) = s.id(i) {
            out.push(Event::TaskSkipped {
                task_id: id.clone(),
                reason: format!("item {k} of `{task_id}` failed"),
            });
        }
    }
    let error = s
        .tasks
        .get(run.first + k)
        .and_then(|item| item.error.clone())
        .unwrap_or_default();
    out.push(Event::TaskFailed {
        task_id,
        attempt: t.attempt,
        error: format!("item {k} failed: {error}"),
        retryable: false,
        compensation: false,
    });
}
