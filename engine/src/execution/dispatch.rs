//! Scheduling and dispatching one attempt.
//!
//! An attempt runs either a task's own spec or its `compensate` spec (`ExecutionState::spec` hides
//! the difference). At dispatch, every `${...}` in its input (and, for `http`, in its
//! url, headers and body) is resolved against the execution input and the outputs of
//! completed tasks, and the result is recorded in `TaskDispatched`: the log shows
//! exactly what ran, and replay never re-resolves anything. What is recorded is a
//! template (`conflux_schema::reference::resolve`): `${secrets.NAME}` stays a
//! reference, whose value the runner or the agent poll puts in, in memory only.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use conflux_schema::definition::{HttpSpec, Runs, TaskBody};
use conflux_schema::kind::map::MAX_ITEMS;
use conflux_schema::reference::{resolve_item, ItemScope};
use conflux_schema::Event;
use serde_json::Value;

use super::state::ExecutionState;

/// The deadline of an attempt of `spec` starting (or heartbeating) at `now`.
pub(crate) fn deadline_from(spec: &TaskBody<'_>, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    spec.timeout().map(|t| add(now, t))
}

/// `at + duration`, saturating at the latest representable time.
pub(crate) fn add(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    TimeDelta::from_std(duration)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// An attempt's input and request with every reference resolved.
pub(crate) struct Resolved {
    pub(crate) input: Value,
    pub(crate) http: Option<HttpSpec>,
}

/// Resolves `spec` against the execution input and completed outputs of `state` (and,
/// for a map's item, its element and index). A map's own attempt resolves its `items`
/// instead, which must give an array of at most [`MAX_ITEMS`].
pub(crate) fn resolve_spec(
    state: &ExecutionState,
    spec: &TaskBody<'_>,
    item: ItemScope<'_>,
) -> Result<Resolved, String> {
    let outputs = |id: &str| state.output_of(id);
    let resolve = |value: &Value| resolve_item(value, state.input(), &outputs, item);
    if let Some(items) = spec.items {
        let input = match resolve(items)? {
            Value::Array(items) if items.len() > MAX_ITEMS => {
                return Err(format!(
                    "items has {} elements, more than {MAX_ITEMS}",
                    items.len()
                ))
            }
            Value::Array(items) => Value::Array(items),
            other => {
                let shown: String = other.to_string().chars().take(80).collect();
                return Err(format!("items is not an array: {shown}"));
            }
        };
        return Ok(Resolved { input, http: None });
    }
    let input = resolve(spec.input)?;
    let text = |raw: &str| -> Result<String, String> {
        match resolve(&Value::String(raw.to_owned()))? {
            Value::String(s) => Ok(s),
            other => Ok(other.to_string()),
        }
    };
    let http = match spec.http {
        None => None,
        Some(h) => Some(HttpSpec {
            method: h.method.clone(),
            url: text(&h.url)?,
            headers: h
                .headers
                .iter()
                .map(|(k, v)| Ok((k.clone(), text(v)?)))
                .collect::<Result<_, String>>()?,
            body: h.body.as_ref().map(resolve).transpose()?,
        }),
    };
    Ok(Resolved { input, http })
}

/// Appends the events that schedule (when `schedule`) and dispatch attempt `attempt`
/// of task `index` (or of its compensation). If resolution fails, the attempt is
/// scheduled and fails non-retryably instead (`TaskFailed`), and the error is returned
/// so the caller can handle the failure in the same decision.
pub(crate) fn schedule_and_dispatch(
    state: &ExecutionState,
    index: usize,
    attempt: u32,
    compensation: bool,
    schedule: bool,
    out: &mut Vec<Event>,
) -> Result<(), String> {
    dispatch_at(state, index, attempt, compensation, schedule, None, out)
}

/// [`schedule_and_dispatch`] for a forward attempt at `now`: an attempt of a waiting
/// kind (`Runs::Waits`) also starts in the same decision (see `waits`), and may
/// complete there.
pub(crate) fn schedule_and_dispatch_at(
    state: &ExecutionState,
    index: usize,
    attempt: u32,
    schedule: bool,
    now: DateTime<Utc>,
    out: &mut Vec<Event>,
) -> Result<(), String> {
    dispatch_at(state, index, attempt, false, schedule, Some(now), out)
}

fn dispatch_at(
    state: &ExecutionState,
    index: usize,
    attempt: u32,
    compensation: bool,
    schedule: bool,
    now: Option<DateTime<Utc>>,
    out: &mut Vec<Event>,
) -> Result<(), String> {
    let Some(task_id) = state.id(index).cloned() else {
        return Err(format!("no task at index {index}"));
    };
    if schedule {
        out.push(Event::TaskScheduled {
            task_id: task_id.clone(),
            attempt,
            compensation,
        });
    }
    let item = if compensation {
        None
    } else {
        state.item_scope(index)
    };
    let spec = state.spec(index, compensation);
    let resolved = match &spec {
        Some(spec) => resolve_spec(state, spec, item),
        None => Err(format!("task `{task_id}` has no compensate spec")),
    };
    match resolved {
        Ok(Resolved { input, http }) => {
            let priority = spec
                .as_ref()
                .filter(|s| s.kind.runs() == Runs::Agent)
                .and_then(|s| s.priority.or(state.priority))
                .filter(|p| *p != conflux_schema::kind::DEFAULT_PRIORITY);
            out.push(Event::TaskDispatched {
                task_id,
                attempt,
                input,
                deadline: None,
                http,
                compensation,
                priority,
            });
            // A waiting or child attempt starts as it is dispatched (see `waits`).
            let waits = spec
                .filter(|s| matches!(s.kind.runs(), Runs::Waits | Runs::Child) && !compensation);
            if let (Some(spec), Some(now)) = (waits, now) {
                super::waits::begin(state, index, attempt, &spec, now, out);
            }
            Ok(())
        }
        Err(reason) => {
            let error = format!("cannot resolve the task's references: {reason}");
            out.push(Event::TaskFailed {
                task_id,
                attempt,
                error: error.clone(),
                retryable: false,
                compensation,
            });
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use conflux_schema::definition::WorkflowDefinition;
    use conflux_schema::validate::{validate, Limits};
    use serde_json::json;

    use conflux_schema::definition::TaskKind;
    use conflux_schema::validate::ValidatedWorkflow;

    use super::*;

    fn workflow() -> Arc<ValidatedWorkflow> {
        let def: WorkflowDefinition = serde_json::from_value(json!({
            "name": "w",
            "tasks": [
                {"id": "a", "kind": "http", "timeout_seconds": 5,
                 "http": {"url": "http://h/${input.n}", "headers": {"x-n": "${input.n}"},
                          "body": {"n": "${input.n}", "s": "n=${input.n}"}},
                 "compensate": {"kind": "noop", "input": "${tasks.a.output.id}",
                                "retry": {"max_attempts": 4}}}
            ]
        }))
        .unwrap();
        Arc::new(validate(def, &Limits::default()).unwrap())
    }

    #[test]
    fn specs_choose_the_task_or_its_compensation() {
        let wf = workflow();
        let task = wf.body_of(0, false).unwrap();
        assert_eq!((task.kind, task.max_attempts()), (TaskKind::Http, 1));
        assert_eq!(task.timeout(), Some(Duration::from_secs(5)));
        let undo = wf.body_of(0, true).unwrap();
        assert_eq!((undo.kind, undo.max_attempts()), (TaskKind::Noop, 4));
        assert!(wf.body_of(1, false).is_none());
    }

    #[test]
    fn http_text_fields_take_references_as_text_and_the_body_keeps_types() {
        let wf = workflow();
        let mut state = ExecutionState::new(wf.clone());
        state.input = json!({"n": 7});
        let resolved = resolve_spec(&state, &wf.body_of(0, false).unwrap(), None).unwrap();
        let http = resolved.http.unwrap();
        assert_eq!(http.url, "http://h/7");
        assert_eq!(http.headers["x-n"], "7");
        assert_eq!(http.body, Some(json!({"n": 7, "s": "n=7"})));
        // The compensation reads an output that is not available yet.
        let err = resolve_spec(&state, &wf.body_of(0, true).unwrap(), None);
        assert!(err.is_err());
    }

    #[test]
    fn adding_time_saturates() {
        let late = add(DateTime::<Utc>::MAX_UTC, Duration::from_secs(1));
        assert_eq!(late, DateTime::<Utc>::MAX_UTC);
        let t = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(add(t, Duration::from_millis(1500)).timestamp_millis(), 1500);
    }
}
