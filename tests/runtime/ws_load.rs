//! The live streams under load: 100 WebSocket clients on 20 executions at once (5 on
//! each, some from a snapshot, most from `?after=0`), plus clients on the two
//! workflows, some connecting while every execution is moving. Proves that every client
//! of an execution sees exactly its log (after its snapshot, or all of it), once, in
//! position order, up to `ExecutionCompleted`; that every workflow client sees exactly
//! the workflow's merged log after its snapshot's position (a snapshot taken while
//! executions move loses nothing and repeats nothing); and that a client's close frame
//! is answered (the closing handshake completes).

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{TestServer, WsSocket as Socket, PATIENCE};

/// Executions per workflow (two workflows).
const EXECUTIONS_PER_WORKFLOW: usize = 10;
/// Clients per execution: the first `FROM_START` with `?after=0`, the rest from a
/// snapshot.
const CLIENTS_PER_EXECUTION: usize = 5;
const FROM_START: usize = 3;

async fn connect(s: &TestServer, path: &str) -> Socket {
    let (socket, _) = s
        .ws_connect(path)
        .await
        .unwrap_or_else(|e| panic!("websocket connect {path}: {e}"));
    socket
}

/// The next JSON frame (pings and pongs skipped); fails on a close or an error.
async fn next_json(socket: &mut Socket, what: &str) -> Value {
    // One deadline for the frame: pings (every 15 s) must not keep extending it.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no frame within {PATIENCE:?}"))
            .unwrap_or_else(|| panic!("{what}: the server closed the stream"))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        match frame {
            Message::Text(t) => return serde_json::from_str(&t).expect("a JSON frame"),
            Message::Close(c) => panic!("{what}: closed by the server: {c:?}"),
            _ => {}
        }
    }
}

/// Sends a close frame and expects the server's answering one (RFC 6455 §5.5.1).
async fn close_politely(mut socket: Socket, what: &str) {
    socket.send(Message::Close(None)).await.expect("send close");
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no answer to the close frame"));
        match frame {
            Some(Ok(Message::Close(_))) => return,
            Some(Ok(_)) => {}
            other => panic!("{what}: the close was not answered with a close frame: {other:?}"),
        }
    }
}

/// What one client saw: its snapshot's position (None when it connected with
/// `?after=`), whether the snapshot showed the execution still running, and the events.
struct Seen {
    snapshot: Option<u64>,
    running_at_snapshot: bool,
    events: Vec<Value>,
}

/// Watches one execution until its `ExecutionCompleted`.
async fn watch_execution(s: &TestServer, execution: String, from_start: bool) -> (String, Seen) {
    let what = format!("execution {execution} (from start: {from_start})");
    let path = if from_start {
        format!("/ws/executions/{execution}?after=0")
    } else {
        format!("/ws/executions/{execution}")
    };
    let mut socket = connect(s, &path).await;
    let mut seen = Seen {
        snapshot: None,
        running_at_snapshot: false,
        events: Vec::new(),
    };
    if !from_start {
        let snapshot = next_json(&mut socket, &what).await;
        assert_eq!(snapshot["type"], "snapshot", "{what}: {snapshot}");
        assert_eq!(
            snapshot["status"]["position"], snapshot["position"],
            "{what}"
        );
        seen.snapshot = snapshot["position"].as_u64();
        let status = snapshot["status"]["status"].as_str().unwrap_or_default();
        seen.running_at_snapshot = status == "running";
        if status == "completed" {
            close_politely(socket, &what).await;
            return (execution, seen);
        }
    }
    loop {
        let frame = next_json(&mut socket, &what).await;
        assert_eq!(frame["type"], "event", "{what}: {frame}");
        let done = frame["event"]["type"] == "ExecutionCompleted";
        seen.events.push(frame["event"].clone());
        if done {
            break;
        }
    }
    close_politely(socket, &what).await;
    (execution, seen)
}

