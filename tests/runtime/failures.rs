//! Failure handling end to end: `http` retries on 5xx and not on 4xx, agent results
//! and agent failures against the retry policy, and an attempt that times out while
//! its agent stays silent (retried under a new lease; the old lease is stale).

use serde_json::{json, Value};

use crate::agent::{Behaviour, TestAgent};
use crate::harness::TestServer;
use crate::target::Target;

/// Three attempts, a few milliseconds apart.
fn three_attempts() -> Value {
    json!({"max_attempts": 3, "initial_interval_ms": 10, "backoff_coefficient": 1.0, "max_interval_ms": 20})
}

fn http_workflow(name: &str, method: &str, url: String) -> Value {
    json!({"name": name, "tasks": [
        {"id": "call", "kind": "http", "retry": three_attempts(),
         "http": {"method": method, "url": url, "body": {"amount": "${input.amount}"}}}
    ]})
}

/// Scenario 4: `http` tasks: a 500 is retried until the policy is exhausted (exactly three
/// calls, then failed); a 404 is final (one call); a 200 completes with `{status,
/// body}`; a service that fails twice then answers completes on the third attempt.
pub async fn http_retries_5xx_not_4xx(s: &TestServer) {
    let target = Target::start().await;
    // Its own host, so its failures never weigh on the first target's circuit breaker.
    let flaky_target = Target::start().await;
    let input = json!({"amount": 12});
    let fail = s
        .run(
            http_workflow("h500", "POST", target.url("/fail500")),
            input.clone(),
        )
        .await;
    let missing = s
        .run(
            http_workflow("h404", "GET", target.url("/missing")),
            input.clone(),
        )
        .await;
    let ok = s
        .run(
            http_workflow("h200", "POST", target.url("/ok")),
            input.clone(),
        )
        .await;
    let flaky = s
        .run(
            http_workflow("hflaky", "GET", flaky_target.url("/flaky")),
            input,
        )
        .await;

    let body = s.wait_terminal(&fail).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(Target::count(&target.calls.fail500), 3);
    assert_eq!(body["tasks"]["call"]["attempts"], 3, "{body:#}");
    let log = s.events(&fail).await;
    assert_eq!(
        log.attempts("TaskFailed", "call"),
        [1, 2, 3],
        "{:?}",
        log.types()
    );
    assert_eq!(log.attempts("TaskRetryScheduled", "call"), [2, 3]);
    for i in log.indexes("TaskFailed", Some("call"), false) {
        assert_eq!(log.at(i)["data"]["retryable"], true, "{}", log.at(i));
    }
    assert_eq!(
        log.at(log.only_of("ExecutionFailed"))["data"]["failed_task"],
        "call"
    );
    assert_eq!(log.last_type(), "ExecutionFailed");

    let body = s.wait_terminal(&missing).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(Target::count(&target.calls.missing), 1);
    let log = s.events(&missing).await;
    assert_eq!(log.attempts("TaskFailed", "call"), [1]);
    assert_eq!(
        log.at(log.only("TaskFailed", "call"))["data"]["retryable"],
        false
    );
    assert_eq!(log.count("TaskRetryScheduled", None), 0);
    assert_eq!(log.last_type(), "ExecutionFailed");

    let body = s.wait_terminal(&ok).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    let expected =
        json!({"status": 200, "body": {"ok": true, "method": "POST", "echo": {"amount": 12}}});
    assert_eq!(body["tasks"]["call"]["output"], expected, "{body:#}");
    assert_eq!(body["output"], json!({ "call": expected }));
    assert_eq!(Target::count(&target.calls.ok), 1);

    let body = s.wait_terminal(&flaky).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(
        body["tasks"]["call"]["output"],
        json!({"status": 200, "body": {"call": 3}})
    );
    assert_eq!(Target::count(&flaky_target.calls.flaky), 3);
    let log = s.events(&flaky).await;
    assert_eq!(log.attempts("TaskFailed", "call"), [1, 2]);
    assert_eq!(log.attempts("TaskCompleted", "call"), [3]);
}

fn agent_workflow(name: &str, role: &str) -> Value {
    json!({"name": name, "tasks": [
        {"id": "work", "kind": "agent", "agent_role": role, "retry": three_attempts(),
         "input": {"order": "${input.order}"}},
        {"id": "after", "kind": "noop", "depends_on": ["work"], "input": {"got": "${tasks.work.output.result}"}}
    ]})
}

