//! Stream tokens end to end: `POST /api/v1/stream-tokens` mints a short-lived token for
//! one live stream; `?access_token=<token>` (or a bearer header) on that stream's
//! upgrade opens it with a snapshot, as the minting key (its tenant); the same token is
//! `401` on another stream, on any REST route, after it expires, and once the minting
//! key is revoked — and a stream it opened then closes with 4401. A path that is no
//! live stream is `400` naming `path`; another tenant's id is `404` like an unknown one;
//! minting records nothing. On Postgres + Redis, a token minted by one server opens its
//! stream on another server of the same store.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::harness::{id_of, Mode, TestServer, WsSocket};

/// An execution that stays running: its one task waits for an agent nobody runs.
const WAITING: &str =
    r#"{"name": "watched", "tasks": [{"id": "wait", "kind": "agent", "agent_role": "nobody"}]}"#;

/// `method path` with `token` as bearer (None: no header) → (status, JSON body).
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let (status, answer, _) = crate::access::call(server, method, path, token, body).await;
    (status, answer)
}

/// A key of `role` in `tenant` (issued by the system administrator): (key id, token).
async fn key(server: &TestServer, role: &str, tenant: &str) -> (String, String) {
    let admin = server.config.admin_token.clone().expect("admin token");
    let body = json!({"name": format!("{role} key"), "role": role, "tenant": tenant});
    let (status, body) = call(server, "POST", "/api/v1/keys", Some(&admin), Some(body)).await;
    assert_eq!(status, 201, "{body}");
    (id_of(&body, "key_id"), id_of(&body, "token"))
}

/// Revokes `key_id` as the system administrator.
async fn revoke(server: &TestServer, key_id: &str) {
    let admin = server.config.admin_token.clone().expect("admin token");
    let path = format!("/api/v1/keys/{key_id}");
    let (status, body) = call(server, "DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 204, "{body}");
}

/// `POST /api/v1/stream-tokens {"path": path}` as `token`.
pub async fn mint(server: &TestServer, token: &str, path: &str) -> (u16, Value) {
    let body = json!({ "path": path });
    call(
        server,
        "POST",
        "/api/v1/stream-tokens",
        Some(token),
        Some(body),
    )
    .await
}

/// Upgrades `path` (with its query) carrying no header: the answer's status when
/// refused, else the socket.
async fn upgrade(server: &TestServer, path: &str) -> Result<WsSocket, u16> {
    let url = format!("{}{path}", server.base.replacen("http://", "ws://", 1));
    match tokio_tungstenite::connect_async(url).await {
        Ok((socket, _)) => Ok(socket),
        Err(WsError::Http(answer)) => Err(answer.status().as_u16()),
        Err(e) => panic!("{path}: {e}"),
    }
}

/// The first JSON frame, or the close code when the server closed first.
async fn first_frame(socket: &mut WsSocket) -> Result<Value, u16> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .expect("a frame within 10 s");
        match frame {
            Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).expect("json")),
            Some(Ok(Message::Close(close))) => return Err(close.map_or(0, |c| c.code.into())),
            None | Some(Err(_)) => return Err(0),
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for the server to close `socket`; its close code.
async fn closed_with(socket: &mut WsSocket) -> u16 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .expect("closed within 10 s");
        match frame {
            Some(Ok(Message::Close(close))) => return close.map_or(0, |c| c.code.into()),
            None | Some(Err(_)) => return 0,
            Some(Ok(_)) => {}
        }
    }
}

/// Opens `stream` with `token` in the query; asserts its snapshot is of `execution`.
async fn open(server: &TestServer, stream: &str, token: &str, execution: &str) -> WsSocket {
    let mut socket = upgrade(server, &format!("{stream}?access_token={token}"))
        .await
        .unwrap_or_else(|status| panic!("{stream}: refused with {status}"));
    let snapshot = first_frame(&mut socket)
        .await
        .unwrap_or_else(|code| panic!("{stream}: closed with {code}"));
    assert_eq!(snapshot["type"], "snapshot", "{snapshot}");
    assert_eq!(snapshot["status"]["execution_id"], execution, "{snapshot}");
    socket
}