/// Connects to a workflow's stream, from a snapshot or with `?after=0`.
async fn open_workflow(s: &TestServer, workflow: &str, from_start: bool) -> (Socket, Seen) {
    let what = format!("workflow {workflow}");
    let path = if from_start {
        format!("/ws/workflows/{workflow}?after=0")
    } else {
        format!("/ws/workflows/{workflow}")
    };
    let mut socket = connect(s, &path).await;
    let mut seen = Seen {
        snapshot: None,
        running_at_snapshot: false,
        events: Vec::new(),
    };
    if !from_start {
        let snapshot = next_json(&mut socket, &what).await;
        assert_eq!(snapshot["type"], "snapshot", "{what}: {snapshot}");
        assert_eq!(
            snapshot["status"]["position"], snapshot["position"],
            "{what}"
        );
        seen.snapshot = snapshot["position"].as_u64();
        seen.running_at_snapshot = snapshot["status"]["executions"]["running"]
            .as_u64()
            .is_some_and(|n| n > 0);
    }
    (socket, seen)
}

/// Reads a workflow's stream until it has seen the event at the position `end`
/// announces (the workflow log's last, known once every execution finished).
async fn follow_workflow(
    mut socket: Socket,
    mut seen: Seen,
    workflow: &str,
    mut end: tokio::sync::watch::Receiver<Option<u64>>,
) -> Seen {
    let what = format!("workflow {workflow} (snapshot {:?})", seen.snapshot);
    loop {
        let reached = seen
            .events
            .last()
            .and_then(|e| e["position"].as_u64())
            .or(seen.snapshot)
            .unwrap_or(0);
        let known = *end.borrow_and_update();
        let frame = match known {
            Some(last) if reached >= last => break,
            Some(_) => next_json(&mut socket, &what).await,
            None => tokio::select! {
                frame = next_json(&mut socket, &what) => frame,
                announced = end.changed() => {
                    announced.expect("the end is announced");
                    continue;
                }
            },
        };
        assert_eq!(frame["type"], "event", "{what}: {frame}");
        seen.events.push(frame["event"].clone());
    }
    close_politely(socket, &what).await;
    seen
}

fn positions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect()
}

/// Events of `log` after `position`.
fn after(log: &[Value], position: u64) -> Vec<Value> {
    log.iter()
        .filter(|e| e["position"].as_u64().is_some_and(|p| p > position))
        .cloned()
        .collect()
}

fn definition(name: &str) -> Value {
    json!({"name": name, "tasks": [
        {"id": "nap", "kind": "sleep", "sleep_ms": 300},
        {"id": "a", "kind": "noop", "depends_on": ["nap"], "input": {"n": "${input.n}"}},
        {"id": "b", "kind": "sleep", "depends_on": ["a"], "sleep_ms": 30},
        {"id": "c", "kind": "noop", "depends_on": ["a"]},
        {"id": "d", "kind": "sleep", "depends_on": ["b", "c"], "sleep_ms": 30},
        {"id": "e", "kind": "noop", "depends_on": ["d"]}
    ]})
}

/// Starts execution `i` (of workflow `i % 2`) `i × 25 ms` from now, then watches it
/// with its 5 clients at once.
async fn start_and_watch(s: &TestServer, workflows: &[String], i: usize) -> (String, Vec<Seen>) {
    tokio::time::sleep(Duration::from_millis(25 * i as u64)).await;
    let execution = s.execute(&workflows[i % 2], json!({"n": i})).await;
    let watchers =
        (0..CLIENTS_PER_EXECUTION).map(|c| watch_execution(s, execution.clone(), c < FROM_START));
    let seen = futures::future::join_all(watchers).await;
    (execution, seen.into_iter().map(|(_, seen)| seen).collect())
}

