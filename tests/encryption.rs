//! Encryption at rest against the real binary, as an operator runs it:
//! - with `CONFLUX_MASTER_KEY`, a recognisable payload (an execution input, an `http`
//!   task's header and body, an agent task's input and output) is nowhere in plain text
//!   in any Postgres table, any Redis key, the embedded store's files or the server's
//!   log — while callers read it back in plain text;
//! - a server refuses to start under a wrong, malformed or missing master key, naming
//!   the key id the store needs;
//! - `conflux keys rotate-master` re-wraps the data keys while executions run on two
//!   servers (one with only the old key, one accepting both): nothing fails, and
//!   afterwards the new key alone opens every event.

#[path = "support/agent.rs"]
#[allow(dead_code)]
mod agent;
#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;
#[path = "support/raw_scan.rs"]
mod raw_scan;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::any;
use axum::{Json, Router};
use binary::{Binary, Mode, Served};
use conflux_engine::crypto::MasterKey;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use serde_json::{json, Value};

/// What the echo service saw: `(x-card header, body)` per call.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A local HTTP service that answers every call with `{"ok": true}` and remembers it.
async fn echo() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route(
            "/{*path}",
            any(
                |State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>| async move {
                    let card = headers
                        .get("x-card")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().expect("lock").push((card, body));
                    Json(json!({"ok": true}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn key() -> MasterKey {
    MasterKey::random().expect("a master key")
}

async fn call(base: &str, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let mut request = auth::client().request(method, format!("{base}{path}"));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let resp = request.send().await.expect("request");
    let status = resp.status();
    let text = resp.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::String(text))
}

async fn completed(base: &str, execution: &str) -> Value {
    for _ in 0..300 {
        let body = call(
            base,
            reqwest::Method::GET,
            &format!("/api/v1/executions/{execution}"),
            None,
        )
        .await;
        if body["status"] == "completed" {
            return body;
        }
        assert!(body["status"] != "failed", "{body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("execution {execution} did not complete");
}

async fn payloads_are_sealed_at_rest(mode: Mode) {
    let (echo_base, seen) = echo().await;
    let env = [
        ("CONFLUX_MASTER_KEY", key().to_base64()),
        ("CONFLUX_LOG", "debug".to_owned()),
    ];
    let mut served = Served::start_with(mode, &env).await;
    let base = served.bin.base.clone();
    let marker = format!("pan-{}", uuid::Uuid::now_v7().simple());
    let definition = json!({"name": "at-rest-probe", "input": {"card": marker}, "tasks": [
        {"id": "read", "kind": "noop", "input": {"card": "${input.card}"}},
        {"id": "charge", "kind": "http", "depends_on": ["read"], "http": {
            "method": "POST", "url": format!("{echo_base}/charge"),
            "headers": {"x-card": "${input.card}"},
            "body": {"card": "${tasks.read.output.card}"}}},
        {"id": "pick", "kind": "agent", "agent_role": "scanner", "depends_on": ["charge"],
         "input": {"card": "${input.card}"}}
    ]});
    let created = call(
        &base,
        reqwest::Method::POST,
        "/api/v1/workflows?execute=true",
        Some(definition),
    )
    .await;
    let execution = created["execution_id"]
        .as_str()
        .expect("execution")
        .to_owned();

    let agent = agent::TestAgent::register(&base, &["scanner"]).await;
    let lease = agent.next_lease().await;
    assert_eq!(
        lease.input,
        json!({"card": marker}),
        "the agent gets the payload"
    );
    let (status, body) = agent.complete(&lease, json!({"receipt": marker})).await;
    assert_eq!(status, 200, "{body}");
    let done = completed(&base, &execution).await;
    assert_eq!(
        done["input"],
        json!({"card": marker}),
        "callers read plain text"
    );
    let ndjson = call(
        &base,
        reqwest::Method::GET,
        &format!("/api/v1/executions/{execution}/events?format=ndjson"),
        None,
    )
    .await;
    assert!(
        ndjson.to_string().contains(&marker),
        "exports are plain text"
    );
    assert_eq!(
        seen.lock().expect("lock").clone(),
        vec![(marker.clone(), json!({"card": marker}))],
        "the http task sent the real values"
    );
    assert!(served.bin.stop().success());
    if mode == Mode::Postgres {
        // The operator's republish of the log (`conflux bus reset`) carries what is
        // stored: ciphertext.
        let db = served.db.as_ref().expect("database");
        let env = [
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis_url()),
            (
                "CONFLUX_REDIS_PREFIX",
                served.prefix().expect("prefix").to_owned(),
            ),
            ("CONFLUX_MASTER_KEY", env[0].1.clone()),
        ];
        let (ok, stderr) = run(&["bus", "reset", "--yes"], &env, served.dir());
        assert!(ok, "bus reset: {stderr}");
    }

    let scan = raw_scan::Scan::new(
        served.db.as_ref().map(|db| db.url.clone()),
        Some(served.dir().join("conflux-data")),
        served.prefix().map(|p| (redis_url(), p.to_owned())),
    )
    .with_log(served.bin.log().lines().map(str::to_owned).collect());
    // The scan sees the store: what is not a payload is there in plain text.
    assert!(
        !scan.occurrences("at-rest-probe").await.is_empty(),
        "the scan cannot see the workflow's name"
    );
    let leaks = scan.occurrences(&marker).await;
    assert!(
        leaks.is_empty(),
        "the payload is stored in plain text: {leaks:?}"
    );
    served.release().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_payloads_are_sealed_at_rest() {
    payloads_are_sealed_at_rest(Mode::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_payloads_are_sealed_at_rest() {
    payloads_are_sealed_at_rest(Mode::Embedded).await;
}

/// Runs `conflux <args>` in `dir` with `env` and no other backends, expecting it to
/// exit (within its own time); returns (success, stderr).
fn run(args: &[&str], env: &[(&str, String)], dir: &std::path::Path) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conflux"));
    cmd.args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env_remove("CONFLUX_MASTER_KEY")
        .env_remove("CONFLUX_MASTER_KEY_PREVIOUS")
        .env("CONFLUX_ADDR", "127.0.0.1:0")
        .env("CONFLUX_ADMIN_TOKEN", auth::ADMIN_TOKEN);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run conflux");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_refuses_a_master_key_it_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let right = key();
    let mut first = Binary::start(&[("CONFLUX_MASTER_KEY", right.to_base64())], dir.path());
    let created = call(
        &first.base,
        reqwest::Method::POST,
        "/api/v1/workflows?execute=true",
        Some(json!({"name": "k", "input": {"v": 1}, "tasks": [{"id": "a", "kind": "noop"}]})),
    )
    .await;
    let execution = created["execution_id"]
        .as_str()
        .expect("execution")
        .to_owned();
    completed(&first.base, &execution).await;
    assert!(first.stop().success());

    let (ok, stderr) = run(
        &["serve"],
        &[("CONFLUX_MASTER_KEY", key().to_base64())],
        dir.path(),
    );
    assert!(!ok, "a wrong key must not start a server");
    assert!(
        stderr.contains(right.kid()) && stderr.contains("not configured"),
        "{stderr}"
    );
    let (ok, stderr) = run(&["serve"], &[], dir.path());
    assert!(!ok, "no key must not start a server on sealed data");
    assert!(
        stderr.contains("holds payloads encrypted") && stderr.contains(right.kid()),
        "{stderr}"
    );
    let (ok, stderr) = run(
        &["serve"],
        &[("CONFLUX_MASTER_KEY", "c2hvcnQ=".into())],
        dir.path(),
    );
    assert!(!ok);
    assert!(
        stderr.contains("not 32") && !stderr.contains("c2hvcnQ"),
        "{stderr}"
    );

    let mut again = Binary::start(&[("CONFLUX_MASTER_KEY", right.to_base64())], dir.path());
    let read = completed(&again.base, &execution).await;
    assert_eq!(
        read["input"],
        json!({"v": 1}),
        "the right key reads everything"
    );
    assert!(again.stop().success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_master_key_rotates_while_executions_run() {
    let db = TestDatabase::create().await;
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let (old, new) = (key(), key());
    let backends = |keys: &[(&'static str, String)]| {
        let mut env = vec![
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis_url()),
            ("CONFLUX_REDIS_PREFIX", prefix.clone()),
        ];
        env.extend(keys.iter().cloned());
        env
    };
    let only_old = backends(&[("CONFLUX_MASTER_KEY", old.to_base64())]);
    let both = backends(&[
        ("CONFLUX_MASTER_KEY", new.to_base64()),
        ("CONFLUX_MASTER_KEY_PREVIOUS", old.to_base64()),
    ]);
    let only_new = backends(&[("CONFLUX_MASTER_KEY", new.to_base64())]);

    let mut before = Binary::start(&only_old, dir.path());
    let definition = json!({"name": "rotating", "tasks": [
        {"id": "a", "kind": "noop", "input": {"card": "${input.card}"}},
        {"id": "b", "kind": "sleep", "sleep_ms": 20, "depends_on": ["a"]},
        {"id": "c", "kind": "noop", "depends_on": ["b"], "input": {"seen": "${tasks.a.output.card}"}}
    ]});
    let workflow = call(
        &before.base,
        reqwest::Method::POST,
        "/api/v1/workflows",
        Some(definition),
    )
    .await;
    let workflow = workflow["workflow_id"]
        .as_str()
        .expect("workflow")
        .to_owned();
    let mut during = Binary::start(&both, dir.path());

    // Executions on both servers before, while and after the keys are re-wrapped.
    let bases = [before.base.clone(), during.base.clone()];
    let execute = |i: usize| {
        let base = bases[i % 2].clone();
        let workflow = workflow.clone();
        async move {
            let card = format!("card-{i}");
            let started = call(
                &base,
                reqwest::Method::POST,
                &format!("/api/v1/workflows/{workflow}/execute"),
                Some(json!({"input": {"card": card}})),
            )
            .await;
            (
                started["execution_id"]
                    .as_str()
                    .expect("execution")
                    .to_owned(),
                card,
            )
        }
    };
    let mut started = Vec::new();
    for i in 0..10 {
        started.push(execute(i).await);
    }
    let rotation = {
        let (dir, both) = (dir.path().to_owned(), both.clone());
        tokio::task::spawn_blocking(move || run(&["keys", "rotate-master"], &both, &dir))
    };
    let mut during_rotation = 0;
    while !rotation.is_finished() {
        let batch = futures::future::join_all((0..4).map(|j| execute(started.len() + j))).await;
        started.extend(batch);
        during_rotation += 4;
    }
    for _ in 0..10 {
        started.push(execute(started.len()).await);
    }
    assert!(
        during_rotation > 0,
        "executions started while the keys were re-wrapped"
    );
    let (ok, stderr) = rotation.await.expect("rotation");
    assert!(ok, "rotate-master: {stderr}");
    assert!(
        stderr.contains("re-wrapped 2 tenant key(s)"),
        "default's and the store's own: {stderr}"
    );
    assert!(stderr.contains("can be dropped"), "{stderr}");
    for (id, card) in &started {
        let done = completed(&during.base, id).await;
        assert_eq!(done["input"], json!({"card": card}));
    }
    assert!(before.stop().success());
    assert!(during.stop().success());

    let (ok, stderr) = run(&["serve"], &only_old, dir.path());
    assert!(
        !ok && stderr.contains(new.kid()),
        "the old key alone is refused: {stderr}"
    );
    let mut after = Binary::start(&only_new, dir.path());
    for (id, card) in &started {
        let events = call(
            &after.base,
            reqwest::Method::GET,
            &format!("/api/v1/executions/{id}/events"),
            None,
        )
        .await;
        let text = events.to_string();
        assert!(!text.contains("redacted"), "every event opens: {text}");
        assert!(text.contains(card.as_str()));
    }
    assert!(after.stop().success());
    delete_redis_prefix(&prefix).await;
    db.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_was_stored_before_encryption_cannot_be_erased_by_a_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run_one = |base: String| async move {
        let created = call(
            &base,
            reqwest::Method::POST,
            "/api/v1/workflows?execute=true",
            Some(json!({"name": "e", "input": {"v": 1}, "tasks": [{"id": "a", "kind": "noop"}]})),
        )
        .await;
        let id = created["execution_id"]
            .as_str()
            .expect("execution")
            .to_owned();
        completed(&base, &id).await;
        id
    };
    let mut plain = Binary::start(&[], dir.path());
    let before = run_one(plain.base.clone()).await;
    assert!(plain.stop().success());

    let key = key();
    let mut sealed = Binary::start(&[("CONFLUX_MASTER_KEY", key.to_base64())], dir.path());
    let after = run_one(sealed.base.clone()).await;
    let erase = |id: &str| {
        auth::client()
            .delete(format!("{}/api/v1/executions/{id}/data", sealed.base))
            .send()
    };
    let refused = erase(&before).await.expect("request");
    assert_eq!(refused.status().as_u16(), 409);
    let body: Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "not_sealed", "{body}");
    let erased = erase(&after).await.expect("request");
    assert_eq!(erased.status().as_u16(), 200);
    assert_eq!(
        completed(&sealed.base, &before).await["input"],
        json!({"v": 1})
    );
    assert_eq!(
        completed(&sealed.base, &after).await["input"],
        json!({"redacted": "erased"})
    );
    assert!(sealed.stop().success());

    // Once a store was started with a master key, a server without one is refused.
    let (ok, stderr) = run(&["serve"], &[], dir.path());
    assert!(!ok && stderr.contains(key.kid()), "{stderr}");
}
