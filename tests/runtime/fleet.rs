//! The agent fleet end to end: agents listed with their liveness (from polls and
//! heartbeats) and filtered by role and status; a drained agent takes nothing new but
//! reports what it holds; a deregistered agent's work moves to another agent and its
//! lease is stale; liveness goes `online` → `stale` → `offline` on a server with short
//! thresholds.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::TestAgent;
use crate::harness::{TestServer, PATIENCE};

fn code(answer: &(u16, Value)) -> (u16, &str) {
    (answer.0, answer.1["error"]["code"].as_str().unwrap_or(""))
}

/// Registers an agent named `name` with these roles and capabilities.
async fn register(s: &TestServer, name: &str, roles: &[&str], capabilities: &[&str]) -> String {
    register_holding(s, name, roles, capabilities, 4).await
}

/// [`register`] with this capacity.
async fn register_holding(
    s: &TestServer,
    name: &str,
    roles: &[&str],
    capabilities: &[&str],
    capacity: u32,
) -> String {
    let (status, body) = s
        .post(
            "/api/v1/agents",
            json!({"name": name, "roles": roles, "capabilities": capabilities,
                   "capacity": capacity, "cost": 0.25}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    body["agent_id"].as_str().expect("an id").to_owned()
}

fn ids(list: &Value) -> Vec<&str> {
    list["agents"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x["agent_id"].as_str()).collect())
        .unwrap_or_default()
}

/// Two agents: the one that polled is `online`, the one never heard from `offline`
/// until its heartbeat; filters by role and status; its body has what it registered.
pub async fn the_fleet_is_listed_with_liveness(s: &TestServer) {
    let gpu = register(s, "gpu-box", &["render"], &["gpu", "python"]).await;
    let cpu = register(s, "cpu-box", &["report"], &[]).await;
    let (status, body) = s
        .post(
            &format!("/api/v1/agents/{gpu}/poll?max=1&wait_ms=0"),
            json!({}),
        )
        .await;
    assert_eq!((status, &body["tasks"]), (200, &json!([])), "{body}");

    let (status, all) = s.get("/api/v1/agents").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(
        ids(&all),
        [gpu.as_str(), cpu.as_str()],
        "oldest first: {all:#}"
    );
    let (_, online) = s.get("/api/v1/agents?status=online").await;
    assert_eq!(ids(&online), [gpu.as_str()], "{online:#}");
    let (_, offline) = s.get("/api/v1/agents?status=offline").await;
    assert_eq!(ids(&offline), [cpu.as_str()], "{offline:#}");
    let (_, reporters) = s.get("/api/v1/agents?role=report").await;
    assert_eq!(ids(&reporters), [cpu.as_str()], "{reporters:#}");

    let (status, body) = s.get(&format!("/api/v1/agents/{gpu}")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "gpu-box");
    assert_eq!(body["roles"], json!(["render"]));
    assert_eq!(body["capabilities"], json!(["gpu", "python"]));
    assert_eq!(body["capacity"], 4);
    assert_eq!(body["cost"], 0.25);
    assert_eq!(
        (&body["leases_held"], &body["completed"], &body["failed"]),
        (&json!(0), &json!(0), &json!(0))
    );
    assert_eq!(
        (&body["success_rate"], &body["p50_duration_ms"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(
        (&body["state"], &body["status"]),
        (&json!("active"), &json!("online"))
    );
    assert!(
        body["last_seen_at"].is_string() && body["registered_at"].is_string(),
        "{body}"
    );
    let (_, body) = s.get(&format!("/api/v1/agents/{cpu}")).await;
    assert_eq!(
        (&body["status"], &body["last_seen_at"]),
        (&json!("offline"), &Value::Null)
    );

    let (status, body) = s
        .post(&format!("/api/v1/agents/{cpu}/heartbeat"), json!({}))
        .await;
    assert_eq!((status, &body["state"]), (200, &json!("active")), "{body}");
    let (_, body) = s.get(&format!("/api/v1/agents/{cpu}")).await;
    assert_eq!(body["status"], "online", "{body}");

    let unknown = uuid::Uuid::now_v7();
    assert_eq!(
        code(&s.get(&format!("/api/v1/agents/{unknown}")).await),
        (404, "not_found")
    );
    let answer = s
        .post(&format!("/api/v1/agents/{unknown}/heartbeat"), json!({}))
        .await;
    assert_eq!(code(&answer), (404, "not_found"));
    assert_eq!(
        code(&s.get("/api/v1/agents?status=asleep").await),
        (400, "invalid_request")
    );
    for cost in [json!(-1), json!("cheap")] {
        let answer = s
            .post(
                "/api/v1/agents",
                json!({"name": "n", "roles": ["r"], "cost": cost}),
            )
            .await;
        assert_eq!(
            code(&answer),
            (400, "invalid_request"),
            "{cost}: {}",
            answer.1
        );
    }
}

/// A drained agent keeps reporting what it holds but leases nothing new: its polls
/// answer at once with no task, and another agent takes the work.
pub async fn a_drained_agent_takes_nothing_new(s: &TestServer) {
    let first = TestAgent::register(&s.base, &["drainable"]).await;
    let workflow = s
        .create_workflow(json!({"name": "two-steps", "tasks": [
            {"id": "a", "kind": "agent", "agent_role": "drainable"},
            {"id": "b", "kind": "agent", "agent_role": "drainable", "depends_on": ["a"]}
        ]}))
        .await;
    let execution = s.execute(&workflow, json!({})).await;
    let held = first.next_lease().await;
    let path = format!("/api/v1/agents/{}/drain", first.agent_id);
    for _ in 0..2 {
        let (status, body) = s.post(&path, json!({})).await;
        assert_eq!(
            (status, &body["state"]),
            (200, &json!("draining")),
            "{body}"
        );
    }
    let (status, body) = first.complete(&held, json!({"a": 1})).await;
    assert_eq!(status, 200, "what it holds it still reports: {body}");
    let started = Instant::now();
    let (status, body) = s
        .post(
            &format!("/api/v1/agents/{}/poll?wait_ms=5000", first.agent_id),
            json!({}),
        )
        .await;
    assert_eq!((status, &body["tasks"]), (200, &json!([])), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "a drained agent's poll waits for nothing"
    );
    let second = TestAgent::register(&s.base, &["drainable"]).await;
    let lease = second.next_lease().await;
    assert_eq!(lease.task_id, "b");
    second.complete(&lease, json!({})).await;
    assert_eq!(s.wait_terminal(&execution).await["status"], "completed");
    let (_, body) = s.get(&format!("/api/v1/agents/{}", first.agent_id)).await;
    assert_eq!(body["state"], "draining", "{body}");
    let log = s.events(&execution).await;
    let by: Vec<&Value> = log
        .0
        .iter()
        .filter(|e| e["type"] == "TaskStarted")
        .map(|e| &e["data"]["agent_id"])
        .collect();
    assert_eq!(by, [&json!(first.agent_id), &json!(second.agent_id)]);
}

/// Deregistering an agent fails (retryable) the attempt it holds, so the retry runs on
/// another agent; its lease is stale, its polls and its body are 404, and the list
/// leaves it out.
pub async fn a_deregistered_agent_s_work_moves_on(s: &TestServer) {
    let leaving = TestAgent::register(&s.base, &["movable"]).await;
    let execution = s
        .run(
            json!({"name": "moves-on", "tasks": [
                {"id": "job", "kind": "agent", "agent_role": "movable",
                 "retry": {"max_attempts": 2, "initial_interval_ms": 10}}]}),
            json!({}),
        )
        .await;
    let held = leaving.next_lease().await;
    let (status, body) = s
        .delete(&format!("/api/v1/agents/{}", leaving.agent_id))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (&body["state"], &body["released"]),
        (&json!("deregistered"), &json!(1))
    );
    let (status, body) = leaving.complete(&held, json!({})).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("stale_attempt")),
        "{body}"
    );
    let poll = s
        .post(
            &format!("/api/v1/agents/{}/poll?wait_ms=0", leaving.agent_id),
            json!({}),
        )
        .await;
    assert_eq!(code(&poll), (404, "not_found"));
    assert_eq!(
        code(&s.get(&format!("/api/v1/agents/{}", leaving.agent_id)).await),
        (404, "not_found")
    );
    let again = s
        .delete(&format!("/api/v1/agents/{}", leaving.agent_id))
        .await;
    assert_eq!(code(&again), (404, "not_found"));

    let staying = TestAgent::register(&s.base, &["movable"]).await;
    let lease = staying.next_lease().await;
    assert_eq!((lease.task_id.as_str(), lease.attempt), ("job", 2));
    staying.complete(&lease, json!({"done": true})).await;
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    let (_, all) = s.get("/api/v1/agents").await;
    assert_eq!(ids(&all), [staying.agent_id.as_str()], "{all:#}");
    let log = s.events(&execution).await;
    let failed = log.only("TaskFailed", "job");
    let error = log.at(failed)["data"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains(&leaving.agent_id) && error.contains("deregistered"),
        "{error}"
    );
}

/// On a server where agents go stale after 1 s and offline after 2 s: a heartbeat makes
/// an agent `online`, then silence `stale`, then `offline`.
pub async fn liveness_goes_stale_then_offline(s: &TestServer) {
    let agent = register(s, "quiet", &["q"], &[]).await;
    let (status, _) = s
        .post(&format!("/api/v1/agents/{agent}/heartbeat"), json!({}))
        .await;
    assert_eq!(status, 200);
    let status_now = || async {
        let (_, body) = s.get(&format!("/api/v1/agents/{agent}")).await;
        body["status"].as_str().unwrap_or_default().to_owned()
    };
    assert_eq!(status_now().await, "online");
    for expected in ["stale", "offline"] {
        let started = Instant::now();
        while status_now().await != expected {
            assert!(started.elapsed() < PATIENCE, "never {expected}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Polls agent `agent` once (`max` leases, waiting `wait_ms`) and returns the leases'
/// `(lease_id, execution_id)`.
async fn poll_raw(s: &TestServer, agent: &str, max: u32, wait_ms: u64) -> Vec<(String, String)> {
    let (status, body) = s
        .post(
            &format!("/api/v1/agents/{agent}/poll?max={max}&wait_ms={wait_ms}"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["tasks"]
        .as_array()
        .map(|tasks| {
            tasks
                .iter()
                .map(|t| {
                    let text = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
                    (text("lease_id"), text("execution_id"))
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn complete_raw(s: &TestServer, lease: &str) -> u16 {
    s.post(
        &format!("/api/v1/tasks/{lease}/complete"),
        json!({"output": {}}),
    )
    .await
    .0
}

/// An agent of capacity 3 with 10 tasks waiting gets 3, then nothing until it reports
/// one; three agents of capacity 3 working 45 tasks concurrently never hold more than 3
/// each, as the event log shows.
pub async fn an_agent_never_holds_more_than_its_capacity(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "one-job", "tasks": [
            {"id": "job", "kind": "agent", "agent_role": "capped"}]}))
        .await;
    let mut executions = Vec::new();
    for _ in 0..10 {
        executions.push(s.execute(&workflow, json!({})).await);
    }
    let agent = register_holding(s, "capped-1", &["capped"], &[], 3).await;
    let first = poll_raw(s, &agent, 10, 2000).await;
    assert_eq!(first.len(), 3, "{first:?}");
    let started = Instant::now();
    assert_eq!(poll_raw(s, &agent, 10, 300).await, [], "full");
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "a full agent's poll waits"
    );
    assert_eq!(complete_raw(s, &first[0].0).await, 200);
    let next = poll_raw(s, &agent, 10, 2000).await;
    assert_eq!(next.len(), 1, "one slot was freed: {next:?}");
    for (lease, _) in first[1..].iter().chain(&next) {
        assert_eq!(complete_raw(s, lease).await, 200);
    }

    // Three agents, 45 more tasks, every agent polling and completing concurrently.
    for _ in 0..45 {
        executions.push(s.execute(&workflow, json!({})).await);
    }
    let mut agents = vec![agent];
    agents.push(register_holding(s, "capped-2", &["capped"], &[], 3).await);
    agents.push(register_holding(s, "capped-3", &["capped"], &[], 3).await);
    let total = executions.len() - 4;
    crate::capacity::work_concurrently(s, &agents, total, Duration::from_millis(20)).await;
    // From the log: per agent, leases started minus leases ended, in position order.
    let mut events: Vec<Value> = Vec::new();
    for execution in &executions {
        let log = s
            .wait_events(execution, "the job completing", |l| {
                l.count("TaskCompleted", None) == 1
            })
            .await;
        events.extend(log.0);
    }
    let most = crate::capacity::most_held(events);
    assert_eq!(most.len(), 3, "every agent worked: {most:?}");
    assert!(
        most.values().all(|m| *m <= 3),
        "capacity exceeded: {most:?}"
    );
    // Each agent's body counts its results (a read model folded from the log: it
    // catches up within moments).
    let started = Instant::now();
    loop {
        let mut completed = 0;
        let mut bodies = Vec::new();
        for agent in &agents {
            let (_, body) = s.get(&format!("/api/v1/agents/{agent}")).await;
            assert_eq!(
                (&body["failed"], &body["leases_held"]),
                (&json!(0), &json!(0)),
                "{body}"
            );
            completed += body["completed"].as_u64().unwrap_or(0);
            bodies.push(body);
        }
        if completed == executions.len() as u64 {
            for body in &bodies {
                assert_eq!(body["success_rate"], 1.0, "{body}");
                assert!(body["p50_duration_ms"].is_u64(), "{body}");
            }
            break;
        }
        assert!(
            completed < executions.len() as u64,
            "a result counted twice: {bodies:?}"
        );
        assert!(
            started.elapsed() < PATIENCE,
            "results never counted: {bodies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A task that `requires` capabilities goes only to an agent of its role that has all
/// of them: a plain agent of the role never gets it (it gets the plain task), an agent
/// with every capability does; a task requiring what no agent has is counted as
/// unroutable in `/metrics` and waits until such an agent registers. Bad requirements
/// and capabilities are refused.
pub async fn tasks_requiring_capabilities_go_to_agents_that_have_them(s: &TestServer) {
    let execution = s
        .run(
            json!({"name": "needs-gpu", "tasks": [
                {"id": "render", "kind": "agent", "agent_role": "artist", "requires": ["gpu", "cuda"]},
                {"id": "sketch", "kind": "agent", "agent_role": "artist"}
            ]}),
            json!({}),
        )
        .await;
    let plain = register(s, "plain", &["artist"], &["cuda"]).await;
    let leases = poll_raw(s, &plain, 10, 2000).await;
    assert_eq!(leases.len(), 1, "{leases:?}");
    assert_eq!(leases[0].1, execution);
    assert_eq!(
        poll_raw(s, &plain, 10, 300).await,
        [],
        "render is not for it"
    );
    let able = register(s, "able", &["artist"], &["gpu", "cuda", "python"]).await;
    let leases_able = poll_raw(s, &able, 10, 2000).await;
    assert_eq!(leases_able.len(), 1, "{leases_able:?}");
    assert_eq!(complete_raw(s, &leases_able[0].0).await, 200);
    assert_eq!(complete_raw(s, &leases[0].0).await, 200);
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["tasks"]["render"]["agent_id"], json!(able), "{body:#}");
    assert_eq!(
        body["tasks"]["sketch"]["agent_id"],
        json!(plain),
        "{body:#}"
    );

    // Nobody has "quantum": counted, and still waiting.
    let waiting = s
        .run(
            json!({"name": "needs-quantum", "tasks": [
                {"id": "q", "kind": "agent", "agent_role": "artist", "requires": ["quantum"]}]}),
            json!({}),
        )
        .await;
    let started = Instant::now();
    loop {
        if s.metrics().await.contains("conflux_tasks_unroutable_total") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "never counted as unroutable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(poll_raw(s, &able, 10, 200).await, []);
    // The task says why it waits (`TaskUnroutable`), until it starts.
    let log = s
        .wait_events(&waiting, "TaskUnroutable", |l| {
            l.count("TaskUnroutable", Some("q")) == 1
        })
        .await;
    assert_eq!(log.count("TaskStarted", None), 0);
    let started = Instant::now();
    loop {
        let body = s.execution(&waiting).await;
        let reason = body["tasks"]["q"]["waiting_reason"]
            .as_str()
            .unwrap_or_default();
        if reason.contains("quantum") {
            break;
        }
        assert!(started.elapsed() < PATIENCE, "no waiting_reason: {body:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let quantum = register(s, "quantum", &["artist"], &["quantum"]).await;
    let got = poll_raw(s, &quantum, 10, 2000).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].1, waiting);
    let log = s
        .wait_events(&waiting, "the lease", |l| l.count("TaskStarted", None) == 1)
        .await;
    assert_eq!(log.count("TaskUnroutable", None), 1);

    // Bad requirements and capabilities.
    for requires in [json!(["a,b"]), json!([""]), json!(vec!["x"; 17])] {
        let answer = s
            .post(
                "/api/v1/workflows",
                json!({"name": "bad", "tasks": [
                {"id": "t", "kind": "agent", "agent_role": "r", "requires": requires}]}),
            )
            .await;
        assert_eq!(code(&answer), (422, "invalid_task"), "{}", answer.1);
    }
    let answer = s
        .post(
            "/api/v1/workflows",
            json!({"name": "bad", "tasks": [
            {"id": "t", "kind": "noop", "requires": ["gpu"]}]}),
        )
        .await;
    assert_eq!(code(&answer), (422, "invalid_task"), "{}", answer.1);
    let answer = s
        .post(
            "/api/v1/agents",
            json!({"name": "n", "roles": ["r"], "capabilities": ["a,b"]}),
        )
        .await;
    assert_eq!(code(&answer), (400, "invalid_request"), "{}", answer.1);
}
