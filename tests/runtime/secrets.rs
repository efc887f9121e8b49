//! Secrets end to end: managed per tenant by admins and developers, referenced as
//! `${secrets.NAME}`, put into an `http` request or an agent's poll answer in memory
//! only — the event log, its NDJSON export, the read models, the live stream, the
//! stores, Redis and the log hold the reference, never the value.

use conflux_schema::access::Role;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::harness::{id_of, Mode, TestServer, PATIENCE};
use crate::raw_scan::{capture_logs, scan_of};
use crate::target::Target;
use crate::tenants::{key_in, system_admin};

/// A value no test writes twice.
fn recognisable(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::now_v7().simple())
}

async fn create_secret(server: &TestServer, name: &str, value: &str) {
    let (status, body) = server
        .post("/api/v1/secrets", json!({"name": name, "value": value}))
        .await;
    assert_eq!(status, 201, "{body}");
}

/// The execution's whole log as served: JSON pages, the NDJSON export, the read model,
/// and the live stream from position 0; each must say `${secrets.NAME}`, never `value`.
async fn assert_views_hold_no_value(server: &TestServer, execution: &str, value: &str) -> String {
    let log = server.events(execution).await;
    let pages = serde_json::to_string(&log.0).expect("json");
    let (status, ndjson) = server
        .get(&format!(
            "/api/v1/executions/{execution}/events?format=ndjson"
        ))
        .await;
    assert_eq!(status, 200);
    let ndjson = match ndjson {
        Value::String(text) => text,
        other => other.to_string(),
    };
    let read_model = server.execution(execution).await.to_string();
    let live = live_text(server, execution).await;
    for (what, text) in [
        ("events", &pages),
        ("ndjson", &ndjson),
        ("read model", &read_model),
        ("live stream", &live),
    ] {
        assert!(
            !text.contains(value),
            "{what} holds the secret value: {text}"
        );
    }
    assert!(pages.contains("${secrets."), "the log keeps the reference");
    assert!(
        live.contains("${secrets."),
        "the live stream shows the reference"
    );
    pages
}

