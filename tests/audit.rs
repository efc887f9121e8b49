//! Audit and replay end-to-end: the real `conflux` binary, in embedded mode and on
//! Postgres + Redis, with every scenario written once and run in both modes.

use std::time::{Duration, Instant};

#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use binary::{Mode, Served};
use serde_json::{json, Value};

/// A running `conflux serve` and the backends it owns.
struct Ctx {
    served: Served,
    base: String,
    http: reqwest::Client,
}

impl Ctx {
    /// Starts `conflux serve` on a random port in `mode` and waits until it listens.
    async fn start(mode: Mode) -> Ctx {
        let served = Served::start(mode).await;
        Ctx {
            base: served.bin.base.clone(),
            served,
            http: auth::client(),
        }
    }

    async fn cleanup(mut self) {
        self.served.bin.kill();
        self.served.release().await;
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {text}"));
        (status, body)
    }

    async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path).await;
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    /// Creates a chain of three noop tasks; returns the workflow id.
    async fn chain_workflow(&self) -> String {
        let def = json!({"name": "audit-chain", "tasks": [
            {"id": "a", "kind": "noop", "input": {"n": "${input.n}"}},
            {"id": "b", "kind": "noop", "depends_on": ["a"], "input": {"from_a": "${tasks.a.output.n}"}},
            {"id": "c", "kind": "noop", "depends_on": ["b"]}
        ]});
        let created: Value = self
            .http
            .post(format!("{}/api/v1/workflows", self.base))
            .json(&def)
            .send()
            .await
            .expect("create")
            .json()
            .await
            .expect("json");
        created["workflow_id"]
            .as_str()
            .expect("workflow_id")
            .to_owned()
    }

    /// Starts an execution of `workflow` and waits for it to complete; returns its id.
    async fn run_to_completion(&self, workflow: &str) -> String {
        let started: Value = self
            .http
            .post(format!("{}/api/v1/workflows/{workflow}/execute", self.base))
            .json(&json!({"input": {"n": 7}}))
            .send()
            .await
            .expect("execute")
            .json()
            .await
            .expect("json");
        let id = started["execution_id"].as_str().expect("id").to_owned();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, e) = self.get(&format!("/api/v1/executions/{id}")).await;
            if e["status"] == "completed" {
                return id;
            }
            assert!(Instant::now() < deadline, "execution did not complete: {e}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The execution's whole log, through the JSON pages (`limit` per page).
    async fn all_events(&self, id: &str, limit: usize) -> Vec<Value> {
        let mut events = Vec::new();
        let mut after = 0;
        loop {
            let page = self
                .ok(&format!(
                    "/api/v1/executions/{id}/events?after_version={after}&limit={limit}"
                ))
                .await;
            events.extend(page["events"].as_array().expect("events").iter().cloned());
            match page["next_after_version"].as_u64() {
                Some(next) => after = next,
                None => return events,
            }
        }
    }

    /// Runs `conflux <args> --url <server>` with the token; returns exit code, stdout,
    /// stderr.
    async fn cli(&self, args: &[&str]) -> (i32, String, String) {
        run_cli(args, &self.base).await
    }
}

async fn run_cli(args: &[&str], url: &str) -> (i32, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_conflux"))
        .args(args)
        .args(["--url", url])
        .env_remove("CONFLUX_URL")
        .env("CONFLUX_TOKEN", auth::ADMIN_TOKEN)
        .output()
        .await
        .expect("run conflux");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn count_type(events: &[Value], ty: &str) -> usize {
    events.iter().filter(|e| e["type"] == ty).count()
}

/// Runs every scenario once per mode: a fresh server (and database) each time.
macro_rules! mode_tests {
    ($($name:ident => $scenario:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test]
            async fn $name() {
                let ctx = super::Ctx::start(super::Mode::Embedded).await;
                super::$scenario(&ctx).await;
                ctx.cleanup().await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let ctx = super::Ctx::start(super::Mode::Postgres).await;
                super::$scenario(&ctx).await;
                ctx.cleanup().await;
            })*
        }
    };
}

