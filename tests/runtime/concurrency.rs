//! Concurrency keys end to end: 100 executions on 3 keys with `max_running: 2` never
//! run more than 2 at once per key (checked from the log: from each one's
//! `ExecutionAdmitted` to its end) and all complete; `cancel_newest` cancels the
//! newcomer and `cancel_in_progress` the oldest running, exactly; bad limits and inputs
//! without a key are refused and start nothing.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::harness::TestServer;

/// Starts `workflow` with `input`; returns the execution id and the status answered.
async fn start(s: &TestServer, workflow: &str, input: Value) -> (String, String) {
    let (status, body) = s
        .post(
            &format!("/api/v1/workflows/{workflow}/execute"),
            json!({ "input": input }),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let text = |k: &str| body[k].as_str().unwrap_or_default().to_owned();
    (text("execution_id"), text("status"))
}

fn time_of(log: &[Value], ty: &str) -> Option<DateTime<Utc>> {
    log.iter()
        .find(|e| e["type"] == ty)
        .and_then(|e| e["recorded_at"].as_str()?.parse().ok())
}

pub async fn at_most_max_running_per_key(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "keyed",
            "concurrency": {"key": "input.k", "max_running": 2},
            "tasks": [{"id": "work", "kind": "sleep", "sleep_ms": 100}]}))
        .await;
    let keys = ["a", "b", "c"];
    // All at once, so that keys fill up and executions queue.
    let answers = futures::future::join_all(
        (0..100).map(|i| start(s, &workflow, json!({ "k": keys[i % 3] }))),
    )
    .await;
    let mut started = Vec::new();
    let mut queued = 0;
    for (i, (execution, status)) in answers.into_iter().enumerate() {
        assert!(status == "running" || status == "queued", "{status}");
        if status == "queued" {
            queued += 1;
        }
        started.push((keys[i % 3], execution));
    }
    assert!(queued > 0, "a burst of 100 on 6 slots queues some");
    // Per key: +1 at admission, -1 at the end; ends first among equal times.
    let mut changes: BTreeMap<&str, Vec<(DateTime<Utc>, i32)>> = BTreeMap::new();
    for (key, execution) in &started {
        let body = s.wait_terminal(execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        let log = s.events(execution).await.0;
        let types: Vec<&str> = log.iter().filter_map(|e| e["type"].as_str()).collect();
        assert_eq!(
            types[..3],
            ["ExecutionStarted", "ExecutionQueued", "ExecutionAdmitted"],
            "{types:?}"
        );
        let admitted = time_of(&log, "ExecutionAdmitted").expect("admitted");
        let ended = time_of(&log, "ExecutionCompleted").expect("completed");
        changes
            .entry(key)
            .or_default()
            .extend([(admitted, 1), (ended, -1)]);
    }
    for (key, mut list) in changes {
        list.sort();
        let mut running = 0;
        let mut most = 0;
        for (_, change) in list {
            running += change;
            most = most.max(running);
        }
        assert!(most <= 2, "key {key}: {most} running at once");
        assert_eq!(most, 2, "key {key}: its two slots were used");
    }
}

pub async fn cancel_strategies_cancel_exactly_the_right_ones(s: &TestServer) {
    let held = |name: &str, strategy: &str| {
        json!({"name": name,
            "concurrency": {"key": "'one'", "max_running": 1, "strategy": strategy},
            "tasks": [{"id": "wait", "kind": "agent", "agent_role": "nobody"}]})
    };
    let newest = s.create_workflow(held("newest", "cancel_newest")).await;
    let (first, status) = start(s, &newest, json!({})).await;
    assert_eq!(status, "running");
    let (second, status) = start(s, &newest, json!({})).await;
    assert_eq!(status, "cancelled");
    let body = s.wait_terminal(&second).await;
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("cancel_newest"), "{body:#}");
    assert_eq!(s.execution(&first).await["status"], "running");

    let in_progress = s
        .create_workflow(held("in-progress", "cancel_in_progress"))
        .await;
    let (a, _) = start(s, &in_progress, json!({})).await;
    let (b, status) = start(s, &in_progress, json!({})).await;
    assert_eq!(status, "running");
    let body = s.wait_terminal(&a).await;
    assert_eq!(body["status"], "cancelled", "{body:#}");
    assert!(
        body["error"].as_str().unwrap_or_default().contains(&b),
        "the reason names its replacement: {body:#}"
    );
    let (c, _) = start(s, &in_progress, json!({})).await;
    assert_eq!(s.wait_terminal(&b).await["status"], "cancelled");
    assert_eq!(s.events(&c).await.count("ExecutionAdmitted", None), 1);
    // The first workflow's key is its own: still running.
    assert_eq!(s.execution(&first).await["status"], "running");
}

pub async fn bad_concurrency_is_refused(s: &TestServer) {
    for concurrency in [
        json!({"key": "input.", "max_running": 1}),
        json!({"key": "tasks.a.output", "max_running": 1}),
        json!({"key": "input.k", "max_running": 0}),
        json!({"key": "input.k", "max_running": 1, "strategy": "random"}),
        json!({"key": "input.k"}),
    ] {
        let (status, body) = s
            .post(
                "/api/v1/workflows",
                json!({"name": "bad-keys", "concurrency": concurrency,
                       "tasks": [{"id": "t", "kind": "noop"}]}),
            )
            .await;
        assert!(
            (400..500).contains(&status) && body["error"]["code"].is_string(),
            "{concurrency}: {status} {body}"
        );
    }
    let workflow = s
        .create_workflow(json!({"name": "needs-k",
            "concurrency": {"key": "input.k", "max_running": 1},
            "tasks": [{"id": "t", "kind": "noop"}]}))
        .await;
    let (status, body) = s
        .post(
            &format!("/api/v1/workflows/{workflow}/execute"),
            json!({"input": {"other": 1}}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request")),
        "{body}"
    );
    let (_, status) = s.get(&format!("/api/v1/workflows/{workflow}/status")).await;
    assert_eq!(status["status"], "idle", "nothing started: {status}");
}
