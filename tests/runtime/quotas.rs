//! Per-tenant quotas over HTTP: the system administrator sets a tenant's limits; every
//! quota, once reached, refuses with its documented error (`429 quota_exceeded`, `413`
//! for sizes, `details`: quota, limit, used) and records nothing; the usage endpoint's
//! figures are the log's, recounted here from the raw events.

use std::collections::BTreeMap;

use conflux_schema::access::Role;
use conflux_schema::canonical::write_value;
use serde_json::{json, Value};

use crate::harness::{id_of, TestServer};
use crate::tenants::{key_in, system_admin, Caller};

const TENANT: &str = "metered";

/// An agent task nobody serves: the execution stays running.
fn waiting(name: &str) -> Value {
    json!({"name": name, "tasks": [{"id": "wait", "kind": "agent", "agent_role": "picker"}]})
}

fn assert_refused(answer: &(u16, Value), status: u16, quota: &str, limit: u64) {
    let (got, body) = answer;
    assert_eq!(*got, status, "{quota}: {body}");
    assert_eq!(body["error"]["code"], "quota_exceeded", "{body}");
    assert_eq!(body["error"]["details"]["quota"], quota, "{body}");
    assert_eq!(body["error"]["details"]["limit"], limit, "{body}");
}

/// The tenant's usage as `{quota: (used, limit)}`.
async fn usage(admin: &Caller<'_>) -> BTreeMap<String, (Value, Value)> {
    let body = admin
        .ok("GET", &format!("/api/v1/tenants/{TENANT}/usage"), None)
        .await;
    assert_eq!(body["tenant"], TENANT);
    body["quotas"]
        .as_array()
        .expect("quotas")
        .iter()
        .map(|q| {
            let name = q["quota"].as_str().expect("name").to_owned();
            (name, (q["used"].clone(), q["limit"].clone()))
        })
        .collect()
}

fn used(usage: &BTreeMap<String, (Value, Value)>, quota: &str) -> u64 {
    usage[quota]
        .0
        .as_u64()
        .unwrap_or_else(|| panic!("{quota}: {usage:?}"))
}

/// Sets the tenant's own limits (replacing the previous ones).
async fn limit(server: &TestServer, quotas: Value) -> Value {
    system_admin(server)
        .ok(
            "PUT",
            &format!("/api/v1/tenants/{TENANT}/policy"),
            Some(json!({ "quotas": quotas })),
        )
        .await
}

/// Waits until `execution` has handed its agent task to the queue: nothing more is
/// recorded for it until an agent acts.
async fn settled(caller: &Caller<'_>, execution: &str) {
    caller
        .wait_events(execution, "TaskDispatched", |types| {
            types.contains(&"TaskDispatched")
        })
        .await;
}

/// The store's global head, which a refused request must leave where it was.
async fn head(server: &TestServer) -> u64 {
    server.head().await
}