/// Every frame of `/ws/executions/{id}?after=0` up to the terminal event, as text.
async fn live_text(server: &TestServer, execution: &str) -> String {
    let (mut socket, _) = server
        .ws_connect(&format!("/ws/executions/{execution}?after=0"))
        .await
        .expect("upgrade");
    let mut text = String::new();
    let read = async {
        while let Some(Ok(frame)) = socket.next().await {
            if let Message::Text(frame) = frame {
                text.push_str(&frame);
                text.push('\n');
                if ["ExecutionCompleted", "ExecutionFailed"]
                    .iter()
                    .any(|end| frame.contains(end))
                {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the live stream ends");
    text
}

/// CRUD and who may do it: `admin` and `developer` of a tenant manage its secrets;
/// `viewer`, `auditor`, `operator` and `agent` get 403; answers never carry a value;
/// another tenant can neither see, change, delete nor reference them.
pub async fn secrets_are_managed_by_their_tenant(server: &TestServer) {
    for tenant in ["acme", "globex"] {
        system_admin(server)
            .ok("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
            .await;
    }
    let admin = key_in(server, "acme", Role::Admin).await;
    let developer = key_in(server, "acme", Role::Developer).await;
    let value = recognisable("crud");
    let created = admin
        .call(
            "POST",
            "/api/v1/secrets",
            Some(json!({"name": "API_TOKEN", "value": value})),
        )
        .await;
    assert_eq!(created.0, 201, "{}", created.1);
    assert_eq!(created.1["name"], "API_TOKEN");
    assert_eq!(created.1["created_at"], created.1["updated_at"]);
    assert!(created.1.get("value").is_none());
    let again = admin
        .call(
            "POST",
            "/api/v1/secrets",
            Some(json!({"name": "API_TOKEN", "value": value})),
        )
        .await;
    assert_eq!(
        (again.0, again.1["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    assert!(!again.1.to_string().contains(&value));
    developer
        .ok(
            "POST",
            "/api/v1/secrets",
            Some(json!({"name": "_dev1", "value": "d"})),
        )
        .await;

    for role in [Role::Viewer, Role::Auditor, Role::Operator, Role::Agent] {
        let caller = key_in(server, "acme", role).await;
        let body = json!({"name": "NOPE", "value": "x"});
        for (method, path, body) in [
            ("POST", "/api/v1/secrets", Some(body)),
            ("GET", "/api/v1/secrets", None),
            (
                "PUT",
                "/api/v1/secrets/API_TOKEN",
                Some(json!({"value": "x"})),
            ),
            ("DELETE", "/api/v1/secrets/API_TOKEN", None),
        ] {
            let (status, answer) = caller.call(method, path, body).await;
            assert_eq!(status, 403, "{} {method} {path}: {answer}", role.as_str());
        }
    }

    let listed = developer.ok("GET", "/api/v1/secrets", None).await;
    let names: Vec<&str> = listed["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["API_TOKEN", "_dev1"], "sorted by name");
    assert!(!listed.to_string().contains(&value), "{listed}");

    let rotated = developer
        .ok(
            "PUT",
            "/api/v1/secrets/API_TOKEN",
            Some(json!({"value": "v2"})),
        )
        .await;
    assert_eq!(rotated["created_at"], created.1["created_at"]);
    assert!(rotated["updated_at"].as_str() > created.1["updated_at"].as_str());
    let missing = admin
        .call(
            "PUT",
            "/api/v1/secrets/MISSING",
            Some(json!({"value": "x"})),
        )
        .await;
    assert_eq!(missing.0, 404);

    for (body, field) in [
        (json!({"name": "1bad", "value": "x"}), "name"),
        (json!({"name": "a-b", "value": "x"}), "name"),
        (json!({"name": "OK", "value": ""}), "value"),
    ] {
        let (status, answer) = admin.call("POST", "/api/v1/secrets", Some(body)).await;
        assert_eq!(status, 400, "{answer}");
        assert_eq!(answer["error"]["code"], "invalid_request");
        assert_eq!(answer["error"]["details"]["field"], field);
    }
    let unknown_field = admin
        .call(
            "POST",
            "/api/v1/secrets",
            Some(json!({"name": "OK", "value": "x", "vaule": 1})),
        )
        .await;
    assert_eq!(unknown_field.0, 400);

    let globex = key_in(server, "globex", Role::Admin).await;
    let theirs = globex.ok("GET", "/api/v1/secrets", None).await;
    assert_eq!(theirs["secrets"], json!([]), "another tenant sees none");
    for (method, body) in [("PUT", Some(json!({"value": "x"}))), ("DELETE", None)] {
        let (status, _) = globex.call(method, "/api/v1/secrets/API_TOKEN", body).await;
        assert_eq!(status, 404, "{method} of another tenant's secret");
    }
    let (status, refused) = globex
        .call(
            "POST",
            "/api/v1/workflows",
            Some(uses("API_TOKEN", "http://127.0.0.1:9/")),
        )
        .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("unknown_secret"))
    );

    assert_eq!(
        admin
            .call("DELETE", "/api/v1/secrets/API_TOKEN", None)
            .await
            .0,
        204
    );
    assert_eq!(
        admin
            .call("DELETE", "/api/v1/secrets/API_TOKEN", None)
            .await
            .0,
        404
    );
}

/// A workflow with one `http` task sending `${secrets.NAME}` in a header and the body.
fn uses(name: &str, url: &str) -> Value {
    json!({"name": format!("uses-{}", name.to_lowercase()), "tasks": [
        {"id": "call", "kind": "http", "retry": {"max_attempts": 3, "initial_interval_ms": 10},
         "http": {"method": "POST", "url": url,
                  "headers": {"authorization": format!("Bearer ${{secrets.{name}}}")},
                  "body": {"token": format!("${{secrets.{name}}}"), "n": "${input.n}"}}}
    ]})
}

/// A definition that references secrets the tenant lacks is a 422 naming each; a
/// secret where none may go (a noop's input) is an `invalid_task`.
pub async fn unknown_secrets_are_refused_at_create(server: &TestServer) {
    create_secret(server, "KNOWN", "k").await;
    let mut definition = uses("NOPE", "http://127.0.0.1:9/");
    definition["tasks"][0]["http"]["url"] =
        json!("http://127.0.0.1:9/${secrets.ALSO_NOPE}/${secrets.KNOWN}");
    let (status, body) = server.post("/api/v1/workflows", definition).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "unknown_secret");
    assert_eq!(
        body["error"]["details"]["secrets"],
        json!(["ALSO_NOPE", "NOPE"])
    );
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("NOPE") && message.contains("ALSO_NOPE"),
        "{message}"
    );
    let (status, body) = server
        .post(
            "/api/v1/workflows",
            json!({"name": "leaky", "tasks": [{"id": "n", "kind": "noop", "input": {"k": "${secrets.KNOWN}"}}]}),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (422, Some("invalid_task")),
        "{body}"
    );
}

/// An `http` task's header and body reach the service with the value; the log, its
/// export, the read model and the live stream hold `${secrets.TOKEN}`, and what the
/// service echoed back is recorded with the reference in place of the value.
pub async fn http_tasks_send_values_the_log_never_holds(server: &TestServer) {
    let target = Target::start().await;
    let value = recognisable("sekrit");
    create_secret(server, "TOKEN", &value).await;
    let execution = server
        .run(uses("TOKEN", &target.url("/headers")), json!({"n": 7}))
        .await;
    let done = server.wait_terminal(&execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    let seen = target.calls.authorizations.lock().expect("calls").clone();
    assert_eq!(
        seen,
        [format!("Bearer {value}")],
        "the service got the value"
    );
    let pages = assert_views_hold_no_value(server, &execution, &value).await;
    let log = server.events(&execution).await;
    let dispatched = log.at(log.only("TaskDispatched", "call"));
    assert_eq!(
        dispatched["data"]["http"]["headers"]["authorization"],
        "Bearer ${secrets.TOKEN}"
    );
    assert_eq!(dispatched["data"]["http"]["body"]["n"], 7);
    let completed = log.at(log.only("TaskCompleted", "call"));
    assert_eq!(
        completed["data"]["output"]["body"],
        json!({"authorization": "Bearer ${secrets.TOKEN}", "echo": {"token": "${secrets.TOKEN}", "n": 7}}),
        "{pages}"
    );
}

/// An agent task's input reaches the agent, in its poll answer, with the value; the
/// log keeps the reference.
pub async fn agents_receive_values_in_their_poll_only(server: &TestServer) {
    let value = recognisable("agent-sekrit");
    create_secret(server, "AGENT_KEY", &value).await;
    let execution = server
        .run(
            json!({"name": "agent-secret", "tasks": [
                {"id": "work", "kind": "agent", "agent_role": "picker",
                 "input": {"key": "${secrets.AGENT_KEY}", "auth": "Bearer ${secrets.AGENT_KEY}",
                           "n": "${input.n}", "literal": "$${secrets.AGENT_KEY}"}}]}),
            json!({"n": 1}),
        )
        .await;
    let lease = poll_one(server).await;
    assert_eq!(
        lease["input"],
        json!({"key": value, "auth": format!("Bearer {value}"), "n": 1, "literal": "${secrets.AGENT_KEY}"})
    );
    let lease_id = id_of(&lease, "lease_id");
    // An agent that echoes what it was given: the log gets the reference back.
    let (status, body) = server
        .post(
            &format!("/api/v1/tasks/{lease_id}/complete"),
            json!({"output": {"ok": true, "echo": format!("used {value}")}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let done = server.wait_terminal(&execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        done["tasks"]["work"]["output"]["echo"],
        "used ${secrets.AGENT_KEY}"
    );
    assert_views_hold_no_value(server, &execution, &value).await;
    let log = server.events(&execution).await;
    let dispatched = log.at(log.only("TaskDispatched", "work"));
    assert_eq!(dispatched["data"]["input"]["key"], "${secrets.AGENT_KEY}");

    // The same for a failure's error.
    let failing = server
        .run(
            json!({"name": "agent-secret-fails", "tasks": [
                {"id": "work", "kind": "agent", "agent_role": "picker",
                 "retry": {"max_attempts": 1}, "input": {"key": "${secrets.AGENT_KEY}"}}]}),
            json!({}),
        )
        .await;
    let lease = poll_one(server).await;
    let lease_id = id_of(&lease, "lease_id");
    let (status, body) = server
        .post(
            &format!("/api/v1/tasks/{lease_id}/fail"),
            json!({"error": format!("{value} was refused"), "retryable": false}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let failed = server.wait_terminal(&failing).await;
    assert_eq!(
        failed["tasks"]["work"]["error"],
        "${secrets.AGENT_KEY} was refused"
    );
    assert_views_hold_no_value(server, &failing, &value).await;
}

/// Registers a `picker` agent and polls until it holds one lease.
async fn poll_one(server: &TestServer) -> Value {
    let (status, agent) = server
        .post(
            "/api/v1/agents",
            json!({"name": "picker", "roles": ["picker"]}),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    let agent = id_of(&agent, "agent_id");
    let started = std::time::Instant::now();
    loop {
        let (status, polled) = server
            .post(
                &format!("/api/v1/agents/{agent}/poll?wait_ms=1000"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{polled}");
        if let Some(task) = polled["tasks"].as_array().and_then(|t| t.first()) {
            return task.clone();
        }
        assert!(started.elapsed() < PATIENCE, "no lease");
    }
}

/// A secret deleted after its workflow was created fails the `http` attempt (and the
/// agent attempt) that needs it for good, naming it — no retry, no value.
pub async fn a_deleted_secret_fails_its_task_for_good(server: &TestServer) {
    let target = Target::start().await;
    create_secret(server, "GONE", "soon-deleted-value").await;
    let http = server
        .create_workflow(uses("GONE", &target.url("/headers")))
        .await;
    let agent = server
        .create_workflow(json!({"name": "agent-gone", "tasks": [
            {"id": "work", "kind": "agent", "agent_role": "picker",
             "retry": {"max_attempts": 3}, "input": {"k": "${secrets.GONE}"}}]}))
        .await;
    let (status, _) = system_admin(server)
        .call("DELETE", "/api/v1/secrets/GONE", None)
        .await;
    assert_eq!(status, 204);
    let expected = "secret \"GONE\" does not exist (deleted after the workflow was created?)";

    let execution = server.execute(&http, json!({"n": 1})).await;
    let done = server.wait_terminal(&execution).await;
    assert_eq!(done["status"], "failed", "{done}");
    let log = server.events(&execution).await;
    assert_eq!(
        log.count("TaskFailed", Some("call")),
        1,
        "{:?}",
        log.types()
    );
    assert_eq!(log.count("TaskRetryScheduled", Some("call")), 0);
    let failed = log.at(log.only("TaskFailed", "call"));
    assert_eq!(failed["data"]["error"], expected);
    assert_eq!(failed["data"]["retryable"], false);
    assert!(target
        .calls
        .authorizations
        .lock()
        .expect("calls")
        .is_empty());

    let execution = server.execute(&agent, json!({})).await;
    let (status, registered) = server
        .post(
            "/api/v1/agents",
            json!({"name": "picker", "roles": ["picker"]}),
        )
        .await;
    assert_eq!(status, 201);
    let agent_id = id_of(&registered, "agent_id");
    let (status, polled) = server
        .post(
            &format!("/api/v1/agents/{agent_id}/poll?wait_ms=2000"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        polled["tasks"],
        json!([]),
        "no lease for an attempt that cannot run"
    );
    let done = server.wait_terminal(&execution).await;
    assert_eq!(done["status"], "failed", "{done}");
    let log = server.events(&execution).await;
    let failed = log.at(log.only("TaskFailed", "work"));
    assert_eq!(failed["data"]["error"], expected);
    assert_eq!(failed["data"]["retryable"], false);
}

/// The raw-bytes proof, in `mode`: a recognisable secret value and payload go through
/// the API, an `http` task and an agent task use the value; then every table (or SQLite
/// file, `-wal` included), every Redis key of the test's prefix and every log line is
/// scanned. The value is nowhere; the payload (no payload encryption) is stored.
pub async fn secret_values_are_nowhere_at_rest(mode: Mode) {
    capture_logs();
    let server = TestServer::start(mode).await;
    let target = Target::start().await;
    let value = recognisable("sekrit");
    let payload = recognisable("payload");
    create_secret(&server, "TOKEN", &value).await;
    let mut definition = uses("TOKEN", &target.url("/headers"));
    definition["tasks"][0]["http"]["body"]["payload"] = json!("${input.payload}");
    definition["tasks"].as_array_mut().expect("tasks").push(
        json!({"id": "work", "kind": "agent", "agent_role": "picker", "depends_on": ["call"],
                     "input": {"key": "${secrets.TOKEN}", "payload": "${input.payload}"}}),
    );
    let execution = server
        .run(definition, json!({"n": 1, "payload": payload}))
        .await;
    let lease = poll_one(&server).await;
    assert_eq!(lease["input"]["key"], value.as_str());
    let lease_id = id_of(&lease, "lease_id");
    let (status, _) = server
        .post(
            &format!("/api/v1/tasks/{lease_id}/complete"),
            json!({"output": {"done": true}}),
        )
        .await;
    assert_eq!(status, 200);
    let done = server.wait_terminal(&execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(
        target.calls.authorizations.lock().expect("calls").clone(),
        [format!("Bearer {value}")]
    );
    assert_views_hold_no_value(&server, &execution, &value).await;
    // A signal's payload and an approval's comment are payloads too.
    let waiting = server
        .run(
            json!({"name": "waits", "tasks": [
                {"id": "s", "kind": "signal"},
                {"id": "g", "kind": "approval", "depends_on": ["s"], "approvers": {"roles": ["admin"]}}]}),
            json!({}),
        )
        .await;
    let (status, body) = server
        .post(
            &format!("/api/v1/executions/{waiting}/signals/s"),
            json!({"payload": {"p": payload}}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    server
        .wait_events(&waiting, "the approval waits", |log| {
            log.count("TaskStarted", Some("g")) == 1
        })
        .await;
    let (status, body) = server
        .post(
            &format!("/api/v1/executions/{waiting}/tasks/g/approve"),
            json!({"comment": payload}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let done = server.wait_terminal(&waiting).await;
    assert_eq!(
        done["tasks"]["g"]["output"]["comments"],
        json!([payload]),
        "{done}"
    );
    // Let the projector and the relay catch up with the last events.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    let scan = scan_of(&server);
    let leaks = scan.occurrences(&value).await;
    assert!(
        leaks.is_empty(),
        "the secret value is stored or logged: {leaks:?}"
    );
    let payloads = scan.occurrences(&payload).await;
    if mode == Mode::Sealed {
        // With encryption at rest, payloads are sealed wherever they are kept.
        assert!(
            payloads.is_empty(),
            "a payload is stored in plain text: {payloads:?}"
        );
        assert!(
            !scan.occurrences("TaskDispatched").await.is_empty(),
            "the scan finds what is stored (the events' structure)"
        );
    } else {
        assert!(
            !payloads.is_empty(),
            "the scan finds what is stored (the payload)"
        );
    }
    let logged = crate::raw_scan::log_lines();
    assert!(
        logged.iter().any(|line| line.contains("DEBUG")),
        "the server's log was captured ({} lines)",
        logged.len()
    );
    eprintln!("the payload is stored in: {payloads:?}");
    server.stop().await;
}
