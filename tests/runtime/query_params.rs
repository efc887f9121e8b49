//! Query parameters of every route that reads them: the audit routes, the WebSocket
//! streams, the workflow list, the agents' poll (`max`, `wait_ms`) and workflow
//! creation (`execute`). Every bad one — not a number, negative, fractional, too large,
//! empty, given twice, a `limit` or `max` out of its range, an unknown `format`, a
//! `to_version` past the log, an `execute` that is no boolean — is a
//! `400 invalid_request` with the API's JSON error body and `details.parameter` naming
//! it (never axum's plain-text rejection), and changes nothing; parameters a route does
//! not know are ignored; positions and versions stop at 2^63-1 (the store's range); a
//! path segment that is not UTF-8 is a JSON 404; and a plain GET on a WebSocket route
//! is a JSON 400.

use serde_json::{json, Value};
use tokio_tungstenite::tungstenite;

use crate::harness::TestServer;
use crate::input::assert_error_shape;

/// The largest `limit` (query-api's `audit::MAX_LIMIT`).
const MAX_LIMIT: u64 = 10_000;

/// Asserts a `400 invalid_request` naming `parameter`.
fn assert_bad(what: &str, status: u16, body: &Value, parameter: &str) {
    assert_eq!(status, 400, "{what}: {body}");
    assert_error_shape(body);
    assert_eq!(body["error"]["code"], "invalid_request", "{what}: {body}");
    assert_eq!(
        body["error"]["details"]["parameter"], parameter,
        "{what}: {body}"
    );
}

/// Opens a WebSocket on `path`, which must be refused before the upgrade; returns the
/// refusal's status and JSON body.
async fn refused_upgrade(s: &TestServer, path: &str) -> (u16, Value) {
    match s.ws_connect(path).await {
        Err(tungstenite::Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            let body = serde_json::from_slice(&body).unwrap_or_else(|e| {
                panic!("{path}: not JSON ({e}): {}", String::from_utf8_lossy(&body))
            });
            (response.status().as_u16(), body)
        }
        Err(e) => panic!("{path}: refused without an HTTP answer: {e}"),
        Ok(_) => panic!("{path}: upgraded, but should have been refused"),
    }
}

