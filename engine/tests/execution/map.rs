//! Dynamic fan-out in the pure core: a `map` runs its template once per item.

use super::*;

fn fan_out(extra: Value) -> Arc<ValidatedWorkflow> {
    let mut map = json!({"id": "fan", "kind": "map", "depends_on": ["plan"],
        "items": "${tasks.plan.output.steps}",
        "template": {"kind": "agent", "agent_role": "worker", "timeout_seconds": 30,
                     "input": {"step": "${item}", "at": "${index}", "n": "${input.n}"}}});
    if let (Some(map), Some(extra)) = (map.as_object_mut(), extra.as_object()) {
        map.extend(extra.clone());
    }
    workflow(json!({"name": "w", "tasks": [
        {"id": "plan", "kind": "agent", "agent_role": "planner", "timeout_seconds": 30},
        map,
        {"id": "reduce", "kind": "noop", "depends_on": ["fan"], "input": "${tasks.fan.output}"}
    ]}))
}

fn item(k: usize) -> String {
    format!("fan[{k}]")
}

fn map_started(items: Value) -> [Event; 4] {
    let count = items.as_array().map_or(0, |i| i.len() as u32);
    [
        scheduled("fan", 1),
        dispatched("fan", 1, items),
        task_started("fan", 1, None),
        Event::MapExpanded {
            task_id: id("fan"),
            attempt: 1,
            count,
        },
    ]
}

fn item_runs(k: usize, step: Value) -> [Event; 2] {
    [
        scheduled(&item(k), 1),
        dispatched(&item(k), 1, json!({"step": step, "at": k, "n": 7})),
    ]
}

/// The execution after `plan` completed with `steps`, and the Advance that follows.
fn planned(wf: &Arc<ValidatedWorkflow>, steps: Value) -> When {
    given(wf, [started(json!({"n": 7}))])
        .advanced()
        .when(complete("plan", 1, json!({"steps": steps})))
        .then_events([completed("plan", 1, json!({"steps": steps}))])
        .when(Command::Advance)
}

#[test]
fn a_map_runs_one_item_per_element_and_outputs_them_in_order() {
    let wf = fan_out(json!({}));
    let steps = json!(["a", "b", "c"]);
    let g = planned(&wf, steps.clone()).then_events(
        map_started(steps)
            .into_iter()
            .chain(item_runs(0, json!("a")))
            .chain(item_runs(1, json!("b")))
            .chain(item_runs(2, json!("c"))),
    );
    assert_eq!(g.task("fan[1]").status, TaskStatus::Scheduled);
    let agents = decide(&g.state, Command::Advance, g.now).expect("advance");
    assert_eq!(agents.events, [], "nothing more until an item reports");
    let g = g
        .when(complete(&item(2), 1, json!("C")))
        .then_events([completed(&item(2), 1, json!("C"))])
        .when(Command::Advance)
        .then_nothing()
        .when(complete(&item(0), 1, json!("A")))
        .then_events([completed(&item(0), 1, json!("A"))])
        .when(complete(&item(1), 1, json!("B")))
        .then_events([completed(&item(1), 1, json!("B"))])
        .when(Command::Advance)
        .then_events(
            [completed("fan", 1, json!(["A", "B", "C"]))]
                .into_iter()
                .chain([
                    scheduled("reduce", 1),
                    dispatched("reduce", 1, json!(["A", "B", "C"])),
                ]),
        );
    let body = g.state.to_json();
    assert_eq!(body["tasks"]["fan[1]"]["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["fan"]["output"], json!(["A", "B", "C"]));
    assert_eq!(ExecutionState::replay(wf, &g.log), g.state);
}

#[test]
fn max_parallel_holds_items_back_until_one_finishes() {
    let wf = fan_out(json!({"max_parallel": 2}));
    let steps = json!([1, 2, 3]);
    let g = planned(&wf, steps.clone()).then_events(
        map_started(steps)
            .into_iter()
            .chain(item_runs(0, json!(1)))
            .chain(item_runs(1, json!(2))),
    );
    g.when(complete(&item(1), 1, json!(20)))
        .then_events([completed(&item(1), 1, json!(20))])
        .when(Command::Advance)
        .then_events(item_runs(2, json!(3)));
}

#[test]
fn fail_fast_cancels_live_items_skips_the_rest_and_fails_the_map() {
    let wf = fan_out(json!({"max_parallel": 2}));
    let steps = json!([1, 2, 3]);
    let g = planned(&wf, steps).committed();
    let g = g
        .when(fail(&item(0), 1, "boom", false))
        .then_events([failed(&item(0), 1, "boom", false)])
        .when(Command::Advance);
    let events = g.decision().events.clone();
    assert_eq!(
        events[..3],
        [
            cancelled(&item(1), 1),
            skipped(&item(2), "item 0 of `fan` failed"),
            failed("fan", 1, "item 0 failed: boom", false),
        ]
    );
    assert!(
        matches!(events.last(), Some(Event::ExecutionFailed { .. })),
        "{events:?}"
    );
}

#[test]
fn collect_runs_every_item_and_puts_null_for_a_failed_one() {
    let wf = fan_out(json!({"failure_policy": "collect",
        "template": {"kind": "agent", "agent_role": "worker", "timeout_seconds": 30,
                     "retry": {"max_attempts": 2, "initial_interval_ms": 0},
                     "input": {"step": "${item}", "at": "${index}", "n": "${input.n}"}}}));
    let g = planned(&wf, json!(["x", "y"])).committed();
    // A retryable failure is retried by the template's policy first.
    let g = g
        .when(fail(&item(0), 1, "flaky", true))
        .then_events([failed(&item(0), 1, "flaky", true)]);
    let g = g
        .when(Command::Advance)
        .then_events([
            retry(&item(0), 2, t0()),
            scheduled(&item(0), 2),
            dispatched(&item(0), 2, json!({"step": "x", "at": 0, "n": 7})),
        ])
        .when(fail(&item(0), 2, "broken", false))
        .then_events([failed(&item(0), 2, "broken", false)])
        .when(Command::Advance)
        .then_nothing()
        .when(complete(&item(1), 1, json!("Y")))
        .then_events([completed(&item(1), 1, json!("Y"))])
        .advanced();
    assert_eq!(g.task("fan").status, TaskStatus::Completed);
    assert_eq!(g.task("fan").output, Some(json!([null, "Y"])));
}

#[test]
fn items_that_are_not_an_array_fail_the_map_and_an_empty_array_completes_it() {
    let wf = fan_out(json!({}));
    let g = planned(&wf, json!({"not": "a list"}));
    let events = &g.decision().events;
    match &events[1] {
        Event::TaskFailed {
            error, retryable, ..
        } => {
            assert!(error.contains("items is not an array"), "{error}");
            assert!(!retryable);
        }
        other => panic!("expected the map to fail, got {other:?}"),
    }
    let g = planned(&wf, json!([])).then_events(
        map_started(json!([]))
            .into_iter()
            .chain([completed("fan", 1, json!([]))])
            .chain([scheduled("reduce", 1), dispatched("reduce", 1, json!([]))]),
    );
    assert_eq!(g.state.status(), ExecutionStatus::Running);
}

#[test]
fn cancelling_reaches_every_live_item() {
    let wf = fan_out(json!({"max_parallel": 1}));
    let g = planned(&wf, json!([1, 2])).committed();
    g.when(Command::Cancel { reason: None }).then_events([
        cancelled("fan", 1),
        cancelled(&item(0), 1),
        skipped("reduce", "the execution was cancelled"),
        skipped(&item(1), "the execution was cancelled"),
        Event::ExecutionCancelled { reason: None },
    ]);
}
