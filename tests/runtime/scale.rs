//! Scaling out (Postgres + Redis only): two servers, each with its own engine, relay
//! and connections, share one database and one Redis prefix. Work submitted to either
//! is done exactly once.

use std::collections::HashMap;

use serde_json::{json, Value};

use crate::harness::{Mode, TestServer};

/// Scenario 12: Thirty executions of a 1 → 5 → 1 diamond of noops, submitted alternately to the
/// two servers: all complete, and no task of any execution completed twice (per
/// attempt and per task).
pub async fn two_engines_complete_everything_once() {
    let first = TestServer::start(Mode::PostgresRedis).await;
    let second = first.join().await;
    let branches = ["b1", "b2", "b3", "b4", "b5"];
    let mut tasks = vec![json!({"id": "root", "kind": "noop"})];
    tasks.extend(
        branches
            .iter()
            .map(|b| json!({"id": b, "kind": "noop", "depends_on": ["root"], "input": {"b": b}})),
    );
    tasks.push(json!({"id": "join", "kind": "noop", "depends_on": branches}));
    let workflow = first
        .create_workflow(json!({"name": "scale", "tasks": tasks}))
        .await;

    let mut executions = Vec::new();
    for n in 0..30 {
        let server = if n % 2 == 0 { &first } else { &second };
        executions.push(server.execute(&workflow, json!({ "n": n })).await);
    }
    for (n, execution) in executions.iter().enumerate() {
        // Read alternately too: both servers see the same log.
        let server = if n % 3 == 0 { &second } else { &first };
        let body = server.wait_terminal(execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        let log = server.events(execution).await;
        let mut per_attempt: HashMap<(String, u64), usize> = HashMap::new();
        let mut per_task: HashMap<String, usize> = HashMap::new();
        for e in log.0.iter().filter(|e| e["type"] == "TaskCompleted") {
            let task = e["data"]["task_id"].as_str().unwrap_or("").to_owned();
            let attempt = e["data"]["attempt"].as_u64().unwrap_or(0);
            *per_attempt.entry((task.clone(), attempt)).or_default() += 1;
            *per_task.entry(task).or_default() += 1;
        }
        assert!(
            per_attempt.values().all(|&n| n == 1),
            "{execution}: {per_attempt:?}"
        );
        assert_eq!(per_task.len(), 7, "{execution}: {per_task:?}");
        assert!(
            per_task.values().all(|&n| n == 1),
            "{execution}: {per_task:?}"
        );
        assert_eq!(log.count("ExecutionStarted", None), 1);
        assert_eq!(log.count("ExecutionCompleted", None), 1);
        let join: Value = log.at(log.only("TaskScheduled", "join")).clone();
        for b in branches {
            assert!(
                log.only("TaskCompleted", b) < log.only("TaskScheduled", "join"),
                "{join}"
            );
        }
    }
    second.stop().await;
    first.stop().await;
}

/// Scenario 12b: one of two servers stops (gracefully) while its engine runs built-in
/// tasks: the stopping engine drains (waits for its running built-ins and records their
/// results), and the other server finishes every execution.
pub async fn a_stopping_engine_hands_over_its_work() {
    let first = TestServer::start(Mode::PostgresRedis).await;
    let second = first.join().await;
    let workflow = first
        .create_workflow(json!({"name": "handover", "tasks": [
            {"id": "nap", "kind": "sleep", "sleep_ms": 1000},
            {"id": "after", "kind": "noop", "depends_on": ["nap"], "input": "${tasks.nap.output}"}
        ]}))
        .await;
    let mut executions = Vec::new();
    for n in 0..6 {
        let server = if n % 2 == 0 { &first } else { &second };
        executions.push(server.execute(&workflow, json!({})).await);
    }
    for execution in &executions {
        first
            .wait_events(execution, "the nap started", |log| {
                log.count("TaskStarted", Some("nap")) == 1
            })
            .await;
    }
    second.stop().await;
    for execution in &executions {
        let body = first.wait_terminal(execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        assert_eq!(body["output"], json!({"after": {"slept_ms": 1000}}));
    }
    first.stop().await;
}

/// An engine died right after it started a built-in: the attempt's `TaskStarted` is in
/// the log, its runner is gone, and no engine restarts. A running engine's sweep takes
/// the idle execution over, runs the attempt again, and the execution completes.
pub async fn an_abandoned_execution_is_taken_over(mode: Mode) {
    let server = TestServer::start_tuned(mode, |c| c.engine_stale_after_ms = 600).await;
    let workflow = server
        .create_workflow(
            json!({"name": "orphan", "tasks": [{"id": "a", "kind": "noop", "input": {"v": 1}}]}),
        )
        .await;
    let workflow_id: uuid::Uuid = workflow.parse().expect("workflow id");
    let execution = uuid::Uuid::now_v7();
    let dead_engine = [
        (
            "ExecutionStarted",
            json!({"execution_id": execution, "workflow_id": workflow_id, "input": {}}),
        ),
        ("TaskScheduled", json!({"task_id": "a", "attempt": 1})),
        (
            "TaskDispatched",
            json!({"task_id": "a", "attempt": 1, "input": {"v": 1}}),
        ),
        ("TaskStarted", json!({"task_id": "a", "attempt": 1})),
    ];
    let events = dead_engine
        .into_iter()
        .map(|(t, d)| {
            let event = conflux_schema::Event::from_parts(t, d).expect("event");
            conflux_schema::NewEvent::new(event, conflux_schema::EventMetadata::default())
        })
        .collect();
    server
        .backends
        .store
        .append(&conflux_schema::StreamId::execution(execution), 0, events)
        .await
        .expect("append the dead engine's events");
    let body = server.wait_terminal(&execution.to_string()).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["output"], json!({"a": {"v": 1}}));
    server.stop().await;
}