/// Every bad parameter of every route is a JSON 400 naming it.
pub async fn bad_query_parameters_are_json_400s(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "params", "tasks": [
            {"id": "a", "kind": "noop"},
            {"id": "b", "kind": "noop", "depends_on": ["a"]}
        ]}))
        .await;
    let execution = s.execute(&workflow, json!({})).await;
    s.wait_terminal(&execution).await;
    let last = s.events(&execution).await.0.len() as u64;
    let head = s.head().await;

    let numbers = [
        "x",
        "-1",
        "1.5",
        "",
        "+1",
        "1e3",
        "0x10",
        " 1",
        // Past the store's signed 64-bit range (2^63, 2^64-1, 2^64).
        "9223372036854775808",
        "18446744073709551615",
        "18446744073709551616",
    ];
    let limits = [
        "0",
        "10001",
        "-5",
        "abc",
        "99999999999999999999999",
        "",
        "2.0",
    ];
    let events = format!("/api/v1/executions/{execution}/events");
    let replay = format!("/api/v1/executions/{execution}/replay");
    let merged = format!("/api/v1/workflows/{workflow}/events");
    let mut cases: Vec<(String, &str)> = Vec::new();
    for n in numbers {
        let n = urlencode(n);
        cases.push((format!("{events}?after_version={n}"), "after_version"));
        cases.push((format!("{replay}?to_version={n}"), "to_version"));
        cases.push((format!("{merged}?after_position={n}"), "after_position"));
    }
    for l in limits {
        let l = urlencode(l);
        cases.push((format!("{events}?limit={l}"), "limit"));
        cases.push((format!("{events}?format=json&limit={l}"), "limit"));
        cases.push((format!("{merged}?limit={l}"), "limit"));
    }
    for f in ["xml", "", "NDJSON", "json,ndjson"] {
        cases.push((format!("{events}?format={}", urlencode(f)), "format"));
    }
    cases.extend([
        (format!("{events}?limit=5&limit=6"), "limit"),
        (
            format!("{events}?after_version=1&after_version=1"),
            "after_version",
        ),
        (format!("{events}?format=json&format=ndjson"), "format"),
        (
            format!("{events}?format=ndjson&after_version=x"),
            "after_version",
        ),
        (format!("{events}?format=ndjson&limit=0"), "limit"),
        (
            format!("{merged}?after_position=1&after_position=2"),
            "after_position",
        ),
        (format!("{replay}?to_version=0"), "to_version"),
        (format!("{replay}?to_version={}", last + 1), "to_version"),
        (format!("{replay}?to_version=1&to_version=2"), "to_version"),
        // A bad parameter is a 400 even when the id is unknown.
        (
            format!("/api/v1/executions/{}/events?limit=0", uuid::Uuid::now_v7()),
            "limit",
        ),
    ]);
    // The workflow list: `limit` is `1..=1000`, `status` a workflow status, `cursor` a
    // `next_cursor` (a positive position).
    for (query, parameter) in [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=ten", "limit"),
        ("limit=%2B5", "limit"),
        ("limit=1&limit=2", "limit"),
        ("status=sleeping", "status"),
        ("status=running&status=failed", "status"),
        ("cursor=abc", "cursor"),
        ("cursor=-4", "cursor"),
        ("cursor=0", "cursor"),
        ("name=a&name=b", "name"),
    ] {
        cases.push((format!("/api/v1/workflows?{query}"), parameter));
    }
    for (path, parameter) in &cases {
        let (status, body) = s.get(path).await;
        assert_bad(path, status, &body, parameter);
    }
    let (_, body) = s.get(&format!("{events}?limit=0")).await;
    assert_eq!(body["error"]["details"]["max"], MAX_LIMIT, "{body}");
    let (_, body) = s.get(&format!("{events}?format=xml")).await;
    assert_eq!(
        body["error"]["details"]["allowed"],
        json!(["json", "ndjson"])
    );
    let (_, body) = s.get(&format!("{replay}?to_version={}", last + 1)).await;
    assert_eq!(body["error"]["details"]["last_version"], last, "{body}");

    // Good values at the edges, percent-encoded ones, and unknown parameters (ignored).
    for path in [
        format!("{events}?limit={MAX_LIMIT}"),
        format!("{events}?limit=1&after_version=0"),
        format!("{events}?limit=%31%30"),
        format!("{events}?format=json&unknown=1&_=cache-buster"),
        format!("{events}?after_version={}", i64::MAX),
        format!("{replay}?to_version={last}&verbose=yes"),
        format!("{merged}?after_position=0&limit=1&cursor=whatever"),
        format!("{events}?format=ndjson&after_version=0"),
        "/api/v1/workflows?limit=1000&status=&name=&cursor=&unknown=1".to_owned(),
        "/api/v1/workflows?status=completed&limit=1".to_owned(),
    ] {
        let (status, body) = s.get(&path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (_, body) = s.get(&format!("{events}?limit=%31")).await;
    assert_eq!(body["events"].as_array().map(Vec::len), Some(1), "{body}");
    let (_, body) = s.get(&format!("{events}?after_version={}", i64::MAX)).await;
    assert_eq!(
        body["events"],
        json!([]),
        "nothing after the largest version"
    );

    // A path segment that is not UTF-8 once decoded is a JSON 404, like any unknown id.
    for path in [
        "/api/v1/executions/%FF/events".to_owned(),
        "/api/v1/executions/%FF/replay".to_owned(),
        "/api/v1/executions/%FF/verify".to_owned(),
        "/api/v1/workflows/%FF/events".to_owned(),
    ] {
        let (status, body) = s.get(&path).await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("not_found")),
            "{path}: {body}"
        );
        assert_error_shape(&body);
    }

    // The WebSocket streams: a bad `after` is refused before the upgrade, as JSON.
    for base in [
        format!("/ws/executions/{execution}"),
        format!("/ws/workflows/{workflow}"),
    ] {
        for n in numbers {
            let path = format!("{base}?after={}", urlencode(n));
            let (status, body) = refused_upgrade(s, &path).await;
            assert_bad(&path, status, &body, "after");
        }
        let path = format!("{base}?after=1&after=2");
        let (status, body) = refused_upgrade(s, &path).await;
        assert_bad(&path, status, &body, "after");
        // A plain GET (no upgrade) is the API's JSON 400 too, not axum's text.
        let (status, body) = s.get(&base).await;
        assert_eq!(status, 400, "{base}: {body}");
        assert_error_shape(&body);
        assert_eq!(
            body["error"]["details"]["reason"],
            "websocket_upgrade_required"
        );
    }

    assert_eq!(
        s.head().await,
        head,
        "no rejected request appended anything"
    );
}

