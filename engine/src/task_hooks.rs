//! The shell side of tasks' `pre` and `post` hooks ([`conflux_schema::task_hooks`]):
//! calling a hook around an attempt and turning its answer into the commands that
//! record it — `Annotate` for annotations, `FailTask` for a veto (not retried) or a
//! hook that failed (retried by the task's policy). The effect performer calls the
//! `pre` hook before a built-in runs or an agent ticket is queued, and the `post` hook
//! when a built-in succeeds; the agent service calls the `post` hook when an agent
//! reports success, before it records the result.

use conflux_schema::task_hooks::{HookCall, HookPhase, HookVerdict};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::execution::{Command, TaskRef};
use crate::runner::BuiltinRunner;

/// What a hook's answer means for its attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum HookOutcome {
    /// The attempt goes on; record this `Annotate` first, if any.
    Proceed(Option<Command>),
    /// The attempt stops: record this `FailTask`.
    Stop(Command),
}

/// Calls `hook` (`phase`) for attempt `task` of `execution`. The body is
/// `{"phase", "execution_id", "task_id", "attempt", "input" | "output"}`: the input as
/// recorded (secrets as `${secrets.NAME}` references), or the attempt's output.
pub async fn call(
    runner: &BuiltinRunner,
    tenant: &str,
    execution: Uuid,
    task: &TaskRef,
    phase: HookPhase,
    hook: &HookCall,
    payload: &Value,
) -> HookOutcome {
    let key = match phase {
        HookPhase::Pre => "input",
        HookPhase::Post => "output",
    };
    let body = json!({
        "phase": phase.as_str(),
        "execution_id": execution,
        "task_id": task.task.as_str(),
        "attempt": task.attempt,
        key: payload,
    });
    let answer = runner.call_hook(tenant, hook, &body).await;
    let label = match &answer {
        Ok(HookVerdict::Proceed(_)) => "proceed",
        Ok(HookVerdict::Veto(_)) => "veto",
        Err(_) => "failed",
    };
    metrics::counter!("conflux_task_hooks_total", "phase" => phase.as_str(), "outcome" => label)
        .increment(1);
    let fail = |error: String, retryable: bool| {
        HookOutcome::Stop(Command::FailTask {
            task: task.clone(),
            error,
            retryable,
            usage: None,
        })
    };
    match answer {
        Ok(HookVerdict::Proceed(annotations)) => {
            // A `pre` hook's go-on is always recorded (empty annotations say only
            // that), so a re-sent dispatch of the attempt does not ask again.
            let annotations = match (annotations, phase) {
                (Some(a), _) => Some(a),
                (None, HookPhase::Pre) => Some(Value::Object(Default::default())),
                (None, HookPhase::Post) => None,
            };
            HookOutcome::Proceed(annotations.map(|annotations| Command::Annotate {
                task: task.clone(),
                phase,
                annotations,
            }))
        }
        Ok(HookVerdict::Veto(reason)) => fail(
            format!("vetoed by its {} hook: {reason}", phase.as_str()),
            false,
        ),
        Err(error) => fail(format!("its {} hook failed: {error}", phase.as_str()), true),
    }
}
