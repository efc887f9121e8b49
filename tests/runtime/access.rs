//! Identity and access, end to end: no token, a malformed, unknown or revoked one is
//! `401 unauthenticated` with `WWW-Authenticate: Bearer` and changes nothing; each
//! role gets exactly the routes API.md gives it (`403 forbidden` otherwise); keys are
//! created, listed (never with a secret) and revoked through the API; and every event
//! records who caused it and in which tenant.

use conflux_http::auth::{Rule, ROUTES};
use conflux_schema::access::Role;
use serde_json::{json, Value};

use crate::harness::TestServer;

/// `method path` with `token` as bearer (None: no header) → (status, JSON body,
/// `WWW-Authenticate`). The one request helper of the access, JWT and stream-token tests.
pub async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value, Option<String>) {
    let client = reqwest::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = client.request(method, format!("{}{path}", server.base));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body, challenge)
}

fn admin(server: &TestServer) -> String {
    server
        .config
        .admin_token
        .clone()
        .expect("the harness sets an admin token")
}

async fn key(server: &TestServer, role: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": format!("{role} key"), "role": role});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/keys",
        Some(&admin(server)),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().expect("token").to_owned();
    (body["key_id"].as_str().expect("id").to_owned(), token)
}

/// Unauthenticated requests are refused on every protected route and change nothing;
/// the open routes stay open.
pub async fn tokens_are_required(server: &TestServer) {
    let head = server.head().await;
    let (_, revoked) = key(server, "developer", json!({})).await;
    let revoked_id = revoked.split('_').nth(1).expect("id").to_owned();
    let (status, _, _) = call(
        server,
        "DELETE",
        &format!("/api/v1/keys/{revoked_id}"),
        Some(&admin(server)),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let head = head.max(server.head().await);
    let mut wrong = revoked.clone();
    let flipped = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., flipped);
    for token in [
        None,
        Some(""),
        Some("nope"),
        Some("cfx_1_2"),
        Some(revoked.as_str()),
        Some(wrong.as_str()),
    ] {
        for (method, route, rule) in ROUTES {
            let Rule::Needs(_) = rule else { continue };
            let path = route
                .replace("{id}", "00000000-0000-0000-0000-000000000001")
                .replace("{key_id}", "00000000000000000000000000000001");
            let body = (*method == "POST")
                .then(|| json!({"name": "w", "tasks": [{"id": "a", "kind": "noop"}]}));
            let (status, body, challenge) = call(server, method, &path, token, body).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {body}");
            assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
            assert_eq!(challenge.as_deref(), Some("Bearer"));
        }
    }
    assert_eq!(
        server.head().await,
        head,
        "a refused request appends nothing"
    );
    for path in ["/health", "/ready", "/metrics", "/api/v1/openapi.json"] {
        let resp = reqwest::get(format!("{}{path}", server.base))
            .await
            .expect("get");
        assert_eq!(resp.status().as_u16(), 200, "{path} is open");
    }
}

/// Each role is allowed exactly its permissions: a refused route is `403 forbidden`,
/// an allowed one is never 401/403.
pub async fn roles_get_their_routes(server: &TestServer) {
    for role in Role::ALL {
        let extra = if role == Role::Agent {
            json!({"agent_roles": ["picker"]})
        } else {
            json!({})
        };
        let (_, token) = key(server, role.as_str(), extra).await;
        for (method, route, rule) in ROUTES {
            let Rule::Needs(permission) = rule else {
                continue;
            };
            let path = route
                .replace("{id}", "00000000-0000-0000-0000-000000000001")
                .replace("{key_id}", "00000000000000000000000000000001");
            // Bodies that would change something if a refused call got through.
            let body = match (*method, *route) {
                ("POST", "/api/v1/keys") => Some(json!({"name": "x", "role": "viewer"})),
                ("POST", "/api/v1/workflows") => Some(
                    json!({"name": format!("w-{}", role.as_str()), "tasks": [{"id": "a", "kind": "noop"}]}),
                ),
                ("POST", "/api/v1/agents") => Some(json!({"name": "a", "roles": ["picker"]})),
                ("POST", _) => Some(json!({})),
                _ => None,
            };
            let (status, body, _) = call(server, method, &path, Some(&token), body).await;
            if role.allows(*permission) {
                assert!(
                    status != 401 && status != 403,
                    "{} may {method} {route}: {status} {body}",
                    role.as_str()
                );
            } else {
                assert_eq!(
                    status,
                    403,
                    "{} may not {method} {route}: {body}",
                    role.as_str()
                );
                assert_eq!(body["error"]["code"], "forbidden", "{body}");
            }
        }
    }
}

