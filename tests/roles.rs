//! The CQRS split with the real binary: on one Postgres + Redis store, `conflux
//! command-api` takes the writes, `conflux query-api` serves the reads, and `conflux
//! engine`, `relay` and `projector` run in processes of their own. A workflow created and
//! executed through the command side (its agent task leased and completed there too) is
//! read, with its events, its status and its live stream, through the query side; each
//! side answers the other's routes `404 not_found`, as unknown ones, and `conflux api`
//! still answers both.

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use std::time::{Duration, Instant};

use binary::Binary;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use conflux_http::auth::ROUTES;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const PATIENCE: Duration = Duration::from_secs(60);

/// Routes every HTTP-serving process answers.
const OPERATIONS: &[(&str, &str)] = &[("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")];

/// The write routes: the command API's. Every other route of the API is the query API's.
const COMMANDS: &[(&str, &str)] = &[
    ("POST", "/api/v1/workflows"),
    ("POST", "/api/v1/workflows/{id}/execute"),
    ("POST", "/api/v1/workflows/{id}/pause"),
    ("POST", "/api/v1/workflows/{id}/resume"),
    ("POST", "/api/v1/executions/{id}/pause"),
    ("POST", "/api/v1/executions/{id}/resume"),
    ("POST", "/api/v1/executions/{id}/cancel"),
    ("POST", "/api/v1/executions/{id}/signals/{signal}"),
    ("POST", "/api/v1/executions/{id}/tasks/{task_id}/approve"),
    ("POST", "/api/v1/executions/{id}/tasks/{task_id}/reject"),
    ("POST", "/api/v1/agents"),
    ("POST", "/api/v1/agents/{id}/poll"),
    ("GET", "/api/v1/agents"),
    ("GET", "/api/v1/agents/{id}"),
    ("DELETE", "/api/v1/agents/{id}"),
    ("POST", "/api/v1/agents/{id}/heartbeat"),
    ("POST", "/api/v1/agents/{id}/drain"),
    ("POST", "/api/v1/tasks/{id}/complete"),
    ("POST", "/api/v1/tasks/{id}/fail"),
    ("POST", "/api/v1/tasks/{id}/heartbeat"),
    ("POST", "/api/v1/keys"),
    ("GET", "/api/v1/keys"),
    ("DELETE", "/api/v1/keys/{key_id}"),
    ("POST", "/api/v1/tenants"),
    ("GET", "/api/v1/tenants"),
    ("DELETE", "/api/v1/tenants/{tenant}/data"),
    ("PUT", "/api/v1/tenants/{tenant}/policy"),
    ("GET", "/api/v1/tenants/{tenant}/policy"),
    ("GET", "/api/v1/tenants/{tenant}/usage"),
    ("DELETE", "/api/v1/executions/{id}/data"),
    ("POST", "/api/v1/secrets"),
    ("GET", "/api/v1/secrets"),
    ("PUT", "/api/v1/secrets/{name}"),
    ("DELETE", "/api/v1/secrets/{name}"),
    ("POST", "/api/v1/patterns/{pattern}"),
    ("POST", "/api/v1/schedules"),
    ("POST", "/api/v1/schedules/{id}/pause"),
    ("POST", "/api/v1/schedules/{id}/resume"),
    ("DELETE", "/api/v1/schedules/{id}"),
    ("POST", "/api/v1/hooks"),
    ("DELETE", "/api/v1/hooks/{id}"),
    ("DELETE", "/api/v1/dead-letters/{id}"),
    ("POST", "/api/v1/dead-letters/{id}/retry"),
];

/// Which processes answer a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Both,
    Commands,
    Queries,
}

fn side_of(method: &str, route: &str) -> Side {
    let listed = |table: &[(&str, &str)]| table.iter().any(|(m, r)| *m == method && *r == route);
    if listed(OPERATIONS) {
        Side::Both
    } else if listed(COMMANDS) {
        Side::Commands
    } else {
        Side::Queries
    }
}

async fn send(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = auth::client().request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    send("POST", &format!("{base}{path}"), Some(body)).await
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    send("GET", &format!("{base}{path}"), None).await
}

