//! Per-tenant usage counters: kept by the append itself, per tenant, through concurrent
//! appends from two stores (two processes), rolled back with a failed append, and equal
//! to a recount of the log.

use std::sync::Arc;

use chrono::{Duration, Utc};
use conflux_engine::store::{AppendRequest, EventStore, StoreError};
use conflux_schema::canonical::write_value;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use uuid::Uuid;

use super::fixtures::Fixture;

fn meta(tenant: &str) -> EventMetadata {
    EventMetadata {
        tenant_id: Some(tenant.to_owned()),
        ..EventMetadata::default()
    }
}

fn started(tenant: &str) -> NewEvent {
    NewEvent::new(
        Event::ExecutionStarted {
            execution_id: Uuid::now_v7(),
            workflow_id: Uuid::now_v7(),
            input: serde_json::json!({"n": 1}),
            idempotency_key: None,
        },
        meta(tenant),
    )
}

fn finished(tenant: &str) -> NewEvent {
    NewEvent::new(
        Event::ExecutionCompleted {
            output: serde_json::json!({}),
        },
        meta(tenant),
    )
}

/// Recounts `tenant`'s counters from the log: (running, started, bytes).
async fn recount(store: &dyn EventStore, tenant: &str) -> (u64, u64, u64) {
    let (mut running, mut started, mut bytes) = (0i64, 0u64, 0u64);
    let mut after = 0;
    loop {
        let page = store.read_all(after, 1000).await.expect("read");
        let Some(last) = page.last() else { break };
        after = last.position;
        for e in page.iter().filter(|e| e.metadata.tenant() == tenant) {
            let (ty, data) = e.event.to_parts().expect("parts");
            let mut text = Vec::new();
            write_value(&data, &mut text);
            bytes += text.len() as u64;
            match ty {
                "ExecutionStarted" => {
                    running += 1;
                    started += 1
                }
                "ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled" => running -= 1,
                _ => {}
            }
        }
    }
    (running as u64, started, bytes)
}

pub async fn usage_counters_follow_the_log<F: Fixture>(f: &F) {
    let store = f.store();
    let second = f.second_store().await;
    let since = Utc::now() - Duration::seconds(60);
    let empty = store.tenant_usage("a", since).await.expect("usage");
    assert_eq!(empty, Default::default(), "a tenant that recorded nothing");

    // 40 executions of tenant a and 10 of tenant b, started through two stores at once;
    // half of a's finish.
    let mut tasks = Vec::new();
    for i in 0..50u32 {
        let store: Arc<dyn EventStore> = if i % 2 == 0 {
            store.clone()
        } else {
            second.clone()
        };
        let tenant = if i < 40 { "a" } else { "b" };
        tasks.push(tokio::spawn(async move {
            let stream = StreamId::execution(Uuid::now_v7());
            store
                .append(&stream, 0, vec![started(tenant)])
                .await
                .expect("start");
            if tenant == "a" && i % 2 == 0 {
                store
                    .append(&stream, 1, vec![finished(tenant)])
                    .await
                    .expect("finish");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let a = store.tenant_usage("a", since).await.expect("usage");
    assert_eq!(
        (a.running_executions, a.executions_started, a.started_since),
        (20, 40, 40)
    );
    assert!(a.oldest_since.is_some_and(|t| t >= since));
    let b = second.tenant_usage("b", since).await.expect("usage");
    assert_eq!((b.running_executions, b.executions_started), (10, 10));
    let (running, started_n, bytes) = recount(&*store, "a").await;
    assert_eq!(
        (a.running_executions, a.executions_started, a.payload_bytes),
        (running, started_n, bytes)
    );
    assert_eq!(
        store
            .tenant_usage("a", Utc::now() + Duration::seconds(1))
            .await
            .expect("usage")
            .started_since,
        0,
        "nothing started in the future"
    );

    // A failed append counts nothing: a version conflict in a batch of two.
    let stream = StreamId::execution(Uuid::now_v7());
    store
        .append(&stream, 0, vec![started("a")])
        .await
        .expect("start");
    let before = store.tenant_usage("a", since).await.expect("usage");
    let refused = store
        .append_many(vec![AppendRequest {
            stream: stream.clone(),
            expected_version: 0,
            events: vec![started("a")],
        }])
        .await;
    assert!(
        matches!(refused[0], Err(StoreError::Conflict { .. })),
        "{refused:?}"
    );
    assert_eq!(store.tenant_usage("a", since).await.expect("usage"), before);

    // Definitions and agents count per tenant.
    let created = NewEvent::new(
        Event::AgentRegistered {
            agent_id: Uuid::now_v7(),
            name: "x".into(),
            roles: vec!["r".into()],
            capabilities: vec![],
            capacity: 1,
        },
        meta("b"),
    );
    store
        .append(&StreamId::agent(Uuid::now_v7()), 0, vec![created])
        .await
        .expect("agent");
    let b = store.tenant_usage("b", since).await.expect("usage");
    assert_eq!((b.agents, b.definitions), (1, 0));
}
