//! Tasks' `pre` and `post` hooks end to end: a hook service in the test annotates,
//! vetoes or fails; annotations land on the task's body (by phase) and in the log as
//! `TaskAnnotated`; a veto fails the attempt for good (a dead letter), before an agent
//! ever sees the task (`pre`) or instead of the agent's success (`post`); a hook that
//! answers 500 fails the attempt, which is retried; hooks that cannot be called are
//! refused at create.

use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::agent::TestAgent;
use crate::harness::TestServer;

/// A hook service: `/annotate/<tag>` answers annotations, `/veto` vetoes, `/down`
/// answers 500; every call's body is kept.
struct Hooks {
    base: String,
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    stop: CancellationToken,
}

type Calls = Arc<Mutex<Vec<(String, Value)>>>;

async fn answer(
    State(calls): State<Calls>,
    Path(what): Path<String>,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    calls
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push((what.clone(), body.clone()));
    match what.as_str() {
        "veto" => (
            StatusCode::OK,
            Json(json!({"veto": true, "reason": "over the limit"})),
        ),
        "down" => (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))),
        tag => (
            StatusCode::OK,
            Json(json!({"annotations": {"tag": tag, "seen": body["phase"]}})),
        ),
    }
}

impl Hooks {
    async fn start() -> Hooks {
        let calls: Calls = Arc::default();
        let app = Router::new()
            .route("/{what}", post(answer))
            .with_state(calls.clone());
        let (base, stop) = crate::harness::serve_local(app).await;
        Hooks { base, calls, stop }
    }

    fn url(&self, what: &str) -> String {
        format!("{}/{what}", self.base)
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for Hooks {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

pub async fn hooks_annotate_veto_and_fail_attempts(s: &TestServer) {
    let hooks = Hooks::start().await;
    let agent = TestAgent::register(&s.base, &["hooked"]).await;
    // check (noop): annotated before and after; pay (agent): annotated before, vetoed
    // after the agent's success.
    let execution = s
        .run(
            json!({"name": "hooked", "tasks": [
                {"id": "check", "kind": "noop", "input": {"amount": "${input.amount}"},
                 "hooks": {"pre": {"url": hooks.url("a1")}, "post": {"url": hooks.url("a2"), "timeout_seconds": 5}}},
                {"id": "pay", "kind": "agent", "agent_role": "hooked", "depends_on": ["check"],
                 "hooks": {"pre": {"url": hooks.url("a3")}, "post": {"url": hooks.url("veto")}}}
            ]}),
            json!({"amount": 120}),
        )
        .await;
    let lease = agent.next_lease().await;
    assert_eq!(lease.task_id, "pay");
    let (status, body) = agent.complete(&lease, json!({"paid": true})).await;
    assert_eq!(status, 200, "{body}");
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body}");
    let check = &body["tasks"]["check"];
    assert_eq!(check["status"], "completed");
    assert_eq!(
        check["annotations"],
        json!({"pre": {"tag": "a1", "seen": "pre"}, "post": {"tag": "a2", "seen": "post"}})
    );
    let pay = &body["tasks"]["pay"];
    assert_eq!(pay["status"], "failed");
    assert_eq!(pay["error"], "vetoed by its post hook: over the limit");
    assert_eq!(
        pay["annotations"],
        json!({"pre": {"tag": "a3", "seen": "pre"}})
    );
    assert_eq!(pay["attempts"], 1, "a veto is not retried");
    assert_eq!(body["dead_letter"]["task_id"], "pay");

    // What each hook was sent: the attempt, its input before, its output after.
    let calls = hooks.calls();
    let tags: Vec<&str> = calls.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, ["a1", "a2", "a3", "veto"]);
    assert_eq!(calls[0].1["phase"], "pre");
    assert_eq!(calls[0].1["task_id"], "check");
    assert_eq!(calls[0].1["attempt"], 1);
    assert_eq!(calls[0].1["execution_id"], execution.as_str());
    assert_eq!(calls[0].1["input"], json!({"amount": 120}));
    assert_eq!(calls[1].1["output"], json!({"amount": 120}));
    assert_eq!(calls[3].1["output"], json!({"paid": true}));

    let log = s.events(&execution).await;
    assert_eq!(log.count("TaskAnnotated", Some("check")), 2);
    assert_eq!(log.count("TaskAnnotated", Some("pay")), 1);
    assert_eq!(
        log.count("TaskCompleted", Some("pay")),
        0,
        "the veto replaced it"
    );
}

pub async fn a_pre_veto_keeps_the_task_from_agents_and_a_failing_hook_is_retried(s: &TestServer) {
    let hooks = Hooks::start().await;
    let agent = TestAgent::register(&s.base, &["guarded"]).await;
    let vetoed = s
        .run(
            json!({"name": "guarded", "tasks": [
                {"id": "ship", "kind": "agent", "agent_role": "guarded",
                 "hooks": {"pre": {"url": hooks.url("veto")}}}
            ]}),
            json!({}),
        )
        .await;
    let body = s.wait_terminal(&vetoed).await;
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(
        body["tasks"]["ship"]["error"],
        "vetoed by its pre hook: over the limit"
    );
    assert!(agent.poll(1).await.is_empty(), "the agent never saw it");

    let down = s
        .run(
            json!({"name": "hook-down", "tasks": [
                {"id": "step", "kind": "noop",
                 "retry": {"max_attempts": 2, "initial_interval_ms": 10},
                 "hooks": {"pre": {"url": hooks.url("down")}}}
            ]}),
            json!({}),
        )
        .await;
    let body = s.wait_terminal(&down).await;
    assert_eq!(body["status"], "failed", "{body}");
    assert_eq!(body["tasks"]["step"]["attempts"], 2, "retried");
    assert_eq!(
        body["tasks"]["step"]["error"],
        "its pre hook failed: it answered 500"
    );

    // Hooks that cannot be called are refused at create, and nothing is created.
    for (hooks_field, kind, why) in [
        (json!({"pre": {"url": "ftp://x"}}), "noop", "hooks.pre.url"),
        (
            json!({"post": {"url": "https://x", "timeout_seconds": 31}}),
            "noop",
            "timeout_seconds",
        ),
        (json!({}), "noop", "a `pre` or a `post`"),
    ] {
        let (status, body) = s
            .post(
                "/api/v1/workflows",
                json!({"name": "bad-hooks", "tasks": [{"id": "t", "kind": kind, "hooks": hooks_field}]}),
            )
            .await;
        assert_eq!(status, 422, "{body}");
        assert!(body.to_string().contains(why), "{why}: {body}");
    }
    let (status, body) = s
        .post(
            "/api/v1/workflows",
            json!({"name": "bad-hooks", "tasks": [
                {"id": "s", "kind": "switch", "cases": [], "hooks": {"pre": {"url": "https://x"}}}]}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let (_, list) = s.get("/api/v1/workflows?name=bad-hooks").await;
    assert_eq!(list["items"], json!([]), "{list}");
}
