//! Schedules with the real binary: a schedule firing every second starts exactly one
//! execution per tick however many servers tick it, across a SIGKILL.
//!
//! - Postgres + Redis: two `conflux serve` processes share one store; one is SIGKILLed
//!   half-way and started again; every tick from the first to the last has exactly one
//!   execution and one `ScheduleTicked`, none missing.
//! - Embedded: one server (the SQLite store is one process's) SIGKILLed over several
//!   ticks and started again on the same file: with `catch_up: all` the ticks it missed
//!   run after the restart, each once.
//!
//! The checks read the event log (the workflow's merged log over HTTP, and the schedule's
//! own stream), never the read models, which lag.

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use binary::Binary;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use serde_json::{json, Value};

/// A guard on every wait (the machine is shared and loaded), never an expectation.
const PATIENCE: Duration = Duration::from_secs(120);

async fn call(base: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut req = auth::client().request(method, format!("{base}{path}"));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Creates a one-`noop` workflow and a schedule of it firing every second; returns
/// (workflow, schedule).
async fn schedule_every_second(base: &str) -> (String, String) {
    let (status, workflow) = call(
        base,
        "POST",
        "/api/v1/workflows",
        Some(json!({"name": "every-second", "tasks": [{"id": "a", "kind": "noop"}]})),
    )
    .await;
    assert_eq!(status, 201, "{workflow}");
    let workflow = workflow["workflow_id"].as_str().expect("id").to_owned();
    let (status, schedule) = call(
        base,
        "POST",
        "/api/v1/schedules",
        Some(json!({"workflow": workflow, "cron": "* * * * * *", "overlap": "allow", "catch_up": "all"})),
    )
    .await;
    assert_eq!(status, 201, "{schedule}");
    (workflow, schedule["id"].as_str().expect("id").to_owned())
}

/// The ticks of `schedule` that started an execution of `workflow`, from the
/// workflow's log: tick (from `causation_id`) → how many executions.
async fn executions_per_tick(
    base: &str,
    workflow: &str,
    schedule: &str,
) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let mut after = 0;
    loop {
        let path = format!("/api/v1/workflows/{workflow}/events?after_position={after}&limit=1000");
        let (status, page) = call(base, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            after = after.max(e["position"].as_u64().unwrap_or(0));
            if e["type"] == "ExecutionStarted" {
                assert_eq!(
                    e["metadata"]["actor"],
                    format!("schedule:{schedule}"),
                    "{e}"
                );
                let cause = e["metadata"]["causation_id"].as_str().unwrap_or_default();
                let tick = cause.rsplit('@').next().unwrap_or_default().to_owned();
                *out.entry(tick).or_default() += 1;
            }
        }
        if events.len() < 1000 {
            return out;
        }
    }
}

