//! Request bodies are strict (API.md "Errors"): a field a route does not define is
//! `400 invalid_request` with `details.field` naming where it is, and the request changes
//! nothing — above all, a mistyped `"input"` never starts a run without its input.

use serde_json::{json, Value};

use crate::agent::TestAgent;
use crate::harness::{id_of, TestServer};
use crate::input::error_details;

/// `POST path` with `body` → the `400 invalid_request` that names `field`.
async fn refused(s: &TestServer, path: &str, body: Value, field: &str) {
    let (status, reply) = s.post(path, body.clone()).await;
    let details = error_details(status, &reply, (400, "invalid_request"));
    assert_eq!(details["field"], field, "{body} → {reply}");
}

/// A definition with one agent task, changed by `edit`.
fn definition(name: &str, edit: impl FnOnce(&mut Value)) -> Value {
    let mut d = json!({"name": name, "tasks": [
        {"id": "work", "kind": "agent", "agent_role": "strict", "input": "${input}",
         "retry": {"max_attempts": 2}, "compensate": {"kind": "noop"}}
    ]});
    edit(&mut d);
    d
}

/// Scenario 11c: unknown fields in every request body — the definition's top level, a
/// task, a task's retry policy and compensation, the agents map, `execute`'s body, agent
/// registration, a lease's complete and fail, cancel — are refused, named, and append
/// nothing; free-form JSON (`input`, `output`) stays the caller's.
pub async fn unknown_fields_are_rejected(s: &TestServer) {
    let workflow_id = s.create_workflow(definition("strict", |_| {})).await;
    let execute = format!("/api/v1/workflows/{workflow_id}/execute");
    let head = s.head().await;

    let create = "/api/v1/workflows";
    let cases: [(&str, Value, &str); 6] = [
        (
            create,
            definition("x", |d| d["descripton"] = json!("typo")),
            "descripton",
        ),
        (
            create,
            definition("x", |d| d["tasks"][0]["depend_on"] = json!([])),
            "tasks[0].depend_on",
        ),
        (
            create,
            definition("x", |d| d["tasks"][0]["retry"]["max_atempts"] = json!(3)),
            "tasks[0].retry.max_atempts",
        ),
        (
            create,
            definition("x", |d| d["tasks"][0]["compensate"]["inptu"] = json!({})),
            "tasks[0].compensate.inptu",
        ),
        (
            create,
            definition("x", |d| {
                d["agents"] = json!({"strict": {"capabilites": ["typo"]}})
            }),
            "agents.strict.capabilites",
        ),
        (
            "/api/v1/workflows?execute=true",
            definition("x", |d| d["inptu"] = json!({"n": 1})),
            "inptu",
        ),
    ];
    for (path, body, field) in cases {
        refused(s, path, body, field).await;
    }
    refused(s, &execute, json!({"inptu": {}}), "inptu").await;
    refused(s, &execute, json!({"input": {}, "key": "k"}), "key").await;
    let register = json!({"name": "typo", "roles": ["strict"], "capacty": 5});
    refused(s, "/api/v1/agents", register, "capacty").await;
    assert_eq!(s.head().await, head, "a refused request appended");

    // The same bodies, spelled right, are accepted; `input` and `output` may hold anything.
    let input = json!({"n": 1, "anything": {"goes": [true, {"at": "all"}]}});
    let mut body = definition("strict-run", |_| {});
    body["input"] = input.clone();
    let (status, reply) = s.post("/api/v1/workflows?execute=true", body).await;
    assert_eq!(status, 201, "{reply}");
    let execution = id_of(&reply, "execution_id");
    let agent = TestAgent::register(&s.base, &["strict"]).await;
    let lease = agent.next_lease().await;
    assert_eq!(
        (lease.execution_id.as_str(), &lease.input),
        (execution.as_str(), &input)
    );

    let before = s.events(&execution).await.types().len();
    let on_lease = |what: &str| format!("/api/v1/tasks/{}/{what}", lease.lease_id);
    let complete = json!({"output": {"ok": true}, "outptu": {"ok": false}});
    refused(s, &on_lease("complete"), complete, "outptu").await;
    let fail = json!({"error": "typo", "retryable": false, "retriable": true});
    refused(s, &on_lease("fail"), fail, "retriable").await;
    let cancel = format!("/api/v1/executions/{execution}/cancel");
    refused(s, &cancel, json!({"reason": "x", "reasn": "y"}), "reasn").await;
    assert_eq!(
        s.events(&execution).await.types().len(),
        before,
        "a refused request appended to the execution"
    );

    // The lease is still current: the well-formed result completes the task.
    let output = json!({"ok": true, "extra": {"free": "form"}});
    let (status, reply) = agent.complete(&lease, output.clone()).await;
    assert_eq!(status, 200, "{reply}");
    let done = s.wait_terminal(&execution).await;
    assert_eq!(done["status"], "completed", "{done:#}");
    assert_eq!(done["tasks"]["work"]["output"], output, "{done:#}");
}