/// A token opens its one stream, nothing else; bad paths, unknown ids and callers
/// without `read` are refused; revoking the minting key refuses the token and closes
/// the stream it opened with 4401.
pub async fn stream_tokens_open_one_stream(server: &TestServer) {
    let (key_id, viewer) = key(server, "viewer", "default").await;
    let definition: Value = serde_json::from_str(WAITING).expect("json");
    let workflow = server.create_workflow(definition).await;
    let execution = server.execute(&workflow, json!({})).await;
    let other = server.execute(&workflow, json!({})).await;
    let stream = format!("/ws/executions/{execution}");

    let before = chrono::Utc::now();
    let (status, minted) = mint(server, &viewer, &stream).await;
    assert_eq!(status, 201, "{minted}");
    let token = id_of(&minted, "token");
    assert!(token.starts_with("cfs_"), "{token}");
    assert_eq!(minted["path"], stream);
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(minted["expires_at"].clone()).expect("expires_at");
    let ttl = expires - before;
    assert!(ttl > chrono::Duration::seconds(55) && ttl <= chrono::Duration::seconds(61));

    // Its stream opens with a snapshot, from the query string or the header.
    let mut watching = open(server, &stream, &token, &execution).await;
    let url = format!("{}{stream}", server.base.replacen("http://", "ws://", 1));
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url)
            .expect("request");
    let bearer = format!("Bearer {token}").parse().expect("header");
    request.headers_mut().insert("authorization", bearer);
    let (mut by_header, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade with the token as bearer");
    assert_eq!(
        first_frame(&mut by_header).await.expect("frame")["type"],
        "snapshot"
    );

    // Anywhere else it is nobody.
    for elsewhere in [
        format!("/ws/executions/{other}?access_token={token}"),
        format!("/ws/workflows/{workflow}?access_token={token}"),
    ] {
        assert_eq!(
            upgrade(server, &elsewhere).await.err(),
            Some(401),
            "{elsewhere}"
        );
    }
    for (method, path) in [
        ("GET", format!("/api/v1/executions/{execution}")),
        ("GET", format!("/api/v1/workflows/{workflow}/status")),
        ("POST", "/api/v1/stream-tokens".to_owned()),
    ] {
        let body = (method == "POST").then(|| json!({"path": stream}));
        let (status, answer) = call(server, method, &path, Some(&token), body).await;
        assert_eq!(status, 401, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "unauthenticated");
        let query = format!("{path}?access_token={token}");
        let (status, _) = call(server, method, &query, None, None).await;
        assert_eq!(status, 401, "{method} {query}");
    }

    // Paths that are no live stream, unknown ids, callers who may not read.
    for bad in [
        String::new(),
        "/ws/executions/not-a-uuid".to_owned(),
        format!("/api/v1/executions/{execution}"),
        format!("{stream}?after=1"),
        format!("/ws/agents/{execution}"),
        format!("ws://127.0.0.1{stream}"),
    ] {
        let (status, answer) = mint(server, &viewer, &bad).await;
        assert_eq!(status, 400, "{bad:?}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_request", "{answer}");
        assert_eq!(answer["error"]["details"]["field"], "path", "{answer}");
    }
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/ws/executions/{unknown}"),
        format!("/ws/workflows/{unknown}"),
    ] {
        let (status, answer) = mint(server, &viewer, &path).await;
        assert_eq!(status, 404, "{path}: {answer}");
        assert_eq!(answer["error"]["code"], "not_found");
    }
    let (_, agent) = key_with(server, json!({"role": "agent", "agent_roles": ["x"]})).await;
    assert_eq!(mint(server, &agent, &stream).await.0, 403);
    let log = server
        .backends
        .store
        .read_all(0, 100_000)
        .await
        .expect("log");
    let actor = format!("key:{key_id}");
    assert!(
        log.iter()
            .all(|e| e.metadata.actor.as_deref() != Some(actor.as_str())),
        "minting records nothing"
    );

    // The minting key revoked: the token is refused, and its open streams close.
    revoke(server, &key_id).await;
    assert_eq!(closed_with(&mut watching).await, 4401);
    assert_eq!(closed_with(&mut by_header).await, 4401);
    let again = format!("{stream}?access_token={token}");
    assert_eq!(upgrade(server, &again).await.err(), Some(401));
}

/// A key issued by the system administrator with `body`'s fields.
async fn key_with(server: &TestServer, body: Value) -> (String, String) {
    let admin = server.config.admin_token.clone().expect("admin token");
    let mut all = json!({"name": "k"});
    if let (Some(a), Some(b)) = (all.as_object_mut(), body.as_object()) {
        a.extend(b.clone());
    }
    let (status, body) = call(server, "POST", "/api/v1/keys", Some(&admin), Some(all)).await;
    assert_eq!(status, 201, "{body}");
    (id_of(&body, "key_id"), id_of(&body, "token"))
}

