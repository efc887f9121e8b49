//! Control flow end to end: a `switch` and `when` conditions choose what runs, trigger
//! rules react to skips, watched over the live stream; definitions whose conditions do
//! not compile or name a task that is not upstream are refused and record nothing; an
//! attempt without a `timeout_seconds` still has the default deadline.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::agent::TestAgent;
use crate::harness::TestServer;

fn routed() -> Value {
    json!({"name": "routed", "tasks": [
        {"id": "score", "kind": "noop", "input": {"score": "${input.score}"}},
        {"id": "route", "kind": "switch", "depends_on": ["score"], "cases": [
            {"when": "tasks.score.output.score >= 90", "next": ["vip"]},
            {"when": "tasks.score.output.score >= 50", "next": ["standard"]}
        ], "default": ["reject"]},
        {"id": "vip", "kind": "noop", "depends_on": ["route"], "input": {"lane": "vip"}},
        {"id": "standard", "kind": "noop", "depends_on": ["route"], "input": {"lane": "standard"}},
        {"id": "reject", "kind": "noop", "depends_on": ["route"], "input": {"lane": "reject"}},
        {"id": "notify", "kind": "noop", "depends_on": ["vip", "standard", "reject"],
         "trigger_rule": "one_success", "when": "input.notify", "input": {"sent": true}},
        {"id": "audit", "kind": "noop", "depends_on": ["vip", "standard", "reject"],
         "input": {"never": "runs: two of its upstream tasks are always skipped"}}
    ]})
}

/// Every event frame of the live stream of `execution` from its first event (`after=0`:
/// the stream may open after the run has begun) up to its end, as event types with
/// their task ids.
async fn watch(s: &TestServer, execution: &str) -> Vec<(String, String)> {
    let path = format!("/ws/executions/{execution}?after=0");
    let (mut socket, _) = s.ws_connect(&path).await.expect("websocket connect");
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("the execution ends within 60 s");
        let Some(Ok(Message::Text(text))) = frame else {
            match frame {
                Some(Ok(_)) => continue,
                _ => break,
            }
        };
        let value: Value = serde_json::from_str(&text).expect("a JSON frame");
        if value["type"] == "snapshot" {
            continue;
        }
        let event = &value["event"];
        let ty = event["type"].as_str().unwrap_or_default().to_owned();
        let task = event["data"]["task_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let end = matches!(
            ty.as_str(),
            "ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled"
        );
        seen.push((ty, task));
        if end {
            break;
        }
    }
    seen
}

/// A switch takes one branch per input, the others are skipped, a `one_success` join
/// runs when its `when` holds, and an `all_success` join after skipped branches is
/// skipped — in the log, the live stream and the execution body alike.
pub async fn a_switch_and_conditions_choose_what_runs(s: &TestServer) {
    let workflow = s.create_workflow(routed()).await;
    for (score, notify, lane) in [
        (95, true, "vip"),
        (70, false, "standard"),
        (10, true, "reject"),
    ] {
        let execution = s
            .execute(&workflow, json!({"score": score, "notify": notify}))
            .await;
        let seen = watch(s, &execution).await;
        let body = s.wait_terminal(&execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        let tasks = &body["tasks"];
        for branch in ["vip", "standard", "reject"] {
            let expected = if branch == lane {
                "completed"
            } else {
                "skipped"
            };
            assert_eq!(tasks[branch]["status"], expected, "{branch}: {body:#}");
        }
        assert_eq!(tasks["route"]["output"]["next"], json!([lane]), "{body:#}");
        let notified = if notify { "completed" } else { "skipped" };
        assert_eq!(tasks["notify"]["status"], notified, "{body:#}");
        assert_eq!(tasks["audit"]["status"], "skipped", "{body:#}");
        let mut output = json!({});
        if notify {
            output["notify"] = json!({"sent": true});
        }
        assert_eq!(body["output"], output, "{body:#}");

        let log = s.events(&execution).await;
        log.assert_well_formed();
        assert_eq!(log.count("TaskScheduled", Some("audit")), 0);
        assert_eq!(log.count("TaskSkipped", Some("audit")), 1);
        let skipped: Vec<(String, String)> = seen
            .iter()
            .filter(|(ty, _)| ty == "TaskSkipped")
            .cloned()
            .collect();
        assert_eq!(
            skipped.len(),
            log.count("TaskSkipped", None),
            "the live stream shows every skip: {seen:?}"
        );
        assert_eq!(
            seen.last().map(|(t, _)| t.as_str()),
            Some("ExecutionCompleted")
        );
    }
}

/// Conditions that do not compile, name a task that is not upstream, or a switch whose
/// branch does not depend on it: 422 `invalid_task` naming the task, and nothing is
/// recorded (the next valid definition of that name is its version 1).
pub async fn bad_conditions_are_refused(s: &TestServer) {
    let cases = [
        (
            json!([{"id": "a", "kind": "noop", "when": "input.n >"}]),
            "a",
        ),
        (
            json!([{"id": "a", "kind": "noop"}, {"id": "b", "kind": "noop", "when": "tasks.a.output"}]),
            "b",
        ),
        (
            json!([{"id": "s", "kind": "switch", "cases": [{"when": "true", "next": ["x"]}]},
                   {"id": "x", "kind": "noop"}]),
            "s",
        ),
        (json!([{"id": "s", "kind": "switch"}]), "s"),
    ];
    for (tasks, task) in cases {
        let (status, body) = s
            .post(
                "/api/v1/workflows",
                json!({"name": "bad-conditions", "tasks": tasks}),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["code"], "invalid_task", "{body}");
        assert_eq!(body["error"]["details"]["task"], task, "{body}");
    }
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "bad-conditions", "tasks": [{"id": "a", "kind": "noop", "trigger_rule": "maybe"}]}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "bad-conditions", "tasks": [{"id": "a", "kind": "noop", "when": "true"}]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["version"], 1, "nothing was recorded before: {body}");
}