/// Whether an answer is the router's fallback for a route it does not serve.
fn is_fallback(status: u16, body: &Value) -> bool {
    status == 404
        && body["error"]["code"] == "not_found"
        && body["error"]["message"] == "no such route"
}

/// Asks `base` every route of the API (fresh ids, `{}` bodies, which every creating
/// route refuses: nothing is created) and returns those it answered with the fallback.
async fn unserved_routes(base: &str) -> Vec<(&'static str, &'static str)> {
    let mut unserved = Vec::new();
    for (method, route, _) in ROUTES {
        let path = route
            .replace("{id}", &uuid::Uuid::new_v4().to_string())
            .replace("{key_id}", &uuid::Uuid::new_v4().simple().to_string())
            .replace("{name}", "NO_SUCH_SECRET");
        let url = format!("{base}{path}?wait_ms=0");
        let body = ["POST", "PUT"].contains(method).then(|| json!({}));
        let (status, body) = send(method, &url, body).await;
        assert_ne!(status, 405, "{method} {route}: {body}");
        if is_fallback(status, &body) {
            unserved.push((*method, *route));
        }
    }
    unserved
}

/// Polls `check` on `what` until it returns Some, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) => assert!(
                started.elapsed() < PATIENCE,
                "{what} did not happen; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_and_query_apis_split_the_routes_over_one_store() {
    let db = TestDatabase::create().await;
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_url()),
        ("CONFLUX_REDIS_PREFIX", prefix.clone()),
        ("CONFLUX_PG_MAX_CONNECTIONS", "4".to_owned()),
    ];
    let mut processes: Vec<Binary> = ["relay", "engine", "projector"]
        .into_iter()
        .map(|role| Binary::start_role(role, &env, dir.path()))
        .collect();
    let commands = Binary::start_role("command-api", &env, dir.path());
    let queries = Binary::start_role("query-api", &env, dir.path());
    let (cmd, qry) = (commands.base.clone(), queries.base.clone());
    for base in [&cmd, &qry] {
        eventually("/ready", || async {
            match get(base, "/ready").await {
                (200, _) => Ok(()),
                (status, body) => Err(format!("{status} {body}")),
            }
        })
        .await;
    }

    // Writes through the command side: create, execute, and an agent's lease.
    let (status, created) = post(
        &cmd,
        "/api/v1/workflows",
        json!({"name": "split", "tasks": [
            {"id": "a", "kind": "noop"},
            {"id": "work", "kind": "agent", "agent_role": "picker", "depends_on": ["a"],
             "input": {"order": "${input.order}"}},
            {"id": "b", "kind": "noop", "depends_on": ["work"]}
        ]}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let workflow = created["workflow_id"]
        .as_str()
        .expect("workflow_id")
        .to_owned();
    let (status, started) = post(
        &cmd,
        &format!("/api/v1/workflows/{workflow}/execute"),
        json!({"input": {"order": 42}}),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let execution = started["execution_id"]
        .as_str()
        .expect("execution_id")
        .to_owned();
    let (status, agent) = post(
        &cmd,
        "/api/v1/agents",
        json!({"name": "p", "roles": ["picker"]}),
    )
    .await;
    assert_eq!(status, 201, "{agent}");
    let agent = agent["agent_id"].as_str().expect("agent_id").to_owned();
    let lease = eventually("a lease", || async {
        let path = format!("/api/v1/agents/{agent}/poll?wait_ms=2000");
        match post(&cmd, &path, json!({})).await {
            (200, body) if body["tasks"][0]["lease_id"].is_string() => Ok(body["tasks"][0].clone()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(
        (lease["execution_id"].as_str(), &lease["input"]),
        (Some(execution.as_str()), &json!({"order": 42}))
    );
    let lease_id = lease["lease_id"].as_str().expect("lease_id");
    let (status, body) = post(
        &cmd,
        &format!("/api/v1/tasks/{lease_id}/complete"),
        json!({"output": {"picked": true}}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Reads through the query side: the execution, the list (read models only, so the
    // projector process ran), the status, the log and the live stream.
    let done = eventually("the execution completes", || async {
        match get(&qry, &format!("/api/v1/executions/{execution}")).await {
            (200, body) if body["status"] == "completed" => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    assert_eq!(
        done["tasks"]["work"]["output"],
        json!({"picked": true}),
        "{done}"
    );
    assert_eq!(done["tasks"]["work"]["agent_id"], json!(agent), "{done}");
    eventually("the workflow is listed", || async {
        match get(&qry, "/api/v1/workflows?name=split").await {
            (200, body) if body["items"][0]["workflow_id"] == json!(workflow) => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    eventually("the status shows the run", || async {
        match get(&qry, &format!("/api/v1/workflows/{workflow}/status")).await {
            (200, body)
                if body["latest_execution"]["execution_id"] == json!(execution)
                    && body["latest_execution"]["status"] == "completed" =>
            {
                Ok(())
            }
            (status, body) => Err(format!("{status} {body}")),
        }
    })
    .await;
    let (status, log) = get(&qry, &format!("/api/v1/executions/{execution}/events")).await;
    assert_eq!(status, 200, "{log}");
    let types: Vec<&str> = log["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(types.first(), Some(&"ExecutionStarted"), "{types:?}");
    assert_eq!(types.last(), Some(&"ExecutionCompleted"), "{types:?}");
    assert!(types.contains(&"TaskStarted"), "{types:?}");

    let ws = |base: &str| {
        let url = format!(
            "{}/ws/executions/{execution}",
            base.replacen("http://", "ws://", 1)
        );
        tokio_tungstenite::connect_async(auth::ws_request(&url))
    };
    let (mut socket, _) = ws(&qry).await.expect("the query side streams");
    let snapshot = tokio::time::timeout(PATIENCE, async {
        loop {
            match socket.next().await.expect("a frame").expect("frame") {
                Message::Text(t) => break serde_json::from_str::<Value>(&t).expect("json"),
                _ => continue,
            }
        }
    })
    .await
    .expect("a snapshot");
    assert_eq!(
        (
            snapshot["type"].as_str(),
            snapshot["status"]["status"].as_str()
        ),
        (Some("snapshot"), Some("completed"))
    );
    match ws(&cmd).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status().as_u16(), 404)
        }
        Err(e) => panic!("the command side refuses the upgrade with 404, not {e}"),
        Ok(_) => panic!("the command side has no live streams"),
    }

    // The ids that exist, asked of the wrong side, are unknown routes there.
    let (status, body) = get(&cmd, &format!("/api/v1/executions/{execution}")).await;
    assert!(is_fallback(status, &body), "{status} {body}");
    let (status, body) = post(
        &qry,
        &format!("/api/v1/executions/{execution}/cancel"),
        json!({}),
    )
    .await;
    assert!(is_fallback(status, &body), "{status} {body}");
    let (status, body) = post(
        &qry,
        "/api/v1/workflows",
        json!({"name": "x", "tasks": [{"id": "a", "kind": "noop"}]}),
    )
    .await;
    assert!(
        is_fallback(status, &body),
        "a query API creates nothing: {status} {body}"
    );

    // Every route of the API, on each side.
    let expected = |side: Side| -> Vec<(&str, &str)> {
        ROUTES
            .iter()
            .filter(|(m, r, _)| side_of(m, r) == side)
            .map(|(m, r, _)| (*m, *r))
            .collect()
    };
    assert_eq!(
        unserved_routes(&cmd).await,
        expected(Side::Queries),
        "the command side"
    );
    assert_eq!(
        unserved_routes(&qry).await,
        expected(Side::Commands),
        "the query side"
    );
    let api = Binary::start_role("api", &env, dir.path());
    assert_eq!(
        unserved_routes(&api.base).await,
        Vec::new(),
        "`conflux api` serves both sides"
    );
    for base in [&cmd, &qry, &api.base] {
        let (status, _) = get(base, "/metrics").await;
        assert_eq!(status, 200);
    }

    processes.extend([commands, queries, api]);
    for mut process in processes {
        let status = process.stop();
        assert!(status.success(), "exited with {status}: {}", process.log());
        assert_eq!(process.bad_log_lines(), Vec::<String>::new());
    }
    delete_redis_prefix(&prefix).await;
    db.drop_database().await;
}
