//! The live stream `/ws/executions/{id}` with a real WebSocket client: a snapshot with
//! the position it reflects, then every later event exactly once in position order
//! until the execution ends; `?after=` resumes with exactly the rest; many clients see
//! identical sequences; an unknown id is closed with 4404. A workflow's stream gets its
//! executions' events, also (on Postgres + Redis) on a server started after one of
//! them began.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{TestServer, WsSocket as Socket};

async fn connect(s: &TestServer, path: &str) -> Socket {
    let (socket, _) = s.ws_connect(path).await.expect("websocket connect");
    socket
}

/// The next JSON frame (pings and pongs skipped), or None when the server closed.
async fn next_json(socket: &mut Socket) -> Option<Value> {
    // One deadline for the frame: pings (every 15 s) must not keep extending it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("a frame within 30 s")?;
        match frame.expect("frame") {
            Message::Text(t) => return Some(serde_json::from_str(&t).expect("json frame")),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

fn is_terminal_event(v: &Value) -> bool {
    matches!(
        v["event"]["type"].as_str(),
        Some("ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled")
    )
}

/// Reads a stream to the execution's end: (snapshot position, the events after it).
async fn watch(socket: &mut Socket, with_snapshot: bool) -> (u64, Vec<Value>) {
    let mut from = 0;
    if with_snapshot {
        let snapshot = next_json(socket).await.expect("snapshot");
        assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
        from = snapshot["position"].as_u64().expect("position");
        assert_eq!(snapshot["status"]["position"], snapshot["position"]);
        if matches!(
            snapshot["status"]["status"].as_str(),
            Some("completed" | "failed" | "cancelled")
        ) {
            return (from, Vec::new());
        }
    }
    let mut events = Vec::new();
    while let Some(frame) = next_json(socket).await {
        assert_eq!(frame["type"], "event", "{frame}");
        let done = is_terminal_event(&frame);
        events.push(frame["event"].clone());
        if done {
            break;
        }
    }
    (from, events)
}

fn positions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect()
}

async fn start_slow_chain(s: &TestServer) -> String {
    let workflow = s
        .create_workflow(json!({"name": "live", "tasks": [
            {"id": "nap", "kind": "sleep", "sleep_ms": 1000},
            {"id": "a", "kind": "noop", "depends_on": ["nap"]},
            {"id": "b", "kind": "noop", "depends_on": ["a"]}
        ]}))
        .await;
    s.execute(&workflow, json!({})).await
}

async fn full_log(s: &TestServer, execution: &str) -> Vec<Value> {
    let (status, body) = s
        .get(&format!(
            "/api/v1/executions/{execution}/events?limit=10000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().cloned().expect("events")
}

/// Snapshot, then every later event once, in order, until `ExecutionCompleted`; and
/// `?after=` a middle position gives exactly the rest.
pub async fn live_stream_is_exactly_the_log(s: &TestServer) {
    let execution = start_slow_chain(s).await;
    let mut socket = connect(s, &format!("/ws/executions/{execution}")).await;
    let (from, events) = watch(&mut socket, true).await;
    assert!(
        !events.is_empty(),
        "the client connected during the 1 s sleep, so events followed the snapshot"
    );
    let log = full_log(s, &execution).await;
    let expected: Vec<&Value> = log
        .iter()
        .filter(|e| e["position"].as_u64() > Some(from))
        .collect();
    assert_eq!(
        events.iter().collect::<Vec<_>>(),
        expected,
        "the stream is the log after the snapshot"
    );
    assert!(positions(&events).windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        log.last().map(|e| e["type"].clone()),
        Some(json!("ExecutionCompleted"))
    );

    let middle = log[log.len() / 2]["position"].as_u64().expect("position");
    let mut resumed = connect(s, &format!("/ws/executions/{execution}?after={middle}")).await;
    let (_, rest) = watch(&mut resumed, false).await;
    let expected: Vec<&Value> = log
        .iter()
        .filter(|e| e["position"].as_u64() > Some(middle))
        .collect();
    assert_eq!(
        rest.iter().collect::<Vec<_>>(),
        expected,
        "resuming after {middle} gives exactly the rest"
    );
    let _ = socket.close(None).await;
}

/// Twenty clients on one execution see the same sequence.
pub async fn many_clients_see_the_same_events(s: &TestServer) {
    let execution = start_slow_chain(s).await;
    let watchers = (0..20).map(|_| {
        let path = format!("/ws/executions/{execution}?after=0");
        async move {
            let mut socket = connect(s, &path).await;
            watch(&mut socket, false).await.1
        }
    });
    let seen = futures::future::join_all(watchers).await;
    let log = full_log(s, &execution).await;
    for events in &seen {
        assert_eq!(
            events, &log,
            "every client sees the whole log, in order, once"
        );
    }
}

/// An unknown execution is closed with 4404; a bad `after` is a 400 before upgrading.
pub async fn unknown_executions_are_closed_with_4404(s: &TestServer) {
    let (mut socket, _) = s
        .ws_connect(&format!("/ws/executions/{}", uuid::Uuid::now_v7()))
        .await
        .expect("connect");
    let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("close frame");
    match frame {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 4404),
        other => panic!("expected a 4404 close, got {other:?}"),
    }
    let bad = format!("/ws/executions/{}?after=x", uuid::Uuid::now_v7());
    assert!(s.ws_connect(&bad).await.is_err(), "a bad after is refused");
    let _ = socket.send(Message::Close(None)).await;
}

/// `/ws/workflows/{id}`: a snapshot (the `/status` shape), then every event of the
/// workflow's executions started after it, in position order, exactly the workflow's
/// log after the snapshot; `?after=` resumes with exactly the rest; unknown → 4404.
pub async fn workflow_stream_is_exactly_the_workflow_log(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "live-wf", "tasks": [
            {"id": "nap", "kind": "sleep", "sleep_ms": 200},
            {"id": "a", "kind": "noop", "depends_on": ["nap"]}
        ]}))
        .await;
    let mut socket = connect(s, &format!("/ws/workflows/{workflow}")).await;
    let snapshot = next_json(&mut socket).await.expect("snapshot");
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["status"]["executions"]["completed"], 0);
    assert_eq!(snapshot["status"]["name"], "live-wf");
    let from = snapshot["position"].as_u64().expect("position");
    let first = s.execute(&workflow, json!({})).await;
    let second = s.execute(&workflow, json!({})).await;
    let mut events = Vec::new();
    let mut done = 0;
    while done < 2 {
        let frame = next_json(&mut socket).await.expect("an event");
        assert_eq!(frame["type"], "event", "{frame}");
        if frame["event"]["type"] == "ExecutionCompleted" {
            done += 1;
        }
        events.push(frame["event"].clone());
    }
    let (status, body) = s
        .get(&format!(
            "/api/v1/workflows/{workflow}/events?after_position={from}&limit=1000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let log = body["events"].as_array().cloned().expect("events");
    assert_eq!(
        events, log,
        "the stream after the snapshot is the workflow's log after it"
    );
    for execution in [&first, &second] {
        assert!(events
            .iter()
            .any(|e| e["stream_id"] == format!("execution-{execution}")
                && e["type"] == "ExecutionCompleted"));
    }

    let middle = log[log.len() / 2]["position"].as_u64().expect("position");
    let mut resumed = connect(s, &format!("/ws/workflows/{workflow}?after={middle}")).await;
    let rest: Vec<Value> = log
        .iter()
        .filter(|e| e["position"].as_u64() > Some(middle))
        .cloned()
        .collect();
    let mut got = Vec::new();
    while got.len() < rest.len() {
        let frame = next_json(&mut resumed).await.expect("an event");
        got.push(frame["event"].clone());
    }
    assert_eq!(got, rest, "resuming after {middle} gives exactly the rest");

    if s.backends.mode == "postgres+redis" {
        older_executions_reach_a_new_server(s).await;
    }

    let unknown = format!("/ws/workflows/{}", uuid::Uuid::now_v7());
    let (mut socket, _) = s.ws_connect(&unknown).await.expect("connect");
    match tokio::time::timeout(Duration::from_secs(10), socket.next())
        .await
        .expect("close frame")
    {
        Some(Ok(Message::Close(Some(close)))) => assert_eq!(u16::from(close.code), 4404),
        other => panic!("expected a 4404 close, got {other:?}"),
    }
}

/// A server that starts while an execution runs never saw its `ExecutionStarted`: its
/// feed looks the execution's workflow up, so the workflow's stream on that server still
/// gets the rest of the execution, exactly as logged.
async fn older_executions_reach_a_new_server(s: &TestServer) {
    let slow = s
        .create_workflow(json!({"name": "live-wf-older", "tasks": [
            {"id": "nap", "kind": "sleep", "sleep_ms": 1500},
            {"id": "a", "kind": "noop", "depends_on": ["nap"]}
        ]}))
        .await;
    let execution = s.execute(&slow, json!({})).await;
    let joined = s.join().await;
    let mut socket = connect(&joined, &format!("/ws/workflows/{slow}")).await;
    let snapshot = next_json(&mut socket).await.expect("snapshot");
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(
        snapshot["status"]["executions"]["running"], 1,
        "the execution still sleeps: {snapshot}"
    );
    let from = snapshot["position"].as_u64().expect("position");
    let mut events = Vec::new();
    loop {
        let frame = next_json(&mut socket).await.expect("an event");
        assert_eq!(frame["type"], "event", "{frame}");
        events.push(frame["event"].clone());
        if frame["event"]["type"] == "ExecutionCompleted" {
            break;
        }
    }
    let (status, body) = s
        .get(&format!(
            "/api/v1/workflows/{slow}/events?after_position={from}&limit=1000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        Some(&events),
        body["events"].as_array(),
        "the new server streams the older execution's events as logged"
    );
    assert!(events
        .iter()
        .all(|e| e["stream_id"] == format!("execution-{execution}")));
    let _ = socket.close(None).await;
    joined.stop().await;
}

/// `GET /api/v1/workflows/{id}` is the definition with its version and creation time;
/// `/status` counts executions by status and shows the latest; unknown ids are 404.
pub async fn workflow_definition_and_status(s: &TestServer) {
    let definition = json!({"name": "reads", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "noop", "depends_on": ["a"]}
    ]});
    let workflow = s.create_workflow(definition.clone()).await;
    let (status, body) = s.get(&format!("/api/v1/workflows/{workflow}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["name"], &body["version"], &body["workflow_id"]),
        (&json!("reads"), &json!(1), &json!(workflow))
    );
    assert_eq!(body["tasks"].as_array().map(Vec::len), Some(2));
    assert!(body["created_at"].is_string());
    let second = s.create_workflow(definition).await;
    assert_eq!(
        s.get(&format!("/api/v1/workflows/{second}")).await.1["version"],
        2
    );

    let (_, idle) = s.get(&format!("/api/v1/workflows/{workflow}/status")).await;
    assert_eq!(idle["status"], "idle", "{idle}");
    let execution = s.execute(&workflow, json!({})).await;
    s.wait_terminal(&execution).await;
    let (status, body) = s.get(&format!("/api/v1/workflows/{workflow}/status")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["executions"]["completed"], 1, "{body}");
    assert_eq!(body["executions"]["running"], 0);
    assert_eq!(body["latest_execution"]["execution_id"], json!(execution));
    assert_eq!(
        body["latest_execution"]["tasks"]["b"]["status"],
        "completed"
    );
    assert!(body["latest_execution"]["position"]
        .as_u64()
        .is_some_and(|p| p > 0));

    for path in [
        format!("/api/v1/workflows/{}", uuid::Uuid::now_v7()),
        format!("/api/v1/workflows/{}/status", uuid::Uuid::now_v7()),
        "/api/v1/workflows/not-a-uuid".to_owned(),
    ] {
        let (status, body) = s.get(&path).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("not_found")),
            "{path}: {body}"
        );
    }
}
