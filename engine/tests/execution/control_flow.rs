//! Conditions, trigger rules and switches in the pure core: given/when/then.

use super::*;

fn when_false(task: &str, expression: &str) -> Event {
    skipped(task, &format!("when `{expression}` is false"))
}

#[test]
fn a_false_condition_skips_the_task_and_its_all_success_dependents_in_one_decision() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "a", "kind": "noop", "when": "input.n > 3"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["b"], "trigger_rule": "all_done"},
    ]}));
    let g = given(&wf, [started(json!({"n": 1}))])
        .when(Command::Advance)
        .then_events([
            when_false("a", "input.n > 3"),
            skipped(
                "b",
                "an upstream task was skipped (trigger_rule all_success)",
            ),
            scheduled("c", 1),
            dispatched("c", 1, Value::Null),
        ]);
    assert_eq!(g.task("a").status, TaskStatus::Skipped);
    assert_eq!(g.task("b").status, TaskStatus::Skipped);
    let g = g
        .when(complete("c", 1, json!("done")))
        .then_events([completed("c", 1, json!("done"))])
        .when(Command::Advance)
        .then_events([Event::ExecutionCompleted {
            output: json!({"c": "done"}),
        }]);
    assert_eq!(g.state.status(), ExecutionStatus::Completed);
}

#[test]
fn a_true_condition_reads_upstream_outputs_and_runs_the_task() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "plan", "kind": "noop"},
        {"id": "act", "kind": "noop", "depends_on": ["plan"],
         "when": "size(tasks.plan.output.steps) == 2"},
    ]}));
    given(&wf, [started(json!({}))])
        .advanced()
        .when(complete("plan", 1, json!({"steps": [1, 2]})))
        .then_events([completed("plan", 1, json!({"steps": [1, 2]}))])
        .when(Command::Advance)
        .then_events(run("act", 1));
}

#[test]
fn a_condition_that_cannot_be_evaluated_fails_the_task_for_good() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "a", "kind": "noop", "when": "input.missing > 1"},
    ]}));
    let g = given(&wf, [started(json!({}))]).when(Command::Advance);
    let events = &g.decision().events;
    assert!(
        matches!(&events[0], Event::TaskScheduled { .. }),
        "{events:?}"
    );
    match &events[1] {
        Event::TaskFailed {
            error, retryable, ..
        } => {
            assert!(
                error.starts_with("when: `input.missing > 1` failed"),
                "{error}"
            );
            assert!(!retryable);
        }
        other => panic!("expected TaskFailed, got {other:?}"),
    }
    assert!(matches!(events.last(), Some(Event::ExecutionFailed { .. })));
}

#[test]
fn trigger_rules_react_to_skips_and_tolerated_failures() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "ok", "kind": "noop"},
        {"id": "bad", "kind": "agent", "agent_role": "r"},
        {"id": "off", "kind": "noop", "when": "false"},
        {"id": "all_done", "kind": "noop", "depends_on": ["ok", "bad", "off"], "trigger_rule": "all_done"},
        {"id": "one_success", "kind": "noop", "depends_on": ["bad", "off"], "trigger_rule": "one_success"},
        {"id": "none_failed", "kind": "noop", "depends_on": ["ok", "off"], "trigger_rule": "none_failed"},
        {"id": "none_failed_2", "kind": "noop", "depends_on": ["bad"], "trigger_rule": "none_failed"},
        {"id": "all_success", "kind": "noop", "depends_on": ["ok", "off"]},
    ]}));
    let g = given(&wf, [started(json!({}))])
        .when(Command::Advance)
        .then_events([
            when_false("off", "false"),
            scheduled("ok", 1),
            dispatched("ok", 1, Value::Null),
            scheduled("bad", 1),
            dispatched("bad", 1, Value::Null),
        ])
        .when(complete("ok", 1, json!(1)))
        .then_events([completed("ok", 1, json!(1))])
        .when(Command::Advance)
        .then_events([
            skipped(
                "all_success",
                "an upstream task was skipped (trigger_rule all_success)",
            ),
            scheduled("none_failed", 1),
            dispatched("none_failed", 1, Value::Null),
        ])
        .when(fail("bad", 1, "boom", false))
        .then_events([failed("bad", 1, "boom", false)]);
    // `all_done` and `one_success` run after a failure: the execution goes on.
    assert_eq!(g.state.status(), ExecutionStatus::Running);
    let g = g.when(Command::Advance).then_events([
        skipped(
            "one_success",
            "no upstream task succeeded (trigger_rule one_success)",
        ),
        skipped(
            "none_failed_2",
            "an upstream task failed (trigger_rule none_failed)",
        ),
        scheduled("all_done", 1),
        dispatched("all_done", 1, Value::Null),
    ]);
    let g = g
        .when(complete("all_done", 1, json!("a")))
        .then_events([completed("all_done", 1, json!("a"))])
        .when(complete("none_failed", 1, json!("n")))
        .then_events([completed("none_failed", 1, json!("n"))])
        .when(Command::Advance)
        .then_events([Event::ExecutionCompleted {
            output: json!({"all_done": "a", "none_failed": "n"}),
        }]);
    assert_eq!(g.task("bad").status, TaskStatus::Failed);
}