/// A token acts in its minter's tenant: an `acme` key mints for `acme`'s execution and
/// the stream opens there; another tenant's execution is `404`, as an unknown one.
pub async fn stream_tokens_are_scoped_to_their_tenant(server: &TestServer) {
    let admin = server.config.admin_token.clone().expect("admin token");
    let (status, body) = call(
        server,
        "POST",
        "/api/v1/tenants",
        Some(&admin),
        Some(json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (_, acme) = key(server, "developer", "acme").await;
    let definition: Value = serde_json::from_str(WAITING).expect("json");
    let (status, created) = call(
        server,
        "POST",
        "/api/v1/workflows?execute=true",
        Some(&acme),
        Some(json!({"name": "watched", "input": {}, "tasks": definition["tasks"]})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let theirs = id_of(&created, "execution_id");
    let workflow = server.create_workflow(definition).await;
    let ours = server.execute(&workflow, json!({})).await;

    let (status, other_tenant) = mint(server, &acme, &format!("/ws/executions/{ours}")).await;
    assert_eq!(status, 404, "{other_tenant}");
    let unknown = uuid::Uuid::now_v7();
    let (status, nobody) = mint(server, &acme, &format!("/ws/executions/{unknown}")).await;
    assert_eq!(status, 404, "{nobody}");
    assert_eq!(other_tenant["error"]["code"], nobody["error"]["code"]);
    assert_eq!(
        other_tenant["error"]["message"]
            .as_str()
            .map(|m| m.replace(&ours, "ID")),
        nobody["error"]["message"]
            .as_str()
            .map(|m| m.replace(&unknown.to_string(), "ID")),
        "another tenant's id answers exactly as an unknown one"
    );
    let (status, workflow_of_default) =
        mint(server, &acme, &format!("/ws/workflows/{workflow}")).await;
    assert_eq!(status, 404, "{workflow_of_default}");

    let stream = format!("/ws/executions/{theirs}");
    let (status, minted) = mint(server, &acme, &stream).await;
    assert_eq!(status, 201, "{minted}");
    // Opened in tenant `acme` (in `default` the id would close with 4404).
    open(server, &stream, &id_of(&minted, "token"), &theirs).await;
}

/// A token minted with a 1 s lifetime opens its stream until then and is `401` after.
pub async fn stream_tokens_expire(mode: Mode) {
    let server = TestServer::start_tuned(mode, |c| c.stream_token_ttl_secs = 1).await;
    let (_, viewer) = key(&server, "viewer", "default").await;
    let definition: Value = serde_json::from_str(WAITING).expect("json");
    let execution = server.run(definition, json!({})).await;
    let stream = format!("/ws/executions/{execution}");
    let (status, minted) = mint(&server, &viewer, &stream).await;
    assert_eq!(status, 201, "{minted}");
    let token = id_of(&minted, "token");
    let expires: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(minted["expires_at"].clone()).expect("expires_at");
    assert!(expires - chrono::Utc::now() <= chrono::Duration::seconds(1));
    let mut watching = open(&server, &stream, &token, &execution).await;
    let past = (expires - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(past + Duration::from_millis(50)).await;
    let late = format!("{stream}?access_token={token}");
    assert_eq!(upgrade(&server, &late).await.err(), Some(401), "expired");
    // The stream it opened stays open: the token is checked at the upgrade.
    let until = tokio::time::Instant::now() + Duration::from_millis(300);
    while let Ok(frame) = tokio::time::timeout_at(until, watching.next()).await {
        assert!(
            matches!(frame, Some(Ok(Message::Text(_) | Message::Ping(_)))),
            "the open stream goes on: {frame:?}"
        );
    }
    server.stop().await;
}

/// Two servers of one store (Postgres + Redis): a token minted on one opens its stream
/// on the other; the minting key revoked on the first closes that stream on the second
/// with 4401, and the token is refused there.
pub async fn stream_tokens_work_on_every_server() {
    let first = TestServer::start(Mode::PostgresRedis).await;
    let second = first.join().await;
    let (key_id, viewer) = key(&first, "viewer", "default").await;
    let definition: Value = serde_json::from_str(WAITING).expect("json");
    let execution = first.run(definition, json!({})).await;
    let stream = format!("/ws/executions/{execution}");
    let (status, minted) = mint(&first, &viewer, &stream).await;
    assert_eq!(status, 201, "{minted}");
    let token = id_of(&minted, "token");
    // The second server learns of the key within a second of its creation.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut watching = loop {
        match upgrade(&second, &format!("{stream}?access_token={token}")).await {
            Ok(mut socket) => {
                let snapshot = first_frame(&mut socket).await.expect("snapshot");
                assert_eq!(snapshot["status"]["execution_id"], execution.as_str());
                break socket;
            }
            Err(status) if tokio::time::Instant::now() < deadline => {
                assert_eq!(status, 401);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(status) => panic!("the second server refused the token: {status}"),
        }
    };
    revoke(&first, &key_id).await;
    assert_eq!(closed_with(&mut watching).await, 4401);
    let again = format!("{stream}?access_token={token}");
    assert_eq!(upgrade(&second, &again).await.err(), Some(401));
    second.stop().await;
    first.stop().await;
}