mode_tests! {
    replay_is_the_fold_of_the_log_at_every_version => replay_at_every_version,
    verify_reports_the_head_of_an_intact_chain_and_catches_tampering => verify_chain,
    ndjson_streams_exactly_the_log => ndjson_is_the_whole_log,
    workflow_events_merge_every_stream_in_position_order => workflow_events_in_order,
    bad_parameters_are_400_and_unknown_ids_404 => bad_params_and_unknown_ids,
    cli_prints_events_replay_and_verify => cli_commands,
    a_log_longer_than_a_page_is_served_whole => long_log,
}

async fn replay_at_every_version(ctx: &Ctx) {
    let wf = ctx.chain_workflow().await;
    let id = ctx.run_to_completion(&wf).await;
    let events = ctx.all_events(&id, 1000).await;
    let last = events.len();
    assert!(
        last >= 7,
        "a 3-task chain has at least 7 events: {events:?}"
    );
    for n in 1..=last {
        let body = ctx
            .ok(&format!("/api/v1/executions/{id}/replay?to_version={n}"))
            .await;
        assert_eq!(body["to_version"], n);
        let state = &body["state"];
        assert_eq!(state["version"], n);
        let completed = state["tasks"]
            .as_object()
            .expect("tasks")
            .values()
            .filter(|t| t["status"] == "completed")
            .count();
        assert_eq!(
            completed,
            count_type(&events[..n], "TaskCompleted"),
            "at version {n}: {state}"
        );
        let done = count_type(&events[..n], "ExecutionCompleted") == 1;
        assert_eq!(state["status"] == "completed", done, "at version {n}");
    }
    let full = ctx.ok(&format!("/api/v1/executions/{id}/replay")).await;
    assert_eq!(full["to_version"], last);
    let mut current = ctx.ok(&format!("/api/v1/executions/{id}")).await;
    let mut replayed = full["state"].clone();
    for field in ["position", "version"] {
        current.as_object_mut().expect("object").remove(field);
        replayed.as_object_mut().expect("object").remove(field);
    }
    assert_eq!(replayed, current);
}

async fn verify_chain(ctx: &Ctx) {
    let wf = ctx.chain_workflow().await;
    let id = ctx.run_to_completion(&wf).await;
    let events = ctx.all_events(&id, 1000).await;
    let body = ctx.ok(&format!("/api/v1/executions/{id}/verify")).await;
    assert_eq!(body["valid"], true, "{body}");
    assert_eq!(body["events"], events.len());
    assert_eq!(body["head_hash"], events[events.len() - 1]["hash"]);

    let Some(db) = &ctx.served.db else { return };
    // Tamper with the first completed task's output directly in the database.
    let k = events
        .iter()
        .find(|e| e["type"] == "TaskCompleted")
        .and_then(|e| e["version"].as_u64())
        .expect("a TaskCompleted");
    let pool = db.pool().await;
    let updated = sqlx::query(
        "UPDATE events SET data = jsonb_set(data, '{output}', '\"x\"') \
         WHERE stream_id = $1 AND version = $2",
    )
    .bind(format!("execution-{id}"))
    .bind(i64::try_from(k).expect("version"))
    .execute(&pool)
    .await
    .expect("tamper");
    assert_eq!(updated.rows_affected(), 1);
    pool.close().await;
    let body = ctx.ok(&format!("/api/v1/executions/{id}/verify")).await;
    assert_eq!(body["valid"], false, "{body}");
    assert_eq!(body["first_bad_version"], k);
    assert_eq!(body["events"], events.len());
    let (code, stdout, _) = ctx.cli(&["verify", &id]).await;
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("INVALID") && stdout.contains(&k.to_string()),
        "{stdout}"
    );
}