/// Waits until the workflow's log holds at least `n` ticks' executions.
async fn wait_ticks(base: &str, workflow: &str, schedule: &str, n: usize) {
    let started = Instant::now();
    while executions_per_tick(base, workflow, schedule).await.len() < n {
        assert!(started.elapsed() < PATIENCE, "fewer than {n} ticks");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Deletes the schedule, lets passes under way finish, and checks the log: every tick
/// from the first to the last has exactly one execution; returns how many ticks.
async fn stop_and_check(base: &str, workflow: &str, schedule: &str) -> usize {
    let (status, body) = call(
        base,
        "DELETE",
        &format!("/api/v1/schedules/{schedule}"),
        None,
    )
    .await;
    assert_eq!(status, 204, "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_tick = executions_per_tick(base, workflow, schedule).await;
    assert!(
        per_tick.values().all(|n| *n == 1),
        "a tick started more than one execution: {per_tick:?}"
    );
    let seconds: Vec<i64> = per_tick
        .keys()
        .map(|t| {
            chrono::DateTime::parse_from_rfc3339(t)
                .unwrap_or_else(|e| panic!("tick {t:?}: {e}"))
                .timestamp()
        })
        .collect();
    assert!(
        seconds.windows(2).all(|w| w[1] == w[0] + 1),
        "a tick is missing: {seconds:?}"
    );
    per_tick.len()
}

/// One `ScheduleTicked` per tick in the schedule's own stream (Postgres).
async fn one_record_per_tick(db: &TestDatabase, schedule: &str) {
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT data->>'tick_at', count(*) FROM events \
         WHERE stream_id = $1 AND event_type = 'ScheduleTicked' GROUP BY 1",
    )
    .bind(format!("schedule-{schedule}"))
    .fetch_all(&pool)
    .await
    .expect("query");
    assert!(!rows.is_empty());
    assert!(
        rows.iter().all(|(_, n)| *n == 1),
        "a tick recorded twice: {rows:?}"
    );
    pool.close().await;
}

fn start(env: &[(&str, String)], dir: &Path) -> Binary {
    Binary::start(env, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_start_one_execution_per_tick_across_a_sigkill() {
    let db = TestDatabase::create().await;
    let prefix = unique_prefix();
    let env = [
        ("DATABASE_URL", db.url.clone()),
        ("REDIS_URL", redis_url()),
        ("CONFLUX_REDIS_PREFIX", prefix.clone()),
    ];
    let (dir_a, dir_b) = (
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    );
    let mut a = start(&env, dir_a.path());
    let mut b = start(&env, dir_b.path());
    let (workflow, schedule) = schedule_every_second(&a.base).await;
    // Both tick for a while, then one dies mid-flight and the other goes on alone.
    wait_ticks(&b.base, &workflow, &schedule, 4).await;
    a.kill();
    let seen = executions_per_tick(&b.base, &workflow, &schedule)
        .await
        .len();
    wait_ticks(&b.base, &workflow, &schedule, seen + 4).await;
    // The killed one comes back and ticks beside it again.
    let a = start(&env, dir_a.path());
    let seen = executions_per_tick(&a.base, &workflow, &schedule)
        .await
        .len();
    wait_ticks(&a.base, &workflow, &schedule, seen + 2).await;
    let ticks = stop_and_check(&a.base, &workflow, &schedule).await;
    assert!(ticks >= 10, "{ticks} ticks");
    one_record_per_tick(&db, &schedule).await;
    drop(a);
    b.stop();
    db.drop_database().await;
    delete_redis_prefix(&prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_server_killed_over_ticks_catches_up_once_each() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = start(&[], dir.path());
    let (workflow, schedule) = schedule_every_second(&server.base).await;
    wait_ticks(&server.base, &workflow, &schedule, 3).await;
    server.kill();
    // Down over several ticks.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut server = start(&[], dir.path());
    let seen = executions_per_tick(&server.base, &workflow, &schedule)
        .await
        .len();
    wait_ticks(&server.base, &workflow, &schedule, seen + 5).await;
    let ticks = stop_and_check(&server.base, &workflow, &schedule).await;
    assert!(ticks >= 8, "{ticks} ticks, the missed ones caught up");
    server.stop();
}

/// Runs `conflux schedules <args>` against `base` as the administrator.
fn schedules_cli(base: &str, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_conflux"))
        .arg("schedules")
        .args(args)
        .env("CONFLUX_URL", base)
        .env("CONFLUX_TOKEN", auth::ADMIN_TOKEN)
        .output()
        .expect("run conflux schedules");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = start(&[], dir.path());
    let (status, workflow) = call(
        &server.base,
        "POST",
        "/api/v1/workflows",
        Some(json!({"name": "cli", "tasks": [{"id": "a", "kind": "noop"}]})),
    )
    .await;
    assert_eq!(status, 201, "{workflow}");
    let workflow = workflow["workflow_id"].as_str().expect("id").to_owned();
    let (code, out, err) = schedules_cli(
        &server.base,
        &[
            "create",
            "--workflow",
            &workflow,
            "--cron",
            "0 9 * * MON-FRI",
            "--timezone",
            "America/New_York",
            "--input",
            r#"{"n": 1}"#,
            "--overlap",
            "cancel_previous",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let created: Value = serde_json::from_str(&out).expect("the schedule as JSON");
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["input"], json!({"n": 1}));
    assert_eq!(created["overlap"], "cancel_previous");
    let (code, out, err) = schedules_cli(&server.base, &["list"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&id) && out.contains("America/New_York"),
        "{out}"
    );
    let (code, out, err) = schedules_cli(&server.base, &["pause", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"paused\""), "{out}");
    let (code, _, err) = schedules_cli(&server.base, &["pause", &id]);
    assert_eq!(code, 2, "pausing a paused schedule is refused: {err}");
    assert!(err.contains("conflict"), "{err}");
    let (code, out, err) = schedules_cli(&server.base, &["resume", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"active\""), "{out}");
    let (code, _, err) = schedules_cli(
        &server.base,
        &["create", "--workflow", &workflow, "--cron", "61 * * * *"],
    );
    assert_eq!(code, 2);
    assert!(err.contains("invalid_cron"), "{err}");
    let (code, _, err) = schedules_cli(&server.base, &["delete", &id]);
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = schedules_cli(&server.base, &["get", &id]);
    assert_eq!(code, 2, "a deleted schedule is unknown");
    assert!(err.contains("not_found"), "{err}");
    server.stop();
}