/// 100 clients on 20 executions, and 12 on their 2 workflows: everyone sees exactly the
/// log, once, in order.
pub async fn hundred_clients_see_exactly_the_log(s: &TestServer) {
    let workflows = vec![
        s.create_workflow(definition("load-a")).await,
        s.create_workflow(definition("load-b")).await,
    ];
    let ends: Vec<_> = workflows
        .iter()
        .map(|_| tokio::sync::watch::channel(None::<u64>))
        .collect();
    // Before anything runs: a snapshot of an idle workflow, and a catch-up from 0.
    let mut early = Vec::new();
    for (w, workflow) in workflows.iter().enumerate() {
        for from_start in [false, true] {
            let (socket, seen) = open_workflow(s, workflow, from_start).await;
            early.push((w, socket, seen));
        }
    }
    let early = early.into_iter().map(|(w, socket, seen)| {
        let end = ends[w].1.clone();
        let workflows = &workflows;
        async move { (w, follow_workflow(socket, seen, &workflows[w], end).await) }
    });
    // While executions move: more workflow clients, snapshots and catch-ups cut mid-run.
    let late = (0..8).map(|i| {
        let w = i % 2;
        let end = ends[w].1.clone();
        let workflows = &workflows;
        async move {
            tokio::time::sleep(Duration::from_millis(300 + 50 * i as u64)).await;
            let (socket, seen) = open_workflow(s, &workflows[w], i % 4 >= 2).await;
            (w, follow_workflow(socket, seen, &workflows[w], end).await)
        }
    });
    let runs = (0..2 * EXECUTIONS_PER_WORKFLOW).map(|i| start_and_watch(s, &workflows, i));
    let (runs, early_seen, late_seen) = tokio::join!(
        async {
            let runs = futures::future::join_all(runs).await;
            // Every execution ended (its clients saw ExecutionCompleted): announce where
            // each workflow's log ends.
            for (w, workflow) in workflows.iter().enumerate() {
                let log = workflow_log(s, workflow, 0).await;
                ends[w]
                    .0
                    .send_replace(log.last().and_then(|e| e["position"].as_u64()));
            }
            runs
        },
        futures::future::join_all(early),
        futures::future::join_all(late),
    );
    assert_eq!(runs.iter().map(|(_, seen)| seen.len()).sum::<usize>(), 100);

    // Executions: every client sees the log after its snapshot (or all of it), once,
    // in order, ending with ExecutionCompleted; the clients from the start all see the
    // same whole log.
    let mut live_snapshots = 0;
    for (execution, seen) in &runs {
        let log = s.events(execution).await.0;
        assert_eq!(
            log.last().map(|e| &e["type"]),
            Some(&json!("ExecutionCompleted"))
        );
        for seen in seen {
            let expected = after(&log, seen.snapshot.unwrap_or(0));
            assert_eq!(
                positions(&seen.events),
                positions(&expected),
                "execution {execution}, snapshot {:?}",
                seen.snapshot
            );
            assert_eq!(
                seen.events, expected,
                "execution {execution}: the envelopes as logged"
            );
            live_snapshots += usize::from(seen.running_at_snapshot && !seen.events.is_empty());
        }
        let from_start = seen.iter().filter(|seen| seen.snapshot.is_none()).count();
        assert_eq!(from_start, FROM_START);
    }
    assert!(
        live_snapshots > 0,
        "some clients connected while their execution ran (the feed, not only catch-up, was exercised)"
    );

    // Workflows: every client sees the merged log after its snapshot (or all of it).
    let workflow_seen: Vec<(usize, Seen)> = early_seen.into_iter().chain(late_seen).collect();
    assert_eq!(workflow_seen.len(), 12);
    let mut moving_snapshots = 0;
    for (w, seen) in &workflow_seen {
        let from = seen.snapshot.unwrap_or(0);
        let expected = workflow_log(s, &workflows[*w], from).await;
        assert_eq!(
            positions(&seen.events),
            positions(&expected),
            "workflow {}, snapshot {:?} (executions running then: {})",
            workflows[*w],
            seen.snapshot,
            seen.running_at_snapshot
        );
        assert_eq!(&seen.events, &expected);
        moving_snapshots += usize::from(seen.running_at_snapshot);
    }
    assert!(
        moving_snapshots > 0,
        "some workflow snapshots were taken mid-run"
    );
}

/// The workflow's merged log after `from`.
async fn workflow_log(s: &TestServer, workflow: &str, from: u64) -> Vec<Value> {
    let (status, body) = s
        .get(&format!(
            "/api/v1/workflows/{workflow}/events?after_position={from}&limit=10000"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["next_after_position"].is_null(),
        "one page holds it all"
    );
    body["events"].as_array().cloned().expect("events")
}
