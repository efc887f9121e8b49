//! Dead letters in the pure core: a task that fails for good and fails its execution
//! is dead-lettered; a redrive brings it (and what the failure stopped) back with a
//! fresh budget of attempts, and replaying the log gives the same state.

use conflux_engine::execution::{
    dead_letter_id, parse_dead_letter_id, ExecutionStatus, TaskStatus,
};
use conflux_schema::api::DeadLetterState;

use super::*;

/// `a` → (`b` retried twice, `c`) → `d` after both: `b` fails while `c` runs.
fn wide() -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "wide", "tasks": [
        {"id": "a", "kind": "agent", "agent_role": "w"},
        {"id": "b", "kind": "agent", "agent_role": "w", "depends_on": ["a"],
         "retry": {"max_attempts": 2, "initial_interval_ms": 10}},
        {"id": "c", "kind": "agent", "agent_role": "w", "depends_on": ["a"]},
        {"id": "d", "kind": "agent", "agent_role": "w", "depends_on": ["b", "c"]}
    ]}))
}

fn dl(attempt: u32, task: &str) -> String {
    dead_letter_id(EXECUTION, attempt, &id(task))
}

/// Runs `wide` until `b` fails its second attempt for good: the execution failed.
fn failed_by_b() -> Given {
    let wf = wide();
    let g = given(&wf, [started(json!({}))]).advanced();
    let g = g.when(start_task("a", 1)).committed();
    let g = g.when(complete("a", 1, json!(1))).committed().advanced();
    let g = g.when(start_task("b", 1)).committed();
    let g = g.when(start_task("c", 1)).committed();
    let g = g.when(fail("b", 1, "boom", true)).committed().advanced();
    let g = g.at(ms(50)).advanced();
    let g = g.when(start_task("b", 2)).committed();
    g.when(fail("b", 2, "boom again", true))
        .committed()
        .advanced()
}

#[test]
fn a_task_out_of_retries_is_dead_lettered_before_its_execution_fails() {
    let g = failed_by_b();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    let types: Vec<&str> = g.log.iter().map(|e| e.event.type_name()).collect();
    let tail = &types[types.len() - 4..];
    assert_eq!(
        tail,
        [
            "TaskCancelled",
            "TaskSkipped",
            "TaskDeadLettered",
            "ExecutionFailed"
        ],
        "{types:?}"
    );
    let letters = g.state.dead_letters();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].id, dl(2, "b"));
    assert_eq!(letters[0].attempts, 2);
    assert_eq!(letters[0].error, "boom again");
    assert_eq!(letters[0].state, DeadLetterState::Open);
    let body = g.state.view();
    let named = body.dead_letter.expect("the body names its dead letter");
    assert_eq!(
        (named.id.as_str(), named.task_id.as_str()),
        (dl(2, "b").as_str(), "b")
    );
}

#[test]
fn a_non_retryable_failure_is_dead_lettered_at_once() {
    let wf = chain();
    let g = given(&wf, [started(json!({}))]).advanced();
    let g = g.when(start_task("a", 1)).committed();
    let g = g
        .when(fail("a", 1, "bad input", false))
        .committed()
        .advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.state.dead_letters()[0].id, dl(1, "a"));
}