pub async fn every_quota_refuses_and_records_nothing(server: &TestServer) {
    let root = system_admin(server);
    root.ok("POST", "/api/v1/tenants", Some(json!({"tenant": TENANT})))
        .await;
    let admin = key_in(server, TENANT, Role::Admin).await;

    // Nothing set: the defaults (none in this server), unlimited.
    let policy = root
        .ok("GET", &format!("/api/v1/tenants/{TENANT}/policy"), None)
        .await;
    assert_eq!(policy["updated_at"], Value::Null, "{policy}");
    assert_eq!(policy["effective_quotas"], json!({}), "{policy}");

    let policy = limit(
        server,
        json!({"definitions": 2, "running_executions": 2, "agents": 1, "event_payload_bytes": 300}),
    )
    .await;
    assert_eq!(policy["quotas"]["definitions"], 2, "{policy}");
    assert!(policy["updated_at"].is_string(), "{policy}");

    // definitions
    let first = id_of(
        &admin
            .ok("POST", "/api/v1/workflows", Some(waiting("first")))
            .await,
        "workflow_id",
    );
    admin
        .ok("POST", "/api/v1/workflows", Some(waiting("second")))
        .await;
    let before = head(server).await;
    let refused = admin
        .call("POST", "/api/v1/workflows", Some(waiting("third")))
        .await;
    assert_refused(&refused, 429, "definitions", 2);
    assert_eq!(refused.1["error"]["details"]["used"], 2);
    assert_eq!(
        head(server).await,
        before,
        "a refused definition records nothing"
    );
    // Counted from the log (the workflow list is a read model, which may lag).
    assert_eq!(used(&usage(&admin).await, "definitions"), 2);

    // event_payload_bytes: an input over the limit, at execute and at create-and-run.
    let big = json!({"blob": "x".repeat(400)});
    let execute = format!("/api/v1/workflows/{first}/execute");
    let refused = admin
        .call("POST", &execute, Some(json!({"input": big})))
        .await;
    assert_refused(&refused, 413, "event_payload_bytes", 300);
    assert!(refused.1["error"]["details"]["used"].as_u64() > Some(400));
    assert_eq!(
        head(server).await,
        before,
        "a refused input records nothing"
    );

    // running_executions
    let mut running = Vec::new();
    for _ in 0..2 {
        let accepted = admin
            .ok("POST", &execute, Some(json!({"input": {"n": 1}})))
            .await;
        running.push(id_of(&accepted, "execution_id"));
    }
    for execution in &running {
        settled(&admin, execution).await;
    }
    let before = head(server).await;
    let refused = admin
        .call("POST", &execute, Some(json!({"input": {"n": 3}})))
        .await;
    assert_refused(&refused, 429, "running_executions", 2);
    assert_eq!(
        head(server).await,
        before,
        "a refused start records nothing"
    );
    let now = usage(&admin).await;
    assert_eq!(used(&now, "running_executions"), 2);
    assert_eq!(now["running_executions"].1, 2);

    // agents, and an agent's output over event_payload_bytes.
    let agent_key = key_in(server, TENANT, Role::Agent).await;
    let registered = agent_key
        .ok(
            "POST",
            "/api/v1/agents",
            Some(json!({"name": "a1", "roles": ["picker"], "capacity": 1})),
        )
        .await;
    let agent = id_of(&registered, "agent_id");
    let before = head(server).await;
    let refused = agent_key
        .call(
            "POST",
            "/api/v1/agents",
            Some(json!({"name": "a2", "roles": ["picker"], "capacity": 1})),
        )
        .await;
    assert_refused(&refused, 429, "agents", 1);
    assert_eq!(
        head(server).await,
        before,
        "a refused agent records nothing"
    );
    // The same agent starting again (its name registered before) takes no more.
    let (status, body) = agent_key
        .call(
            "POST",
            "/api/v1/agents",
            Some(json!({"name": "a1", "roles": ["picker"], "capacity": 1})),
        )
        .await;
    assert_eq!(status, 201, "a restarted agent registers again: {body}");
    let polled = agent_key
        .ok(
            "POST",
            &format!("/api/v1/agents/{agent}/poll?max=1&wait_ms=5000"),
            None,
        )
        .await;
    let lease = polled["tasks"][0]["lease_id"]
        .as_str()
        .unwrap_or_else(|| panic!("a lease: {polled}"))
        .to_owned();
    let leased = polled["tasks"][0]["execution_id"]
        .as_str()
        .expect("execution")
        .to_owned();
    admin
        .wait_events(&leased, "TaskStarted", |types| {
            types.contains(&"TaskStarted")
        })
        .await;
    let before = head(server).await;
    let refused = agent_key
        .call(
            "POST",
            &format!("/api/v1/tasks/{lease}/complete"),
            Some(json!({"output": big})),
        )
        .await;
    assert_refused(&refused, 413, "event_payload_bytes", 300);
    assert_eq!(
        head(server).await,
        before,
        "a refused output records nothing"
    );
    agent_key
        .ok(
            "POST",
            &format!("/api/v1/tasks/{lease}/complete"),
            Some(json!({"output": {"ok": true}})),
        )
        .await;
    admin.wait_terminal(&leased).await;

    // executions_per_minute: 2 started a moment ago; a third fits, a fourth does not.
    limit(
        server,
        json!({"running_executions": 10, "executions_per_minute": 3}),
    )
    .await;
    let keyed = |key: &str| {
        reqwest::Client::new()
            .post(format!("{}{execute}", server.base))
            .bearer_auth(admin.token())
            .header("Idempotency-Key", key)
            .json(&json!({}))
    };
    let third = keyed("k-0").send().await.expect("request");
    assert_eq!(third.status().as_u16(), 202);
    let third = id_of(&third.json::<Value>().await.expect("json"), "execution_id");
    settled(&admin, &third).await;
    let before = head(server).await;
    let response = reqwest::Client::new()
        .post(format!("{}{execute}", server.base))
        .bearer_auth(admin.token())
        .json(&json!({"input": {"n": 4}}))
        .send()
        .await
        .expect("request");
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let refused = (
        response.status().as_u16(),
        response.json::<Value>().await.expect("json"),
    );
    assert_refused(&refused, 429, "executions_per_minute", 3);
    assert_eq!(
        head(server).await,
        before,
        "a refused start records nothing"
    );

    // A repeated idempotency key is not a new start: it answers as always; a new key is.
    let again = keyed("k-0").send().await.expect("request");
    assert_eq!(again.status().as_u16(), 200);
    let again = again.json::<Value>().await.expect("json");
    assert_eq!(again["execution_id"], third.as_str(), "{again}");
    let fresh = keyed("k-1").send().await.expect("request");
    assert_eq!(fresh.status().as_u16(), 429, "a new key is a new start");
    assert_eq!(head(server).await, before, "neither recorded anything");

    // payload_bytes: a log at its limit takes no new execution.
    let now = usage(&admin).await;
    let stored = used(&now, "payload_bytes");
    limit(server, json!({"payload_bytes": stored})).await;
    let before = head(server).await;
    let refused = admin
        .call("POST", &execute, Some(json!({"input": {"n": 5}})))
        .await;
    assert_refused(&refused, 413, "payload_bytes", stored);
    assert_eq!(
        head(server).await,
        before,
        "nothing recorded over payload_bytes"
    );

    // Another tenant is untouched by this one's limits.
    let other = key_in(server, "default", Role::Developer).await;
    other
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(waiting("free")),
        )
        .await;

    // The usage figures are the log's.
    usage_matches_the_log(server, &admin).await;
}