/// Scenario 5: Agent tasks: a completed lease completes the task with the agent's output (and
/// feeds it downstream); retryable failures are retried until `max_attempts`, then the
/// execution fails with exactly that many `TaskFailed`; a non-retryable failure is
/// final at once.
pub async fn agent_results_and_failures(s: &TestServer) {
    let good = TestAgent::register(&s.base, &["good"]).await;
    let bad = TestAgent::register(&s.base, &["bad"]).await;
    let fatal = TestAgent::register(&s.base, &["fatal"]).await;
    let good_run = good.run_script(vec![Behaviour::Complete(json!({"result": "done-7"}))]);
    let bad_run = bad.run_script(vec![Behaviour::Fail { retryable: true }; 3]);
    let fatal_run = fatal.run_script(vec![Behaviour::Fail { retryable: false }]);
    let ok = s
        .run(agent_workflow("agent-ok", "good"), json!({"order": 7}))
        .await;
    let retried = s
        .run(agent_workflow("agent-retried", "bad"), json!({"order": 8}))
        .await;
    let final_ = s
        .run(agent_workflow("agent-final", "fatal"), json!({"order": 9}))
        .await;

    let body = s.wait_terminal(&ok).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["work"]["output"], json!({"result": "done-7"}));
    assert_eq!(body["tasks"]["work"]["agent_id"], json!(good.agent_id));
    assert_eq!(body["output"], json!({"after": {"got": "done-7"}}));
    let leases = good_run.await.expect("agent");
    assert_eq!(
        (leases[0].execution_id.as_str(), leases[0].attempt),
        (ok.as_str(), 1)
    );
    assert_eq!(leases[0].input, json!({"order": 7}));
    let log = s.events(&ok).await;
    let started = log.at(log.only("TaskStarted", "work"));
    assert_eq!(started["data"]["agent_id"], json!(good.agent_id));
    assert_eq!(started["data"]["lease_id"], json!(leases[0].lease_id));
    assert!(log.only("TaskStarted", "work") < log.only("TaskCompleted", "work"));

    let body = s.wait_terminal(&retried).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(body["tasks"]["after"]["status"], "skipped", "{body:#}");
    let leases = bad_run.await.expect("agent");
    assert_eq!(
        leases.iter().map(|l| l.attempt).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    let log = s.events(&retried).await;
    assert_eq!(
        log.attempts("TaskFailed", "work"),
        [1, 2, 3],
        "{:?}",
        log.types()
    );
    assert_eq!(log.attempts("TaskRetryScheduled", "work"), [2, 3]);
    assert_eq!(log.count("TaskCompleted", None), 0);
    assert_eq!(
        log.at(log.only_of("ExecutionFailed"))["data"]["failed_task"],
        "work"
    );

    let body = s.wait_terminal(&final_).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    fatal_run.await.expect("agent");
    let log = s.events(&final_).await;
    assert_eq!(log.attempts("TaskFailed", "work"), [1]);
    assert_eq!(log.count("TaskRetryScheduled", None), 0);
}

/// Scenario 6: A silent agent: the attempt times out (`timeout_seconds` 1), is retried under a
/// second lease, which completes the execution; the first, stale lease then gets
/// `409 stale_attempt` and changes nothing.
pub async fn silent_agent_times_out_and_is_retried(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["sleepy"]).await;
    let execution = s
        .run(
            json!({"name": "silent", "tasks": [
                {"id": "work", "kind": "agent", "agent_role": "sleepy", "timeout_seconds": 1,
                 "retry": {"max_attempts": 2, "initial_interval_ms": 10}},
                {"id": "after", "kind": "noop", "depends_on": ["work"]}
            ]}),
            json!({}),
        )
        .await;
    let first = agent.next_lease().await;
    assert_eq!(first.attempt, 1);
    assert!(
        first.input.is_null() || first.input == json!({}),
        "{:?}",
        first.input
    );
    s.wait_events(&execution, "TaskTimedOut", |log| {
        log.count("TaskTimedOut", Some("work")) == 1
    })
    .await;

    let second = agent.next_lease().await;
    assert_eq!(
        (second.execution_id.as_str(), second.attempt),
        (execution.as_str(), 2)
    );
    assert_ne!(second.lease_id, first.lease_id);
    let (status, body) = agent.complete(&second, json!({"late": false})).await;
    assert_eq!(status, 200, "{body}");
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["work"]["attempts"], 2);
    assert_eq!(body["tasks"]["work"]["output"], json!({"late": false}));

    let before = s.events(&execution).await.0.len();
    for (status, body) in [
        agent.complete(&first, json!({"late": true})).await,
        agent.fail(&first, "too late", true).await,
        agent.heartbeat(&first).await,
    ] {
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "stale_attempt", "{body}");
    }
    let log = s.events(&execution).await;
    assert_eq!(
        log.0.len(),
        before,
        "a stale lease recorded something: {:?}",
        log.types()
    );

    assert_eq!(log.attempts("TaskStarted", "work"), [1, 2]);
    assert_eq!(log.attempts("TaskTimedOut", "work"), [1]);
    assert_eq!(log.attempts("TaskRetryScheduled", "work"), [2]);
    assert_eq!(log.attempts("TaskCompleted", "work"), [2]);
    let order = [
        log.only("TaskTimedOut", "work"),
        log.only("TaskRetryScheduled", "work"),
        log.indexes("TaskStarted", Some("work"), false)[1],
        log.only("TaskCompleted", "work"),
    ];
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{:?}", log.types());
    assert_eq!(log.last_type(), "ExecutionCompleted");
}

/// Scenario 4b: what the store cannot hold never leaves an execution hanging, and
/// both modes agree: a 200 whose JSON holds a NUL character fails the task for good;
/// a 500 whose raw body holds NUL bytes is an ordinary retryable failure.
pub async fn http_nul_characters_fail_cleanly(s: &TestServer) {
    let target = Target::start().await;
    let once = |name: &str, path: &str| {
        json!({"name": name, "tasks": [
            {"id": "call", "kind": "http", "http": {"url": target.url(path)},
             "retry": {"max_attempts": 2, "initial_interval_ms": 10}},
            {"id": "after", "kind": "noop", "depends_on": ["call"]}
        ]})
    };
    let in_json = s.run(once("nul-json", "/nul"), json!({})).await;
    let in_error = s.run(once("nul-error", "/nul500"), json!({})).await;

    let body = s.wait_terminal(&in_json).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let error = body["tasks"]["call"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("NUL"), "{body:#}");
    let log = s.events(&in_json).await;
    assert_eq!(log.attempts("TaskFailed", "call"), [1], "{:?}", log.types());
    assert_eq!(log.count("TaskCompleted", None), 0);

    let body = s.wait_terminal(&in_error).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let log = s.events(&in_error).await;
    assert_eq!(
        log.attempts("TaskFailed", "call"),
        [1, 2],
        "{:?}",
        log.types()
    );
    let error = body["tasks"]["call"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("500") && !error.contains('\0'), "{body:#}");
}
