//! Operator commands on a running execution: pause holds back new work while a leased
//! attempt may still finish, resume continues, and cancel ends the execution and makes
//! the outstanding lease stale.

use serde_json::{json, Value};

use crate::agent::TestAgent;
use crate::harness::TestServer;

fn agent_then_noops(name: &str, role: &str) -> Value {
    json!({"name": name, "tasks": [
        {"id": "a", "kind": "agent", "agent_role": role},
        {"id": "b", "kind": "noop", "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["b"]}
    ]})
}

/// Waits until the engine has caught up with everything recorded so far: a fresh
/// execution of `sentinel` is appended after it, and the one engine handles the bus in
/// position order, so once the sentinel completed, the engine has acted on every
/// earlier event.
async fn engine_caught_up(s: &TestServer, sentinel: &str) {
    let execution = s.execute(sentinel, json!({})).await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
}

/// Scenario 7: Pause while an agent holds the first task: its result is still recorded, but
/// nothing new is dispatched until resume; then the execution completes. Pausing or
/// resuming a completed execution is `409 conflict`.
pub async fn pause_holds_back_new_work(s: &TestServer) {
    let sentinel = s
        .create_workflow(json!({"name": "sentinel", "tasks": [{"id": "s", "kind": "noop"}]}))
        .await;
    let agent = TestAgent::register(&s.base, &["pausable"]).await;
    let execution = s
        .run(agent_then_noops("pausable", "pausable"), json!({}))
        .await;
    let lease = agent.next_lease().await;
    assert_eq!(lease.task_id, "a");

    let path = |what: &str| format!("/api/v1/executions/{execution}/{what}");
    let (status, body) = s.post(&path("pause"), json!({})).await;
    assert_eq!((status, &body["status"]), (202, &json!("paused")), "{body}");
    let (status, body) = s.post(&path("pause"), json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("conflict")),
        "{body}"
    );

    // The running attempt may finish while paused, and is recorded.
    let (status, body) = agent.complete(&lease, json!({"v": 1})).await;
    assert_eq!(status, 200, "{body}");
    engine_caught_up(s, &sentinel).await;
    let body = s.execution(&execution).await;
    assert_eq!(body["status"], "paused", "{body:#}");
    assert_eq!(body["tasks"]["a"]["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["b"]["status"], "pending", "{body:#}");
    let log = s.events(&execution).await;
    assert_eq!(
        log.count("TaskScheduled", Some("b")),
        0,
        "dispatched while paused: {:?}",
        log.types()
    );
    assert!(log.only_of("ExecutionPaused") < log.only("TaskCompleted", "a"));

    let (status, body) = s.post(&path("resume"), json!({})).await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("running")),
        "{body}"
    );
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    let log = s.events(&execution).await;
    let resumed = log.only_of("ExecutionResumed");
    assert!(
        resumed < log.only("TaskScheduled", "b"),
        "{:?}",
        log.types()
    );
    assert!(log.only("TaskCompleted", "b") < log.only("TaskScheduled", "c"));
    assert_eq!(log.last_type(), "ExecutionCompleted");

    for what in ["pause", "resume"] {
        let (status, body) = s.post(&path(what), json!({})).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (409, &json!("conflict")),
            "{what}: {body}"
        );
    }
    assert_eq!(s.events(&execution).await.0.len(), log.0.len());
}