async fn ndjson_is_the_whole_log(ctx: &Ctx) {
    let wf = ctx.chain_workflow().await;
    let id = ctx.run_to_completion(&wf).await;
    // Small pages exercise next_after_version; they must add up to the whole log.
    let paged = ctx.all_events(&id, 2).await;
    assert_eq!(paged, ctx.all_events(&id, 1000).await);
    let resp = ctx
        .http
        .get(format!(
            "{}/api/v1/executions/{id}/events?format=ndjson",
            ctx.base
        ))
        .send()
        .await
        .expect("ndjson");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().ok(),
        Some("application/x-ndjson")
    );
    let text = resp.text().await.expect("body");
    assert!(text.ends_with('\n'));
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON envelope"))
        .collect();
    assert_eq!(lines, paged);
}

async fn workflow_events_in_order(ctx: &Ctx) {
    let wf = ctx.chain_workflow().await;
    let first = ctx.run_to_completion(&wf).await;
    let second = ctx.run_to_completion(&wf).await;
    let body = ctx.ok(&format!("/api/v1/workflows/{wf}/events")).await;
    let events = body["events"].as_array().expect("events").clone();
    assert_eq!(body["next_after_position"], Value::Null);
    assert_eq!(events[0]["type"], "WorkflowCreated");
    assert_eq!(events[0]["stream_id"], format!("workflow-{wf}"));
    let positions: Vec<u64> = events
        .iter()
        .filter_map(|e| e["position"].as_u64())
        .collect();
    assert_eq!(positions.len(), events.len());
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{positions:?}");
    for id in [&first, &second] {
        let own = ctx.all_events(id, 1000).await;
        let stream = format!("execution-{id}");
        let merged: Vec<&Value> = events.iter().filter(|e| e["stream_id"] == stream).collect();
        assert_eq!(merged, own.iter().collect::<Vec<_>>());
    }
    // Paging by position gives the same sequence.
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = ctx
            .ok(&format!(
                "/api/v1/workflows/{wf}/events?after_position={after}&limit=3"
            ))
            .await;
        paged.extend(page["events"].as_array().expect("events").iter().cloned());
        match page["next_after_position"].as_u64() {
            Some(next) => after = next,
            None => break,
        }
    }
    assert_eq!(paged, events);
}

