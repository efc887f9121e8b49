//! Priority end to end: with tasks of one role waiting, an agent leases the highest
//! priority first — a task's own `priority` over its execution's, an execution's
//! (`priority` on execute) over the default 5 — and the log records the priorities
//! (`PrioritySet`, `TaskDispatched.priority`). Priorities outside 1–10 are refused and
//! change nothing.

use serde_json::{json, Value};

use crate::harness::TestServer;

/// Starts `workflow` with this execute body; returns the execution id.
async fn start(s: &TestServer, workflow: &str, body: Value) -> String {
    let (status, answer) = s
        .post(&format!("/api/v1/workflows/{workflow}/execute"), body)
        .await;
    assert_eq!(status, 202, "{answer}");
    answer["execution_id"].as_str().expect("an id").to_owned()
}

/// Waits until `execution` handed its task to the queue.
async fn dispatched(s: &TestServer, execution: &str) -> Value {
    let log = s
        .wait_events(execution, "TaskDispatched", |l| {
            l.types().contains(&"TaskDispatched")
        })
        .await;
    log.0
        .into_iter()
        .find(|e| e["type"] == "TaskDispatched")
        .expect("dispatched")
}

pub async fn higher_priorities_are_leased_first(s: &TestServer) {
    let plain = s
        .create_workflow(json!({"name": "plain", "tasks": [
            {"id": "work", "kind": "agent", "agent_role": "ranked"}]}))
        .await;
    let urgent = s
        .create_workflow(json!({"name": "urgent", "tasks": [
            {"id": "work", "kind": "agent", "agent_role": "ranked", "priority": 10}]}))
        .await;
    // Started lowest first, so that age alone would lease them in this order.
    let low = start(s, &plain, json!({"input": {}, "priority": 2})).await;
    let normal = start(s, &plain, json!({"input": {}})).await;
    let high = start(s, &plain, json!({"input": {}, "priority": 9})).await;
    let own = start(s, &urgent, json!({"input": {}, "priority": 1})).await;
    let mut recorded = Vec::new();
    for execution in [&low, &normal, &high, &own] {
        recorded.push(dispatched(s, execution).await["data"]["priority"].clone());
    }
    assert_eq!(recorded, [json!(2), Value::Null, json!(9), json!(10)]);
    let types = s.events(&high).await;
    assert_eq!(
        types.types()[..2],
        ["ExecutionStarted", "PrioritySet"],
        "{:?}",
        types.types()
    );
    assert_eq!(s.events(&normal).await.count("PrioritySet", None), 0);

    let (status, agent) = s
        .post(
            "/api/v1/agents",
            json!({"name": "ranker", "roles": ["ranked"], "capacity": 10}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["agent_id"].as_str().expect("id").to_owned();
    let mut order = Vec::new();
    for _ in 0..4 {
        let (lease, execution) = crate::routing::poll_one(s, &agent, 3000)
            .await
            .expect("a lease");
        order.push(execution);
        let done = s
            .post(
                &format!("/api/v1/tasks/{lease}/complete"),
                json!({"output": {}}),
            )
            .await;
        assert_eq!(done.0, 200);
    }
    assert_eq!(order, [own, high, normal, low]);
}

pub async fn bad_priorities_are_refused(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "p", "tasks": [
            {"id": "work", "kind": "agent", "agent_role": "ranked"}]}))
        .await;
    for priority in [
        json!(0),
        json!(11),
        json!(300),
        json!("high"),
        json!(-1),
        json!(2.5),
    ] {
        let (status, body) = s
            .post(
                &format!("/api/v1/workflows/{workflow}/execute"),
                json!({"input": {}, "priority": priority}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (400, &json!("invalid_request")),
            "{priority}: {body}"
        );
    }
    let (_, status) = s.get(&format!("/api/v1/workflows/{workflow}/status")).await;
    assert_eq!(status["status"], "idle", "nothing started: {status}");
    for task in [
        json!({"id": "t", "kind": "agent", "agent_role": "r", "priority": 0}),
        json!({"id": "t", "kind": "agent", "agent_role": "r", "priority": 11}),
        json!({"id": "t", "kind": "noop", "priority": 5}),
    ] {
        let (status, body) = s
            .post(
                "/api/v1/workflows",
                json!({"name": "bad-priority", "tasks": [task]}),
            )
            .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (422, &json!("invalid_task")),
            "{task}: {body}"
        );
    }
}
