//! A Postgres outage while a built-in task runs (Postgres + Redis only): the result
//! that arrives while the store is unreachable is not lost; once the database is back,
//! it is recorded and the execution completes.

use std::time::Duration;

use serde_json::json;

use crate::harness::TestServer;

/// The `sleep` task's result arrives while every connection to Postgres is cut; after
/// the outage the execution completes, with the task completed exactly once.
pub async fn results_survive_a_store_outage() {
    let s = TestServer::start_behind_proxy().await;
    let proxy = s.proxy.as_ref().expect("a proxy");
    let execution = s
        .run(
            json!({"name": "outage", "tasks": [
                {"id": "nap", "kind": "sleep", "sleep_ms": 1500},
                {"id": "after", "kind": "noop", "depends_on": ["nap"], "input": "${tasks.nap.output}"}
            ]}),
            json!({}),
        )
        .await;
    s.wait_events(&execution, "the nap started", |log| {
        log.count("TaskStarted", Some("nap")) == 1
    })
    .await;
    proxy.cut();
    // The nap ends during the outage (its result cannot be appended), and the engine
    // tries for a while. Not an expectation: a slower machine only tests less.
    tokio::time::sleep(Duration::from_millis(3000)).await;
    proxy.restore();

    let body = s.wait_terminal(&execution).await;
    assert_eq!(body["status"], "completed", "{body:#}");
    assert_eq!(body["output"], json!({"after": {"slept_ms": 1500}}));
    let log = s.events(&execution).await;
    assert_eq!(
        log.attempts("TaskCompleted", "nap"),
        [1],
        "{:?}",
        log.types()
    );
    assert_eq!(log.count("TaskCompleted", None), 2);
    s.stop().await;
}
