//! Capability-scored routing end to end: with several agents waiting, the one the
//! documented formula prefers leases the task — the cheaper, the specialist, the less
//! loaded — whichever poll took the ticket, and the lease's `TaskStarted` records every
//! candidate's components and a score that is their weighted sum. A tenant's policy
//! sets its weights; weights that cannot be used are refused and change nothing.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::tenants::system_admin;

/// Registers an agent of role `scorer` and returns its id.
async fn register(
    s: &TestServer,
    name: &str,
    capabilities: &[&str],
    capacity: u32,
    cost: f64,
) -> String {
    let (status, body) = s
        .post(
            "/api/v1/agents",
            json!({"name": name, "roles": ["scorer"], "capabilities": capabilities,
                   "capacity": capacity, "cost": cost}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["agent_id"].as_str().expect("an id").to_owned()
}

/// One poll of `agent` for at most one task: the lease's `(lease_id, execution_id)`.
pub async fn poll_one(s: &TestServer, agent: &str, wait_ms: u64) -> Option<(String, String)> {
    let (status, body) = s
        .post(
            &format!("/api/v1/agents/{agent}/poll?max=1&wait_ms={wait_ms}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let task = body["tasks"].as_array()?.first()?.clone();
    let text = |k: &str| task[k].as_str().unwrap_or_default().to_owned();
    Some((text("lease_id"), text("execution_id")))
}

/// Every agent in `waiting` polls at once; when they all wait, one execution of a
/// one-task workflow (requiring `requires`) starts. Returns the lease's `TaskStarted`
/// and which agent got the lease, after checking that exactly one did.
async fn race(s: &TestServer, waiting: &[&str], requires: Value) -> (Value, String) {
    let workflow = s
        .create_workflow(json!({"name": "scored", "tasks": [
            {"id": "job", "kind": "agent", "agent_role": "scorer", "requires": requires}]}))
        .await;
    let polls = futures::future::join_all(waiting.iter().map(|a| poll_one(s, a, 3000)));
    let start = async {
        // Long enough for every poll to be waiting in its take.
        tokio::time::sleep(Duration::from_millis(400)).await;
        s.execute(&workflow, json!({})).await
    };
    let (leases, execution) = tokio::join!(polls, start);
    let got: Vec<(usize, (String, String))> = leases
        .into_iter()
        .enumerate()
        .filter_map(|(i, l)| l.map(|l| (i, l)))
        .collect();
    assert_eq!(
        got.len(),
        1,
        "one agent of {waiting:?} leases the task: {got:?}"
    );
    let (winner, (lease, leased_execution)) = got[0].clone();
    assert_eq!(leased_execution, execution);
    let status = s
        .post(
            &format!("/api/v1/tasks/{lease}/complete"),
            json!({"output": {}}),
        )
        .await
        .0;
    assert_eq!(status, 200);
    let log = s.events(&execution).await;
    let started = log
        .0
        .iter()
        .find(|e| e["type"] == "TaskStarted")
        .cloned()
        .expect("a TaskStarted");
    (started, waiting[winner].to_owned())
}

/// The candidates recorded in `started`, after checking each score is the weighted sum
/// of its components under the recorded weights.
fn candidates(started: &Value) -> Vec<Value> {
    let routing = &started["data"]["routing"];
    let w = &routing["weights"];
    let list = routing["candidates"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!list.is_empty(), "no candidates recorded: {started:#}");
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or(f64::NAN);
    for c in &list {
        let sum = f(w, "capability") * f(c, "capability")
            + f(w, "availability") * f(c, "availability")
            + f(w, "history") * f(c, "history")
            + f(w, "cost") * f(c, "cost");
        assert!(
            (f(c, "score") - sum).abs() < 1e-9,
            "score is not the formula: {c}"
        );
    }
    let scores: Vec<f64> = list.iter().map(|c| f(c, "score")).collect();
    assert!(
        scores.windows(2).all(|p| p[0] >= p[1]),
        "best first: {scores:?}"
    );
    list
}

fn ids(list: &[Value]) -> Vec<&str> {
    list.iter().filter_map(|c| c["agent_id"].as_str()).collect()
}

/// Cheaper wins when all else is equal; a specialist beats a generalist for what it
/// does; the less loaded agent wins; a tenant's weights are recorded and used.
pub async fn the_best_scored_waiting_agent_gets_the_task(s: &TestServer) {
    let cheap = register(s, "cheap", &[], 4, 0.01).await;
    let dear = register(s, "dear", &[], 4, 0.05).await;
    for _ in 0..3 {
        let (started, winner) = race(s, &[&dear, &cheap], json!([])).await;
        assert_eq!(winner, cheap, "{started:#}");
        assert_eq!(started["data"]["agent_id"], json!(cheap));
        let list = candidates(&started);
        assert_eq!(ids(&list), [cheap.as_str(), dear.as_str()], "{started:#}");
        assert_eq!(
            (&list[0]["cost"], &list[1]["cost"]),
            (&json!(1.0), &json!(0.0))
        );
        assert_eq!(
            started["data"]["routing"]["weights"],
            json!({"capability": 0.4, "availability": 0.2, "history": 0.3, "cost": 0.1})
        );
    }
    drain(s, &[&cheap, &dear]).await;

    let gpu = register(s, "gpu-only", &["gpu"], 4, 0.05).await;
    let general = register(s, "generalist", &["gpu", "python", "arm"], 4, 0.01).await;
    let (started, winner) = race(s, &[&general, &gpu], json!(["gpu"])).await;
    assert_eq!(
        winner, gpu,
        "the specialist is kept for its work: {started:#}"
    );
    let list = candidates(&started);
    assert_eq!(list[0]["capability"], json!(1.0));
    assert!((list[1]["capability"].as_f64().unwrap_or(0.0) - 1.0 / 3.0).abs() < 1e-9);
    drain(s, &[&gpu, &general]).await;

    // `busy` holds one of its two slots; `idle` is otherwise the same.
    let busy = register(s, "busy", &[], 2, 0.02).await;
    let held = s
        .run(
            json!({"name": "holder", "tasks": [
            {"id": "hold", "kind": "agent", "agent_role": "scorer"}]}),
            json!({}),
        )
        .await;
    let lease = poll_one(s, &busy, 5000)
        .await
        .expect("busy leases the holder");
    assert_eq!(lease.1, held);
    let idle = register(s, "idle", &[], 2, 0.02).await;
    let (started, winner) = race(s, &[&busy, &idle], json!([])).await;
    assert_eq!(winner, idle, "the less loaded agent wins: {started:#}");
    let list = candidates(&started);
    assert_eq!(
        (&list[0]["availability"], &list[1]["availability"]),
        (&json!(1.0), &json!(0.5))
    );
    let done = s
        .post(
            &format!("/api/v1/tasks/{}/complete", lease.0),
            json!({"output": {}}),
        )
        .await;
    assert_eq!(done.0, 200);

    // Only cost counts now: the recorded weights are the tenant's.
    let weights = json!({"capability": 0.0, "availability": 0.0, "history": 0.0, "cost": 1.0});
    let (status, policy) = system_admin(s)
        .call(
            "PUT",
            "/api/v1/tenants/default/policy",
            Some(json!({"routing_weights": weights})),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["routing_weights"], weights);
    let pricey = register(s, "pricey", &[], 2, 0.5).await;
    let (started, winner) = race(s, &[&pricey, &idle], json!([])).await;
    assert_eq!(winner, idle);
    assert_eq!(started["data"]["routing"]["weights"], weights);
    let list = candidates(&started);
    let score_of = |agent: &str| {
        list.iter()
            .find(|c| c["agent_id"] == agent)
            .map(|c| c["score"].clone())
    };
    assert_eq!(
        (score_of(&idle), score_of(&pricey)),
        (Some(json!(1.0)), Some(json!(0.0))),
        "{started:#}"
    );
}

/// The poll that takes a ticket is not the best agent's: it hands the ticket to the
/// best agent's mailbox, whose waiting poll leases it. Deterministic: the ticket waits
/// in a queue of a requirement set first used while both poll, which the earlier poll
/// reads first (a poll reads such queues afresh at each 2 s step).
pub async fn a_ticket_taken_by_a_worse_agent_is_handed_to_the_best(s: &TestServer) {
    let dear = register(s, "dear", &["handover"], 4, 0.05).await;
    let cheap = register(s, "cheap", &["handover"], 4, 0.01).await;
    let workflow = s
        .create_workflow(json!({"name": "handed", "tasks": [
            {"id": "job", "kind": "agent", "agent_role": "scorer", "requires": ["handover"]}]}))
        .await;
    let first = poll_one(s, &dear, 4000);
    let second = async {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        poll_one(s, &cheap, 4000).await
    };
    let start = async {
        tokio::time::sleep(Duration::from_millis(1400)).await;
        s.execute(&workflow, json!({})).await
    };
    let (by_dear, by_cheap, execution) = tokio::join!(first, second, start);
    assert_eq!(
        by_dear, None,
        "the dearer agent took the ticket but did not lease it"
    );
    let (lease, leased) = by_cheap.expect("the cheaper agent leases it");
    assert_eq!(leased, execution);
    let done = s
        .post(
            &format!("/api/v1/tasks/{lease}/complete"),
            json!({"output": {}}),
        )
        .await;
    assert_eq!(done.0, 200);
    let log = s.events(&execution).await;
    let started = log
        .0
        .iter()
        .find(|e| e["type"] == "TaskStarted")
        .cloned()
        .expect("started");
    assert_eq!(started["data"]["agent_id"], json!(cheap));
    assert_eq!(ids(&candidates(&started)), [cheap.as_str(), dear.as_str()]);
    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("conflux_tasks_routed_elsewhere_total 1")),
        "{metrics}"
    );
}

/// Drains agents so that they take no part in later races.
async fn drain(s: &TestServer, agents: &[&str]) {
    for a in agents {
        let (status, body) = s
            .post(&format!("/api/v1/agents/{a}/drain"), json!({}))
            .await;
        assert_eq!(status, 200, "{body}");
    }
}

/// Weights that are negative, not numbers, all zero, or incomplete are refused with the
/// field named; the policy in force stays as it was.
pub async fn bad_routing_weights_are_refused(s: &TestServer) {
    let admin = system_admin(s);
    let path = "/api/v1/tenants/default/policy";
    let (_, before) = admin.call("GET", path, None).await;
    assert_eq!(
        before["routing_weights"],
        json!({"capability": 0.4, "availability": 0.2, "history": 0.3, "cost": 0.1})
    );
    for (weights, field) in [
        (
            json!({"capability": -1.0, "availability": 0.2, "history": 0.3, "cost": 0.1}),
            true,
        ),
        (
            json!({"capability": 0.0, "availability": 0.0, "history": 0.0, "cost": 0.0}),
            true,
        ),
        (
            json!({"capability": "high", "availability": 0.2, "history": 0.3, "cost": 0.1}),
            false,
        ),
        (json!({"capability": 0.4}), false),
        (
            json!({"capability": 0.4, "availability": 0.2, "history": 0.3, "cost": 0.1, "luck": 1}),
            false,
        ),
    ] {
        let (status, body) = admin
            .call("PUT", path, Some(json!({ "routing_weights": weights })))
            .await;
        assert_eq!(status, 400, "{weights}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        if field {
            assert_eq!(
                body["error"]["details"]["field"], "routing_weights",
                "{body}"
            );
        }
    }
    let (_, after) = admin.call("GET", path, None).await;
    assert_eq!(after, before, "nothing changed");
}
