//! Capacity under load, checked from the event log: agents working concurrently never
//! hold more leases than their capacity — 3 agents on 45 tasks (every mode, in `fleet`)
//! and 10 agents of capacity 5 on 1,000 tasks dispatched at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{TestServer, PATIENCE};

/// Every agent of `agents` polls (`max=10`) and completes each lease after `delay`,
/// concurrently, until `total` tasks were completed between them.
pub async fn work_concurrently(s: &TestServer, agents: &[String], total: usize, delay: Duration) {
    let done = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for agent in agents {
        let agent = agent.clone();
        let base = s.base.clone();
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            let http = crate::auth::client();
            let started = Instant::now();
            while done.load(Ordering::SeqCst) < total {
                assert!(started.elapsed() < PATIENCE, "the work never finished");
                let url = format!("{base}/api/v1/agents/{agent}/poll?max=10&wait_ms=200");
                let body: Value = http
                    .post(url)
                    .send()
                    .await
                    .expect("poll")
                    .json()
                    .await
                    .expect("json");
                let leases: Vec<String> = body["tasks"]
                    .as_array()
                    .map(|t| {
                        t.iter()
                            .filter_map(|l| l["lease_id"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                let completions = leases.into_iter().map(|lease| {
                    let http = http.clone();
                    let url = format!("{base}/api/v1/tasks/{lease}/complete");
                    async move {
                        tokio::time::sleep(delay).await;
                        let status = http
                            .post(url)
                            .json(&json!({"output": {}}))
                            .send()
                            .await
                            .expect("complete")
                            .status();
                        assert_eq!(status.as_u16(), 200);
                    }
                });
                let n = futures::future::join_all(completions).await.len();
                done.fetch_add(n, Ordering::SeqCst);
            }
        }));
    }
    for worker in workers {
        worker.await.expect("a worker");
    }
}

/// The most leases each agent held at once, from `events` (of any executions): a lease
/// is held from its `TaskStarted` to its attempt's `TaskCompleted`, in log order.
pub fn most_held(mut events: Vec<Value>) -> HashMap<String, i64> {
    events.sort_by_key(|e| e["position"].as_u64());
    let attempt = |e: &Value| {
        (
            e["stream_id"].as_str().unwrap_or_default().to_owned(),
            e["data"]["task_id"].as_str().unwrap_or_default().to_owned(),
            e["data"]["attempt"].as_u64().unwrap_or(0),
        )
    };
    let mut holder: HashMap<(String, String, u64), String> = HashMap::new();
    let mut held: HashMap<String, i64> = HashMap::new();
    let mut most: HashMap<String, i64> = HashMap::new();
    for e in &events {
        match e["type"].as_str() {
            Some("TaskStarted") => {
                let Some(agent) = e["data"]["agent_id"].as_str() else {
                    continue;
                };
                let n = held.entry(agent.to_owned()).or_default();
                *n += 1;
                let top = most.entry(agent.to_owned()).or_default();
                *top = (*top).max(*n);
                holder.insert(attempt(e), agent.to_owned());
            }
            Some("TaskCompleted") | Some("TaskFailed") => {
                if let Some(agent) = holder.remove(&attempt(e)) {
                    *held.entry(agent).or_default() -= 1;
                }
            }
            _ => {}
        }
    }
    most
}

/// 1,000 executions of one agent task each, all dispatched at once, worked by 10
/// agents of capacity 5: the log shows no agent ever held more than 5, and all complete.
pub async fn a_thousand_concurrent_tasks_never_exceed_capacity(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "thousand", "tasks": [
            {"id": "job", "kind": "agent", "agent_role": "bulk"}]}))
        .await;
    let mut executions = Vec::new();
    for _ in 0..20 {
        let batch = (0..50).map(|_| s.execute(&workflow, json!({})));
        executions.extend(futures::future::join_all(batch).await);
    }
    let mut agents = Vec::new();
    for i in 0..10 {
        let (status, body) = s
            .post(
                "/api/v1/agents",
                json!({"name": format!("bulk-{i}"), "roles": ["bulk"], "capacity": 5}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        agents.push(body["agent_id"].as_str().expect("id").to_owned());
    }
    work_concurrently(s, &agents, executions.len(), Duration::from_millis(2)).await;
    let mut events = Vec::new();
    for execution in &executions {
        let body = s.wait_terminal(execution).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        events.extend(s.events(execution).await.0);
    }
    let most = most_held(events);
    assert_eq!(most.len(), 10, "every agent worked: {most:?}");
    assert!(
        most.values().all(|m| *m <= 5),
        "capacity exceeded: {most:?}"
    );
    eprintln!("1,000 tasks over 10 agents of capacity 5: most held at once {most:?}");
}
