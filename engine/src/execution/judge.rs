//! Judging a ready task: whether it runs, is skipped, or fails before it starts.
//!
//! Once every dependency of a task has settled, its `trigger_rule` reads their
//! outcomes — `success` (completed, and on the branch its `switch` took), `skipped`, or
//! `failed` — and its `when` is evaluated over the execution input and the upstream
//! outputs. A `switch` runs here too: its cases are evaluated in the decision that
//! dispatches it. Pure functions of the state.

use std::collections::BTreeSet;

use conflux_schema::condition;
use conflux_schema::definition::{TaskKind, TriggerRule};
use serde_json::{json, Value};

use super::state::ExecutionState;
use super::status::TaskStatus;

/// What becomes of a ready task.
#[derive(Debug, PartialEq)]
pub(crate) enum Verdict {
    /// Schedule it.
    Run,
    /// Skip it, for this reason.
    Skip(String),
    /// It fails for good before it starts (its `when` cannot be evaluated).
    Fail(String),
}

/// How one upstream task ended, as its dependent sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Upstream {
    Success,
    Skipped,
    Failed,
}

/// Judges ready task `index`; `skipped_now` are tasks skipped earlier in the decision
/// being built (the state does not show them yet).
pub(crate) fn judge(s: &ExecutionState, index: usize, skipped_now: &BTreeSet<usize>) -> Verdict {
    let Some(task) = s.workflow.task(index) else {
        return Verdict::Run;
    };
    let (mut success, mut skipped, mut failed) = (0usize, 0usize, 0usize);
    let dependencies = s.workflow.dependencies(index);
    for &j in dependencies {
        match upstream(s, j as usize, index, skipped_now) {
            Upstream::Success => success += 1,
            Upstream::Skipped => skipped += 1,
            Upstream::Failed => failed += 1,
        }
    }
    let refusal = match task.trigger_rule {
        TriggerRule::AllSuccess if failed > 0 => Some("an upstream task failed"),
        TriggerRule::AllSuccess if skipped > 0 => Some("an upstream task was skipped"),
        TriggerRule::NoneFailed if failed > 0 => Some("an upstream task failed"),
        TriggerRule::OneSuccess if success == 0 && !dependencies.is_empty() => {
            Some("no upstream task succeeded")
        }
        _ => None,
    };
    if let Some(reason) = refusal {
        let rule = serde_json::to_value(task.trigger_rule).unwrap_or(Value::Null);
        let rule = rule.as_str().unwrap_or("all_success");
        return Verdict::Skip(format!("{reason} (trigger_rule {rule})"));
    }
    match &task.when {
        None => Verdict::Run,
        Some(when) => match condition::evaluate(when, s.input(), &|id| s.output_of(id)) {
            Ok(true) => Verdict::Run,
            Ok(false) => Verdict::Skip(format!("when `{when}` is false")),
            Err(e) => Verdict::Fail(format!("when: {e}")),
        },
    }
}

/// The output of switch `index`: the first case whose `when` holds, else `default`
/// (`{"case": <index or "default" or null>, "next": [task ids]}`).
pub(crate) fn choose(s: &ExecutionState, index: usize) -> Result<Value, String> {
    let Some(task) = s.workflow.task(index) else {
        return Err(format!("no task at index {index}"));
    };
    let outputs = |id: &str| s.output_of(id);
    for (k, case) in task.cases.iter().enumerate() {
        let holds = condition::evaluate(&case.when, s.input(), &outputs)
            .map_err(|e| format!("cases[{k}].when: {e}"))?;
        if holds {
            return Ok(json!({"case": k, "next": case.next}));
        }
    }
    Ok(match &task.default_next {
        Some(next) => json!({"case": "default", "next": next}),
        None => json!({"case": null, "next": []}),
    })
}

/// How upstream task `j` ended for its dependent `dependent`.
fn upstream(
    s: &ExecutionState,
    j: usize,
    dependent: usize,
    skipped_now: &BTreeSet<usize>,
) -> Upstream {
    if skipped_now.contains(&j) {
        return Upstream::Skipped;
    }
    let Some(t) = s.tasks.get(j) else {
        return Upstream::Failed;
    };
    match t.status {
        TaskStatus::Completed | TaskStatus::Compensated => {
            if took_branch(s, j, dependent) {
                Upstream::Success
            } else {
                Upstream::Skipped
            }
        }
        TaskStatus::Skipped => Upstream::Skipped,
        _ => Upstream::Failed,
    }
}

/// Whether `dependent` is on the branch upstream task `j` took: always, unless `j` is
/// a switch whose output's `next` does not name it.
fn took_branch(s: &ExecutionState, j: usize, dependent: usize) -> bool {
    if s.workflow
        .task(j)
        .is_none_or(|t| t.kind != TaskKind::Switch)
    {
        return true;
    }
    let (Some(next), Some(id)) = (
        s.tasks[j].output.as_ref().and_then(|o| o.get("next")),
        s.id(dependent),
    ) else {
        return false;
    };
    next.as_array()
        .is_some_and(|n| n.iter().any(|v| v.as_str() == Some(id.as_str())))
}
