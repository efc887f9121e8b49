//! Sub-workflows in the pure core: a `workflow` task's attempt starts a child, the
//! child's end completes or fails it, and an attempt ending without its child cancels it.

use conflux_engine::execution::{child_execution_id, link_for, parent_command};
use conflux_schema::definition::ChildWorkflow;
use conflux_schema::ParentLink;

use super::*;

fn parent() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "parent", "tasks": [
        {"id": "order", "kind": "workflow", "workflow": {"name": "fulfil", "version": 2},
         "input": {"sku": "${input.sku}"}, "retry": {"max_attempts": 2, "initial_interval_ms": 100}},
        {"id": "done", "kind": "noop", "depends_on": ["order"], "input": "${tasks.order.output}"}
    ]}))
}

fn child_started(wf: &Arc<ValidatedWorkflow>) -> Given {
    given(wf, [started(json!({"sku": "A-1"}))])
        .when(Command::Advance)
        .then_effects([Effect::StartChild {
            task: r("order", 1),
            workflow: ChildWorkflow {
                name: "fulfil".into(),
                version: Some(2),
            },
            input: json!({"sku": "A-1"}),
        }])
        .then_events([
            scheduled("order", 1),
            dispatched("order", 1, json!({"sku": "A-1"})),
            task_started("order", 1, None),
        ])
}

#[test]
fn a_workflow_task_starts_its_child_as_it_is_dispatched_and_takes_its_output() {
    let wf = parent();
    let g = child_started(&wf);
    assert_eq!(g.task("order").status, TaskStatus::Running);
    let entry = &g.state.to_json()["tasks"]["order"];
    let child = child_execution_id(EXECUTION, &r("order", 1));
    assert_eq!(entry["child_execution_id"], json!(child));
    // Nothing re-runs it: recovery looks for the child instead.
    assert_eq!(g.state.pending_dispatches(), []);
    assert_eq!(g.state.running_children(), [r("order", 1)]);
    g.when(complete("order", 1, json!({"shipped": {"id": 9}})))
        .then_events([completed("order", 1, json!({"shipped": {"id": 9}}))])
        .when(Command::Advance)
        .then_events([
            scheduled("done", 1),
            dispatched("done", 1, json!({"shipped": {"id": 9}})),
        ]);
}

#[test]
fn the_link_a_child_records_names_the_attempt_and_counts_depth() {
    let wf = parent();
    let g = child_started(&wf);
    let link = link_for(&g.state, &r("order", 1)).expect("a started parent");
    assert_eq!(
        link,
        ParentLink {
            execution_id: EXECUTION,
            task_id: id("order"),
            attempt: 1,
            depth: 1
        }
    );
    // The child's own children are one deeper.
    let child_wf = workflow(json!({"name": "fulfil", "tasks": [
        {"id": "pick", "kind": "workflow", "workflow": {"name": "pick"}}]}));
    let child = given(&child_wf, [])
        .when(Command::Start {
            execution_id: child_execution_id(EXECUTION, &r("order", 1)),
            workflow_id: WORKFLOW,
            input: json!({}),
            idempotency_key: None,
            parent: Some(link.clone()),
            budget: None,
            priority: None,
            concurrency_key: None,
        })
        .then_events([Event::ExecutionStarted {
            execution_id: child_execution_id(EXECUTION, &r("order", 1)),
            workflow_id: WORKFLOW,
            input: json!({}),
            idempotency_key: None,
            parent: Some(link.clone()),
        }]);
    assert_eq!(child.state.depth(), 1);
    assert_eq!(child.state.to_json()["parent"]["task_id"], "order");
    let grandchild = link_for(&child.state, &r("pick", 1)).expect("a link");
    assert_eq!(grandchild.depth, 2);
}

