//! The waiting task kinds end to end, over HTTP and the WebSocket: a signal that arrives
//! before its task is reached and one after; a two-person approval with a wrong-role
//! 403 and a reject; bad input that changes nothing.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::agent::TestAgent;
use crate::conformance::complaint;
use crate::harness::{Log, TestServer, WsSocket, MAX_BODY_BYTES, PATIENCE};
use crate::tenants::{key_in, system_admin, Caller};
use conflux_schema::access::Role;

/// Checks a real answer against the served OpenAPI document's operation.
async fn conforms(s: &TestServer, template: &str, answer: &(u16, Value)) {
    let (_, document) = s.get("/api/v1/openapi.json").await;
    let method = if answer.0 == 200 { "get" } else { "post" };
    let operation = &document["paths"][template][method];
    assert!(operation.is_object(), "{template} is documented");
    let found = complaint(&document, operation, template, answer.0, &answer.1);
    assert_eq!(found, None);
}

/// The next JSON text frame, or None when the stream ends.
async fn next_frame(socket: &mut WsSocket) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a frame within 30 s")?;
        if let Message::Text(text) = frame.expect("frame") {
            return Some(serde_json::from_str(&text).expect("a JSON frame"));
        }
    }
}

/// The events a live stream sends until the execution's terminal event.
async fn read_to_end(socket: &mut WsSocket) -> Vec<Value> {
    let mut events = Vec::new();
    while let Some(frame) = next_frame(socket).await {
        assert_eq!(frame["type"], "event", "{frame}");
        let event = frame["event"].clone();
        let end = matches!(
            event["type"].as_str(),
            Some("ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled")
        );
        events.push(event);
        if end {
            break;
        }
    }
    events
}

/// Reads a live stream to its end and checks that it is a snapshot, then exactly the
/// events of `log` after the snapshot's position; returns those events.
pub(crate) async fn stream_is_rest_of(socket: &mut WsSocket, log: &Log) -> Vec<Value> {
    let first = next_frame(socket).await.expect("a snapshot");
    assert_eq!(first["type"], "snapshot", "{first}");
    let from = first["position"].as_u64().expect("a position");
    let streamed = read_to_end(socket).await;
    let expected: Vec<&Value> = log
        .0
        .iter()
        .filter(|e| e["position"].as_u64() > Some(from))
        .collect();
    assert_eq!(streamed.iter().collect::<Vec<_>>(), expected);
    streamed
}

fn signal_path(execution: &str, name: &str) -> String {
    format!("/api/v1/executions/{execution}/signals/{name}")
}

fn decide_path(execution: &str, task: &str, verb: &str) -> String {
    format!("/api/v1/executions/{execution}/tasks/{task}/{verb}")
}

