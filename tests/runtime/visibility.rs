//! `CONFLUX_VIEWER_PAYLOADS=hidden`: callers with the `viewer` role see every payload
//! as `{"redacted": "hidden"}` (errors as `[redacted: hidden]`) in the execution read,
//! the workflow status and the live streams, while statuses, times and counts stay;
//! every other role still sees the payloads.

use std::time::Duration;

use conflux_schema::access::Role;
use futures::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::harness::TestServer;
use crate::tenants::key_in;

/// Every frame of a live stream until the execution's last event (or 10 s).
async fn live_text(server: &TestServer, token: &str, path: &str) -> String {
    let url = format!("{}{path}", server.base.replacen("http", "ws", 1));
    let mut request = url.into_client_request().expect("ws url");
    let bearer = format!("Bearer {token}").parse().expect("header");
    request.headers_mut().insert("authorization", bearer);
    let (mut socket, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    let mut text = String::new();
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_millis(500), socket.next()).await
    {
        text.push_str(&frame.to_string());
        text.push('\n');
    }
    text
}

pub async fn viewers_see_payloads_hidden(server: &TestServer, viewer_token: &str) {
    let developer = key_in(server, "default", Role::Developer).await;
    let marker = format!("card-{}", uuid::Uuid::now_v7().simple());
    let created = developer
        .ok(
            "POST",
            "/api/v1/workflows?execute=true",
            Some(json!({"name": "seen", "input": {"card": marker}, "tasks": [
                {"id": "a", "kind": "noop", "input": {"card": "${input.card}"}},
                {"id": "b", "kind": "http", "depends_on": ["a"], "retry": {"max_attempts": 1},
                 "http": {"url": format!("http://127.0.0.1:9/{marker}")}}
            ]})),
        )
        .await;
    let id = created["execution_id"]
        .as_str()
        .expect("execution")
        .to_owned();
    let workflow = created["workflow_id"]
        .as_str()
        .expect("workflow")
        .to_owned();
    let seen = server.wait_terminal(&id).await;
    assert_eq!(seen["status"], "failed", "{seen}");
    assert_eq!(
        seen["input"],
        json!({"card": marker}),
        "a developer sees payloads"
    );

    let viewer = crate::tenants::Caller::with_token(server, viewer_token);
    let hidden = viewer
        .ok("GET", &format!("/api/v1/executions/{id}"), None)
        .await;
    assert_eq!(hidden["input"], json!({"redacted": "hidden"}));
    assert_eq!(
        hidden["tasks"]["a"]["output"],
        json!({"redacted": "hidden"})
    );
    assert_eq!(hidden["status"], "failed", "the structure stays");
    assert_eq!(
        hidden["tasks"]["b"]["attempts"],
        seen["tasks"]["b"]["attempts"]
    );
    assert!(!hidden.to_string().contains(&marker), "{hidden}");
    let status = viewer
        .ok("GET", &format!("/api/v1/workflows/{workflow}/status"), None)
        .await;
    assert!(!status.to_string().contains(&marker), "{status}");
    assert_eq!(
        status["latest_execution"]["input"],
        json!({"redacted": "hidden"})
    );

    for path in [
        format!("/ws/executions/{id}"),
        format!("/ws/workflows/{workflow}"),
    ] {
        let frames = live_text(server, viewer_token, &path).await;
        assert!(frames.contains("snapshot"), "{path}: {frames}");
        assert!(
            !frames.contains(&marker),
            "{path} shows a payload to a viewer: {frames}"
        );
    }
    let frames = live_text(
        server,
        viewer_token,
        &format!("/ws/executions/{id}?after=0"),
    )
    .await;
    assert!(
        frames.contains("TaskDispatched") && frames.contains("ExecutionFailed"),
        "{frames}"
    );
    assert!(
        !frames.contains(&marker),
        "events show a payload to a viewer: {frames}"
    );
}