/// Keys through the API: created with a token shown once, listed without secrets,
/// revoked (204, then 401 on the next call); events name the key as actor and its
/// tenant.
pub async fn keys_are_managed_and_events_name_their_actor(server: &TestServer) {
    let (key_id, developer) = key(server, "developer", json!({})).await;
    let (status, created, _) = call(
        server,
        "POST",
        "/api/v1/workflows",
        Some(&developer),
        Some(json!({"name": "by-key", "tasks": [{"id": "a", "kind": "noop"}]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let workflow_id = created["workflow_id"].as_str().expect("id");
    let (status, events, _) = call(
        server,
        "GET",
        &format!("/api/v1/workflows/{workflow_id}/events"),
        Some(&developer),
        None,
    )
    .await;
    assert_eq!(status, 200, "{events}");
    let meta = &events["events"][0]["metadata"];
    assert_eq!(meta["actor"], format!("key:{key_id}"), "{meta}");
    assert_eq!(meta["tenant_id"], "default", "{meta}");

    let (status, list, _) = call(server, "GET", "/api/v1/keys", Some(&admin(server)), None).await;
    assert_eq!(status, 200);
    let text = list.to_string();
    assert!(text.contains(&key_id), "{list}");
    assert!(
        !text.contains(developer.rsplit('_').next().expect("secret")),
        "no secret in lists"
    );
    assert!(list["items"]
        .as_array()
        .expect("items")
        .iter()
        .all(|k| k.get("token").is_none()));

    // A tenant that was never created has no keys.
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/keys",
        Some(&admin(server)),
        Some(json!({"name": "x", "role": "viewer", "tenant": "acme"})),
    )
    .await;
    assert_eq!(status, 404, "no such tenant: {body}");
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/keys",
        Some(&admin(server)),
        Some(json!({"name": "x", "role": "viewer", "tenant": "Bad Name"})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    let (_, tenant_admin) = key(server, "admin", json!({})).await;
    let (status, list, _) = call(server, "GET", "/api/v1/keys", Some(&tenant_admin), None).await;
    assert_eq!(status, 200, "a tenant admin lists its keys: {list}");

    // Revocation: 204, then the key no longer works.
    let (status, _, _) = call(
        server,
        "DELETE",
        &format!("/api/v1/keys/{key_id}"),
        Some(&admin(server)),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, body, _) = call(server, "GET", "/api/v1/workflows", Some(&developer), None).await;
    assert_eq!(status, 401, "{body}");
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/keys",
        Some(&admin(server)),
        Some(json!({"name": "x", "role": "agent"})),
    )
    .await;
    assert_eq!(status, 400, "an agent key needs agent_roles: {body}");
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/keys",
        Some(&admin(server)),
        Some(json!({"name": "x", "role": "root"})),
    )
    .await;
    assert_eq!(status, 400, "unknown role: {body}");
}

/// An agent key serves only the agent roles on it: registering or polling another
/// role, or reporting a lease another role's agent holds, is `403` and changes nothing.
pub async fn agent_keys_serve_only_their_roles(server: &TestServer) {
    let admin = admin(server);
    let (_, picker) = key(server, "agent", json!({"agent_roles": ["picker"]})).await;
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/agents",
        Some(&picker),
        Some(json!({"name": "p", "roles": ["packer"]})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body, _) = call(
        server,
        "POST",
        "/api/v1/agents",
        Some(&picker),
        Some(json!({"name": "p", "roles": ["picker"]})),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // A packer agent (registered by the administrator) takes a lease.
    let (_, packer_agent, _) = call(
        server,
        "POST",
        "/api/v1/agents",
        Some(&admin),
        Some(json!({"name": "k", "roles": ["packer"]})),
    )
    .await;
    let packer_id = packer_agent["agent_id"].as_str().expect("id").to_owned();
    let (status, body, _) = call(
        server,
        "POST",
        &format!("/api/v1/agents/{packer_id}/poll?wait_ms=0"),
        Some(&picker),
        None,
    )
    .await;
    assert_eq!(status, 403, "a picker key polls no packer agent: {body}");
    let (status, wf, _) = call(
        server,
        "POST",
        "/api/v1/workflows?execute=true",
        Some(&admin),
        Some(json!({
        "name": "pack", "input": {},
        "tasks": [{"id": "pack", "kind": "agent", "agent_role": "packer"}]})),
    )
    .await;
    assert_eq!(status, 201, "{wf}");
    let execution = wf["execution_id"].as_str().expect("execution").to_owned();
    let lease = loop {
        let (status, body, _) = call(
            server,
            "POST",
            &format!("/api/v1/agents/{packer_id}/poll?wait_ms=5000"),
            Some(&admin),
            None,
        )
        .await;
        assert_eq!(status, 200, "{body}");
        if let Some(l) = body["tasks"][0]["lease_id"].as_str() {
            break l.to_owned();
        }
    };
    let head = server.head().await;
    let (status, body, _) = call(
        server,
        "POST",
        &format!("/api/v1/tasks/{lease}/complete"),
        Some(&picker),
        Some(json!({"output": {}})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(server.head().await, head, "nothing recorded");
    let (status, body, _) = call(
        server,
        "POST",
        &format!("/api/v1/tasks/{lease}/complete"),
        Some(&admin),
        Some(json!({"output": {}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body, _) = call(
        server,
        "GET",
        &format!("/api/v1/executions/{execution}/events"),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
