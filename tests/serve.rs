//! End-to-end: the real `conflux` binary, started as a user would start it.

use std::process::Command;
use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use binary::Binary;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};

struct Server {
    bin: Binary,
    base: String,
}

impl Server {
    /// Starts `conflux serve` on a random port with `env`, and waits until it listens.
    fn start(env: &[(&str, String)], dir: &std::path::Path) -> Server {
        let bin = Binary::start(env, dir);
        Server {
            base: bin.base.clone(),
            bin,
        }
    }

    async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = auth::client()
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json body"))
    }

    /// SIGTERM: a clean exit, and every log line was JSON.
    fn stop(&mut self) {
        let status = self.bin.stop();
        assert!(status.success(), "conflux exited with {status}");
        assert_eq!(
            self.bin.bad_log_lines(),
            Vec::<String>::new(),
            "log lines that are not JSON"
        );
    }
}

#[tokio::test]
async fn serve_with_no_configuration_uses_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(&[], dir.path());
    assert!(
        dir.path().join("conflux-data").join("conflux.db").exists(),
        "the data dir is created"
    );
    let (status, body) = server.get("/health").await;
    assert_eq!((status, &body["status"]), (200, &serde_json::json!("ok")));
    let (status, body) = server.get("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "embedded");
    // Run a workflow whose http task hits a port where nothing listens, five times, so
    // the host's circuit breaker opens; then the metrics show all of it.
    let client = auth::client();
    let def = serde_json::json!({"name": "metrics", "tasks": [
        {"id": "a", "kind": "noop"},
        {"id": "b", "kind": "http", "depends_on": ["a"], "http": {"url": "http://127.0.0.1:1/x"}}
    ]});
    let created: serde_json::Value = client
        .post(format!("{}/api/v1/workflows", server.base))
        .json(&def)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let wf = created["workflow_id"]
        .as_str()
        .expect("workflow_id")
        .to_owned();
    for _ in 0..5 {
        let started: serde_json::Value = client
            .post(format!("{}/api/v1/workflows/{wf}/execute", server.base))
            .send()
            .await
            .expect("execute")
            .json()
            .await
            .expect("json");
        let id = started["execution_id"]
            .as_str()
            .expect("execution_id")
            .to_owned();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, e) = server.get(&format!("/api/v1/executions/{id}")).await;
            if e["status"] == "failed" {
                break;
            }
            assert!(Instant::now() < deadline, "execution did not fail: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let text = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for family in [
        "conflux_events_appended_total",
        "conflux_tasks_total{kind=\"noop\",outcome=\"completed\"}",
        "conflux_http_requests_total",
        "conflux_http_request_duration_seconds_bucket",
        "conflux_http_circuit_breaker_state{host=\"127.0.0.1:1\"} 2",
    ] {
        assert!(text.contains(family), "/metrics lacks {family}:\n{text}");
    }

    let (status, body) = server.get("/no/such/route").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &serde_json::json!("not_found"))
    );
    server.stop();
}

#[tokio::test]
async fn serve_uses_postgres_and_redis_and_is_unready_without_postgres() {
    let db = TestDatabase::create().await;
    let prefix = unique_prefix();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(
        &[
            ("DATABASE_URL", db.url.clone()),
            ("REDIS_URL", redis_url()),
            ("CONFLUX_REDIS_PREFIX", prefix.clone()),
        ],
        dir.path(),
    );
    assert!(
        !dir.path().join("conflux-data").exists(),
        "no embedded store when DATABASE_URL is set"
    );
    let (status, body) = server.get("/ready").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mode"], "postgres+redis");

    // Postgres goes away (the database is dropped under the server's feet).
    let name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    db.drop_database().await;
    let (status, body) = server.get("/ready").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    assert!(
        body["error"]["details"]["store"]
            .as_str()
            .is_some_and(|s| s != "ok"),
        "{body}"
    );
    assert!(!name.is_empty());
    server.stop();
    delete_redis_prefix(&prefix).await;
}

#[tokio::test]
async fn serve_refuses_to_start_on_an_unreachable_database_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/postgres")
        .env_remove("REDIS_URL")
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("DATABASE_URL") && stderr.contains("cannot connect to Postgres"),
        "{stderr}"
    );
}

#[test]
fn dump_config_redacts_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(["serve", "--dump-config"])
        .env("DATABASE_URL", "postgres://u:hunter2@db/conflux")
        .output()
        .expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(!text.contains("hunter2"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["database_url"], "postgres://u:***@db/conflux");
    assert_eq!(v["addr"], "127.0.0.1:8080");
}
