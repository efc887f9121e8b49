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
            parent: None,
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
    let empty = store.tenant_usage("a", since, None).await.expect("usage");
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
    let a = store.tenant_usage("a", since, None).await.expect("usage");
    assert_eq!(
        (a.running_executions, a.executions_started, a.started_since),
        (20, 40, 40)
    );
    assert!(a.oldest_since.is_some_and(|t| t >= since));
    let b = second.tenant_usage("b", since, None).await.expect("usage");
    assert_eq!((b.running_executions, b.executions_started), (10, 10));
    let (running, started_n, bytes) = recount(&*store, "a").await;
    assert_eq!(
        (a.running_executions, a.executions_started, a.payload_bytes),
        (running, started_n, bytes)
    );
    assert_eq!(
        store
            .tenant_usage("a", Utc::now() + Duration::seconds(1), None)
            .await
            .expect("usage")
            .started_since,
        0,
        "nothing started in the future"
    );

    // A failed append counts nothing: `store` still believes the stream is at version 1
    // when `second` has taken version 2, so its batch (with a valid append beside it)
    // reaches the database and is refused by the unique key there.
    let stream = StreamId::execution(Uuid::now_v7());
    store
        .append(&stream, 0, vec![started("a")])
        .await
        .expect("start");
    second
        .append(&stream, 1, vec![finished("a")])
        .await
        .expect("finish");
    let before = store.tenant_usage("a", since, None).await.expect("usage");
    let valid = StreamId::execution(Uuid::now_v7());
    let results = store
        .append_many(vec![
            AppendRequest {
                stream: stream.clone(),
                expected_version: 1,
                events: vec![finished("a"), started("a")],
            },
            AppendRequest {
                stream: valid,
                expected_version: 0,
                events: vec![started("a")],
            },
        ])
        .await;
    assert!(
        matches!(results[0], Err(StoreError::Conflict { .. })),
        "{results:?}"
    );
    assert!(results[1].is_ok(), "{results:?}");
    let after = store.tenant_usage("a", since, None).await.expect("usage");
    assert_eq!(
        (after.running_executions, after.executions_started),
        (before.running_executions + 1, before.executions_started + 1),
        "only the valid append counts"
    );
    let (running, started_n, bytes) = recount(&*store, "a").await;
    assert_eq!(
        (
            after.running_executions,
            after.executions_started,
            after.payload_bytes
        ),
        (running, started_n, bytes)
    );

    // Agents count by distinct name per tenant; a name registered before is known.
    let agent = |name: &str| {
        NewEvent::new(
            Event::AgentRegistered {
                agent_id: Uuid::now_v7(),
                name: name.into(),
                roles: vec!["r".into()],
                capabilities: vec![],
                capacity: 1,
                cost: None,
            },
            meta("b"),
        )
    };
    for name in ["picker-1", "picker-1", "picker-2"] {
        store
            .append(&StreamId::agent(Uuid::now_v7()), 0, vec![agent(name)])
            .await
            .expect("agent");
    }
    let b = store
        .tenant_usage("b", since, Some("picker-1"))
        .await
        .expect("usage");
    assert_eq!(
        (b.agents, b.agent_names, b.agent_known, b.definitions),
        (3, 2, true, 0)
    );
    let b = store
        .tenant_usage("b", since, Some("picker-3"))
        .await
        .expect("usage");
    assert!(!b.agent_known);
    let a = store
        .tenant_usage("a", since, Some("picker-1"))
        .await
        .expect("usage");
    assert!(
        !a.agent_known && a.agent_names == 0,
        "another tenant's agents"
    );
}

/// The `schedules` count (created minus deleted, per tenant), and the schedule streams
/// are what `read_all_of(Schedule)` tails, in position order, nothing else.
pub async fn schedules_are_counted_and_tailed<F: Fixture>(f: &F) {
    use conflux_schema::schedule::{CatchUp, Overlap};
    use conflux_schema::StreamType;
    let store = f.store();
    let since = Utc::now() - Duration::minutes(1);
    let created = |id: Uuid| Event::ScheduleCreated {
        schedule_id: id,
        workflow_id: Uuid::now_v7(),
        cron: "* * * * *".into(),
        timezone: "UTC".into(),
        input: serde_json::json!({}),
        overlap: Overlap::Skip,
        catch_up: CatchUp::Latest,
    };
    let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for id in &ids {
        store
            .append(
                &StreamId::schedule(*id),
                0,
                vec![NewEvent::new(created(*id), meta("s"))],
            )
            .await
            .expect("create");
    }
    // Noise of other types between them.
    store
        .append(&StreamId::execution(Uuid::now_v7()), 0, vec![started("s")])
        .await
        .expect("noise");
    store
        .append(
            &StreamId::schedule(ids[0]),
            1,
            vec![NewEvent::new(Event::ScheduleDeleted {}, meta("s"))],
        )
        .await
        .expect("delete");
    let usage = store.tenant_usage("s", since, None).await.expect("usage");
    assert_eq!(usage.schedules, 2);
    assert_eq!(
        store
            .tenant_usage("t", since, None)
            .await
            .expect("usage")
            .schedules,
        0
    );
    let tail = store
        .read_all_of(&[StreamType::Schedule], 0, 100)
        .await
        .expect("tail");
    assert_eq!(tail.len(), 4, "three creations and a deletion");
    assert!(tail
        .iter()
        .all(|e| e.stream_id.stream_type() == StreamType::Schedule));
    assert!(tail.windows(2).all(|w| w[0].position < w[1].position));
    let after = store
        .read_all_of(&[StreamType::Schedule], tail[1].position, 100)
        .await
        .expect("tail");
    assert_eq!(after.len(), 2);
}
