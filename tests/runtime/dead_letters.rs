//! Dead letters end to end: a task that runs out of retries fails its execution and is
//! listed in `GET /api/v1/dead-letters`; the execution's body names it; a redrive runs
//! the task again with fresh attempts and the execution to completion, recorded as
//! events with the caller as actor; an acknowledged dead letter is closed; what is not
//! an open dead letter is refused with a clear 4xx and changes nothing.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::agent::TestAgent;
use crate::harness::TestServer;
use crate::hook_receiver::{signature_is_valid, Receiver};

/// The events a webhook of the redrive scenario listens to.
const HOOKED: [&str; 4] = [
    "TaskDeadLettered",
    "ExecutionFailed",
    "ExecutionRedriven",
    "ExecutionCompleted",
];

/// Polls `path` until `done` holds for its 200 body.
async fn wait_get(s: &TestServer, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    let started = Instant::now();
    loop {
        let (status, body) = s.get(path).await;
        if status == 200 && done(&body) {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{path} never got there: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn ids(list: &Value) -> Vec<String> {
    list["dead_letters"]
        .as_array()
        .expect("dead_letters")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_owned())
        .collect()
}

/// `fetch` (agent) → `charge` (agent, 2 attempts) → `notify` (agent). The agent
/// completes `fetch` and fails `charge` twice: the execution fails, `charge` is dead.
async fn failed_by_charge(s: &TestServer, agent: &TestAgent, workflow: &str) -> (String, String) {
    let execution = s.execute(workflow, json!({"order": 7})).await;
    let lease = agent.next_lease().await;
    assert_eq!(lease.task_id, "fetch");
    assert_eq!(agent.complete(&lease, json!({"amount": 12})).await.0, 200);
    for attempt in 1..=2 {
        let lease = agent.next_lease().await;
        assert_eq!((lease.task_id.as_str(), lease.attempt), ("charge", attempt));
        let (status, body) = agent.fail(&lease, "card declined", true).await;
        assert_eq!(status, 200, "{body}");
    }
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "failed", "{body}");
    let id = format!("{execution}.2.charge");
    (execution, id)
}

pub async fn a_dead_letter_is_redriven_to_completion(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "billing", "tasks": [
            {"id": "fetch", "kind": "agent", "agent_role": "dl-billing"},
            {"id": "charge", "kind": "agent", "agent_role": "dl-billing", "depends_on": ["fetch"],
             "input": {"amount": "${tasks.fetch.output.amount}"},
             "retry": {"max_attempts": 2, "initial_interval_ms": 10}},
            {"id": "notify", "kind": "agent", "agent_role": "dl-billing", "depends_on": ["charge"]}
        ]}))
        .await;
    let agent = TestAgent::register(&s.base, &["dl-billing"]).await;
    // Operators hear of dead letters and redrives through a webhook.
    let receiver = Receiver::start(0, false).await;
    let secret = "dead-letter-hook-secret";
    let (status, hook) = s
        .post(
            "/api/v1/hooks",
            json!({"url": receiver.url, "events": HOOKED, "secret": secret}),
        )
        .await;
    assert_eq!(status, 201, "{hook}");
    let (execution, id) = failed_by_charge(s, &agent, &workflow).await;

    // Listed, with what an operator needs; the execution's body names it.
    let list = wait_get(s, "/api/v1/dead-letters", |b| ids(b).contains(&id)).await;
    let letter = &list["dead_letters"][0];
    assert_eq!(letter["execution_id"], execution.as_str());
    assert_eq!(letter["workflow_id"], workflow.as_str());
    assert_eq!(letter["task_id"], "charge");
    assert_eq!(letter["attempts"], 2);
    assert_eq!(letter["error"], "card declined");
    assert_eq!(letter["state"], "open");
    assert!(letter["dead_lettered_at"].is_string(), "{letter}");
    let (status, one) = s.get(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!((status, &one), (200, letter), "{one}");
    let body = wait_get(s, &format!("/api/v1/executions/{execution}"), |b| {
        !b["dead_letter"].is_null()
    })
    .await;
    assert_eq!(
        body["dead_letter"],
        json!({"id": id, "task_id": "charge", "state": "open"})
    );
    let log = s.events(&execution).await;
    let dead = log.only_of("TaskDeadLettered");
    let failed = log.only_of("ExecutionFailed");
    assert_eq!(dead + 1, failed, "dead-lettered just before the failure");
    assert_eq!(log.at(dead)["data"]["dead_letter_id"], id.as_str());

    // Redrive: the execution runs again, charge with fresh attempts (3 and 4).
    let (status, answer) = s
        .post(&format!("/api/v1/dead-letters/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "running");
    assert_eq!(answer["execution_id"], execution.as_str());
    assert_eq!(answer["task_id"], "charge");
    let lease = agent.next_lease().await;
    assert_eq!((lease.task_id.as_str(), lease.attempt), ("charge", 3));
    assert_eq!(lease.input, json!({"amount": 12}), "the same input again");
    assert_eq!(agent.fail(&lease, "flaky", true).await.0, 200);
    let lease = agent.next_lease().await;
    assert_eq!((lease.task_id.as_str(), lease.attempt), ("charge", 4));
    assert_eq!(
        agent.complete(&lease, json!({"charged": true})).await.0,
        200
    );
    let lease = agent.next_lease().await;
    assert_eq!(lease.task_id, "notify");
    assert_eq!(agent.complete(&lease, json!("sent")).await.0, 200);
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body}");
    assert_eq!(body["tasks"]["charge"]["attempts"], 4);

    // Recorded as events with the caller as actor; the dead letter is closed.
    let log = s.events(&execution).await;
    log.assert_well_formed();
    let redriven = log.only_of("ExecutionRedriven");
    assert_eq!(log.at(redriven)["data"]["dead_letter_id"], id.as_str());
    assert_eq!(log.at(redriven)["metadata"]["actor"], "admin");
    assert_eq!(log.count("TaskRedriven", Some("charge")), 1);
    assert_eq!(log.count("TaskRedriven", Some("notify")), 1);
    assert_eq!(log.last_type(), "ExecutionCompleted");
    let hooked: Vec<Value> = log
        .0
        .iter()
        .filter(|e| HOOKED.contains(&e["type"].as_str().unwrap_or_default()))
        .cloned()
        .collect();
    assert_eq!(
        hooked.len(),
        4,
        "dead-lettered, failed, redriven, completed"
    );
    for (got, expected) in receiver.wait_for(&hooked).await.iter().zip(&hooked) {
        assert_eq!(&got.body, expected, "the event as the log has it");
        assert!(signature_is_valid(secret, &got.signature, &got.raw));
    }
    let closed = wait_get(s, &format!("/api/v1/dead-letters/{id}"), |b| {
        b["state"] == "redriven"
    })
    .await;
    assert_eq!(closed["closed_by"], "admin");
    assert!(closed["closed_at"].is_string());
    let (_, open) = s.get("/api/v1/dead-letters").await;
    assert!(!ids(&open).contains(&id), "{open}");
    let (_, redriven) = s.get("/api/v1/dead-letters?state=redriven").await;
    assert_eq!(ids(&redriven), std::slice::from_ref(&id));

    // A second redrive, or an acknowledgement, of a closed dead letter: 409.
    let version = log.0.len();
    let (status, answer) = s
        .post(&format!("/api/v1/dead-letters/{id}/retry"), json!({}))
        .await;
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("redriven"),
        "{answer}"
    );
    let (status, _) = s.delete(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(status, 409);
    assert_eq!(
        s.events(&execution).await.0.len(),
        version,
        "nothing recorded"
    );
}

pub async fn an_acknowledged_dead_letter_is_closed_and_junk_is_refused(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "billing-ack", "tasks": [
            {"id": "fetch", "kind": "agent", "agent_role": "dl-ack"},
            {"id": "charge", "kind": "agent", "agent_role": "dl-ack", "depends_on": ["fetch"],
             "retry": {"max_attempts": 2, "initial_interval_ms": 10}}
        ]}))
        .await;
    let agent = TestAgent::register(&s.base, &["dl-ack"]).await;
    let (execution, id) = failed_by_charge(s, &agent, &workflow).await;
    let before = s.events(&execution).await.0.len();

    // Not dead letters: a well-formed id of no dead letter, junk, another attempt.
    for (path, status) in [
        (format!("/api/v1/dead-letters/{execution}.1.charge"), 404),
        (format!("/api/v1/dead-letters/{execution}.2.nope"), 404),
        (
            format!("/api/v1/dead-letters/{}.2.charge", uuid::Uuid::nil()),
            404,
        ),
        ("/api/v1/dead-letters/junk".to_owned(), 404),
    ] {
        let (got, body) = s.post(&format!("{path}/retry"), json!({})).await;
        assert_eq!(got, status, "{path}: {body}");
        assert_eq!(body["error"]["code"], "not_found", "{body}");
        let (got, _) = s.delete(&path).await;
        assert_eq!(got, status, "{path}");
        let (got, _) = s.get(&path).await;
        assert_eq!(got, 404, "{path}");
    }
    let (status, body) = s.get("/api/v1/dead-letters?state=lost").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        s.events(&execution).await.0.len(),
        before,
        "nothing recorded"
    );

    // Acknowledged: closed, listed as such, the execution stays failed.
    let (status, body) = s.delete(&format!("/api/v1/dead-letters/{id}")).await;
    assert_eq!(status, 204, "{body}");
    let log = s.events(&execution).await;
    let ack = log.only_of("DeadLetterAcknowledged");
    assert_eq!(log.at(ack)["metadata"]["actor"], "admin");
    let listed = wait_get(s, "/api/v1/dead-letters?state=acknowledged", |b| {
        ids(b).contains(&id)
    })
    .await;
    assert_eq!(listed["dead_letters"][0]["closed_by"], "admin");
    let (_, open) = s.get("/api/v1/dead-letters").await;
    assert!(!ids(&open).contains(&id));
    let (_, all) = s.get("/api/v1/dead-letters?state=all").await;
    assert!(ids(&all).contains(&id));
    let (status, body) = s
        .post(&format!("/api/v1/dead-letters/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(s.execution(&execution).await["status"], "failed");
}

/// A redriven execution is open again for recovery: redriven, then the server restarts
/// before the task ran (embedded, its queue in memory is gone), the new server's
/// recovery sends the attempt again and the execution completes.
pub async fn a_redriven_execution_survives_a_restart(mode: crate::harness::Mode) {
    let s = TestServer::start(mode).await;
    let workflow = s
        .create_workflow(json!({"name": "billing-restart", "tasks": [
            {"id": "fetch", "kind": "agent", "agent_role": "dl-restart"},
            {"id": "charge", "kind": "agent", "agent_role": "dl-restart", "depends_on": ["fetch"],
             "retry": {"max_attempts": 2, "initial_interval_ms": 10}}
        ]}))
        .await;
    let agent = TestAgent::register(&s.base, &["dl-restart"]).await;
    let (execution, id) = failed_by_charge(&s, &agent, &workflow).await;
    let (status, answer) = s
        .post(&format!("/api/v1/dead-letters/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    s.wait_events(&execution, "the redriven attempt dispatched", |l| {
        l.count("TaskDispatched", Some("charge")) == 3
    })
    .await;
    let s = s.restart(|_| async {}).await;
    let agent = TestAgent::register(&s.base, &["dl-restart"]).await;
    let lease = agent.next_lease().await;
    assert_eq!((lease.task_id.as_str(), lease.attempt), ("charge", 3));
    assert_eq!(
        agent.complete(&lease, json!({"charged": true})).await.0,
        200
    );
    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body}");
    s.stop().await;
}

