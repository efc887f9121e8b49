//! Erasure (crypto-shredding), end to end with encryption at rest on: after a tenant's
//! data is erased, its payloads read as `{"redacted": "erased"}` in the execution read,
//! the event pages, the NDJSON export, replay, the live stream and rebuilt read models;
//! every hash chain still verifies; another tenant is untouched; the erasure is an
//! event. One finished execution's data can be erased alone; a running one cannot.

use std::time::Duration;

use conflux_engine::access::tenant_stream;
use conflux_engine::catalog::WorkflowCatalog;
use conflux_projector::rebuild::rebuild;
use conflux_schema::access::{Role, TenantName};
use conflux_schema::validate::Limits;
use conflux_schema::Event;
use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::tenants::{key_in, system_admin, Caller};

fn definition() -> Value {
    json!({"name": "cards", "tasks": [
        {"id": "a", "kind": "noop", "input": {"card": "${input.card}"}},
        {"id": "b", "kind": "noop", "depends_on": ["a"], "input": {"seen": "${tasks.a.output.card}"}}
    ]})
}

/// Runs one execution of `definition()` with `marker` as its card, to its end.
async fn run(caller: &Caller<'_>, workflow: &str, marker: &str) -> String {
    let started = caller
        .ok(
            "POST",
            &format!("/api/v1/workflows/{workflow}/execute"),
            Some(json!({"input": {"card": marker}})),
        )
        .await;
    let id = started["execution_id"].as_str().expect("id").to_owned();
    finished(caller, &id).await;
    id
}