/// Polls the execution until `task` waits (its `waiting_for` is shown).
async fn waiting(s: &TestServer, execution: &str, task: &str) -> Value {
    let started = Instant::now();
    loop {
        let body = s.execution(execution).await;
        if body["tasks"][task]["waiting_for"].is_object() {
            assert_eq!(body["tasks"][task]["status"], "running", "{body:#}");
            return body;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{task} never waited: {body:#}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn error_code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

/// The data of the only event of type `ty` whose `data.name` or `data.task_id` is `of`.
fn data<'a>(log: &'a Log, ty: &str, of: &str) -> &'a Value {
    let found: Vec<&Value> = log
        .0
        .iter()
        .filter(|e| e["type"] == ty && (e["data"]["name"] == of || e["data"]["task_id"] == of))
        .collect();
    assert_eq!(found.len(), 1, "one {ty} of {of}: {:?}", log.types());
    &found[0]["data"]
}

fn index_of(log: &Log, ty: &str, of: &str) -> usize {
    log.0
        .iter()
        .position(|e| e["type"] == ty && (e["data"]["name"] == of || e["data"]["task_id"] == of))
        .unwrap_or_else(|| panic!("no {ty} of {of}: {:?}", log.types()))
}

/// A signal sent while an agent holds the task before `early` is kept and consumed when
/// `early` is reached; the signal of `late` arrives while it waits and completes it at
/// once. The WebSocket shows exactly the log, signals included; a signal to the
/// finished execution is `409`.
pub async fn signals_arrive_before_and_after_their_task(s: &TestServer) {
    let agent = TestAgent::register(&s.base, &["holder"]).await;
    let execution = s
        .run(
            json!({"name": "signalled", "tasks": [
                {"id": "hold", "kind": "agent", "agent_role": "holder"},
                {"id": "early", "kind": "signal", "depends_on": ["hold"]},
                {"id": "late", "kind": "signal", "signal": "go-late", "depends_on": ["early"]},
                {"id": "done", "kind": "noop", "depends_on": ["late"],
                 "input": {"early": "${tasks.early.output}", "late": "${tasks.late.output.n}"}},
            ]}),
            json!({}),
        )
        .await;
    let (mut socket, _) = s
        .ws_connect(&format!("/ws/executions/{execution}"))
        .await
        .expect("websocket");
    let lease = agent.next_lease().await;
    assert_eq!(lease.task_id, "hold");

    let (status, body) = s
        .post(
            &signal_path(&execution, "early"),
            json!({"payload": {"v": "before"}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivered_to"], Value::Null, "{body}");
    assert_eq!(body["signal"], "early");
    assert_eq!(body["status"], "running");
    let (status, body) = agent.complete(&lease, json!({})).await;
    assert_eq!(status, 200, "{body}");

    let body = waiting(s, &execution, "late").await;
    assert_eq!(
        body["tasks"]["late"]["waiting_for"],
        json!({"signal": "go-late"})
    );
    assert_eq!(body["tasks"]["early"]["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["early"]["output"], json!({"v": "before"}));

    let (status, body) = s
        .post(
            &signal_path(&execution, "go-late"),
            json!({"payload": {"n": 2}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["delivered_to"], "late", "{body}");
    let template = "/api/v1/executions/{id}/signals/{signal}";
    conforms(s, template, &(status, body)).await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(
        body["output"]["done"],
        json!({"early": {"v": "before"}, "late": 2}),
        "{body:#}"
    );

    let log = s.events(&execution).await;
    log.assert_well_formed();
    assert!(index_of(&log, "SignalReceived", "early") < index_of(&log, "TaskScheduled", "early"));
    assert_eq!(
        data(&log, "SignalReceived", "early")["payload"],
        json!({"v": "before"})
    );
    let received = index_of(&log, "SignalReceived", "go-late");
    assert_eq!(received + 1, index_of(&log, "TaskCompleted", "late"));
    assert_eq!(log.0[received]["metadata"]["actor"], "admin", "the caller");
    assert_eq!(log.count("TaskStarted", Some("late")), 1);

    // The WebSocket: a snapshot, then exactly the rest of the log.
    let streamed = stream_is_rest_of(&mut socket, &log).await;
    let types: Vec<&str> = streamed.iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(types.contains(&"SignalReceived"), "{types:?}");

    let answer = s
        .post(&signal_path(&execution, "early"), json!({"payload": 1}))
        .await;
    assert_eq!(error_code(&answer), (409, "conflict"), "{}", answer.1);
    assert_eq!(s.events(&execution).await.0.len(), log.0.len());
}

/// Malformed, oversized and misdirected signals are clear 4xx answers and record
/// nothing; the waiting task still completes with the next good signal.
pub async fn bad_signals_change_nothing(s: &TestServer) {
    let execution = s
        .run(
            json!({"name": "patient", "tasks": [{"id": "s", "kind": "signal"}]}),
            json!({}),
        )
        .await;
    waiting(s, &execution, "s").await;
    let before = s.events(&execution).await.0.len();
    let path = signal_path(&execution, "s");

    let answer = s.post_raw(&path, b"{\"payload\": ".to_vec()).await;
    assert_eq!(error_code(&answer), (400, "invalid_json"), "{}", answer.1);
    let answer = s.post_raw(&path, b"[1]".to_vec()).await;
    assert_eq!(
        error_code(&answer),
        (400, "invalid_request"),
        "{}",
        answer.1
    );
    let answer = s.post(&path, json!({"payload": 1, "paylod": 2})).await;
    assert_eq!(
        error_code(&answer),
        (400, "invalid_request"),
        "{}",
        answer.1
    );
    let huge = json!({"payload": "x".repeat(MAX_BODY_BYTES + 1)});
    let answer = s.post(&path, huge).await;
    assert_eq!(
        error_code(&answer),
        (413, "payload_too_large"),
        "{}",
        answer.1
    );
    let answer = s
        .post(&signal_path(&execution, "nobody-waits"), json!({}))
        .await;
    assert_eq!(error_code(&answer), (404, "not_found"), "{}", answer.1);
    let answer = s
        .post(
            &signal_path(&uuid::Uuid::now_v7().to_string(), "s"),
            json!({}),
        )
        .await;
    assert_eq!(error_code(&answer), (404, "not_found"), "{}", answer.1);
    let answer = s.post(&signal_path("not-a-uuid", "s"), json!({})).await;
    assert_eq!(error_code(&answer), (404, "not_found"), "{}", answer.1);

    // Over the tenant's event payload quota.
    system_admin(s)
        .ok(
            "PUT",
            "/api/v1/tenants/default/policy",
            Some(json!({"quotas": {"event_payload_bytes": 1000}})),
        )
        .await;
    let answer = s
        .post(&path, json!({"payload": {"blob": "y".repeat(2000)}}))
        .await;
    assert_eq!(error_code(&answer), (413, "quota_exceeded"), "{}", answer.1);
    assert_eq!(answer.1["error"]["details"]["quota"], "event_payload_bytes");

    let log = s.events(&execution).await;
    assert_eq!(
        log.0.len(),
        before,
        "refused signals recorded something: {:?}",
        log.types()
    );
    assert_eq!(log.count("SignalReceived", None), 0);

    let (status, body) = s.post(&path, json!({"payload": [1, 2]})).await;
    assert_eq!(
        (status, &body["delivered_to"]),
        (202, &json!("s")),
        "{body}"
    );
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["output"], json!({"s": [1, 2]}), "{body:#}");
}

/// Two distinct approvers with an approver role complete an approval; a caller whose
/// role is not an approver role gets 403; the same key cannot approve twice; decisions
/// on tasks that are not waiting approvals are refused and change nothing; a reject
/// fails the task for good.
pub async fn two_person_approval(s: &TestServer) {
    let admin = key_in(s, "default", Role::Admin).await;
    let operator = key_in(s, "default", Role::Operator).await;
    let developer = key_in(s, "default", Role::Developer).await;
    let viewer = key_in(s, "default", Role::Viewer).await;

    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "unapprovable", "tasks": [
                {"id": "gate", "kind": "approval", "approvers": {"roles": ["viewer"]}}]}),
        )
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("invalid_task")),
        "{body}"
    );
    assert_eq!(body["error"]["details"]["task"], "gate", "{body}");

    let workflow = s
        .create_workflow(json!({"name": "gated", "tasks": [
            {"id": "gate", "kind": "approval",
             "approvers": {"roles": ["admin", "operator"], "count": 2}},
            {"id": "final", "kind": "approval", "depends_on": ["gate"],
             "approvers": {"roles": ["admin"]}},
            {"id": "ship", "kind": "noop", "depends_on": ["final"], "input": "${tasks.gate.output}"},
        ]}))
        .await;
    let execution = s.execute(&workflow, json!({})).await;
    let body = waiting(s, &execution, "gate").await;
    assert_eq!(
        body["tasks"]["gate"]["waiting_for"]["approvals"],
        json!({"needed": 2, "given": 0, "approved_by": [], "roles": ["admin", "operator"]})
    );
    conforms(s, "/api/v1/executions/{id}", &(200, body)).await;
    let before = s.events(&execution).await.0.len();
    let approve = |task: &str| decide_path(&execution, task, "approve");

    let refused = [
        (
            post_as(&developer, approve("gate"), json!({})).await,
            (403, "forbidden"),
        ),
        (
            post_as(&viewer, approve("gate"), json!({})).await,
            (403, "forbidden"),
        ),
        (
            post_as(&admin, approve("final"), json!({})).await,
            (409, "conflict"),
        ),
        (
            post_as(&admin, approve("ship"), json!({})).await,
            (409, "conflict"),
        ),
        (
            post_as(&admin, approve("nope"), json!({})).await,
            (404, "not_found"),
        ),
        (
            post_as(&admin, approve("gate"), json!({"comment": 5})).await,
            (400, "invalid_request"),
        ),
    ];
    for (answer, expected) in &refused {
        assert_eq!(error_code(answer), *expected, "{}", answer.1);
    }
    assert_eq!(
        s.events(&execution).await.0.len(),
        before,
        "refusals record nothing"
    );

    let (status, body) = post_as(&admin, approve("gate"), json!({"comment": "looks good"})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["given"], &body["needed"], &body["task_status"]),
        (&json!(1), &json!(2), &json!("running")),
        "{body}"
    );
    let template = "/api/v1/executions/{id}/tasks/{task_id}/approve";
    conforms(s, template, &(status, body)).await;
    conforms(s, template, &refused[0].0).await;
    let twice = post_as(&admin, approve("gate"), json!({})).await;
    assert_eq!(error_code(&twice), (409, "conflict"), "{}", twice.1);
    assert!(twice.1["error"]["message"]
        .as_str()
        .is_some_and(|m| m.contains("already")));

    let (status, body) = post_as(&operator, approve("gate"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        (&body["given"], &body["task_status"]),
        (&json!(2), &json!("completed"))
    );
    let late = post_as(&operator, approve("gate"), json!({})).await;
    assert_eq!(error_code(&late), (409, "conflict"), "{}", late.1);

    waiting(s, &execution, "final").await;
    let operator_on_final = post_as(&operator, approve("final"), json!({})).await;
    assert_eq!(error_code(&operator_on_final), (403, "forbidden"));
    let (status, body) = post_as(&admin, approve("final"), json!({})).await;
    assert_eq!(
        (status, &body["task_status"]),
        (202, &json!("completed")),
        "{body}"
    );
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");

    let log = s.events(&execution).await;
    log.assert_well_formed();
    let decisions: Vec<&Value> = log
        .0
        .iter()
        .filter(|e| e["type"] == "ApprovalDecided")
        .collect();
    assert_eq!(decisions.len(), 3, "{:?}", log.types());
    for d in &decisions {
        assert_eq!(d["data"]["by"], d["metadata"]["actor"], "{d}");
        assert!(d["data"]["by"]
            .as_str()
            .is_some_and(|a| a.starts_with("key:")));
    }
    let (first, second) = (&decisions[0]["data"]["by"], &decisions[1]["data"]["by"]);
    assert_ne!(first, second);
    assert_eq!(decisions[0]["data"]["comment"], "looks good");
    assert_eq!(
        body["tasks"]["ship"]["output"],
        json!({"approved_by": [first, second], "comments": ["looks good", null]}),
        "{body:#}"
    );

    // The WebSocket from the start (`?after=0`: no snapshot) is exactly the log.
    let (mut socket, _) = s
        .ws_connect(&format!("/ws/executions/{execution}?after=0"))
        .await
        .expect("websocket");
    let streamed = read_to_end(&mut socket).await;
    assert_eq!(
        streamed.iter().collect::<Vec<_>>(),
        log.0.iter().collect::<Vec<_>>()
    );

    // One reject fails the task for good, whatever its retry policy.
    let execution = s.execute(&workflow, json!({})).await;
    waiting(s, &execution, "gate").await;
    let reject = decide_path(&execution, "gate", "reject");
    let (status, body) = post_as(&operator, reject, json!({"comment": "not today"})).await;
    assert_eq!(
        (status, &body["task_status"]),
        (202, &json!("failed")),
        "{body}"
    );
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body:#}");
    assert_eq!(body["tasks"]["gate"]["attempts"], 1, "{body:#}");
    assert!(body["tasks"]["gate"]["error"]
        .as_str()
        .is_some_and(|e| e.contains("not today")));
    let after = post_as(&admin, approve_of(&execution, "gate"), json!({})).await;
    assert_eq!(error_code(&after), (409, "conflict"), "{}", after.1);
}

async fn post_as(who: &Caller<'_>, path: String, body: Value) -> (u16, Value) {
    who.call("POST", &path, Some(body)).await
}

fn approve_of(execution: &str, task: &str) -> String {
    decide_path(execution, task, "approve")
}
