//! The egress policy end to end: with no allowlist (`CONFLUX_EGRESS_ALLOW` empty), an
//! `http` task can reach no loopback, link-local, private or unique-local address,
//! however it is spelled — a literal URL is refused at creation (`422 egress_denied`),
//! a URL made at run time fails its task for good with `egress_denied` naming the rule
//! — and the service listening there receives nothing.

use std::sync::atomic::Ordering;

use serde_json::json;

use crate::harness::TestServer;
use crate::target::Target;

pub async fn denied_addresses_are_never_called(server: &TestServer) {
    let target = Target::start().await;
    let port = target.base.rsplit(':').next().expect("port").to_owned();

    // A literal URL: refused at creation, nothing recorded.
    let (status, body) = server
        .post(
            "/api/v1/workflows",
            json!({"name": "literal", "tasks": [{"id": "call", "kind": "http",
                   "http": {"url": target.url("/ok")}}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "egress_denied", "{body}");
    assert_eq!(body["error"]["details"]["task"], "call");
    assert!(body["error"]["details"]["rule"]
        .as_str()
        .unwrap_or_default()
        .contains("loopback"));
    let (_, list) = server.get("/api/v1/workflows").await;
    assert_eq!(list["items"], json!([]), "nothing was recorded: {list}");
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://localhost:9/",
    ] {
        let (status, body) = server
            .post(
                "/api/v1/workflows",
                json!({"name": "literal", "tasks": [{"id": "call", "kind": "http", "http": {"url": url}}]}),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (422, Some("egress_denied")),
            "{url}: {body}"
        );
    }

    // A URL made at run time: the attempt fails for good, the target hears nothing.
    let workflow = server
        .create_workflow(
            json!({"name": "dynamic", "tasks": [{"id": "call", "kind": "http",
            "retry": {"max_attempts": 3},
            "http": {"url": "http://${input.host}/ok"}}]}),
        )
        .await;
    for url in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("2130706433:{port}"),
        format!("0x7f.1:{port}"),
        format!("[::ffff:127.0.0.1]:{port}"),
        "2852039166".to_owned(),
    ] {
        let execution = server.execute(&workflow, json!({"host": url})).await;
        let done = server.wait_terminal(&execution).await;
        assert_eq!(done["status"], "failed", "{url}: {done}");
        let task = &done["tasks"]["call"];
        assert_eq!(
            task["attempts"], 1,
            "{url}: an egress denial is not retried"
        );
        let error = task["error"].as_str().unwrap_or_default();
        assert!(error.starts_with("egress_denied: "), "{url}: {error}");
    }
    assert_eq!(
        target.calls.ok.load(Ordering::SeqCst),
        0,
        "no call reached the target"
    );
}

/// With the loopback range allowed, the same call goes through.
pub async fn an_allowlist_opens_what_it_names(server: &TestServer) {
    let target = Target::start().await;
    let execution = server
        .run(
            json!({"name": "allowed", "tasks": [{"id": "call", "kind": "http",
                   "http": {"url": target.url("/ok")}}]}),
            json!({}),
        )
        .await;
    let done = server.wait_terminal(&execution).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(target.calls.ok.load(Ordering::SeqCst), 1);
}

/// A tenant's own allowlist (set by the system administrator) opens what it names for
/// that tenant alone, at creation and at run time; taking it away closes it again.
pub async fn a_tenants_allowlist_is_its_own(server: &TestServer) {
    use conflux_schema::access::Role;

    use crate::tenants::{key_in, system_admin};

    let target = Target::start().await;
    let root = system_admin(server);
    for tenant in ["opened", "closed"] {
        root.ok("POST", "/api/v1/tenants", Some(json!({"tenant": tenant})))
            .await;
    }
    let policy = root
        .ok(
            "PUT",
            "/api/v1/tenants/opened/policy",
            Some(json!({"egress_allow": ["127.0.0.1"]})),
        )
        .await;
    assert_eq!(policy["egress_allow"], json!(["127.0.0.1"]), "{policy}");
    let opened = key_in(server, "opened", Role::Developer).await;
    let closed = key_in(server, "closed", Role::Developer).await;
    let literal = json!({"name": "call", "tasks": [{"id": "call", "kind": "http",
        "http": {"url": target.url("/ok")}}]});
    let dynamic = json!({"name": "dynamic", "tasks": [{"id": "call", "kind": "http",
        "http": {"url": "http://${input.host}/ok"}}]});

    // The tenant it names: created and called.
    let created = opened
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(literal.clone()),
        )
        .await;
    let done = opened
        .wait_terminal(created["execution_id"].as_str().expect("execution"))
        .await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(target.calls.ok.load(Ordering::SeqCst), 1);

    // Another tenant: refused at creation and at run time; nothing reaches the target.
    let (status, body) = closed
        .call("POST", "/api/v1/workflows", Some(literal))
        .await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (422, &json!("egress_denied")),
        "{body}"
    );
    let mut run_time = dynamic.clone();
    let host = target.base.trim_start_matches("http://").to_owned();
    run_time["input"] = json!({ "host": host });
    let created = closed
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(run_time.clone()),
        )
        .await;
    let done = closed
        .wait_terminal(created["execution_id"].as_str().expect("execution"))
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["tasks"]["call"]["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("egress_denied: "), "{error}");
    assert_eq!(target.calls.ok.load(Ordering::SeqCst), 1);

    // A redirect from the allowed address into a denied one is not followed: the
    // denied listener (127.0.0.2, outside the tenant's 127.0.0.1) hears nothing.
    let denied = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind 127.0.0.2");
    let denied_addr = denied.local_addr().expect("addr");
    let knocks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = knocks.clone();
    tokio::spawn(async move {
        while denied.accept().await.is_ok() {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let redirector = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let redirector_addr = redirector.local_addr().expect("addr");
    let to = format!("http://{denied_addr}/latest/meta-data/");
    let app = axum::Router::new().fallback(move || {
        let to = to.clone();
        async move { axum::response::Redirect::temporary(&to) }
    });
    tokio::spawn(async move { axum::serve(redirector, app).await });
    let created = opened
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(
                json!({"name": "redirected", "tasks": [{"id": "call", "kind": "http",
                "retry": {"max_attempts": 3},
                "http": {"url": format!("http://{redirector_addr}/start")}}]}),
            ),
        )
        .await;
    let done = opened
        .wait_terminal(created["execution_id"].as_str().expect("execution"))
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    let error = done["tasks"]["call"]["error"].as_str().unwrap_or_default();
    assert!(error.contains("redirects are not followed"), "{error}");
    assert_eq!(
        knocks.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );

    // Taken away: the tenant is back to the operator's policy.
    root.ok("PUT", "/api/v1/tenants/opened/policy", Some(json!({})))
        .await;
    let created = opened
        .ok("POST", "/api/v1/workflows?execute=true", Some(run_time))
        .await;
    let done = opened
        .wait_terminal(created["execution_id"].as_str().expect("execution"))
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(target.calls.ok.load(Ordering::SeqCst), 1, "closed again");
}