#[test]
fn a_child_that_ends_tells_its_parent_how() {
    let child_wf = workflow(json!({"name": "fulfil", "tasks": [
        {"id": "ship", "kind": "agent", "agent_role": "shipper"}]}));
    let link = ParentLink {
        execution_id: EXECUTION,
        task_id: id("order"),
        attempt: 2,
        depth: 1,
    };
    let start = Event::ExecutionStarted {
        execution_id: Uuid::from_u128(0xC1),
        workflow_id: WORKFLOW,
        input: json!({}),
        idempotency_key: None,
        parent: Some(link),
    };
    let running = given(&child_wf, [start]).advanced();
    assert_eq!(parent_command(&running.state), None, "still running");
    let done = running
        .clone_state()
        .when(complete("ship", 1, json!({"id": 9})))
        .then_events([completed("ship", 1, json!({"id": 9}))])
        .advanced();
    assert_eq!(
        parent_command(&done.state),
        Some((
            EXECUTION,
            Command::CompleteTask {
                task: r("order", 2),
                output: json!({"ship": {"id": 9}}),
                usage: None,
            }
        ))
    );
    let failed = running
        .clone_state()
        .when(fail("ship", 1, "no stock", false))
        .then_events([failed("ship", 1, "no stock", false)])
        .advanced();
    match parent_command(&failed.state) {
        Some((
            to,
            Command::FailTask {
                task,
                error,
                retryable: true,
                usage: None,
            },
        )) => {
            assert_eq!((to, task), (EXECUTION, r("order", 2)));
            assert!(
                error.contains("failed") && error.contains("no stock"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    let cancelled = running
        .when(Command::Cancel {
            reason: Some("by hand".into()),
        })
        .committed();
    match parent_command(&cancelled.state) {
        Some((
            _,
            Command::FailTask {
                error,
                retryable: false,
                ..
            },
        )) => {
            assert!(
                error.contains("cancelled") && error.contains("by hand"),
                "{error}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A top-level execution tells nobody.
    let top = given(&child_wf, [started(json!({}))]).advanced();
    let top = top
        .when(complete("ship", 1, json!(1)))
        .committed()
        .advanced();
    assert!(top.state.is_terminal());
    assert_eq!(parent_command(&top.state), None);
}

#[test]
fn cancelling_the_parent_cancels_the_child_and_its_late_result_is_stale() {
    let wf = parent();
    let g = child_started(&wf)
        .when(Command::Cancel { reason: None })
        .then_effects([Effect::CancelChild {
            task: r("order", 1),
            reason: "attempt 1 of parent task `order` was cancelled".into(),
        }])
        .committed();
    assert_eq!(g.state.running_children(), []);
    g.when(complete("order", 1, json!({})))
        .then_rejected(stale("order", 1, 1));
}

#[test]
fn a_failed_child_is_retried_with_a_new_child_and_a_timed_out_one_is_cancelled() {
    let wf = workflow(json!({"name": "parent", "tasks": [
        {"id": "order", "kind": "workflow", "workflow": {"name": "fulfil"}, "timeout_seconds": 60,
         "retry": {"max_attempts": 2, "initial_interval_ms": 100}}]}));
    let g = given(&wf, [started(json!({}))]).advanced();
    let deadline = t0() + secs(60);
    assert_eq!(g.task("order").deadline, Some(deadline));
    let g = g
        .at(secs(60))
        .when(Command::TimerFired(Timer::AttemptDeadline {
            task: r("order", 1),
            deadline,
        }))
        .then_effects([Effect::CancelChild {
            task: r("order", 1),
            reason: "attempt 1 of parent task `order` timed out".into(),
        }])
        .committed()
        .advanced();
    let due = g.task("order").retry_due_at.expect("a retry is planned");
    let second = g
        .at(secs(61))
        .when(Command::TimerFired(Timer::Retry {
            task: r("order", 2),
            due_at: due,
        }))
        .committed();
    assert_eq!(second.state.running_children(), [r("order", 2)]);
    assert_ne!(
        child_execution_id(EXECUTION, &r("order", 1)),
        child_execution_id(EXECUTION, &r("order", 2)),
        "each attempt runs its own child"
    );
}

impl Given {
    fn clone_state(&self) -> Given {
        Given {
            state: self.state.clone(),
            log: self.log.clone(),
            now: self.now,
        }
    }
}