#[test]
fn a_redrive_brings_back_the_task_what_the_failure_cancelled_and_what_it_skipped() {
    let g = failed_by_b();
    let g = g
        .at(secs(5))
        .when(Command::Redrive { id: dl(2, "b") })
        .then_events([
            Event::ExecutionRedriven {
                dead_letter_id: dl(2, "b"),
                task_id: id("b"),
            },
            Event::TaskRedriven {
                task_id: id("b"),
                attempt: 3,
            },
            Event::TaskRedriven {
                task_id: id("c"),
                attempt: 2,
            },
            Event::TaskRedriven {
                task_id: id("d"),
                attempt: 0,
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Running);
    assert_eq!(g.state.dead_letters()[0].state, DeadLetterState::Redriven);
    assert_eq!(g.task("d").status, TaskStatus::Pending);
    // b and c run again at once (b with fresh attempts), d waits for them.
    let g = g.advanced();
    assert_eq!(g.task("b").status, TaskStatus::Scheduled);
    assert_eq!(g.task("b").attempt, 3);
    assert_eq!(g.task("c").attempt, 2);
    assert_eq!(g.task("d").status, TaskStatus::Pending);
    // The old attempts are fenced off.
    g.when(complete("c", 1, json!("late")))
        .then_rejected(stale("c", 1, 2));
    let g = failed_by_b().at(secs(5));
    let g = g
        .when(Command::Redrive { id: dl(2, "b") })
        .committed()
        .advanced();
    let g = g.when(start_task("b", 3)).committed();
    // A fresh budget: b may fail once more and be retried.
    let g = g.when(fail("b", 3, "flaky", true)).committed().advanced();
    assert_eq!(g.task("b").status, TaskStatus::Retrying);
    let g = g.at(secs(6)).advanced();
    let g = g.when(start_task("b", 4)).committed();
    let g = g.when(complete("b", 4, json!("b"))).committed().advanced();
    let g = g.when(start_task("c", 2)).committed();
    let g = g.when(complete("c", 2, json!("c"))).committed().advanced();
    assert_eq!(g.task("d").status, TaskStatus::Scheduled);
    let g = g.when(start_task("d", 1)).committed();
    let g = g.when(complete("d", 1, json!("d"))).committed().advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Completed);
    assert_eq!(
        g.state.view().dead_letter.map(|d| d.state),
        Some(DeadLetterState::Redriven)
    );
    // Replay equals the live state.
    let replayed = ExecutionState::replay(g.state.workflow().clone(), &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn redrive_and_acknowledge_refuse_what_is_not_an_open_dead_letter() {
    let g = failed_by_b();
    let g = g
        .when(Command::Redrive { id: dl(1, "b") })
        .then_rejected(Rejection::UnknownDeadLetter(dl(1, "b")));
    let g = g
        .when(Command::AcknowledgeDeadLetter { id: dl(2, "b") })
        .then_events([Event::DeadLetterAcknowledged {
            dead_letter_id: dl(2, "b"),
        }]);
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(
        g.state.dead_letters()[0].state,
        DeadLetterState::Acknowledged
    );
    let g =
        g.when(Command::Redrive { id: dl(2, "b") })
            .then_rejected(Rejection::DeadLetterClosed {
                id: dl(2, "b"),
                state: "acknowledged",
            });
    g.when(Command::AcknowledgeDeadLetter { id: dl(2, "b") })
        .then_rejected(Rejection::DeadLetterClosed {
            id: dl(2, "b"),
            state: "acknowledged",
        });
}

/// `a` (with a compensation) → `b`, under `on_failure: compensate`: `b` fails for good,
/// the saga starts.
fn compensating_after_b() -> Given {
    let wf = workflow(
        json!({"name": "saga", "on_failure": "compensate", "tasks": [
            {"id": "a", "kind": "agent", "agent_role": "w",
             "compensate": {"kind": "agent", "agent_role": "undo"}},
            {"id": "b", "kind": "agent", "agent_role": "w", "depends_on": ["a"]}
        ]}),
    );
    let g = given(&wf, [started(json!({}))]).advanced();
    let g = g.when(start_task("a", 1)).committed();
    let g = g.when(complete("a", 1, json!(1))).committed().advanced();
    let g = g.when(start_task("b", 1)).committed();
    g.when(fail("b", 1, "no", false)).committed().advanced()
}

#[test]
fn a_compensated_execution_is_not_redriven() {
    let g = compensating_after_b();
    assert_eq!(g.state.status(), ExecutionStatus::Compensating);
    assert_eq!(g.state.dead_letters()[0].id, dl(1, "b"));
    g.when(Command::Redrive { id: dl(1, "b") })
        .then_rejected(Rejection::InvalidState {
            status: ExecutionStatus::Compensating,
            command: "redrive",
        });
}

#[test]
fn dead_letter_ids_round_trip_and_junk_is_refused() {
    let task = id("charge.card-1");
    let raw = dead_letter_id(EXECUTION, 3, &task);
    assert_eq!(parse_dead_letter_id(&raw), Some((EXECUTION, 3, task)));
    for junk in [
        "",
        "x",
        "not-a-uuid.1.a",
        &format!("{EXECUTION}.x.a"),
        &format!("{EXECUTION}.1.a b"),
    ] {
        assert_eq!(parse_dead_letter_id(junk), None, "{junk}");
    }
}

#[test]
fn a_task_that_failed_before_it_ran_is_judged_again_when_redriven() {
    let wf = workflow(json!({"name": "cel", "tasks": [
        {"id": "a", "kind": "noop", "when": "input.missing.deeper > 1"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]}
    ]}));
    let g = given(&wf, [started(json!({}))]).advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(g.state.dead_letters()[0].id, dl(1, "a"));
    let g = g.when(Command::Redrive { id: dl(1, "a") }).committed();
    assert_eq!(g.task("a").status, TaskStatus::Pending);
    // Judged again: its `when` still fails, so it is dead-lettered again (attempt 2).
    let g = g.advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    let letters: Vec<&str> = g
        .state
        .dead_letters()
        .iter()
        .map(|d| d.id.as_str())
        .collect();
    assert_eq!(letters, [dl(1, "a"), dl(2, "a")]);
    let replayed = ExecutionState::replay(g.state.workflow().clone(), &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn an_execution_whose_saga_ran_is_not_redriven() {
    let g = compensating_after_b();
    // The compensation of `a` fails for good: the execution ends `failed`.
    let g = g
        .when(Command::FailTask {
            task: TaskRef::compensation(id("a"), 1),
            error: "cannot undo".into(),
            retryable: false,
            usage: None,
        })
        .committed()
        .advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    g.when(Command::Redrive { id: dl(1, "b") })
        .then_rejected(Rejection::NotRedrivable(
            "the execution compensated (its compensations ran)".into(),
        ));
}

#[test]
fn tasks_that_failed_for_good_beside_the_dead_letter_come_back_too() {
    let wf = workflow(json!({"name": "pair", "tasks": [
        {"id": "a", "kind": "agent", "agent_role": "w"},
        {"id": "b", "kind": "agent", "agent_role": "w"},
        {"id": "c", "kind": "noop", "depends_on": ["a", "b"]}
    ]}));
    let g = given(&wf, [started(json!({}))]).advanced();
    let g = g.when(start_task("a", 1)).committed();
    let g = g.when(start_task("b", 1)).committed();
    // Both fail for good before the engine advances: one decision fails the execution.
    let g = g.when(fail("a", 1, "no a", false)).committed();
    let g = g.when(fail("b", 1, "no b", false)).committed().advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    let id_a = g.state.dead_letters()[0].id.clone();
    let g = g.when(Command::Redrive { id: id_a }).committed().advanced();
    assert_eq!(
        g.state.status(),
        ExecutionStatus::Running,
        "not failed again at once"
    );
    assert_eq!(g.task("a").attempt, 2);
    assert_eq!(g.task("b").attempt, 2);
    let g = g.when(start_task("a", 2)).committed();
    let g = g.when(start_task("b", 2)).committed();
    let g = g.when(complete("a", 2, json!("a"))).committed().advanced();
    let g = g.when(complete("b", 2, json!("b"))).committed().advanced();
    // c (a built-in) runs once both are done.
    let g = g.when(start_task("c", 1)).committed();
    let g = g.when(complete("c", 1, json!("c"))).committed().advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Completed);
    let replayed = ExecutionState::replay(g.state.workflow().clone(), &g.log);
    assert_eq!(replayed, g.state);
}

#[test]
fn a_redriven_execution_with_a_concurrency_key_waits_for_a_slot_again() {
    let wf = workflow(json!({"name": "keyed",
        "concurrency": {"key": "input.account", "max_running": 1},
        "tasks": [{"id": "a", "kind": "agent", "agent_role": "w"}]}));
    let start = Command::Start {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({"account": "acme"}),
        idempotency_key: None,
        parent: None,
        budget: None,
        priority: None,
        concurrency_key: Some("acme".into()),
    };
    let g = given(&wf, []).when(start).committed();
    assert_eq!(g.state.status(), ExecutionStatus::Queued);
    let g = g.when(Command::Admit).committed().advanced();
    let g = g.when(start_task("a", 1)).committed();
    let g = g.when(fail("a", 1, "no", false)).committed().advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    let g = g.when(Command::Redrive { id: dl(1, "a") }).committed();
    assert_eq!(
        g.state.status(),
        ExecutionStatus::Queued,
        "it needs a slot again"
    );
    assert_eq!(
        g.log.last().map(|e| e.event.type_name()),
        Some("ExecutionQueued")
    );
    // Queued: nothing runs until it is admitted.
    let g = g.advanced();
    assert_eq!(g.task("a").status, TaskStatus::Retrying);
    let g = g.when(Command::Admit).committed().advanced();
    assert_eq!(g.task("a").status, TaskStatus::Scheduled);
    assert_eq!(g.task("a").attempt, 2);
}
