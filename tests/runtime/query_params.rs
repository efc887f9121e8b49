//! Query parameters of the audit routes and the WebSocket streams: every bad one —
//! not a number, negative, fractional, too large, empty, given twice, a `limit` outside
//! `1..=10000`, an unknown `format`, a `to_version` past the log — is a
//! `400 invalid_request` with the API's JSON error body and `details.parameter` naming
//! it (never axum's plain-text rejection), and changes nothing; parameters a route does
//! not know are ignored; positions and versions stop at 2^63-1 (the store's range); a path segment that is not UTF-8 is a JSON 404; and a plain
//! GET on a WebSocket route is a JSON 400.

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
    let url = format!("{}{path}", s.base.replacen("http://", "ws://", 1));
    match tokio_tungstenite::connect_async(url).await {
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

/// Percent-encodes a query value (enough for the values above).
fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
