//! Tenants, end to end: two tenants with the same workflow name never see each other's
//! workflows, executions, events, live streams, agents or tasks, and another tenant's
//! id answers exactly as an unknown one. The callers and estates here serve the access
//! matrix (`matrix`) and the conformance test too.

use std::time::Duration;

use conflux_schema::access::Role;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::auth::ADMIN_TOKEN;
use crate::harness::{id_of, TestServer};

/// A caller: a server and one bearer token.
pub struct Caller<'a> {
    server: &'a TestServer,
    token: String,
}

impl Caller<'_> {
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = reqwest::Client::new()
            .request(method, format!("{}{path}", self.server.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET path` as text (an NDJSON export), with the status.
    pub async fn text(&self, path: &str) -> (u16, String) {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.server.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.text().await.unwrap_or_default())
    }

    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, answer) = self.call(method, path, body).await;
        assert!(
            (200..300).contains(&status),
            "{method} {path}: {status} {answer}"
        );
        answer
    }

    /// Opens `path` (`/ws/…`): `Ok(first frame)` once upgraded, `Err(HTTP status)` if
    /// the upgrade is refused.
    pub async fn watch(&self, path: &str) -> Result<Message, u16> {
        let url = format!("{}{path}", self.server.base.replacen("http", "ws", 1));
        let mut request = url.into_client_request().expect("ws url");
        let bearer = format!("Bearer {}", self.token).parse().expect("header");
        request.headers_mut().insert("authorization", bearer);
        match tokio_tungstenite::connect_async(request).await {
            Ok((mut socket, _)) => {
                let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
                    .await
                    .expect("a first frame")
                    .expect("an open socket")
                    .expect("a frame");
                let _ = socket.send(Message::Close(None)).await;
                Ok(frame)
            }
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("{path}: {e}"),
        }
    }
}

impl<'a> Caller<'a> {
    /// A caller with `token`.
    pub fn with_token(server: &'a TestServer, token: &str) -> Self {
        Caller {
            server,
            token: token.to_owned(),
        }
    }

    /// Its bearer token.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Polls the execution (of this caller's tenant) until it has finished.
    pub async fn wait_terminal(&self, execution: &str) -> Value {
        let started = std::time::Instant::now();
        loop {
            let body = self
                .ok("GET", &format!("/api/v1/executions/{execution}"), None)
                .await;
            let status = body["status"].as_str().unwrap_or_default();
            if ["completed", "failed", "cancelled", "compensated"].contains(&status) {
                return body;
            }
            assert!(
                started.elapsed() < crate::harness::PATIENCE,
                "execution {execution} never finished: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls the execution's log (of this caller's tenant) until `done` holds for its
    /// event types.
    pub async fn wait_events(&self, execution: &str, what: &str, done: impl Fn(&[&str]) -> bool) {
        let started = std::time::Instant::now();
        loop {
            let body = self
                .ok(
                    "GET",
                    &format!("/api/v1/executions/{execution}/events"),
                    None,
                )
                .await;
            let types: Vec<&str> = body["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e["type"].as_str())
                .collect();
            if done(&types) {
                return;
            }
            assert!(
                started.elapsed() < crate::harness::PATIENCE,
                "execution {execution}: {what} never happened: {types:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn system_admin(server: &TestServer) -> Caller<'_> {
    Caller {
        server,
        token: ADMIN_TOKEN.to_owned(),
    }
}

/// A key of `role` in `tenant` (agent keys serve `picker`).
pub async fn key_in<'a>(server: &'a TestServer, tenant: &str, role: Role) -> Caller<'a> {
    let mut body = json!({"name": format!("{} of {tenant}", role.as_str()), "role": role.as_str(), "tenant": tenant});
    if role == Role::Agent {
        body["agent_roles"] = json!(["picker"]);
    }
    let created = system_admin(server)
        .ok("POST", "/api/v1/keys", Some(body))
        .await;
    Caller {
        server,
        token: created["token"].as_str().expect("token").to_owned(),
    }
}

/// What one tenant has: a workflow named `orders` (one `picker` agent task), a running
/// execution of it, a registered agent holding its lease, and a spare key.
pub struct Estate {
    pub workflow: String,
    pub execution: String,
    pub agent: String,
    pub lease: String,
    pub key: String,
    /// A secret's name (`<TENANT>_TOKEN`, so each tenant's differs).
    pub secret: String,
    /// The tenant's name.
    pub tenant: String,
    /// A schedule of `workflow` (yearly, so it does not tick during a test).
    pub schedule: String,
    /// A dead letter (a task whose `when` fails at run time), listed.
    pub dead_letter: String,
    /// A webhook (of an event type the tests seldom record).
    pub hook: String,
}

pub async fn estate(server: &TestServer, tenant: &str) -> Estate {
    let _ = system_admin(server)
        .call("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
        .await;
    let admin = key_in(server, tenant, Role::Admin).await;
    let created = admin
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(json!({"name": "orders", "input": {"tenant": tenant},
                "tasks": [{"id": "pick", "kind": "agent", "agent_role": "picker",
                           "input": {"who": "${input.tenant}"}}]})),
        )
        .await;
    assert_eq!(created["version"], 1, "names are per tenant: {created}");
    let agent = admin
        .ok(
            "POST",
            "/api/v1/agents",
            Some(json!({"name": format!("{tenant}-picker"), "roles": ["picker"]})),
        )
        .await;
    let agent = id_of(&agent, "agent_id");
    let lease = loop {
        let polled = admin
            .ok(
                "POST",
                &format!("/api/v1/agents/{agent}/poll?wait_ms=5000"),
                None,
            )
            .await;
        if let Some(task) = polled["tasks"].as_array().and_then(|t| t.first()) {
            assert_eq!(
                task["input"]["who"], tenant,
                "a tenant's agent gets its own task"
            );
            break id_of(task, "lease_id");
        }
    };
    let spare = system_admin(server)
        .ok(
            "POST",
            "/api/v1/keys",
            Some(json!({"name": "spare", "role": "viewer", "tenant": tenant})),
        )
        .await;
    let secret = format!("{}_TOKEN", tenant.to_uppercase().replace('-', "_"));
    admin
        .ok(
            "POST",
            "/api/v1/secrets",
            Some(json!({"name": secret, "value": format!("{tenant}-secret-value")})),
        )
        .await;
    let schedule = admin
        .ok(
            "POST",
            "/api/v1/schedules",
            Some(json!({"workflow": created["workflow_id"], "cron": "0 0 1 1 *"})),
        )
        .await;
    let broken = admin
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(json!({"name": "broken", "input": {},
                "tasks": [{"id": "judge", "kind": "noop", "when": "input.missing.deeper > 1"}]})),
        )
        .await;
    let dead_letter = format!("{}.1.judge", id_of(&broken, "execution_id"));
    let listed = std::time::Instant::now();
    while admin
        .call("GET", &format!("/api/v1/dead-letters/{dead_letter}"), None)
        .await
        .0
        != 200
    {
        assert!(
            listed.elapsed() < std::time::Duration::from_secs(20),
            "dead letter {dead_letter} never listed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let hook = admin.ok("POST", "/api/v1/hooks", Some(hook_body())).await;
    Estate {
        dead_letter,
        hook: id_of(&hook, "id"),
        schedule: id_of(&schedule, "id"),
        workflow: id_of(&created, "workflow_id"),
        execution: id_of(&created, "execution_id"),
        agent,
        lease,
        key: spare["key_id"].as_str().expect("key id").to_owned(),
        secret,
        tenant: tenant.to_owned(),
    }
}

/// A webhook a route accepts: to a name that never answers, for a type seldom recorded.
pub fn hook_body() -> Value {
    json!({"url": "http://hooks.example.invalid/in", "events": ["TenantDataErased"]})
}

/// `path` with its id (whatever the parameter's name) replaced by `estate`'s resource.
pub fn concrete(template: &str, estate: &Estate) -> String {
    let id = if template.contains("/workflows/") {
        &estate.workflow
    } else if template.contains("/executions/") {
        &estate.execution
    } else if template.contains("/agents/") {
        &estate.agent
    } else if template.contains("/tasks/") {
        &estate.lease
    } else if template.contains("/secrets/") {
        &estate.secret
    } else if template.contains("/schedules/") {
        &estate.schedule
    } else if template.contains("/dead-letters/") {
        &estate.dead_letter
    } else if template.contains("/hooks/") {
        &estate.hook
    } else if template.contains("/tenants/") {
        &estate.tenant
    } else {
        &estate.key
    };
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let close = rest[open..].find('}').expect("closing brace") + open;
        out.push_str(&rest[..open]);
        // A task id or a signal name: the estate's task.
        match &rest[open + 1..close] {
            "task_id" | "signal" => out.push_str("pick"),
            // A pattern's name, not a tenant's resource.
            "pattern" => out.push_str("swarm"),
            _ => out.push_str(id),
        }
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    out
}

/// An answer with the ids of the request taken out: what must not differ between
/// another tenant's resource and an unknown one.
fn shape(answer: &Value, ids: &[&str]) -> String {
    let mut text = answer.to_string();
    for id in ids {
        text = text.replace(id, "<id>");
    }
    text
}

/// Two tenants, the same workflow name in both: lists, status, definitions,
/// executions, events, replay, verify, live streams, agents and leases never cross,
/// and every event of a tenant's execution names that tenant.
pub async fn two_tenants_never_cross(server: &TestServer) {
    let acme = estate(server, "acme").await;
    let globex = estate(server, "globex").await;
    assert_ne!(acme.workflow, globex.workflow);
    let viewer = key_in(server, "acme", Role::Developer).await;

    let letters = viewer.ok("GET", "/api/v1/dead-letters", None).await;
    let letters: Vec<&str> = letters["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .filter_map(|d| d["id"].as_str())
        .collect();
    assert_eq!(
        letters,
        [acme.dead_letter.as_str()],
        "only acme's dead letter"
    );

    let list = viewer
        .ok("GET", "/api/v1/workflows?name=orders", None)
        .await;
    let ids: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|w| w["workflow_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        [acme.workflow.as_str()],
        "only acme's workflow: {list}"
    );
    let named = viewer
        .ok("GET", "/api/v1/workflows?name=orders", None)
        .await;
    assert_eq!(named["items"].as_array().map(Vec::len), Some(1), "{named}");

    let unknown = uuid::Uuid::now_v7().to_string();
    for template in [
        "/api/v1/workflows/{}",
        "/api/v1/workflows/{}/status",
        "/api/v1/workflows/{}/events",
        "/api/v1/executions/{}",
        "/api/v1/executions/{}/events",
        "/api/v1/executions/{}/events?format=ndjson",
        "/api/v1/executions/{}/replay",
        "/api/v1/executions/{}/verify",
    ] {
        let theirs = if template.contains("workflows") {
            &globex.workflow
        } else {
            &globex.execution
        };
        let own = if template.contains("workflows") {
            &acme.workflow
        } else {
            &acme.execution
        };
        let (status, _) = viewer.call("GET", &template.replace("{}", own), None).await;
        assert_eq!(status, 200, "{template} of its own");
        let (status, other) = viewer
            .call("GET", &template.replace("{}", theirs), None)
            .await;
        assert_eq!(status, 404, "{template} of another tenant: {other}");
        let (_, none) = viewer
            .call("GET", &template.replace("{}", &unknown), None)
            .await;
        assert_eq!(
            shape(&other, &[theirs]),
            shape(&none, &[&unknown]),
            "another tenant's {template} answers as an unknown one"
        );
    }

    // Commands on another tenant's ids change nothing.
    let acme_agent = key_in(server, "acme", Role::Agent).await;
    let head = server.head().await;
    for (path, body) in [
        (
            format!("/api/v1/workflows/{}/execute", globex.workflow),
            json!({}),
        ),
        (
            format!("/api/v1/workflows/{}/pause", globex.workflow),
            json!({}),
        ),
        (
            format!("/api/v1/executions/{}/cancel", globex.execution),
            json!({}),
        ),
        (
            format!("/api/v1/executions/{}/pause", globex.execution),
            json!({}),
        ),
        (
            format!("/api/v1/agents/{}/poll?wait_ms=0", globex.agent),
            json!({}),
        ),
        (
            format!("/api/v1/tasks/{}/complete", globex.lease),
            json!({"output": {}}),
        ),
        (
            format!("/api/v1/tasks/{}/heartbeat", globex.lease),
            json!({}),
        ),
    ] {
        let (status, answer) = viewer.call("POST", &path, Some(body)).await;
        // A developer may not do agent work at all (403); everything else is a 404.
        let expected = if path.contains("/agents/") || path.contains("/tasks/") {
            403
        } else {
            404
        };
        assert_eq!(status, expected, "POST {path}: {answer}");
    }
    for path in [
        format!("/api/v1/agents/{}/poll?wait_ms=0", globex.agent),
        format!("/api/v1/tasks/{}/complete", globex.lease),
    ] {
        let (status, answer) = acme_agent
            .call("POST", &path, Some(json!({"output": {}})))
            .await;
        assert_eq!(status, 404, "an acme agent key on {path}: {answer}");
        let unknown_path = path
            .replace(&globex.agent, &unknown)
            .replace(&globex.lease, &unknown);
        let (_, none) = acme_agent
            .call("POST", &unknown_path, Some(json!({"output": {}})))
            .await;
        assert_eq!(
            shape(&answer, &[&globex.agent, &globex.lease]),
            shape(&none, &[&unknown]),
            "as an unknown id"
        );
    }
    assert_eq!(server.head().await, head, "nothing was recorded");

    // Live streams: their own opens with a snapshot, the other tenant's closes 4404.
    for (path, own) in [
        (format!("/ws/executions/{}", globex.execution), false),
        (format!("/ws/workflows/{}", globex.workflow), false),
        (format!("/ws/executions/{}", acme.execution), true),
        (format!("/ws/workflows/{}", acme.workflow), true),
    ] {
        match viewer.watch(&path).await {
            Ok(Message::Text(text)) if own => {
                let frame: Value = serde_json::from_str(&text).expect("json");
                assert_eq!(frame["type"], "snapshot", "{path}: {frame}");
            }
            Ok(Message::Close(Some(close))) if !own => {
                assert_eq!(u16::from(close.code), 4404, "{path}");
            }
            other => panic!("{path}: {other:?}"),
        }
    }

    // Each tenant completes its own lease; every event of its execution is its own.
    for (tenant, estate) in [("acme", &acme), ("globex", &globex)] {
        let agent = key_in(server, tenant, Role::Agent).await;
        agent
            .ok(
                "POST",
                &format!("/api/v1/tasks/{}/complete", estate.lease),
                Some(json!({"output": {"by": tenant}})),
            )
            .await;
        let admin = key_in(server, tenant, Role::Auditor).await;
        let done = loop {
            let execution = admin
                .ok(
                    "GET",
                    &format!("/api/v1/executions/{}", estate.execution),
                    None,
                )
                .await;
            if execution["status"] == "completed" {
                break execution;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(done["output"]["pick"]["by"], tenant, "{done}");
        let events = admin
            .ok(
                "GET",
                &format!("/api/v1/executions/{}/events", estate.execution),
                None,
            )
            .await;
        let events = events["events"].as_array().expect("events");
        assert!(
            events.len() >= 5,
            "started, scheduled, dispatched, started, completed…"
        );
        for e in events {
            assert_eq!(e["metadata"]["tenant_id"], tenant, "{e}");
        }
    }
}

/// A request of `method` on `path` (an instance of `template`) with a body that route
/// accepts (a schedule names `estate`'s workflow); `n` keeps created names apart.
/// Returns the status and the JSON answer.
pub async fn send(
    caller: &Caller<'_>,
    method: &str,
    template: &str,
    path: &str,
    estate: &Estate,
    n: usize,
) -> (u16, Value) {
    let mut path = if template.ends_with("/poll") {
        format!("{path}?wait_ms=0")
    } else {
        path.to_owned()
    };
    if method == "DELETE" && template.starts_with("/api/v1/schedules/") {
        // The caller's own schedule is needed by later requests: delete a fresh one.
        let fresh = json!({"workflow": estate.workflow, "cron": "0 0 1 1 *"});
        if caller.call("GET", &path, None).await.0 == 200 {
            let (status, made) = caller.call("POST", "/api/v1/schedules", Some(fresh)).await;
            if status == 201 {
                path = format!("/api/v1/schedules/{}", id_of(&made, "id"));
            }
        }
    }
    if method == "DELETE" && template.starts_with("/api/v1/hooks/") {
        // The caller's own hook is needed by later requests: delete a fresh one.
        if caller.call("GET", &path, None).await.0 == 200 {
            let (status, made) = caller
                .call("POST", "/api/v1/hooks", Some(hook_body()))
                .await;
            if status == 201 {
                path = format!("/api/v1/hooks/{}", id_of(&made, "id"));
            }
        }
    }
    let changes_agent = (method == "DELETE" && template.starts_with("/api/v1/agents/"))
        || template.ends_with("/drain");
    let agent_root = path.trim_end_matches("/drain").to_owned();
    let own_agent = changes_agent
        && caller
            .call("POST", &format!("{agent_root}/heartbeat"), None)
            .await
            .0
            == 200;
    if own_agent {
        // The caller's own agent is needed by later requests: drain or deregister a
        // fresh one of its tenant.
        let fresh = json!({"name": "m", "roles": ["picker"]});
        let (status, made) = caller.call("POST", "/api/v1/agents", Some(fresh)).await;
        if status == 201 {
            let rest = if template.ends_with("/drain") {
                "/drain"
            } else {
                ""
            };
            path = format!("/api/v1/agents/{}{rest}", id_of(&made, "agent_id"));
        }
    }
    let body = match (method, template) {
        ("POST", "/api/v1/workflows") => {
            Some(json!({"name": format!("m-{n}"), "tasks": [{"id": "a", "kind": "noop"}]}))
        }
        ("POST", "/api/v1/agents") => Some(json!({"name": "m", "roles": ["picker"]})),
        ("POST", "/api/v1/patterns/{pattern}") => {
            Some(json!({"name": format!("m-{n}"), "agents": ["picker", "picker"]}))
        }
        ("POST", "/api/v1/keys") => Some(json!({"name": "m", "role": "viewer"})),
        ("POST", "/api/v1/tenants") => Some(json!({"tenant": format!("m-{n}")})),
        ("POST", "/api/v1/secrets") => Some(json!({"name": format!("M_{n}"), "value": "v"})),
        ("POST", "/api/v1/schedules") => {
            Some(json!({"workflow": estate.workflow, "cron": "0 0 1 1 *"}))
        }
        ("POST", "/api/v1/hooks") => Some(hook_body()),
        ("PUT", t) if t.starts_with("/api/v1/secrets/") => Some(json!({"value": "rotated"})),
        ("POST", t) if t.ends_with("/complete") => Some(json!({"output": {}})),
        ("POST", t) if t.ends_with("/fail") => Some(json!({"error": "m", "retryable": false})),
        ("POST", t) if t.ends_with("/execute") || t.ends_with("/cancel") => Some(json!({})),
        _ => None,
    };
    let answer = caller.call(method, &path, body).await;
    if method == "DELETE" && template.starts_with("/api/v1/secrets/") && answer.0 == 204 {
        // Deleted from the caller's own tenant: put it back for the next request.
        let name = path.rsplit('/').next().unwrap_or_default();
        caller
            .ok(
                "POST",
                "/api/v1/secrets",
                Some(json!({"name": name, "value": "v"})),
            )
            .await;
    }
    answer
}
