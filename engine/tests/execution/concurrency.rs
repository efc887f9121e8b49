//! Concurrency keys in the pure core: an execution started with a key is `queued` and
//! dispatches nothing until admitted; it can be cancelled while queued; admitting is
//! only for queued executions.

use super::*;

fn keyed() -> Arc<ValidatedWorkflow> {
    workflow(
        json!({"name": "keyed", "concurrency": {"key": "input.k", "max_running": 1},
        "tasks": [{"id": "a", "kind": "agent", "agent_role": "w"}]}),
    )
}

fn start_keyed() -> Command {
    Command::Start {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({"k": "x"}),
        idempotency_key: None,
        parent: None,
        budget: None,
        priority: None,
        concurrency_key: Some("x".into()),
    }
}

#[test]
fn a_queued_execution_dispatches_nothing_until_admitted() {
    let wf = keyed();
    let g = given(&wf, []).when(start_keyed()).then_events([
        Event::ExecutionStarted {
            execution_id: EXECUTION,
            workflow_id: WORKFLOW,
            input: json!({"k": "x"}),
            idempotency_key: None,
            parent: None,
        },
        Event::ExecutionQueued { key: "x".into() },
    ]);
    assert_eq!(g.state.status(), ExecutionStatus::Queued);
    assert_eq!(g.state.concurrency_key(), Some("x"));
    let g = g
        .when(Command::Advance)
        .then_nothing()
        .when(Command::Pause)
        .then_rejected(Rejection::InvalidState {
            command: "pause",
            status: ExecutionStatus::Queued,
        })
        .when(Command::Admit)
        .then_events([Event::ExecutionAdmitted {}]);
    assert_eq!(g.state.status(), ExecutionStatus::Running);
    let g = g.advanced();
    assert_eq!(g.task("a").status, TaskStatus::Scheduled);
    g.when(Command::Admit)
        .then_rejected(Rejection::InvalidState {
            command: "admit",
            status: ExecutionStatus::Running,
        });
}

#[test]
fn a_queued_execution_can_be_cancelled() {
    let wf = keyed();
    let g = given(&wf, [])
        .when(start_keyed())
        .committed()
        .when(Command::Cancel {
            reason: Some("no longer needed".into()),
        })
        .committed();
    assert_eq!(g.state.status(), ExecutionStatus::Cancelled);
    assert!(g.state.is_terminal());
}

#[test]
fn the_workflow_deadline_runs_while_queued() {
    let wf = workflow(json!({"name": "keyed", "timeout_seconds": 5,
        "concurrency": {"key": "input.k", "max_running": 1},
        "tasks": [{"id": "a", "kind": "agent", "agent_role": "w"}]}));
    let g = given(&wf, []).when(start_keyed()).committed();
    let deadline = g
        .state
        .pending_timers()
        .into_iter()
        .find(|t| matches!(t, Timer::ExecutionDeadline { .. }))
        .expect("a queued execution keeps its deadline");
    let g = g
        .at(TimeDelta::seconds(6))
        .when(Command::TimerFired(deadline))
        .committed();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
}

#[test]
fn a_queued_execution_keeps_signals_for_later() {
    let wf = workflow(
        json!({"name": "keyed", "concurrency": {"key": "input.k", "max_running": 1},
        "tasks": [{"id": "a", "kind": "agent", "agent_role": "w"},
                  {"id": "go", "kind": "signal", "depends_on": ["a"]}]}),
    );
    given(&wf, [])
        .when(start_keyed())
        .committed()
        .when(Command::Signal {
            name: "go".into(),
            payload: json!({}),
        })
        .committed();
}