/// The write routes' parameters: the poll's `max` (`1..=100`) and `wait_ms` (a whole
/// number, capped to 60 s), and creation's `execute` (a boolean) — JSON 400s naming
/// them, checked before anything is looked up or written.
pub async fn bad_command_parameters_are_json_400s(s: &TestServer) {
    let (status, body) = s
        .post(
            "/api/v1/agents",
            json!({"name": "params", "roles": ["params-role"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let agent = body["agent_id"].as_str().expect("agent_id").to_owned();
    let head = s.head().await;
    let poll = format!("/api/v1/agents/{agent}/poll");
    let nobody = format!("/api/v1/agents/{}/poll", uuid::Uuid::now_v7());
    let mut cases: Vec<(String, &str)> = Vec::new();
    for max in [
        "abc",
        "0",
        "101",
        "-1",
        "1.5",
        "",
        "+5",
        "99999999999999999999999",
    ] {
        let max = urlencode(max);
        cases.push((format!("{poll}?max={max}&wait_ms=0"), "max"));
        // A bad parameter is a 400 even for an unknown agent.
        cases.push((format!("{nobody}?max={max}"), "max"));
    }
    for wait in ["abc", "-1", "1.5", "", "9223372036854775808", "1e3"] {
        let wait = urlencode(wait);
        cases.push((format!("{poll}?wait_ms={wait}"), "wait_ms"));
    }
    cases.extend([
        (format!("{poll}?max=1&max=2&wait_ms=0"), "max"),
        (format!("{poll}?wait_ms=0&wait_ms=0"), "wait_ms"),
    ]);
    let definition = json!({"name": "params-create", "tasks": [{"id": "a", "kind": "noop"}]});
    for execute in [
        "maybe",
        "yes",
        "TRUE",
        "2",
        "1&execute=0",
        "true&execute=true",
    ] {
        cases.push((format!("/api/v1/workflows?execute={execute}"), "execute"));
    }
    for (path, parameter) in &cases {
        let body = match path.starts_with("/api/v1/workflows") {
            true => definition.clone(),
            false => json!({}),
        };
        let (status, body) = s.post(path, body).await;
        assert_bad(path, status, &body, parameter);
    }
    let (_, body) = s.post(&format!("{poll}?max=0"), json!({})).await;
    assert_eq!(
        (
            &body["error"]["details"]["min"],
            &body["error"]["details"]["max"]
        ),
        (&json!(1), &json!(100)),
        "{body}"
    );
    assert_eq!(
        s.head().await,
        head,
        "no rejected request appended anything"
    );

    // Good values at the edges, and unknown parameters (ignored).
    for path in [
        format!("{poll}?max=1&wait_ms=0"),
        format!("{poll}?max=100&wait_ms=0&_=cache-buster"),
        format!("{poll}?max=%31%30&wait_ms=%30"),
    ] {
        let (status, body) = s.post(&path, json!({})).await;
        assert_eq!(
            (status, &body["tasks"]),
            (200, &json!([])),
            "{path}: {body}"
        );
    }
    for (query, executes) in [
        ("execute=0&unknown=1", false),
        ("execute=false", false),
        ("execute=true", true),
        ("execute=1", true),
        ("execute", true),
    ] {
        let path = format!("/api/v1/workflows?{query}");
        let (status, body) = s.post(&path, definition.clone()).await;
        assert_eq!(status, 201, "{path}: {body}");
        assert_eq!(
            body.get("execution_id").is_some(),
            executes,
            "{path}: {body}"
        );
    }
}

/// Percent-encodes a query value (enough for the values above).
fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A path id that is not UTF-8 once percent-decoded names nothing: every route answers
/// the API's JSON 404, never axum's plain-text 400.
pub async fn undecodable_path_ids_are_json_404s(s: &TestServer) {
    for path in [
        "/api/v1/workflows/%FF",
        "/api/v1/workflows/%FF/status",
        "/api/v1/workflows/%FF/events",
        "/api/v1/executions/%FF",
        "/api/v1/executions/%FF/events",
        "/api/v1/executions/%FF/replay",
        "/api/v1/executions/%FF/verify",
    ] {
        let (status, body) = s.get(path).await;
        assert_eq!(status, 404, "GET {path}: {body}");
        assert_error_shape(&body);
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
    for path in [
        "/api/v1/workflows/%FF/execute",
        "/api/v1/workflows/%FF/pause",
        "/api/v1/executions/%FF/cancel",
        "/api/v1/agents/%FF/poll",
        "/api/v1/tasks/%FF/complete",
    ] {
        let (status, body) = s.post(path, json!({})).await;
        assert_eq!(status, 404, "POST {path}: {body}");
        assert_error_shape(&body);
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}
