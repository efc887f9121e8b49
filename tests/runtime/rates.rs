//! Rate limits end to end: attempts of rate-limited tasks start no faster than their
//! bucket allows — across every engine of a store, measured from the `TaskStarted`
//! timestamps of the log — for built-ins and for agent leases alike; a key that cannot
//! be computed fails its attempt for good; bad limits are refused at create.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::harness::TestServer;

/// When each `TaskStarted` of `execution` whose task id starts with `prefix` was
/// recorded.
async fn started_at(s: &TestServer, execution: &str, prefix: &str) -> Vec<DateTime<Utc>> {
    s.events(execution)
        .await
        .0
        .iter()
        .filter(|e| e["type"] == "TaskStarted")
        .filter(|e| {
            e["data"]["task_id"]
                .as_str()
                .is_some_and(|t| t.starts_with(prefix))
        })
        .filter_map(|e| e["recorded_at"].as_str()?.parse().ok())
        .collect()
}

/// 500 `sleep` attempts limited to 50/s with a burst of 5 (10 s of tokens), in ten
/// executions started through both servers of one store (when `second` is given):
/// over the run they start no faster than the rate allows — the first to the last
/// take at least (500 − 5) / 50 s — and in no second do more than 50 + 5 start, plus 10
/// for the recording: a start is timed when its event is appended, which trails the
/// token by the engine's round and commit, by a varying ~10–200 ms under this load
/// (10 tokens' worth at most).
pub async fn a_rate_limit_holds_across_every_engine(
    first: &TestServer,
    second: Option<&TestServer>,
) {
    let (rate, burst, per_execution, executions) = (50.0, 5, 50, 10);
    let workflow = first
        .create_workflow(json!({"name": "limited", "tasks": [
            {"id": "fan", "kind": "map", "items": "${input.items}", "max_parallel": 100,
             "template": {"kind": "sleep", "sleep_ms": 1, "input": {"n": "${item}"},
                          "rate_limit": {"key": "'shared-api'", "per_second": rate, "burst": burst}}}]}))
        .await;
    let items: Vec<u32> = (0..per_execution).collect();
    let mut started = Vec::new();
    for i in 0..executions {
        let server = match second {
            Some(other) if i % 2 == 1 => other,
            _ => first,
        };
        started.push(server.execute(&workflow, json!({ "items": items })).await);
    }
    let mut times = Vec::new();
    for execution in &started {
        let body = first.wait_terminal(execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        times.extend(started_at(first, execution, "fan[").await);
    }
    times.sort();
    assert_eq!(times.len(), (per_execution * executions) as usize);
    let most = rate as usize + burst + 10;
    let mut busiest = 0;
    for (i, t) in times.iter().enumerate() {
        let within = times[i..]
            .iter()
            .take_while(|u| (**u - *t).num_milliseconds() < 1000)
            .count();
        assert!(
            within <= most,
            "{within} starts in the second from {t}, more than {most}"
        );
        busiest = busiest.max(within);
    }
    let span = (times[times.len() - 1] - times[0]).num_milliseconds();
    eprintln!(
        "rate limit {rate}/s burst {burst}: {} starts over {span} ms, at most {busiest} in any second",
        times.len()
    );
    let least = ((times.len() - burst) as f64 / rate * 1000.0) as i64 - 200;
    assert!(
        span >= least,
        "{} starts took {span} ms, less than {least}",
        times.len()
    );
}

/// Agent leases wait for their tokens too: four tasks limited to 4/s (burst 1) leased
/// by one poll start at least ~250 ms apart.
pub async fn agent_leases_wait_for_their_tokens(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "limited-agent", "tasks": [
            {"id": "call", "kind": "agent", "agent_role": "caller",
             "input": {"customer": "${input.customer}"},
             "rate_limit": {"key": "input.customer", "per_second": 4}}]}))
        .await;
    let mut executions = Vec::new();
    for _ in 0..4 {
        executions.push(s.execute(&workflow, json!({"customer": "acme"})).await);
    }
    let (status, agent) = s
        .post(
            "/api/v1/agents",
            json!({"name": "caller", "roles": ["caller"], "capacity": 4}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["agent_id"].as_str().expect("id").to_owned();
    let mut leased = 0;
    while leased < 4 {
        let (status, body) = s
            .post(
                &format!("/api/v1/agents/{agent}/poll?max=4&wait_ms=5000"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let tasks = body["tasks"].as_array().cloned().unwrap_or_default();
        assert!(!tasks.is_empty(), "every task is leased in time");
        leased += tasks.len();
    }
    let mut times = Vec::new();
    for execution in &executions {
        times.extend(started_at(s, execution, "call").await);
    }
    times.sort();
    assert_eq!(times.len(), 4);
    for pair in times.windows(2) {
        let gap = (pair[1] - pair[0]).num_milliseconds();
        assert!(gap >= 200, "leases {gap} ms apart: {times:?}");
    }
}

/// A key the input cannot give fails the attempt for good, naming the key; bad limits
/// are refused when the workflow is created.
pub async fn bad_rate_limits_are_refused(s: &TestServer) {
    let body = s
        .wait_terminal(
            &s.run(
                json!({"name": "keyless", "tasks": [
                    {"id": "t", "kind": "sleep", "sleep_ms": 1, "input": {"x": 1},
                     "rate_limit": {"key": "input.customer", "per_second": 10}}]}),
                json!({}),
            )
            .await,
        )
        .await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let error = body["tasks"]["t"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("rate_limit.key"), "{body:#}");

    let limited = |kind: &str, limit: Value| {
        let mut task = json!({"id": "t", "kind": kind, "rate_limit": limit});
        if kind == "agent" {
            task["agent_role"] = json!("r");
        }
        json!({"name": "bad-limit", "tasks": [task]})
    };
    for (kind, limit) in [
        ("noop", json!({"key": "'k'", "per_second": 1})),
        ("agent", json!({"key": "input.", "per_second": 1})),
        ("agent", json!({"key": "tasks.a.output", "per_second": 1})),
        ("agent", json!({"key": "'k'", "per_second": 0})),
        ("agent", json!({"key": "'k'", "per_second": -3})),
        ("sleep", json!({"key": "'k'", "per_second": 1, "burst": 0})),
        ("agent", json!({"key": "'k'", "per_second": "fast"})),
        ("agent", json!({"key": "'k'", "per_second": 1, "window": 3})),
    ] {
        let (status, answer) = s
            .post("/api/v1/workflows", limited(kind, limit.clone()))
            .await;
        assert!(
            status == 422 || status == 400,
            "{kind} {limit}: {status} {answer}"
        );
        if status == 422 {
            assert_eq!(answer["error"]["code"], "invalid_task", "{answer}");
        }
    }
}