/// A condition that fails at run time (it reads what the input lacks) fails its task
/// for good with the reason, and the execution with it.
pub async fn a_condition_that_fails_at_run_time_fails_the_task(s: &TestServer) {
    let execution = s
        .run(
            json!({"name": "cel-error", "tasks": [
                {"id": "a", "kind": "noop", "when": "input.missing.deeper > 1"}
            ]}),
            json!({}),
        )
        .await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let error = body["tasks"]["a"]["error"].as_str().unwrap_or_default();
    assert!(
        error.starts_with("when: `input.missing.deeper > 1` failed"),
        "{body:#}"
    );
}

/// With `CONFLUX_DEFAULT_TASK_TIMEOUT_SECONDS=1`, an agent task that names no timeout
/// and whose agent goes silent times out after a second instead of waiting forever.
pub async fn a_silent_agent_meets_the_default_deadline(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["quiet"]).await;
    let execution = s
        .run(
            json!({"name": "default-deadline", "tasks": [
                {"id": "work", "kind": "agent", "agent_role": "quiet"}
            ]}),
            json!({}),
        )
        .await;
    let lease = agent.next_lease().await;
    assert_eq!(lease.attempt, 1);
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(body["tasks"]["work"]["status"], "timed_out", "{body:#}");
    let log = s.events(&execution).await;
    assert_eq!(log.count("TaskTimedOut", Some("work")), 1);
}