/// Recounts every quota of the tenant from the raw log and compares with the endpoint.
async fn usage_matches_the_log(server: &TestServer, admin: &Caller<'_>) {
    let log = server
        .backends
        .stored
        .read_all(0, 1_000_000)
        .await
        .expect("the log");
    let (mut started, mut finished, mut definitions, mut bytes) = (0, 0, 0, 0);
    let mut agents = std::collections::BTreeSet::new();
    for e in log.iter().filter(|e| e.metadata.tenant() == TENANT) {
        let (ty, data) = e.event.to_parts().expect("parts");
        let mut text = Vec::new();
        write_value(&data, &mut text);
        bytes += text.len() as u64;
        match ty {
            "ExecutionStarted" => started += 1,
            "ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled" => finished += 1,
            "WorkflowCreated" => definitions += 1,
            "AgentRegistered" => {
                agents.insert(data["name"].as_str().unwrap_or_default().to_owned());
            }
            _ => {}
        }
    }
    let now = usage(admin).await;
    assert_eq!(
        used(&now, "running_executions"),
        started - finished,
        "{now:?}"
    );
    assert_eq!(used(&now, "definitions"), definitions, "{now:?}");
    assert_eq!(used(&now, "agents"), agents.len() as u64, "{now:?}");
    assert_eq!(used(&now, "payload_bytes"), bytes, "{now:?}");
    // Started within the last minute: all of them, unless this test ran slow.
    let recent = used(&now, "executions_per_minute");
    assert!(recent > 0 && recent <= started, "{now:?}");
    assert_eq!(now["event_payload_bytes"].0, Value::Null);
}

/// Only the system administrator sets policies; a tenant's admin sees its own usage
/// and nobody else's; bad policies are refused with the field named.
pub async fn policies_are_the_system_administrators(server: &TestServer) {
    let root = system_admin(server);
    for tenant in ["alpha", "beta"] {
        root.ok("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
            .await;
    }
    let alpha = key_in(server, "alpha", Role::Admin).await;
    let (status, _) = alpha
        .call(
            "PUT",
            "/api/v1/tenants/alpha/policy",
            Some(json!({"quotas": {"agents": 100}})),
        )
        .await;
    assert_eq!(status, 403, "a tenant admin cannot raise its own limits");
    let (status, _) = alpha.call("GET", "/api/v1/tenants/alpha/usage", None).await;
    assert_eq!(status, 200);
    let (status, body) = alpha.call("GET", "/api/v1/tenants/beta/usage", None).await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let developer = key_in(server, "alpha", Role::Developer).await;
    let (status, _) = developer
        .call("GET", "/api/v1/tenants/alpha/usage", None)
        .await;
    assert_eq!(status, 403);
    let (status, body) = root
        .call(
            "PUT",
            "/api/v1/tenants/nobody/policy",
            Some(json!({"quotas": {}})),
        )
        .await;
    assert_eq!((status, &body["error"]["code"]), (404, &json!("not_found")));
    let (status, body) = root
        .call(
            "PUT",
            "/api/v1/tenants/alpha/policy",
            Some(json!({"egress_allow": ["not a cidr!"]})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "egress_allow", "{body}");
    let (status, body) = root
        .call(
            "PUT",
            "/api/v1/tenants/alpha/policy",
            Some(json!({"quotas": {"runing_executions": 1}})),
        )
        .await;
    assert_eq!(status, 400, "a misspelt quota is refused: {body}");
    // A refused policy changed nothing.
    let policy = root.ok("GET", "/api/v1/tenants/alpha/policy", None).await;
    assert_eq!(policy["updated_at"], Value::Null, "{policy}");
}

/// Defaults from the configuration apply to every tenant without its own limits; a
/// tenant's own limit wins over them, quota by quota.
pub async fn configured_defaults_apply_until_overridden(server: &TestServer) {
    assert_eq!(server.config.quotas.quota_definitions, Some(1));
    let developer = key_in(server, "default", Role::Developer).await;
    developer
        .ok("POST", "/api/v1/workflows", Some(waiting("one")))
        .await;
    let refused = developer
        .call("POST", "/api/v1/workflows", Some(waiting("two")))
        .await;
    assert_refused(&refused, 429, "definitions", 1);
    system_admin(server)
        .ok(
            "PUT",
            "/api/v1/tenants/default/policy",
            Some(json!({"quotas": {"definitions": 2}})),
        )
        .await;
    developer
        .ok("POST", "/api/v1/workflows", Some(waiting("two")))
        .await;
}
