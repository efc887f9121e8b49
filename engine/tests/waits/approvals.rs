//! Approvals: distinct approvers up to `count`, one reject fails for good, refusals
//! change nothing.

use std::sync::Arc;

use conflux_engine::execution::{Command, ExecutionStatus, Rejection, TaskStatus};
use conflux_schema::access::Role;
use conflux_schema::validate::ValidatedWorkflow;
use conflux_schema::Event;
use serde_json::{json, Value};

use crate::given::*;

/// `gate` (approval by two of admin/operator) → `ship` (noop).
fn gated() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "gated", "tasks": [
        {"id": "gate", "kind": "approval", "approvers": {"roles": ["admin", "operator"], "count": 2},
         "retry": {"max_attempts": 3}},
        {"id": "ship", "kind": "noop", "depends_on": ["gate"], "input": "${tasks.gate.output.approved_by}"},
    ]}))
}

#[test]
fn two_distinct_approvers_complete_an_approval_and_the_same_key_cannot_approve_twice() {
    let wf = gated();
    let g = given(&wf, [started()]).when(Command::Advance).then_events([
        scheduled("gate", 1),
        dispatched("gate", 1, Value::Null),
        waiting("gate", 1, None),
    ]);
    assert_eq!(
        g.state.to_json()["tasks"]["gate"]["waiting_for"],
        json!({"approvals": {"needed": 2, "given": 0, "approved_by": [], "roles": ["admin", "operator"]}})
    );
    let g = g
        .when(decide_on("gate", true, "key:viewer", Role::Developer, None))
        .then_rejected(Rejection::NotApprover {
            task: id("gate"),
            role: "developer".into(),
            roles: "admin, operator".into(),
        })
        .when(decide_on("gate", true, "key:a", Role::Admin, Some("fine")))
        .then_events([decided("gate", true, "key:a", Some("fine"))])
        .when(decide_on("gate", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::AlreadyDecided {
            task: id("gate"),
            by: "key:a".into(),
        });
    assert_eq!(g.state.approvals("gate"), Some((1, 2)));
    assert_eq!(
        g.state.to_json()["tasks"]["gate"]["waiting_for"]["approvals"]["approved_by"],
        json!(["key:a"])
    );
    let g = g
        .when(decide_on("gate", true, "key:b", Role::Operator, None))
        .then_events([
            decided("gate", true, "key:b", None),
            completed(
                "gate",
                1,
                json!({"approved_by": ["key:a", "key:b"], "comments": ["fine", null]}),
            ),
        ])
        .advanced();
    assert_eq!(g.status("ship"), TaskStatus::Scheduled);
    g.when(decide_on("gate", true, "key:c", Role::Admin, None))
        .then_rejected(Rejection::NotWaiting {
            task: id("gate"),
            reason: "it is completed".into(),
        });
}

#[test]
fn one_reject_fails_an_approval_for_good() {
    let wf = gated();
    let g = given(&wf, [started()])
        .advanced()
        .when(decide_on("gate", true, "key:a", Role::Admin, None))
        .then_events([decided("gate", true, "key:a", None)])
        .when(decide_on(
            "gate",
            false,
            "key:b",
            Role::Operator,
            Some("no"),
        ))
        .then_events([
            decided("gate", false, "key:b", Some("no")),
            Event::TaskFailed {
                task_id: id("gate"),
                attempt: 1,
                error: "rejected by key:b: no".into(),
                retryable: false,
                compensation: false,
            },
        ])
        .advanced();
    // Three attempts allowed, but a reject is not retried.
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.status("ship"), TaskStatus::Skipped);
}

#[test]
fn decisions_on_tasks_that_are_not_waiting_approvals_are_refused_and_change_nothing() {
    let wf = workflow(json!({"name": "w", "tasks": [
        {"id": "first", "kind": "noop"},
        {"id": "gate", "kind": "approval", "depends_on": ["first"], "approvers": {"roles": ["admin"]}},
    ]}));
    let g = given(&wf, [started(), scheduled("first", 1)]);
    let version = g.state.version();
    let g = g
        .when(decide_on("gate", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::NotWaiting {
            task: id("gate"),
            reason: "it has not been reached yet".into(),
        })
        .when(decide_on("first", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::NotWaiting {
            task: id("first"),
            reason: "it is a noop task, not an approval".into(),
        })
        .when(decide_on("nope", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::UnknownTask("nope".into()))
        .when(decide_on("bad id!", true, "key:a", Role::Admin, None))
        .then_rejected(Rejection::UnknownTask("bad id!".into()));
    assert_eq!(g.state.version(), version);
    // One approval of count 1 completes it.
    let g = g
        .apply([
            dispatched("first", 1, Value::Null),
            completed("first", 1, Value::Null),
        ])
        .advanced()
        .when(decide_on("gate", true, "admin", Role::Admin, None))
        .then_events([
            decided("gate", true, "admin", None),
            completed(
                "gate",
                1,
                json!({"approved_by": ["admin"], "comments": [null]}),
            ),
        ]);
    assert_eq!(g.status("gate"), TaskStatus::Completed);
}
