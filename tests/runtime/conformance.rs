//! The OpenAPI document cannot drift from the code: every operation it documents is
//! called on the running server — on real resources, on unknown ids, and again after
//! the state moved on (a cancelled execution, a stale lease) — and every answer's
//! status must be one the operation documents, and its JSON body must validate
//! against the schema documented for that status (with the `jsonschema` crate).

use serde_json::{json, Value};

use crate::harness::TestServer;
use crate::tenants::{concrete, estate, key_in, send, system_admin, Caller, Estate};
use conflux_schema::access::Role;

/// The documented JSON schema of `status` for `operation`, resolvable on its own (the
/// document's components travel with it). None: the status is not documented.
fn documented(document: &Value, operation: &Value, status: u16) -> Option<Option<Value>> {
    let responses = operation["responses"].as_object()?;
    let answer = responses
        .get(&status.to_string())
        .or_else(|| responses.get(&format!("{}XX", status / 100)))
        .or_else(|| responses.get("default"))?;
    let answer = match answer["$ref"].as_str() {
        Some(r) => lookup(document, r)?,
        None => answer,
    };
    let Some(schema) = answer["content"]["application/json"]["schema"].as_object() else {
        return Some(None);
    };
    let mut schema = Value::Object(schema.clone());
    schema["components"] = document["components"].clone();
    Some(Some(schema))
}

fn lookup<'a>(document: &'a Value, reference: &str) -> Option<&'a Value> {
    document.pointer(reference.strip_prefix('#')?)
}

/// Checks one answer against the document; returns a complaint, if any.
pub(crate) fn complaint(
    document: &Value,
    operation: &Value,
    what: &str,
    status: u16,
    body: &Value,
) -> Option<String> {
    let Some(schema) = documented(document, operation, status) else {
        return Some(format!(
            "{what}: status {status} is not documented ({body})"
        ));
    };
    let schema = schema?;
    let validator = match jsonschema::validator_for(&schema) {
        Ok(v) => v,
        Err(e) => {
            return Some(format!(
                "{what}: the documented schema does not compile: {e}"
            ))
        }
    };
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    (!errors.is_empty()).then(|| format!("{what} → {status}: {errors:?}\n  body: {body}"))
}

/// Every documented operation, answered as documented.
pub async fn answers_match_the_document(server: &TestServer) {
    let estate_of_acme = estate(server, "acme").await;
    let unknown = Estate {
        workflow: uuid::Uuid::now_v7().to_string(),
        execution: uuid::Uuid::now_v7().to_string(),
        agent: uuid::Uuid::now_v7().to_string(),
        lease: uuid::Uuid::now_v7().to_string(),
        key: uuid::Uuid::now_v7().simple().to_string(),
        secret: "UNKNOWN_SECRET".to_owned(),
        tenant: "no-such-tenant".to_owned(),
        schedule: uuid::Uuid::now_v7().to_string(),
        dead_letter: format!("{}.1.judge", uuid::Uuid::now_v7()),
        hook: uuid::Uuid::now_v7().to_string(),
    };
    let admin = key_in(server, "acme", Role::Admin).await;
    let system = system_admin(server);
    let (_, document) = system.call("GET", "/api/v1/openapi.json", None).await;
    let mut complaints = Vec::new();
    let mut checked = 0;
    // Twice over the real resources (the second pass meets the state the first left:
    // cancelled, stale, revoked), then over unknown ids.
    for (round, estate) in [&estate_of_acme, &estate_of_acme, &unknown]
        .into_iter()
        .enumerate()
    {
        for (template, operations) in document["paths"].as_object().expect("paths") {
            if template.starts_with("/ws/") {
                continue; // upgrades: the live tests check their frames
            }
            if round == 2 && !template.contains('{') {
                continue;
            }
            for (method, operation) in operations.as_object().expect("operations") {
                let method = method.to_uppercase();
                let caller: &Caller<'_> = if template.starts_with("/api/v1/tenants") {
                    &system
                } else {
                    &admin
                };
                let path = concrete(template, estate);
                let (status, body) = send(
                    caller,
                    &method,
                    template,
                    &path,
                    estate,
                    round * 1000 + checked,
                )
                .await;
                checked += 1;
                let body = if body.is_null() { json!(null) } else { body };
                let what = format!("{method} {path}");
                if template == "/metrics" || status == 204 {
                    if documented(&document, operation, status).is_none() {
                        complaints.push(format!("{what}: status {status} is not documented"));
                    }
                    continue;
                }
                if let Some(c) = complaint(&document, operation, &what, status, &body) {
                    complaints.push(c);
                }
            }
        }
    }
    // Routes whose success needs a body the walk above cannot guess.
    let minted = document["paths"]["/api/v1/stream-tokens"]["post"].clone();
    for path in [
        format!("/ws/executions/{}", estate_of_acme.execution),
        format!("/ws/workflows/{}", estate_of_acme.workflow),
        format!("/ws/executions/{}", unknown.execution),
    ] {
        let (status, body) = admin
            .call(
                "POST",
                "/api/v1/stream-tokens",
                Some(json!({ "path": path })),
            )
            .await;
        checked += 1;
        let what = format!("POST /api/v1/stream-tokens for {path}");
        if let Some(c) = complaint(&document, &minted, &what, status, &body) {
            complaints.push(c);
        }
    }
    assert!(checked > 60, "{checked} answers checked");
    // The check itself can fail: a wrong body and an undocumented status are caught.
    let (template, execution) = document["paths"]
        .as_object()
        .and_then(|p| {
            p.iter()
                .find(|(k, _)| k.starts_with("/api/v1/executions/{") && k.matches('/').count() == 4)
        })
        .map(|(k, v)| (k.clone(), v["get"].clone()))
        .expect("the execution route is documented");
    let path = concrete(&template, &estate_of_acme);
    let (status, real) = admin.call("GET", &path, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        complaint(&document, &execution, "self-check", 200, &real),
        None
    );
    let mut wrong = real.clone();
    wrong["execution_id"] = json!(5);
    assert!(complaint(&document, &execution, "self-check", 200, &wrong).is_some());
    assert!(complaint(&document, &execution, "self-check", 418, &json!({})).is_some());
    assert!(
        complaints.is_empty(),
        "{} answers differ from the document:\n{}",
        complaints.len(),
        complaints.join("\n")
    );
}