/// Scenario 7c: an attempt that times out while the execution is paused is not
/// retried until resume; then its retry runs and the execution completes.
pub async fn pause_holds_back_retries(s: &TestServer) {
    let sentinel = s
        .create_workflow(json!({"name": "sentinel", "tasks": [{"id": "s", "kind": "noop"}]}))
        .await;
    let agent = TestAgent::register(&s.base, &["dozy"]).await;
    let mut definition = agent_then_noops("paused-retry", "dozy");
    definition["tasks"][0]["timeout_seconds"] = json!(1);
    definition["tasks"][0]["retry"] = json!({"max_attempts": 2, "initial_interval_ms": 10});
    let execution = s.run(definition, json!({})).await;
    let first = agent.next_lease().await;
    let (status, body) = s
        .post(&format!("/api/v1/executions/{execution}/pause"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    s.wait_events(&execution, "the timeout", |log| {
        log.count("TaskTimedOut", Some("a")) == 1
    })
    .await;
    engine_caught_up(s, &sentinel).await;
    let log = s.events(&execution).await;
    assert_eq!(
        log.count("TaskRetryScheduled", None),
        0,
        "{:?}",
        log.types()
    );
    assert_eq!(log.attempts("TaskScheduled", "a"), [1], "{:?}", log.types());

    let (status, body) = s
        .post(&format!("/api/v1/executions/{execution}/resume"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let second = agent.next_lease().await;
    assert_eq!(
        (second.attempt, second.execution_id.as_str()),
        (2, execution.as_str())
    );
    let (status, body) = agent.complete(&second, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    let (status, _) = agent.complete(&first, json!({})).await;
    assert_eq!(status, 409);
    let log = s.events(&execution).await;
    assert!(log.only_of("ExecutionResumed") < log.only("TaskRetryScheduled", "a"));
}

/// Scenario 8: Cancel while an agent holds a lease: the execution is cancelled (the attempt
/// cancelled, the rest skipped) and the lease's results are `409 stale_attempt`.
pub async fn cancel_makes_the_lease_stale(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["cancellable"]).await;
    let execution = s
        .run(agent_then_noops("cancellable", "cancellable"), json!({}))
        .await;
    let lease = agent.next_lease().await;

    let path = format!("/api/v1/executions/{execution}/cancel");
    let (status, body) = s.post(&path, json!({"reason": "changed my mind"})).await;
    assert_eq!(
        (status, &body["status"]),
        (202, &json!("cancelled")),
        "{body}"
    );
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "cancelled", "{body:#}");
    assert_eq!(body["error"], "changed my mind");
    assert_eq!(body["tasks"]["a"]["status"], "cancelled", "{body:#}");
    assert_eq!(body["tasks"]["b"]["status"], "skipped", "{body:#}");

    let before = s.events(&execution).await;
    for (status, body) in [
        agent.complete(&lease, json!({"v": 1})).await,
        agent.fail(&lease, "no", false).await,
        agent.heartbeat(&lease).await,
    ] {
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["error"]["code"], "stale_attempt", "{body}");
    }
    let (status, body) = s.post(&path, json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("conflict")),
        "{body}"
    );

    let log = s.events(&execution).await;
    assert_eq!(
        log.0.len(),
        before.0.len(),
        "a rejected command recorded something"
    );
    assert_eq!(log.attempts("TaskCancelled", "a"), [1]);
    assert_eq!(log.count("TaskSkipped", None), 2, "{:?}", log.types());
    assert_eq!(log.count("TaskCompleted", None), 0);
    assert_eq!(log.last_type(), "ExecutionCancelled");
}

/// Scenario 8b: cancel and complete sent at the same moment, ten times: exactly one
/// story holds for each execution. Either the cancel won (cancelled; the complete is
/// stale), or the complete came first and the cancel still ended the execution, or
/// the execution finished before the cancel (completed; the cancel is a conflict).
pub async fn cancel_races_with_completion(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["racer"]).await;
    let workflow = s.create_workflow(agent_then_noops("racer", "racer")).await;
    for _ in 0..10 {
        s.execute(&workflow, json!({})).await;
    }
    let mut leases = Vec::new();
    while leases.len() < 10 {
        leases.extend(agent.poll(10 - leases.len()).await);
    }
    let mut answers = Vec::new();
    for lease in &leases {
        let cancel = format!("/api/v1/executions/{}/cancel", lease.execution_id);
        let (completed, cancelled) = tokio::join!(
            agent.complete(lease, json!({"v": 1})),
            s.post(&cancel, json!({}))
        );
        answers.push((lease, completed, cancelled));
    }
    for (lease, (completed, body1), (cancelled, body2)) in answers {
        let body = s.wait_terminal(&lease.execution_id).await;
        let log = s.events(&lease.execution_id).await;
        match (completed, cancelled) {
            (200, 202) | (409, 202) => assert_eq!(body["status"], "cancelled", "{body:#}"),
            (200, 409) => {
                assert_eq!(body2["error"]["code"], "conflict", "{body2}");
                assert_eq!(body["status"], "completed", "{body:#}");
            }
            other => panic!("{other:?}: {body1} {body2}"),
        }
        if completed == 409 {
            assert_eq!(body1["error"]["code"], "stale_attempt", "{body1}");
        }
        let recorded = log.count("TaskCompleted", Some("a"));
        assert_eq!(recorded, usize::from(completed == 200), "{:?}", log.types());
    }
}

/// Scenario 8c: the workflow's `timeout_seconds` passes while an agent holds a lease:
/// the execution fails, the attempt is cancelled and its lease is stale.
pub async fn workflow_deadline_fails_the_execution(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["slowpoke"]).await;
    let mut definition = agent_then_noops("deadline", "slowpoke");
    definition["timeout_seconds"] = json!(1);
    let execution = s.run(definition, json!({})).await;
    let lease = agent.next_lease().await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("timed out")),
        "{body:#}"
    );
    assert_eq!(body["tasks"]["a"]["status"], "cancelled", "{body:#}");
    let (status, reply) = agent.complete(&lease, json!({})).await;
    assert_eq!(
        (status, &reply["error"]["code"]),
        (409, &json!("stale_attempt")),
        "{reply}"
    );
    let log = s.events(&execution).await;
    assert_eq!(log.attempts("TaskCancelled", "a"), [1]);
    assert_eq!(log.count("TaskSkipped", None), 2);
    assert_eq!(log.last_type(), "ExecutionFailed");
}

/// Scenario 7b: `POST /api/v1/workflows/{id}/pause` and `/resume` apply to every
/// active execution of the workflow.
pub async fn workflow_pause_applies_to_every_execution(s: &TestServer) {
    let sentinel = s
        .create_workflow(json!({"name": "sentinel", "tasks": [{"id": "s", "kind": "noop"}]}))
        .await;
    let agent = TestAgent::register(&s.base, &["held"]).await;
    let workflow = s.create_workflow(agent_then_noops("held", "held")).await;
    let mut executions = Vec::new();
    for _ in 0..3 {
        executions.push(s.execute(&workflow, json!({})).await);
    }
    let mut leases = Vec::new();
    while leases.len() < 3 {
        leases.extend(agent.poll(3 - leases.len()).await);
    }
    let (status, body) = s
        .post(&format!("/api/v1/workflows/{workflow}/pause"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["executions"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    for lease in &leases {
        let (status, reply) = agent.complete(lease, json!({})).await;
        assert_eq!(status, 200, "{reply}");
    }
    engine_caught_up(s, &sentinel).await;
    for execution in &executions {
        let body = s.execution(execution).await;
        assert_eq!(body["status"], "paused", "{body:#}");
        assert_eq!(body["tasks"]["b"]["status"], "pending", "{body:#}");
    }
    let (status, body) = s
        .post(&format!("/api/v1/workflows/{workflow}/resume"), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        body["executions"].as_array().map(Vec::len),
        Some(3),
        "{body}"
    );
    for execution in &executions {
        let body = s.wait_terminal(execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
    }
}