async fn finished(caller: &Caller<'_>, id: &str) -> Value {
    for _ in 0..200 {
        let body = caller
            .ok("GET", &format!("/api/v1/executions/{id}"), None)
            .await;
        if body["status"] == "completed" {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {id} did not complete");
}

/// Everything a caller can read of an execution, as one text.
async fn everything(caller: &Caller<'_>, id: &str) -> String {
    let execution = caller
        .ok("GET", &format!("/api/v1/executions/{id}"), None)
        .await;
    let events = caller
        .ok("GET", &format!("/api/v1/executions/{id}/events"), None)
        .await;
    let replay = caller
        .ok("GET", &format!("/api/v1/executions/{id}/replay"), None)
        .await;
    let (status, ndjson) = caller
        .text(&format!("/api/v1/executions/{id}/events?format=ndjson"))
        .await;
    assert_eq!(status, 200);
    let live = caller
        .watch(&format!("/ws/executions/{id}"))
        .await
        .expect("live stream");
    format!("{execution}\n{events}\n{replay}\n{ndjson}\n{live}")
}

async fn verified(caller: &Caller<'_>, id: &str) {
    let verdict = caller
        .ok("GET", &format!("/api/v1/executions/{id}/verify"), None)
        .await;
    assert_eq!(verdict["valid"], true, "{verdict}");
}

pub async fn erasure_redacts_everywhere_and_keeps_the_chain(server: &TestServer) {
    let root = system_admin(server);
    for tenant in ["acme", "globex"] {
        root.ok("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
            .await;
    }
    let (acme, globex) = (
        key_in(server, "acme", Role::Admin).await,
        key_in(server, "globex", Role::Admin).await,
    );
    let marker = format!("card-{}", uuid::Uuid::now_v7().simple());
    let mut runs = Vec::new();
    for caller in [&acme, &globex] {
        let created = caller
            .ok("POST", "/api/v1/workflows", Some(definition()))
            .await;
        let workflow = created["workflow_id"]
            .as_str()
            .expect("workflow")
            .to_owned();
        let first = run(caller, &workflow, &marker).await;
        let second = run(caller, &workflow, &marker).await;
        runs.push((workflow, first, second));
    }
    let (acme_runs, globex_runs) = (&runs[0], &runs[1]);
    assert!(
        everything(&acme, &acme_runs.1).await.contains(&marker),
        "readable before"
    );

    // Guards: the system administrator only, and the name repeated.
    let (status, body) = acme
        .call(
            "DELETE",
            "/api/v1/tenants/acme/data",
            Some(json!({"confirm": "acme"})),
        )
        .await;
    assert_eq!(status, 403, "a tenant admin cannot erase a tenant: {body}");
    let (status, body) = root
        .call(
            "DELETE",
            "/api/v1/tenants/acme/data",
            Some(json!({"confirm": "acm"})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["details"]["field"], "confirm");
    let (status, _) = root
        .call(
            "DELETE",
            "/api/v1/tenants/nobody/data",
            Some(json!({"confirm": "nobody"})),
        )
        .await;
    assert_eq!(status, 404);

    let erased = root
        .ok(
            "DELETE",
            "/api/v1/tenants/acme/data",
            Some(json!({"confirm": "acme"})),
        )
        .await;
    assert_eq!(erased["scope"], "tenant");
    assert_eq!(
        erased["keys_destroyed"], 3,
        "the tenant key and two execution keys: {erased}"
    );

    for id in [&acme_runs.1, &acme_runs.2] {
        let text = everything(&acme, id).await;
        assert!(!text.contains(&marker), "erased everywhere: {text}");
        assert!(
            text.contains(r#"{"redacted":"erased"}"#) || text.contains(r#""redacted": "erased""#)
        );
        let execution = acme
            .ok("GET", &format!("/api/v1/executions/{id}"), None)
            .await;
        assert_eq!(execution["input"], json!({"redacted": "erased"}));
        assert_eq!(execution["status"], "completed", "structure stays");
        verified(&acme, id).await;
    }
    for id in [&globex_runs.1, &globex_runs.2] {
        assert!(
            everything(&globex, id).await.contains(&marker),
            "another tenant is untouched"
        );
        verified(&globex, id).await;
    }

    // The erasure is in the tenant's log.
    let tenant = TenantName::parse("acme").expect("name");
    let log =
        conflux_engine::store::read_whole_stream(&*server.backends.store, &tenant_stream(&tenant))
            .await
            .expect("tenant log");
    assert!(
        log.iter().any(|e| matches!(
            e.event,
            Event::TenantDataErased {
                keys_destroyed: 3,
                ..
            }
        )),
        "{log:?}"
    );

    // Read models rebuilt from the log read the same.
    let before = acme
        .ok("GET", &format!("/api/v1/executions/{}", acme_runs.1), None)
        .await;
    rebuild(
        server.backends.stored.clone(),
        WorkflowCatalog::new(
            server.backends.store.clone(),
            Limits {
                max_tasks: usize::MAX,
                ..Limits::default()
            },
        ),
        server.backends.read_models.clone(),
        |_| {},
    )
    .await
    .expect("rebuild");
    let after = acme
        .ok("GET", &format!("/api/v1/executions/{}", acme_runs.1), None)
        .await;
    assert_eq!(before["input"], after["input"]);
    assert_eq!(before["tasks"], after["tasks"]);
    // The rebuilt rows hold what the log holds: ciphertext, never a payload.
    let rows = server.backends.read_models.dump().await.expect("dump");
    let rows = format!("{:?} {:?}", rows.executions, rows.workflows);
    assert!(
        rows.contains("$sealed") && !rows.contains(&marker),
        "{rows}"
    );

    // The tenant goes on, under a new key.
    let fresh = run(&acme, &acme_runs.0, &marker).await;
    assert!(everything(&acme, &fresh).await.contains(&marker));

    // One execution: not while it runs; once finished, alone.
    let held = globex
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(json!({"name": "held", "input": {"card": marker},
                "tasks": [{"id": "wait", "kind": "agent", "agent_role": "nobody-polls",
                           "input": {"card": "${input.card}"}}]})),
        )
        .await;
    let running = held["execution_id"].as_str().expect("execution").to_owned();
    let (status, body) = globex
        .call(
            "DELETE",
            &format!("/api/v1/executions/{running}/data"),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("execution_running")),
        "{body}"
    );
    let (status, _) = acme
        .call(
            "DELETE",
            &format!("/api/v1/executions/{}/data", globex_runs.1),
            None,
        )
        .await;
    assert_eq!(status, 404, "another tenant's execution is unknown");
    let viewer = key_in(server, "globex", Role::Viewer).await;
    let (status, _) = viewer
        .call(
            "DELETE",
            &format!("/api/v1/executions/{}/data", globex_runs.1),
            None,
        )
        .await;
    assert_eq!(status, 403);
    let one = globex
        .ok(
            "DELETE",
            &format!("/api/v1/executions/{}/data", globex_runs.1),
            None,
        )
        .await;
    assert_eq!(
        (one["scope"].as_str(), one["keys_destroyed"].as_u64()),
        (Some("execution"), Some(1))
    );
    assert!(!everything(&globex, &globex_runs.1).await.contains(&marker));
    assert!(
        everything(&globex, &globex_runs.2).await.contains(&marker),
        "only that one"
    );
    verified(&globex, &globex_runs.1).await;
    let events = globex
        .ok(
            "GET",
            &format!("/api/v1/executions/{}/events", globex_runs.1),
            None,
        )
        .await;
    let last = events["events"]
        .as_array()
        .and_then(|e| e.last())
        .cloned()
        .unwrap_or_default();
    assert_eq!(last["type"], "ExecutionDataErased", "{events}");
    let _ = globex
        .call(
            "POST",
            &format!("/api/v1/executions/{running}/cancel"),
            Some(json!({})),
        )
        .await;
}

/// Without a master key there is nothing to destroy: `409 encryption_off`.
pub async fn erasure_needs_encryption_at_rest(server: &TestServer) {
    let root = system_admin(server);
    let (status, body) = root
        .call(
            "DELETE",
            "/api/v1/tenants/default/data",
            Some(json!({"confirm": "default"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("encryption_off")),
        "{body}"
    );
}

/// An erasure through one server reaches another server of the same store (which had
/// the key cached from reading the execution) within a second or so.
pub async fn erasure_reaches_every_server(first: &TestServer) {
    let second = first.join().await;
    let marker = format!("card-{}", uuid::Uuid::now_v7().simple());
    let root = system_admin(first);
    let created = root
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(json!({"name": "shared", "input": {"card": marker},
                "tasks": [{"id": "a", "kind": "noop", "input": {"card": "${input.card}"}}]})),
        )
        .await;
    let id = created["execution_id"]
        .as_str()
        .expect("execution")
        .to_owned();
    finished(&root, &id).await;
    let other = system_admin(&second);
    let read = other
        .ok("GET", &format!("/api/v1/executions/{id}"), None)
        .await;
    assert_eq!(
        read["input"],
        json!({"card": marker}),
        "the second server holds the key"
    );

    root.ok("DELETE", &format!("/api/v1/executions/{id}/data"), None)
        .await;
    let started = std::time::Instant::now();
    loop {
        let read = other
            .ok("GET", &format!("/api/v1/executions/{id}"), None)
            .await;
        if read["input"] == json!({"redacted": "erased"}) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "the second server still opens erased payloads: {read}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    second.stop().await;
}
