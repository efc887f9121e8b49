//! Bad input is answered with the one error body (`{"error": {"code", "message",
//! "details"}}`), the documented status and code, and changes nothing in the store.

use serde_json::{json, Value};

use crate::harness::{TestServer, MAX_BODY_BYTES, MAX_TASKS};

/// Checks the error body's shape and code, and returns its details.
pub fn error_details(status: u16, body: &Value, expected: (u16, &str)) -> Value {
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (expected.0, Some(expected.1)),
        "{body}"
    );
    assert_error_shape(body);
    body["error"]["details"].clone()
}

/// `{"error": {"code": string, "message": non-empty string, "details": object}}`, nothing more.
pub fn assert_error_shape(body: &Value) {
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {body}"));
    assert_eq!(top.len(), 1, "{body}");
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("no error: {body}"));
    assert!(error["code"].is_string(), "{body}");
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    assert!(error["details"].is_object(), "{body}");
    assert_eq!(error.len(), 3, "{body}");
}

fn task(id: &str, depends_on: &[&str]) -> Value {
    json!({"id": id, "kind": "noop", "depends_on": depends_on})
}

fn workflow(tasks: Vec<Value>) -> Value {
    json!({"name": "bad", "tasks": tasks})
}

/// Scenario 11: Every kind of bad request gets its status and code (and the details API.md
/// promises), and none of them appends an event.
pub async fn bad_requests_are_rejected(s: &TestServer) {
    let workflow_id = s.create_workflow(workflow(vec![task("a", &[])])).await;
    let execute = format!("/api/v1/workflows/{workflow_id}/execute");
    let head = s.head().await;

    // Malformed JSON, wrong types, missing fields.
    let raw: [(&str, &[u8], &str); 7] = [
        (
            "/api/v1/workflows",
            br#"{"name": "x", "tasks": ["#,
            "invalid_json",
        ),
        ("/api/v1/workflows", b"not json at all", "invalid_json"),
        (&execute, br#"{"input": }"#, "invalid_json"),
        (
            "/api/v1/workflows",
            br#"{"name": 5, "tasks": []}"#,
            "invalid_request",
        ),
        ("/api/v1/workflows", br#"{"name": "x"}"#, "invalid_request"),
        // Bodies are objects: serde alone would read a struct from an array.
        (&execute, b"[]", "invalid_request"),
        (&execute, br#"[{"input": {}}]"#, "invalid_request"),
    ];
    for (path, bytes, code) in raw {
        let (status, body) = s.post_raw(path, bytes.to_vec()).await;
        error_details(status, &body, (400, code));
    }
    let wrong_kind = workflow(vec![json!({"id": "a", "kind": "teleport"})]);
    let (status, body) = s.post("/api/v1/workflows", wrong_kind).await;
    error_details(status, &body, (400, "invalid_request"));
    let (status, body) = s
        .post(
            "/api/v1/workflows?execute=maybe",
            workflow(vec![task("a", &[])]),
        )
        .await;
    error_details(status, &body, (400, "invalid_request"));

    // Well-formed definitions that are not valid workflows.
    let cycle = workflow(vec![
        task("a", &["c"]),
        task("b", &["a"]),
        task("c", &["b"]),
        task("d", &[]),
    ]);
    let (status, body) = s.post("/api/v1/workflows", cycle).await;
    let details = error_details(status, &body, (422, "cycle"));
    let mut around: Vec<&str> = details["cycle"]
        .as_array()
        .expect("details.cycle")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    around.sort_unstable();
    assert_eq!(around, ["a", "b", "c"], "{body}");
    let (status, body) = s
        .post("/api/v1/workflows", workflow(vec![task("a", &["a"])]))
        .await;
    assert_eq!(
        error_details(status, &body, (422, "cycle"))["cycle"],
        json!(["a"])
    );

    let (status, body) = s
        .post("/api/v1/workflows", workflow(vec![task("a", &["ghost"])]))
        .await;
    let details = error_details(status, &body, (422, "unknown_dependency"));
    assert_eq!(details, json!({"task": "a", "dependency": "ghost"}));
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            workflow(vec![task("a", &[]), task("a", &[])]),
        )
        .await;
    assert_eq!(
        error_details(status, &body, (422, "duplicate_task_id")),
        json!({"task_id": "a"})
    );
    let (status, body) = s.post("/api/v1/workflows", workflow(vec![])).await;
    error_details(status, &body, (422, "empty_workflow"));
    let many = (0..=MAX_TASKS)
        .map(|i| task(&format!("t{i}"), &[]))
        .collect();
    let (status, body) = s.post("/api/v1/workflows", workflow(many)).await;
    let details = error_details(status, &body, (422, "too_many_tasks"));
    assert_eq!(details, json!({"limit": MAX_TASKS, "count": MAX_TASKS + 1}));
    let invalid_tasks = [
        json!({"id": "a", "kind": "http"}),
        json!({"id": "a", "kind": "http", "http": {"method": "POST"}}),
        json!({"id": "a", "kind": "agent"}),
        json!({"id": "a", "kind": "sleep"}),
        json!({"id": "a", "kind": "noop", "input": "${tasks.z.output}"}),
        json!({"id": "a", "kind": "noop", "retry": {"max_attempts": 0}}),
    ];
    for bad in invalid_tasks {
        let (status, body) = s
            .post(
                "/api/v1/workflows",
                workflow(vec![bad.clone(), task("z", &[])]),
            )
            .await;
        let details = error_details(status, &body, (422, "invalid_task"));
        assert_eq!(details["task"], "a", "{bad}: {body}");
    }

    // Postgres `jsonb` cannot hold a NUL character: refused up front, in every mode.
    let nul = json!({"name": "nul", "description": "a\u{0}b", "tasks": [task("a", &[])]});
    let (status, body) = s.post("/api/v1/workflows", nul).await;
    error_details(status, &body, (400, "invalid_request"));
    let (status, body) = s.post(&execute, json!({"input": {"k\u{0}": 1}})).await;
    error_details(status, &body, (400, "invalid_request"));

    // Too large.
    let padding = "x".repeat(MAX_BODY_BYTES + 1);
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "big", "description": padding, "tasks": [task("a", &[])]}),
        )
        .await;
    error_details(status, &body, (413, "payload_too_large"));
    let (status, body) = s.post(&execute, json!({"input": {"blob": padding}})).await;
    error_details(status, &body, (413, "payload_too_large"));

    // Unknown ids and routes.
    let nobody = "0191c0de-0000-7000-8000-000000000000";
    for path in [
        format!("/api/v1/executions/{nobody}"),
        format!("/api/v1/executions/{nobody}/events"),
        "/api/v1/executions/not-a-uuid".to_owned(),
        "/api/v1/no/such/route".to_owned(),
    ] {
        let (status, body) = s.get(&path).await;
        error_details(status, &body, (404, "not_found"));
    }
    // Each with a body its route accepts: bodies are strict, and are read first.
    for (path, body) in [
        (format!("/api/v1/executions/{nobody}/pause"), json!({})),
        (format!("/api/v1/executions/{nobody}/resume"), json!({})),
        (format!("/api/v1/executions/{nobody}/cancel"), json!({})),
        (format!("/api/v1/workflows/{nobody}/execute"), json!({})),
        (format!("/api/v1/agents/{nobody}/poll?wait_ms=0"), json!({})),
        (format!("/api/v1/tasks/{nobody}/complete"), json!({})),
        (
            format!("/api/v1/tasks/{nobody}/fail"),
            json!({"error": "x"}),
        ),
    ] {
        let (status, body) = s.post(&path, body).await;
        error_details(status, &body, (404, "not_found"));
    }

    // Header and agent checks.
    let long_key = "k".repeat(300);
    let (status, body) = s
        .post_with(&execute, &[("Idempotency-Key", &long_key)], json!({}))
        .await;
    error_details(status, &body, (400, "invalid_request"));
    for agent in [
        json!({"name": "x"}),
        json!({"name": "x", "roles": []}),
        json!({"name": "", "roles": ["r"]}),
        json!({"name": "x", "roles": ["r"], "capacity": 0}),
    ] {
        let (status, body) = s.post("/api/v1/agents", agent).await;
        error_details(status, &body, (400, "invalid_request"));
    }

    assert_eq!(s.head().await, head, "a rejected request appended events");
}
