//! Crash test: the real `conflux` binary on Postgres + Redis is SIGKILLed while an agent
//! holds about half of 100 leases (and right after it answered some of them, so the
//! engine is busy with those results), then restarted on the same database and Redis
//! prefix. Proves that nothing is lost and nothing is done twice across a crash: every
//! execution completes; a lease held across the crash still counts (200) unless its
//! attempt timed out meanwhile, and once the restarted engine recorded that timeout
//! (from the timers it rebuilt) the lease is refused as stale (409 `stale_attempt`)
//! while the retry does the work; no execution's log holds two `TaskCompleted` for one
//! task.

#[allow(dead_code)]
#[path = "support/agent.rs"]
mod agent;
#[allow(dead_code)]
#[path = "support/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "support/binary.rs"]
mod binary;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use agent::{Lease, TestAgent};
use binary::Binary as Server;
use conflux_engine::testing::{delete_redis_prefix, redis_url, unique_prefix, TestDatabase};
use serde_json::{json, Value};

const EXECUTIONS: usize = 100;
const HELD: usize = 50;
const PATIENCE: Duration = Duration::from_secs(60);

/// `conflux serve` as a child process.
struct Backing {
    db: Option<TestDatabase>,
    prefix: String,
}

impl Drop for Backing {
    fn drop(&mut self) {
        let (db, prefix) = (self.db.take(), self.prefix.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            if let Ok(rt) = rt {
                rt.block_on(async {
                    if let Some(db) = db {
                        db.drop_database().await;
                    }
                    delete_redis_prefix(&prefix).await;
                });
            }
        });
        let _ = cleanup.join();
    }
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

async fn get(base: &str, path: &str) -> Value {
    let resp = auth::client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status().as_u16(), 200, "GET {path}");
    resp.json().await.expect("json")
}

/// Completes `lease`; a lease whose attempt timed out meanwhile is refused as stale.
/// Returns whether it counted.
async fn complete(agent: &TestAgent, lease: &Lease) -> bool {
    let n = lease.input["n"].clone();
    let (status, body) = agent.complete(lease, json!({ "n": n })).await;
    match status {
        200 => true,
        409 => {
            assert_eq!(body["error"]["code"], "stale_attempt", "{body}");
            false
        }
        _ => panic!("complete {lease:?}: {status} {body}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_leases_out_loses_nothing_and_doubles_nothing() {
    let backing = Backing {
        db: Some(TestDatabase::create().await),
        prefix: unique_prefix(),
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [
        (
            "DATABASE_URL",
            backing
                .db
                .as_ref()
                .map(|db| db.url.clone())
                .unwrap_or_default(),
        ),
        ("REDIS_URL", redis_url()),
        ("CONFLUX_REDIS_PREFIX", backing.prefix.clone()),
    ];
    let mut server = Server::start(&env, dir.path());

    let definition = json!({"name": "crash", "tasks": [
        {"id": "work", "kind": "agent", "agent_role": "crash", "input": {"n": "${input.n}"},
         "timeout_seconds": 2, "retry": {"max_attempts": 3, "initial_interval_ms": 50}},
        {"id": "done", "kind": "noop", "depends_on": ["work"], "input": {"n": "${tasks.work.output.n}"}}
    ]});
    let (status, body) = post(&server.base, "/api/v1/workflows", definition).await;
    assert_eq!(status, 201, "{body}");
    let workflow = body["workflow_id"]
        .as_str()
        .expect("workflow_id")
        .to_owned();
    let mut executions = Vec::new();
    for n in 0..EXECUTIONS {
        let path = format!("/api/v1/workflows/{workflow}/execute");
        let (status, body) = post(&server.base, &path, json!({"input": {"n": n}})).await;
        assert_eq!(status, 202, "{body}");
        executions.push(body["execution_id"].as_str().expect("id").to_owned());
    }

    // The agent takes about half of the work, then the server dies under it.
    let mut agent = TestAgent::register(&server.base, &["crash"]).await;
    let mut held = Vec::new();
    let started = Instant::now();
    while held.len() < HELD {
        held.extend(agent.poll(HELD - held.len()).await);
        assert!(
            started.elapsed() < PATIENCE,
            "only {} leases came",
            held.len()
        );
    }
    // Some results land just before the crash, so the engine is busy with them (their
    // `done` tasks being dispatched and run) when it dies.
    let mut answering = tokio::task::JoinSet::new();
    for lease in held.split_off(HELD - HELD / 3) {
        let agent = agent.clone();
        answering.spawn(async move { complete(&agent, &lease).await });
    }
    while let Some(accepted) = answering.join_next().await {
        assert!(accepted.expect("join"), "a live lease was refused");
    }
    server.kill();
    let mut server = Server::start(&env, dir.path());
    agent.base = server.base.clone();
    // Half the leases held across the crash are answered at once: they count (200)
    // unless their attempt already timed out (409).
    let late = held.split_off(held.len() / 2);
    let mut counted = 0;
    for lease in &held {
        counted += usize::from(complete(&agent, lease).await);
    }
    // The other half waits until the restarted engine (from its recovered timers)
    // records the timeout: then the lease is stale, and its retry does the work.
    for lease in &late {
        let path = format!("/api/v1/executions/{}/events", lease.execution_id);
        let started = Instant::now();
        while !get(&server.base, &path).await["events"]
            .as_array()
            .is_some_and(|events| events.iter().any(|e| e["type"] == "TaskTimedOut"))
        {
            assert!(
                started.elapsed() < PATIENCE,
                "the timeout of {lease:?} was never recorded"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !complete(&agent, lease).await,
            "a timed-out lease still counted"
        );
    }

    // Keep working until every execution completed.
    let mut open: HashSet<String> = executions.iter().cloned().collect();
    let started = Instant::now();
    while !open.is_empty() {
        let leases = agent.poll(50).await;
        for lease in &leases {
            complete(&agent, lease).await;
        }
        if leases.is_empty() {
            for execution in open.clone() {
                let body = get(&server.base, &format!("/api/v1/executions/{execution}")).await;
                match body["status"].as_str() {
                    Some("completed") => {
                        open.remove(&execution);
                    }
                    Some("running") => {}
                    _ => panic!("execution {execution} ended badly: {body:#}"),
                }
            }
        }
        assert!(
            started.elapsed() < PATIENCE,
            "{} executions never completed",
            open.len()
        );
    }

    for (n, execution) in executions.iter().enumerate() {
        let body = get(&server.base, &format!("/api/v1/executions/{execution}")).await;
        assert_eq!(body["status"], "completed", "{body:#}");
        assert_eq!(body["output"], json!({"done": {"n": n}}), "{body:#}");
        let log = get(
            &server.base,
            &format!("/api/v1/executions/{execution}/events?limit=10000"),
        )
        .await;
        let mut completed: HashMap<String, usize> = HashMap::new();
        for e in log["events"].as_array().expect("events") {
            if e["type"] == "TaskCompleted" {
                let task = e["data"]["task_id"].as_str().unwrap_or("").to_owned();
                *completed.entry(task).or_default() += 1;
            }
        }
        let expected = HashMap::from([("work".to_owned(), 1), ("done".to_owned(), 1)]);
        assert_eq!(completed, expected, "execution {execution}: {log:#}");
    }
    eprintln!(
        "{counted} of {} leases answered at once after the restart counted",
        held.len()
    );

    server.stop();
    drop(backing);
}
