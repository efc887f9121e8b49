//! Budgets in the pure core: reported usage adds up, and past its budget an execution
//! dispatches nothing more and fails (or compensates) with `budget_exceeded`.

use conflux_schema::usage::{Budget, Usage};

use super::*;

fn spend(cost: f64, tokens: u64) -> Usage {
    Usage {
        cost,
        input_tokens: tokens,
        output_tokens: 0,
    }
}

fn complete_spending(task: &str, usage: Usage) -> Command {
    Command::CompleteTask {
        task: r(task, 1),
        output: json!({"done": task}),
        usage: Some(usage),
    }
}

fn budgeted(on_failure: &str) -> Arc<ValidatedWorkflow> {
    workflow(json!({"name": "llm", "on_failure": on_failure, "tasks": [
        {"id": "plan", "kind": "agent", "agent_role": "llm",
         "compensate": {"kind": "agent", "agent_role": "undo"}},
        {"id": "write", "kind": "agent", "agent_role": "llm", "depends_on": ["plan"]},
        {"id": "side", "kind": "agent", "agent_role": "llm", "depends_on": ["plan"]},
        {"id": "review", "kind": "agent", "agent_role": "llm", "depends_on": ["write", "side"]}
    ]}))
}

fn start_with(budget: Budget) -> Command {
    Command::Start {
        execution_id: EXECUTION,
        workflow_id: WORKFLOW,
        input: json!({}),
        idempotency_key: None,
        parent: None,
        budget: Some(budget),
        priority: None,
        concurrency_key: None,
    }
}

const BUDGET: Budget = Budget {
    max_cost: Some(0.10),
    max_tokens: Some(1_000),
};

#[test]
fn a_budget_is_recorded_with_the_start_and_usage_adds_up_in_the_body() {
    let wf = budgeted("fail");
    let g = given(&wf, [])
        .when(start_with(BUDGET))
        .then_events([
            Event::ExecutionStarted {
                execution_id: EXECUTION,
                workflow_id: WORKFLOW,
                input: json!({}),
                idempotency_key: None,
                parent: None,
            },
            Event::BudgetSet { budget: BUDGET },
        ])
        .advanced()
        .when(complete_spending("plan", spend(0.04, 300)))
        .then_events([
            Event::UsageRecorded {
                task_id: id("plan"),
                attempt: 1,
                compensation: false,
                usage: spend(0.04, 300),
            },
            completed("plan", 1, json!({"done": "plan"})),
        ])
        .advanced()
        .when(complete_spending("write", spend(0.05, 600)))
        .committed()
        .advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Running, "within budget");
    let body = g.state.to_json();
    assert_eq!(body["budget"], json!({"max_cost": 0.1, "max_tokens": 1000}));
    assert_eq!(body["usage"]["input_tokens"], 900);
    assert!((body["usage"]["cost"].as_f64().unwrap_or(0.0) - 0.09).abs() < 1e-9);
    assert_eq!(g.state.over_budget(), None);
}

#[test]
fn past_its_budget_an_execution_cancels_what_runs_and_fails_with_budget_exceeded() {
    let wf = budgeted("fail");
    let g = given(&wf, [])
        .when(start_with(BUDGET))
        .committed()
        .advanced()
        .when(complete_spending("plan", spend(0.01, 100)))
        .committed()
        .advanced();
    assert_eq!(g.task("side").status, TaskStatus::Scheduled);
    let g = g
        .when(complete_spending("write", spend(0.01, 950)))
        .committed()
        .when(Command::Advance)
        .then_events([
            cancelled("side", 1),
            skipped("review", "the execution failed before the task could run"),
            Event::ExecutionFailed {
                error: "budget_exceeded: 1050 tokens are over max_tokens 1000".into(),
                failed_task: None,
            },
        ]);
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    // The late report of the cancelled attempt changes nothing.
    g.when(complete_spending("side", spend(1.0, 1)))
        .then_rejected(stale("side", 1, 1));
}

#[test]
fn under_a_compensate_policy_the_budget_starts_the_saga() {
    let wf = budgeted("compensate");
    let g = given(&wf, [])
        .when(start_with(Budget {
            max_cost: Some(0.05),
            max_tokens: None,
        }))
        .committed()
        .advanced()
        .when(complete_spending("plan", spend(0.06, 1)))
        .committed()
        .when(Command::Advance)
        .committed();
    assert_eq!(g.state.status(), ExecutionStatus::Compensating);
    let log: Vec<&str> = g.log.iter().map(|e| e.event.type_name()).collect();
    assert!(
        log.ends_with(&["CompensationStarted", "TaskScheduled", "TaskDispatched"]),
        "{log:?}"
    );
    // Compensations may still report usage: it is recorded, and the saga goes on.
    let undo = Command::CompleteTask {
        task: TaskRef::compensation(id("plan"), 1),
        output: json!({}),
        usage: Some(spend(0.01, 1)),
    };
    let g = g.when(undo).committed().advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Compensated);
    assert_eq!(
        g.state.error(),
        Some("budget_exceeded: cost 0.06 is over max_cost 0.05")
    );
    assert!((g.state.usage().map_or(0.0, |u| u.cost) - 0.07).abs() < 1e-9);
}

#[test]
fn an_execution_without_a_budget_only_adds_up() {
    let wf = budgeted("fail");
    let g = given(&wf, [started(json!({}))])
        .advanced()
        .when(complete_spending("plan", spend(1e9, u64::MAX)))
        .committed()
        .advanced();
    assert_eq!(g.state.status(), ExecutionStatus::Running);
    assert_eq!(g.state.usage().map(|u| u.input_tokens), Some(u64::MAX));
}

#[test]
fn a_failure_may_report_what_it_spent_and_that_counts_against_the_budget() {
    let wf = budgeted("fail");
    let g = given(&wf, [])
        .when(start_with(BUDGET))
        .committed()
        .advanced()
        .when(Command::FailTask {
            task: r("plan", 1),
            error: "the model refused".into(),
            retryable: true,
            usage: Some(spend(0.2, 10)),
        })
        .then_events([
            Event::UsageRecorded {
                task_id: id("plan"),
                attempt: 1,
                compensation: false,
                usage: spend(0.2, 10),
            },
            failed("plan", 1, "the model refused", true),
        ]);
    let g = g.when(Command::Advance).committed();
    assert_eq!(g.state.status(), ExecutionStatus::Failed);
    assert_eq!(
        g.state.error(),
        Some("budget_exceeded: cost 0.2 is over max_cost 0.1"),
        "over budget: no retry"
    );
}
