//! Compensation (saga): when a task fails for good under `on_failure: compensate`, the
//! completed tasks are undone newest completion first, and the execution ends
//! `compensated`.

use serde_json::json;

use crate::agent::TestAgent;
use crate::harness::TestServer;
use crate::target::Target;

/// Scenario 9: a → b → c, where a (noop compensation) and b (agent compensation, fed with b's
/// output) completed and c fails non-retryably (404): b is compensated, then a, and the
/// execution is `compensated`.
pub async fn compensation_runs_in_reverse(s: &TestServer) {
    let target = Target::start().await;
    let agent = TestAgent::register(&s.base, &["undo"]).await;
    let definition = json!({
        "name": "saga",
        "on_failure": "compensate",
        "tasks": [
            {"id": "a", "kind": "noop", "input": {"reservation": "r-1"},
             "compensate": {"kind": "noop", "input": {"release": "${tasks.a.output.reservation}"}}},
            {"id": "b", "kind": "noop", "depends_on": ["a"], "input": {"charge": "${input.amount}"},
             "compensate": {"kind": "agent", "agent_role": "undo",
                            "input": {"refund": "${tasks.b.output.charge}"}}},
            {"id": "c", "kind": "http", "depends_on": ["b"],
             "retry": {"max_attempts": 3, "initial_interval_ms": 10},
             "http": {"url": target.url("/missing")}}
        ]
    });
    let execution = s.run(definition, json!({"amount": 30})).await;

    // The saga waits for the agent that undoes b.
    let lease = agent.next_lease().await;
    assert_eq!(
        (lease.task_id.as_str(), lease.compensation),
        ("b", true),
        "{lease:?}"
    );
    assert_eq!(lease.input, json!({"refund": 30}));
    let (status, body) = agent.complete(&lease, json!({"refunded": 30})).await;
    assert_eq!(status, 200, "{body}");

    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "compensated", "{body:#}");
    assert_eq!(body["tasks"]["a"]["status"], "compensated", "{body:#}");
    assert_eq!(body["tasks"]["b"]["status"], "compensated", "{body:#}");
    assert_eq!(body["tasks"]["c"]["status"], "failed", "{body:#}");
    assert_eq!(
        body["tasks"]["b"]["compensation"]["output"],
        json!({"refunded": 30})
    );
    assert_eq!(
        body["tasks"]["a"]["compensation"]["output"],
        json!({"release": "r-1"})
    );
    assert_eq!(
        Target::count(&target.calls.missing),
        1,
        "a 404 is not retried"
    );

    let log = s.events(&execution).await;
    let compensated: Vec<&str> = log
        .indexes("TaskCompensated", None, true)
        .into_iter()
        .map(|i| log.at(i)["data"]["task_id"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(compensated, ["b", "a"], "{:?}", log.types());
    let started = log.only_of("CompensationStarted");
    assert_eq!(log.at(started)["data"]["failed_task"], "c");
    assert!(log.only("TaskFailed", "c") < started);
    // Each compensation is scheduled only after the previous one finished.
    let b_done = log.indexes("TaskCompensated", Some("b"), true)[0];
    let a_scheduled = log.indexes("TaskScheduled", Some("a"), true);
    assert_eq!(a_scheduled.len(), 1, "{:?}", log.types());
    assert!(b_done < a_scheduled[0], "{:?}", log.types());
    assert!(started < log.indexes("TaskScheduled", Some("b"), true)[0]);
    assert_eq!(
        log.indexes("TaskScheduled", Some("c"), true).len(),
        0,
        "c never completed"
    );
    assert_eq!(log.last_type(), "ExecutionFailed");
}
