//! A Redis prefix that holds another store's stream (a new database on an old Redis, a
//! restored backup, a recreated development database, two environments on one prefix)
//! must never stall or cross-feed work: the real binary detects it, refuses to serve
//! (`/ready` 503 naming the prefix and the remedy), consumes nothing, and picks up
//! exactly where its store is after `conflux bus reset --yes` — or at once with
//! `CONFLUX_BUS_RESET_ON_MISMATCH=true`.

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use std::process::Command;
use std::time::{Duration, Instant};

use binary::Binary;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use serde_json::{json, Value};

const PATIENCE: Duration = Duration::from_secs(60);

/// A server's environment: its database and the shared Redis prefix.
fn env(db: &TestDatabase, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_url()),
        ("CONFLUX_REDIS_PREFIX", prefix.to_owned()),
    ]
}

fn start(env: &[(&'static str, String)]) -> (Binary, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    (Binary::start(env, dir.path()), dir)
}

/// Runs `conflux bus <args>` with `env`; returns the exit code and stderr.
fn bus_command(env: &[(&'static str, String)], args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_conflux"));
    cmd.arg("bus").args(args).env("CONFLUX_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run conflux bus");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

async fn post(base: &str, path: &str, body: Value) -> (u16, Value) {
    let resp = auth::client()
        .post(format!("{base}{path}"))
        .json(&body)
        .send()
        .await
        .expect("request");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

async fn get(base: &str, path: &str) -> (u16, Value) {
    let resp = auth::client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

/// Creates a workflow of `tasks` and returns its id.
async fn workflow(base: &str, name: &str, tasks: Value) -> String {
    let (status, body) = post(
        base,
        "/api/v1/workflows",
        json!({"name": name, "tasks": tasks}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    body["workflow_id"].as_str().expect("id").to_owned()
}

fn two_noops() -> Value {
    json!([{"id": "a", "kind": "noop"}, {"id": "b", "kind": "noop", "depends_on": ["a"]}])
}

async fn execute(base: &str, workflow_id: &str) -> String {
    let (status, body) = post(
        base,
        &format!("/api/v1/workflows/{workflow_id}/execute"),
        json!({"input": {}}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["execution_id"].as_str().expect("id").to_owned()
}

/// Waits until every execution in `ids` is completed; returns how long it took.
async fn all_complete(base: &str, ids: &[String], within: Duration) -> Duration {
    let started = Instant::now();
    for id in ids {
        loop {
            let (_, body) = get(base, &format!("/api/v1/executions/{id}")).await;
            if body["status"] == "completed" {
                break;
            }
            assert!(
                started.elapsed() < within,
                "execution {id} did not complete within {within:?}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    started.elapsed()
}

/// Waits until `/ready` answers `status`; returns its body.
async fn ready_becomes(base: &str, status: u16) -> Value {
    let started = Instant::now();
    loop {
        let (s, body) = get(base, "/ready").await;
        if s == status {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "/ready stayed {s} (wanted {status}): {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `/ready` refuses the bus (503, past the first check); returns the reason.
async fn refused(base: &str) -> (String, Value) {
    let started = Instant::now();
    loop {
        let body = ready_becomes(base, 503).await;
        let reason = body["error"]["details"]["bus"].as_str().unwrap_or_default();
        if !reason.starts_with("checking") {
            return (reason.to_owned(), body);
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "never decided: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn event_count(db: &TestDatabase) -> i64 {
    let pool = db.pool().await;
    let n = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&pool)
        .await
        .expect("count");
    pool.close().await;
    n
}

/// Store A runs 200 executions on prefix P; store B starts on P: B is not ready, says
/// why, and consumes nothing of A's (A keeps completing work while B runs). After
/// `conflux bus reset --yes` on B, B completes a workflow at once and A, whose prefix
/// now belongs to B, is the one that refuses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_store_on_a_used_prefix_is_refused_until_reset() {
    let prefix = unique_prefix();
    let (db_a, db_b) = (TestDatabase::create().await, TestDatabase::create().await);
    let (env_a, env_b) = (env(&db_a, &prefix), env(&db_b, &prefix));

    let (a, _dir_a) = start(&env_a);
    let wf = workflow(&a.base, "shared-name", two_noops()).await;
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(execute(&a.base, &wf).await);
    }
    all_complete(&a.base, &ids, PATIENCE).await;

    let (b, _dir_b) = start(&env_b);
    let (reason, body) = refused(&b.base).await;
    assert!(
        reason.contains(&prefix),
        "the reason names the prefix: {body}"
    );
    assert!(
        reason.contains("conflux bus reset --yes"),
        "and the remedy: {body}"
    );
    assert!(
        reason.contains("another store"),
        "and what was found: {body}"
    );
    let (code, status) = bus_command(&env_b, &["status"]);
    assert_eq!(code, 1, "`bus status` exits 1 on a refused bus: {status}");

    // B consumes nothing: A's new work still completes on A, B's store stays empty.
    let more: Vec<String> = execute_many(&a.base, &wf, 20).await;
    all_complete(&a.base, &more, PATIENCE).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(event_count(&db_b).await, 0, "B wrote nothing");
    let (code, text) = bus_command(&env_b, &["reset"]);
    assert_ne!(code, 0, "reset without --yes refuses: {text}");
    assert!(text.contains("--yes"), "{text}");
    assert_eq!(get(&b.base, "/ready").await.0, 503, "nothing was reset");

    let (code, text) = bus_command(&env_b, &["reset", "--yes"]);
    assert_eq!(code, 0, "bus reset: {text}");
    ready_becomes(&b.base, 200).await;
    let wf_b = workflow(&b.base, "shared-name", two_noops()).await;
    let started = Instant::now();
    let id = execute(&b.base, &wf_b).await;
    let took = all_complete(&b.base, &[id], PATIENCE).await;
    assert!(
        took < Duration::from_secs(1),
        "B completes a workflow within a second of the reset: {:?} ({:?} in all)",
        took,
        started.elapsed()
    );
    let (reason, _) = refused(&a.base).await;
    assert!(reason.contains("another store"), "{reason}");

    drop((a, b));
    delete_redis_prefix(&prefix).await;
    db_a.drop_database().await;
    db_b.drop_database().await;
}

async fn execute_many(base: &str, wf: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        ids.push(execute(base, wf).await);
    }
    ids
}

/// A database copied back to an earlier state (a restore) under the same Redis: the
/// bus is ahead of it, which is detected; after the reset, every execution that was
/// open in the restored store completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_store_is_detected_and_its_open_executions_complete_after_reset() {
    let prefix = unique_prefix();
    let db = TestDatabase::create().await;
    let env_live = env(&db, &prefix);

    let (mut first, _dir) = start(&env_live);
    let wf = workflow(
        &first.base,
        "restore",
        json!([{"id": "wait", "kind": "sleep", "sleep_ms": 1500},
               {"id": "done", "kind": "noop", "depends_on": ["wait"]}]),
    )
    .await;
    let open = execute_many(&first.base, &wf, 20).await;
    // Let them be dispatched (the sleeps are running) before the "backup" is taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    first.kill();
    let backup = db.snapshot().await;

    // The live database goes on: its executions finish and more run, so the bus moves
    // past everything the backup holds.
    let (second, _dir2) = start(&env_live);
    all_complete(&second.base, &open, PATIENCE).await;
    let later = execute_many(&second.base, &wf, 10).await;
    all_complete(&second.base, &later, PATIENCE).await;
    drop(second);

    // Restore: the backup serves on the same prefix.
    let env_restored = env(&backup, &prefix);
    let (restored, _dir3) = start(&env_restored);
    let (reason, body) = refused(&restored.base).await;
    assert!(
        reason.contains("restored"),
        "the reason says what happened: {body}"
    );
    assert!(reason.contains(&prefix), "{body}");
    // The newest start: the backup was taken well within its 1.5 s sleep (on a loaded
    // machine the first of 20 starts may have finished before the backup).
    let newest = open.last().expect("started");
    let (_, body) = get(&restored.base, &format!("/api/v1/executions/{newest}")).await;
    assert_eq!(
        body["status"], "running",
        "nothing runs on a refused bus: {body}"
    );

    let (code, text) = bus_command(&env_restored, &["reset", "--yes"]);
    assert_eq!(code, 0, "bus reset: {text}");
    ready_becomes(&restored.base, 200).await;
    all_complete(&restored.base, &open, PATIENCE).await;
    let again = execute(&restored.base, &wf).await;
    all_complete(&restored.base, &[again], PATIENCE).await;

    drop(restored);
    delete_redis_prefix(&prefix).await;
    db.drop_database().await;
    backup.drop_database().await;
}

/// Development: with `CONFLUX_BUS_RESET_ON_MISMATCH=true`, a dropped-and-recreated
/// database on an old prefix just works; and a reset under a running server (a new
/// generation) makes its roles start afresh without losing new work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_development_flag_resets_a_recreated_database_on_start() {
    let prefix = unique_prefix();
    let db = TestDatabase::create().await;
    let mut env_dev = env(&db, &prefix);

    let (first, _dir) = start(&env_dev);
    let wf = workflow(&first.base, "dev", two_noops()).await;
    let ids = execute_many(&first.base, &wf, 30).await;
    all_complete(&first.base, &ids, PATIENCE).await;
    drop(first);

    db.recreate().await;
    env_dev.push(("CONFLUX_BUS_RESET_ON_MISMATCH", "true".to_owned()));
    let (second, _dir2) = start(&env_dev);
    ready_becomes(&second.base, 200).await;
    let wf = workflow(&second.base, "dev", two_noops()).await;
    let id = execute(&second.base, &wf).await;
    all_complete(&second.base, &[id], Duration::from_secs(10)).await;

    // A reset under the running server: it notices the new generation and goes on.
    let (code, text) = bus_command(&env_dev, &["reset", "--yes"]);
    assert_eq!(code, 0, "bus reset: {text}");
    let ids = execute_many(&second.base, &wf, 10).await;
    all_complete(&second.base, &ids, Duration::from_secs(20)).await;
    let (code, status) = bus_command(&env_dev, &["status"]);
    assert_eq!(code, 0, "`bus status` exits 0 on its own bus: {status}");
    assert!(status.contains("this store's"), "{status}");

    drop(second);
    delete_redis_prefix(&prefix).await;
    db.drop_database().await;
}