/// Planner → map → reduce: the planner's output decides how many workers run (at most
/// two at once), each item is its own attempt in the body and on the live stream, and
/// the reducer gets the items' outputs in input order.
pub async fn a_planner_fans_out_to_a_map_and_a_reducer(s: &TestServer) {
    let planner = TestAgent::register(&s.base, &["planner"]).await;
    let worker = TestAgent::register(&s.base, &["worker"]).await;
    let execution = s
        .run(
            json!({"name": "fan-out", "tasks": [
                {"id": "plan", "kind": "agent", "agent_role": "planner"},
                {"id": "fan", "kind": "map", "depends_on": ["plan"], "max_parallel": 2,
                 "items": "${tasks.plan.output.steps}",
                 "template": {"kind": "agent", "agent_role": "worker",
                              "input": {"step": "${item.name}", "at": "${index}"}}},
                {"id": "reduce", "kind": "noop", "depends_on": ["fan"],
                 "input": {"all": "${tasks.fan.output}"}}
            ]}),
            json!({}),
        )
        .await;
    let stream = {
        let path = format!("/ws/executions/{execution}");
        s.ws_connect(&path).await.expect("websocket connect").0
    };
    let plan = planner.next_lease().await;
    let steps = json!({"steps": [{"name": "a"}, {"name": "b"}, {"name": "c"}]});
    assert_eq!(planner.complete(&plan, steps).await.0, 200);
    let mut seen = Vec::new();
    for _ in 0..3 {
        let lease = worker.next_lease().await;
        seen.push(lease.task_id.clone());
        let step = lease.input["step"].clone();
        assert_eq!(
            lease.input["at"],
            json!(lease.task_id[4..5].parse::<u64>().unwrap_or(9))
        );
        assert_eq!(worker.complete(&lease, json!({"did": step})).await.0, 200);
    }
    seen.sort();
    assert_eq!(seen, ["fan[0]", "fan[1]", "fan[2]"]);
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    let outputs = json!([{"did": "a"}, {"did": "b"}, {"did": "c"}]);
    assert_eq!(body["tasks"]["fan"]["output"], outputs, "{body:#}");
    assert_eq!(
        body["output"],
        json!({"reduce": {"all": outputs}}),
        "{body:#}"
    );
    for k in 0..3 {
        assert_eq!(
            body["tasks"][format!("fan[{k}]")]["status"],
            "completed",
            "{body:#}"
        );
    }
    let log = s.events(&execution).await;
    log.assert_well_formed();
    // At most two items at once: the third is scheduled after one of the first two
    // completed.
    let third = log.only("TaskScheduled", "fan[2]");
    let first_done = ["fan[0]", "fan[1]"]
        .iter()
        .map(|t| log.only("TaskCompleted", t))
        .min()
        .unwrap_or(usize::MAX);
    assert!(first_done < third, "{:?}", log.types());
    let mut socket = stream;
    let mut items_completed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline, socket.next()).await {
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(&text).expect("a JSON frame");
        let event = &value["event"];
        let task = event["data"]["task_id"].as_str().unwrap_or_default();
        if event["type"] == "TaskCompleted" && task.starts_with("fan[") {
            items_completed += 1;
        }
        if event["type"] == "ExecutionCompleted" {
            break;
        }
    }
    assert_eq!(items_completed, 3, "every item on the live stream");
}

/// A thousand items of a built-in template run and come back in input order (the
/// loadtest's `w9-map` runs ten thousand).
pub async fn a_wide_map_completes_in_order(s: &TestServer) {
    let items: Vec<u64> = (0..1_000).collect();
    let execution = s
        .run(
            json!({"name": "wide", "tasks": [
                {"id": "fan", "kind": "map", "items": "${input.items}",
                 "template": {"kind": "noop", "input": {"n": "${item}", "i": "${index}"}}}
            ]}),
            json!({"items": items}),
        )
        .await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed");
    let output = body["output"]["fan"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(output.len(), 1_000);
    for (k, item) in output.iter().enumerate() {
        assert_eq!(item, &json!({"n": k, "i": k}));
    }
    assert_eq!(body["tasks"]["fan[999]"]["status"], "completed");
}

/// Maps refused at create (422 `invalid_task` naming the task), and one whose items
/// are not an array at run time fails with the reason.
pub async fn bad_maps_are_refused(s: &TestServer) {
    let too_many: Vec<u64> = (0..10_001).collect();
    let template = json!({"kind": "noop", "input": "${item}"});
    let cases = [
        (
            json!([{"id": "m", "kind": "map", "items": too_many, "template": template}]),
            "m",
            "more than 10000",
        ),
        (
            json!([{"id": "m", "kind": "map", "items": [1]}]),
            "m",
            "template is required",
        ),
        (
            json!([{"id": "m", "kind": "map", "items": [1], "template": {"kind": "switch"}}]),
            "m",
            "cannot be a map's item",
        ),
        (
            json!([{"id": "m", "kind": "map", "items": 7, "template": template}]),
            "m",
            "items must be an array",
        ),
        (
            json!([{"id": "a", "kind": "noop", "input": "${item}"}]),
            "a",
            "only in a map's template",
        ),
        (
            json!([{"id": "a[1]", "kind": "noop"}]),
            "a[1]",
            "names a map's item",
        ),
    ];
    for (tasks, task, reason) in cases {
        let (status, body) = s
            .post(
                "/api/v1/workflows",
                json!({"name": "bad-maps", "tasks": tasks}),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["error"]["details"]["task"], task, "{body}");
        let said = body["error"]["details"]["reason"]
            .as_str()
            .unwrap_or_default();
        assert!(said.contains(reason), "{reason}: {body}");
    }
    let execution = s
        .run(
            json!({"name": "bad-maps", "tasks": [
                {"id": "m", "kind": "map", "items": "${input.list}", "template": template}
            ]}),
            json!({"list": {"not": "an array"}}),
        )
        .await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    let error = body["tasks"]["m"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("items is not an array"), "{body:#}");
}