async fn bad_params_and_unknown_ids(ctx: &Ctx) {
    let wf = ctx.chain_workflow().await;
    let id = ctx.run_to_completion(&wf).await;
    let last = ctx.all_events(&id, 1000).await.len();
    for path in [
        format!("/api/v1/executions/{id}/replay?to_version=0"),
        format!("/api/v1/executions/{id}/replay?to_version={}", last + 1),
        format!("/api/v1/executions/{id}/replay?to_version=abc"),
        format!("/api/v1/executions/{id}/events?limit=0"),
        format!("/api/v1/executions/{id}/events?limit=10001"),
        format!("/api/v1/executions/{id}/events?after_version=-1"),
        format!("/api/v1/executions/{id}/events?format=xml"),
        format!("/api/v1/workflows/{wf}/events?limit=0"),
        format!("/api/v1/workflows/{wf}/events?after_position=x"),
    ] {
        let (status, body) = ctx.get(&path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{path}: {body}");
    }
    let (_, body) = ctx
        .get(&format!("/api/v1/executions/{id}/replay?to_version=0"))
        .await;
    assert_eq!(body["error"]["details"]["last_version"], last);

    let unknown = "0190a3e0-0000-7000-8000-000000000000";
    for path in [
        format!("/api/v1/executions/{unknown}/replay"),
        format!("/api/v1/executions/{unknown}/verify"),
        format!("/api/v1/executions/{unknown}/events"),
        format!("/api/v1/executions/{unknown}/events?after_version=5"),
        format!("/api/v1/executions/{unknown}/events?format=ndjson"),
        format!("/api/v1/workflows/{unknown}/events"),
        "/api/v1/executions/not-a-uuid/verify".to_owned(),
        format!("/api/v1/executions/{wf}/replay"),
    ] {
        let (status, body) = ctx.get(&path).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{path}: {body}");
    }
}

async fn cli_commands(ctx: &Ctx) {
    let wf = ctx.chain_workflow().await;
    let id = ctx.run_to_completion(&wf).await;
    let events = ctx.all_events(&id, 1000).await;

    let (code, table, err) = ctx.cli(&["events", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("ExecutionStarted") && table.contains("ExecutionCompleted"));
    assert_eq!(
        table.lines().count(),
        events.len() + 1,
        "a header and a row each"
    );

    let (code, raw, err) = ctx.cli(&["events", &id, "--ndjson"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines, events);

    let (code, array, err) = ctx.cli(&["events", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        serde_json::from_str::<Value>(&array).expect("json array"),
        json!(events)
    );

    let (code, summary, err) = ctx.cli(&["replay", &id, "--to-version", "1"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        summary.contains("running") && summary.contains("pending"),
        "{summary}"
    );
    let (code, summary, err) = ctx.cli(&["replay", &id]).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        summary.contains("completed") && summary.contains("attempts 1"),
        "{summary}"
    );
    let (code, replayed, err) = ctx.cli(&["replay", &id, "--json"]).await;
    assert_eq!(code, 0, "{err}");
    let replayed: Value = serde_json::from_str(&replayed).expect("json");
    assert_eq!(replayed["to_version"], events.len());

    let (code, verdict, err) = ctx.cli(&["verify", &id]).await;
    assert_eq!(code, 0, "{err}");
    let head = events[events.len() - 1]["hash"].as_str().expect("hash");
    assert!(
        verdict.contains("valid") && verdict.contains(head),
        "{verdict}"
    );

    let unknown = "0190a3e0-0000-7000-8000-000000000000";
    let (code, _, err) = ctx.cli(&["verify", unknown]).await;
    assert_eq!(code, 2);
    assert!(err.contains("not_found"), "{err}");
    let (code, _, err) = ctx.cli(&["replay", &id, "--to-version", "0"]).await;
    assert_eq!(code, 2);
    assert!(err.contains("invalid_request"), "{err}");
}

/// 300 parallel noop tasks: over 1200 events, more than one store page (1000).
async fn long_log(ctx: &Ctx) {
    let tasks: Vec<Value> = (0..300)
        .map(|i| json!({"id": format!("t{i}"), "kind": "noop"}))
        .collect();
    let created: Value = ctx
        .http
        .post(format!("{}/api/v1/workflows", ctx.base))
        .json(&json!({"name": "audit-wide", "tasks": tasks}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let wf = created["workflow_id"].as_str().expect("workflow_id");
    let id = ctx.run_to_completion(wf).await;
    let events = ctx.all_events(&id, 1000).await;
    assert!(events.len() > 1200, "{}", events.len());
    let versions: Vec<u64> = events
        .iter()
        .filter_map(|e| e["version"].as_u64())
        .collect();
    assert_eq!(versions, (1..=events.len() as u64).collect::<Vec<_>>());
    let (code, raw, err) = ctx.cli(&["events", &id, "--ndjson"]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<Value> = raw
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines, events);
    let full = ctx.ok(&format!("/api/v1/executions/{id}/replay")).await;
    assert_eq!(full["state"]["status"], "completed");
    assert_eq!(full["to_version"], events.len());
    let verdict = ctx.ok(&format!("/api/v1/executions/{id}/verify")).await;
    assert_eq!(verdict["events"], events.len());
    let merged = ctx
        .ok(&format!("/api/v1/workflows/{wf}/events?limit=10000"))
        .await;
    assert_eq!(
        merged["events"].as_array().map(Vec::len),
        Some(events.len() + 1)
    );
}

#[tokio::test]
async fn cli_says_which_server_it_could_not_reach() {
    let unknown = "0190a3e0-0000-7000-8000-000000000000";
    for cmd in ["verify", "replay", "events"] {
        let (code, _, err) = run_cli(&[cmd, unknown], "http://127.0.0.1:1").await;
        assert_eq!(code, 2, "{cmd}: {err}");
        assert!(
            err.contains("http://127.0.0.1:1") && err.contains("conflux serve"),
            "{cmd}: {err}"
        );
    }
}