macro_rules! restart_scenarios {
    ($mode_mod:ident, $mode:expr) => {
        mod $mode_mod {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_redriven_execution_survives_a_restart() {
                super::a_redriven_execution_survives_a_restart($mode).await;
            }
        }
    };
}

restart_scenarios!(postgres_redis, crate::harness::Mode::PostgresRedis);
restart_scenarios!(embedded, crate::harness::Mode::Embedded);

/// A workflow with a concurrency key: the redriven execution waits for a slot again
/// (its answer says `queued` while another execution of its key runs), is admitted when
/// that one ends, and completes.
pub async fn a_redrive_waits_for_a_concurrency_slot(s: &TestServer) {
    let workflow = s
        .create_workflow(json!({"name": "keyed-billing",
            "concurrency": {"key": "input.account", "max_running": 1},
            "tasks": [{"id": "charge", "kind": "agent", "agent_role": "dl-keyed"}]}))
        .await;
    let agent = TestAgent::register(&s.base, &["dl-keyed"]).await;
    let first = s.execute(&workflow, json!({"account": "acme"})).await;
    let lease = agent.next_lease().await;
    assert_eq!(lease.execution_id, first);
    assert_eq!(agent.fail(&lease, "declined", false).await.0, 200);
    assert_eq!(s.wait_terminal(&first).await["status"], "failed");
    // Another execution of the key takes the slot and holds it.
    let second = s.execute(&workflow, json!({"account": "acme"})).await;
    let held = agent.next_lease().await;
    assert_eq!(held.execution_id, second);

    let id = format!("{first}.1.charge");
    let (status, answer) = s
        .post(&format!("/api/v1/dead-letters/{id}/retry"), json!({}))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["status"], "queued", "{answer}");
    assert!(agent.poll(1).await.is_empty(), "no slot: nothing to lease");
    assert_eq!(agent.complete(&held, json!({})).await.0, 200);
    let lease = agent.next_lease().await;
    assert_eq!(
        (lease.execution_id.as_str(), lease.attempt),
        (first.as_str(), 2)
    );
    assert_eq!(
        agent.complete(&lease, json!({"charged": true})).await.0,
        200
    );
    assert_eq!(s.wait_terminal(&first).await["status"], "completed");
    let log = s.events(&first).await;
    assert_eq!(log.count("ExecutionQueued", None), 2);
    assert_eq!(log.count("ExecutionAdmitted", None), 2);
}
