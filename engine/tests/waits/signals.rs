//! Signals: kept, consumed oldest first, delivered at once to a waiting task.

use std::sync::Arc;

use chrono::TimeDelta;
use conflux_engine::execution::{
    decide, Command, Effect, ExecutionState, ExecutionStatus, Rejection, TaskRef, TaskStatus, Timer,
};
use conflux_schema::validate::ValidatedWorkflow;
use conflux_schema::Event;
use serde_json::{json, Value};

use crate::given::*;

/// `a` (noop) → `wait` (signal "go") → `after` (noop reading the payload).
fn signalled() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "signalled", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "wait", "kind": "signal", "signal": "go", "depends_on": ["a"]},
        {"id": "after", "kind": "noop", "depends_on": ["wait"], "input": "${tasks.wait.output.n}"},
    ]}))
}

/// `a` (noop), then `a` completed: the signal task is next.
fn at_the_signal(wf: &Arc<ValidatedWorkflow>) -> Given {
    given(
        wf,
        [
            started(),
            scheduled("a", 1),
            dispatched("a", 1, Value::Null),
            completed("a", 1, Value::Null),
        ],
    )
}

#[test]
fn a_signal_that_arrives_while_its_task_waits_completes_it_in_the_same_decision() {
    let wf = signalled();
    let g = at_the_signal(&wf)
        .when(Command::Advance)
        .then_effects([])
        .then_events([
            scheduled("wait", 1),
            dispatched("wait", 1, Value::Null),
            waiting("wait", 1, None),
        ]);
    assert_eq!(g.status("wait"), TaskStatus::Running);
    let body = g.state.to_json();
    assert_eq!(
        body["tasks"]["wait"]["waiting_for"],
        json!({"signal": "go"})
    );
    assert_eq!(g.state.pending_timers(), [], "no default deadline");
    assert_eq!(g.state.pending_dispatches(), [], "nothing runs a wait");
    let g = g
        .when(signal("go", json!({"n": 7})))
        .then_events([
            signal_received("go", json!({"n": 7})),
            completed("wait", 1, json!({"n": 7})),
        ])
        .advanced();
    assert_eq!(g.state.kept_signals("go"), 0);
    assert_eq!(g.state.to_json()["tasks"]["wait"].get("waiting_for"), None);
    let dispatched_after = g.log.iter().find_map(|e| match &e.event {
        Event::TaskDispatched { task_id, input, .. } if task_id.as_str() == "after" => {
            Some(input.clone())
        }
        _ => None,
    });
    assert_eq!(dispatched_after, Some(json!(7)));
}