#[test]
fn a_failure_no_downstream_rule_tolerates_still_fails_the_execution() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "bad", "kind": "agent", "agent_role": "r"},
        {"id": "next", "kind": "noop", "depends_on": ["bad"], "trigger_rule": "none_failed"},
    ]}));
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .when(fail("bad", 1, "boom", false))
        .then_events([failed("bad", 1, "boom", false)])
        .when(Command::Advance);
    assert!(matches!(
        g.decision().events.last(),
        Some(Event::ExecutionFailed { .. })
    ));
}

fn switch_workflow() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "w", "tasks": [
        {"id": "route", "kind": "switch", "cases": [
            {"when": "input.tier == 'gold'", "next": ["vip"]},
            {"when": "input.tier == 'silver'", "next": ["vip", "standard"]},
        ], "default": ["standard"]},
        {"id": "vip", "kind": "noop", "depends_on": ["route"]},
        {"id": "standard", "kind": "noop", "depends_on": ["route"]},
        {"id": "join", "kind": "noop", "depends_on": ["vip", "standard"], "trigger_rule": "none_failed"},
    ]}))
}

fn switch_runs(output: Value) -> [Event; 4] {
    [
        scheduled("route", 1),
        dispatched("route", 1, Value::Null),
        task_started("route", 1, None),
        completed("route", 1, output),
    ]
}

#[test]
fn a_switch_takes_the_first_case_that_holds_and_skips_the_other_branches() {
    let wf = switch_workflow();
    let g = given(&wf, [started(json!({"tier": "gold"}))])
        .when(Command::Advance)
        .then_events(
            switch_runs(json!({"case": 0, "next": ["vip"]}))
                .into_iter()
                .chain([
                    skipped(
                        "standard",
                        "an upstream task was skipped (trigger_rule all_success)",
                    ),
                    scheduled("vip", 1),
                    dispatched("vip", 1, Value::Null),
                ]),
        )
        .when(complete("vip", 1, json!("v")))
        .then_events([completed("vip", 1, json!("v"))])
        .when(Command::Advance)
        .then_events(run("join", 1));
    assert_eq!(g.task("standard").status, TaskStatus::Skipped);
}

#[test]
fn a_switch_falls_back_to_its_default_and_may_take_several_branches() {
    let wf = switch_workflow();
    let g = given(&wf, [started(json!({"tier": "bronze"}))]).advanced();
    assert_eq!(
        g.task("route").output,
        Some(json!({"case": "default", "next": ["standard"]}))
    );
    assert_eq!(g.task("vip").status, TaskStatus::Skipped);
    assert_eq!(g.task("standard").status, TaskStatus::Scheduled);
    given(&wf, [started(json!({"tier": "silver"}))])
        .when(Command::Advance)
        .then_events(
            switch_runs(json!({"case": 1, "next": ["vip", "standard"]}))
                .into_iter()
                .chain(run("vip", 1))
                .chain(run("standard", 1)),
        )
        .advanced();
}

#[test]
fn replay_of_a_run_with_skips_and_a_switch_equals_the_live_state() {
    let wf = switch_workflow();
    let g = given(&wf, [started(json!({"tier": "gold"}))])
        .advanced()
        .when(complete("vip", 1, json!("v")))
        .then_events([completed("vip", 1, json!("v"))])
        .advanced();
    let replayed = ExecutionState::replay(wf, &g.log);
    assert_eq!(replayed, g.state);
}