#[test]
fn a_signal_sent_before_its_task_is_reached_is_kept_and_consumed_at_dispatch() {
    let wf = signalled();
    let g = given(&wf, [started(), scheduled("a", 1)])
        .when(signal("go", json!("early")))
        .then_events([signal_received("go", json!("early"))]);
    assert_eq!(g.state.kept_signals("go"), 1);
    assert_eq!(g.status("wait"), TaskStatus::Pending);
    let g = g.apply([
        dispatched("a", 1, Value::Null),
        completed("a", 1, Value::Null),
    ]);
    // One decision: the wait is dispatched, starts, consumes the kept signal, and its
    // dependent is dispatched too (Advance runs to rest).
    let g = g.when(Command::Advance).then_events([
        scheduled("wait", 1),
        dispatched("wait", 1, Value::Null),
        waiting("wait", 1, None),
        completed("wait", 1, json!("early")),
        scheduled("after", 1),
        dispatched("after", 1, Value::Null),
    ]);
    assert_eq!(g.state.kept_signals("go"), 0);
    let again = decide(&g.state, Command::Advance, g.now).expect("advance");
    assert_eq!(again.events, []);
    let replayed = ExecutionState::replay(wf, &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn signals_of_one_name_are_consumed_oldest_first_one_per_task() {
    let wf = workflow(json!({"name": "two", "tasks": [
        {"id": "first", "kind": "signal", "signal": "s"},
        {"id": "second", "kind": "signal", "signal": "s"},
    ]}));
    let g = given(&wf, [started()])
        .when(signal("s", json!(1)))
        .then_events([signal_received("s", json!(1))])
        .when(signal("s", json!(2)))
        .then_events([signal_received("s", json!(2))])
        .when(signal("s", json!(3)))
        .then_events([signal_received("s", json!(3))])
        .when(Command::Advance)
        .then_events([
            scheduled("first", 1),
            dispatched("first", 1, Value::Null),
            waiting("first", 1, None),
            completed("first", 1, json!(1)),
            scheduled("second", 1),
            dispatched("second", 1, Value::Null),
            waiting("second", 1, None),
            completed("second", 1, json!(2)),
            Event::ExecutionCompleted {
                output: json!({"first": 1, "second": 2}),
            },
        ]);
    assert_eq!(g.state.kept_signals("s"), 1);
    let g = g.advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Completed);
    assert_eq!(g.state.output(), Some(&json!({"first": 1, "second": 2})));
    let replayed = ExecutionState::replay(wf, &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn the_signal_name_defaults_to_the_task_id_and_unknown_names_are_refused() {
    let wf = workflow(json!({"name": "w", "tasks": [{"id": "ready", "kind": "signal"}]}));
    let g = given(&wf, [started()])
        .when(signal("go", json!(1)))
        .then_rejected(Rejection::UnknownSignal("go".into()));
    assert_eq!(g.state.version(), 1);
    g.when(signal("ready", json!(1)))
        .then_events([signal_received("ready", json!(1))]);
    let not_started = given(&wf, []).when(signal("ready", Value::Null));
    not_started.then_rejected(Rejection::NotStarted);
}

#[test]
fn a_signal_to_a_finished_execution_is_refused() {
    let wf = workflow(json!({"name": "w", "tasks": [{"id": "s", "kind": "signal"}]}));
    let done = given(&wf, [started()])
        .advanced()
        .when(signal("s", json!("x")))
        .then_events([
            signal_received("s", json!("x")),
            completed("s", 1, json!("x")),
        ])
        .advanced();
    assert_eq!(done.state.status(), ExecutionStatus::Completed);
    done.when(signal("s", json!("late")))
        .then_rejected(Rejection::Terminal(ExecutionStatus::Completed));
    let cancelled = given(&wf, [started(), Event::ExecutionCancelled { reason: None }]);
    cancelled
        .when(signal("s", Value::Null))
        .then_rejected(Rejection::Terminal(ExecutionStatus::Cancelled));
}

#[test]
fn a_paused_execution_keeps_signals_and_a_waiting_task_still_completes() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "s", "kind": "signal"}, {"id": "n", "kind": "noop", "depends_on": ["s"]},
    ]}));
    let g = given(&wf, [started()])
        .advanced()
        .apply([Event::ExecutionPaused {}])
        .when(signal("s", json!(5)))
        .then_events([signal_received("s", json!(5)), completed("s", 1, json!(5))]);
    let nothing = decide(&g.state, Command::Advance, g.now).expect("advance");
    assert_eq!(nothing.events, [], "paused: nothing new is dispatched");
    assert_eq!(g.status("s"), TaskStatus::Completed);
}

#[test]
fn a_wait_with_timeout_seconds_times_out_and_retries_per_its_policy() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "s", "kind": "signal", "timeout_seconds": 5, "retry": {"max_attempts": 2, "initial_interval_ms": 0}},
    ]}));
    let deadline = t0() + TimeDelta::seconds(5);
    let g = given(&wf, [started()])
        .when(Command::Advance)
        .then_effects([Effect::ArmTimer(Timer::AttemptDeadline {
            task: TaskRef::new(id("s"), 1),
            deadline,
        })])
        .then_events([
            scheduled("s", 1),
            dispatched("s", 1, Value::Null),
            waiting("s", 1, Some(deadline)),
        ])
        .at(TimeDelta::seconds(5))
        .when(Command::TimerFired(Timer::AttemptDeadline {
            task: TaskRef::new(id("s"), 1),
            deadline,
        }))
        .then_events([Event::TaskTimedOut {
            task_id: id("s"),
            attempt: 1,
            compensation: false,
        }])
        .advanced();
    assert_eq!(g.status("s"), TaskStatus::Running);
    assert_eq!(g.state.task("s").map(|t| t.attempt), Some(2));
    // A signal now completes attempt 2.
    g.when(signal("s", json!("ok"))).then_events([
        signal_received("s", json!("ok")),
        completed("s", 2, json!("ok")),
    ]);
}
