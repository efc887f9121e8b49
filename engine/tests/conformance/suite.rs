//! The conformance suite: every check is written once, generic over the backend pair.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use conflux_engine::relay::{Relay, RelayOptions};
use conflux_engine::store::{read_whole_stream, AppendRequest, EventStore, StoreError};
use conflux_engine::subscriber::{Consumer, ConsumerError, Subscriber};
use conflux_schema::{Event, EventEnvelope, EventMetadata, NewEvent, StreamId, TaskId};
use tokio::sync::Barrier;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::fixtures::Fixture;

fn event(i: u64) -> NewEvent {
    NewEvent::new(
        Event::TaskCompleted {
            task_id: TaskId::parse("t").expect("task id"),
            attempt: 1,
            output: serde_json::json!({"i": i, "nested": {"b": [1, 2.5, "x"], "a": null}}),
        },
        EventMetadata {
            correlation_id: Some(format!("c-{i}")),
            actor: Some("test".into()),
            ..EventMetadata::default()
        },
    )
}

fn stream() -> StreamId {
    StreamId::execution(Uuid::now_v7())
}

async fn read_all_everything(store: &dyn EventStore) -> Vec<EventEnvelope> {
    let mut out: Vec<EventEnvelope> = Vec::new();
    loop {
        let after = out.last().map_or(0, |e| e.position);
        let page = store.read_all(after, 1000).await.expect("read_all");
        if page.is_empty() {
            return out;
        }
        out.extend(page);
    }
}

/// Concurrent appends to one stream at the same expected version: exactly one wins
/// each version, the others get `Conflict`; this holds within one store and across
/// two stores (two processes) on the same database.
pub async fn concurrent_appends_have_one_winner<F: Fixture>(f: &F) {
    let stores = [f.store(), f.second_store().await];
    let s = stream();
    const WRITERS: usize = 12;
    for version in 0..8u64 {
        let barrier = Arc::new(Barrier::new(WRITERS));
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = stores[w % 2].clone();
            let (s, barrier) = (s.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.append(&s, version, vec![event(version)]).await
            }));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(envs) => {
                    assert_eq!(envs[0].version, version + 1);
                    wins += 1;
                }
                Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected, version),
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
        assert_eq!(
            wins,
            1,
            "exactly one writer must win version {}",
            version + 1
        );
    }
    let events = read_whole_stream(&*stores[0], &s).await.expect("read");
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
}

/// 50 writers × 1,000 events over 500 streams: nothing lost or duplicated, versions
/// gap-free, and `read_all` yields every position exactly once, in order.
pub async fn many_writers_lose_nothing<F: Fixture>(f: &F) {
    const WRITERS: u64 = 50;
    const PER_WRITER: u64 = 1000;
    const STREAMS_PER_WRITER: u64 = 10;
    let store = f.store();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let streams: Vec<StreamId> = (0..STREAMS_PER_WRITER).map(|_| stream()).collect();
            let mut versions = vec![0u64; streams.len()];
            let mut ids = Vec::new();
            for i in 0..PER_WRITER {
                let k = (i % STREAMS_PER_WRITER) as usize;
                // Every fifth append carries two events, to mix batch shapes.
                let n = if i % 5 == 0 { 2 } else { 1 };
                let events = (0..n).map(|j| event(i * 10 + j)).collect();
                let envs = store
                    .append(&streams[k], versions[k], events)
                    .await
                    .expect("append");
                versions[k] += n;
                ids.extend(envs.iter().map(|e| e.event_id));
            }
            ids
        }));
    }
    let mut written = HashSet::new();
    for t in tasks {
        for id in t.await.expect("join") {
            assert!(written.insert(id), "an event id was returned twice");
        }
    }
    let all = read_all_everything(&*store).await;
    assert_eq!(
        all.len(),
        written.len(),
        "read_all must return every committed event once"
    );
    assert!(
        all.windows(2).all(|w| w[0].position < w[1].position),
        "positions strictly increase"
    );
    let read: HashSet<Uuid> = all.iter().map(|e| e.event_id).collect();
    assert_eq!(read, written);
    let mut versions: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for e in &all {
        versions
            .entry(e.stream_id.as_str())
            .or_default()
            .push(e.version);
    }
    assert_eq!(versions.len() as u64, WRITERS * STREAMS_PER_WRITER);
    for (s, v) in versions {
        assert_eq!(
            v,
            (1..=v.len() as u64).collect::<Vec<_>>(),
            "versions of {s} are gap-free and in position order"
        );
    }
}

/// A transaction that holds a lower position open is not skipped: a reader sees
/// nothing past it until it commits, then sees both in position order.
pub async fn slow_transaction_is_not_skipped<F: Fixture>(f: &F) {
    let store = f.store();
    let (slow, fast) = (stream(), stream());
    let held = f
        .hold_open(AppendRequest {
            stream: slow.clone(),
            expected_version: 0,
            events: vec![event(1), event(2)],
        })
        .await;
    let held_positions = held.positions();
    let fast_append = {
        let (store, fast) = (store.clone(), fast.clone());
        tokio::spawn(async move { store.append(&fast, 0, vec![event(3)]).await })
    };
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(40)).await;
        let seen = store.read_all(0, 100).await.expect("read_all");
        assert!(
            seen.is_empty(),
            "a reader must not see past an uncommitted lower position, saw {seen:?}"
        );
    }
    let committed = held.commit().await.expect("commit");
    let fast_env = fast_append.await.expect("join").expect("fast append");
    let all = read_all_everything(&*store).await;
    let positions: Vec<u64> = all.iter().map(|e| e.position).collect();
    assert_eq!(positions.len(), 3);
    assert_eq!(&positions[..2], held_positions.as_slice());
    assert_eq!(
        committed.iter().map(|e| e.position).collect::<Vec<_>>(),
        held_positions
    );
    assert!(fast_env[0].position > held_positions[1]);
    assert_eq!(all[2].stream_id, fast);
}

/// Altering a stored event breaks the chain at exactly that version; a row that no
/// longer parses is a typed `Corrupt` error, not a panic.
pub async fn tampering_breaks_the_hash_chain<F: Fixture>(f: &F) {
    let store = f.store();
    let s = stream();
    let envs = store
        .append(&s, 0, (1..=5).map(event).collect())
        .await
        .expect("append");
    let ok = store.verify_stream(&s).await.expect("verify");
    assert!(ok.valid);
    assert_eq!(ok.events, 5);
    assert_eq!(ok.head_hash.as_deref(), Some(envs[4].hash.as_str()));
    // Read back, the stored rows give the same envelopes the append returned.
    assert_eq!(read_whole_stream(&*store, &s).await.expect("read"), envs);

    f.tamper(
        &s,
        3,
        r#"{"task_id": "t", "attempt": 1, "output": {"i": 999}}"#,
    )
    .await;
    let bad = store.verify_stream(&s).await.expect("verify");
    assert!(!bad.valid);
    assert_eq!(bad.first_bad_version, Some(3));

    let s2 = stream();
    store
        .append(&s2, 0, vec![event(1), event(2)])
        .await
        .expect("append");
    f.set_type(&s2, 2, "NoSuchEvent").await;
    match store.read_stream(&s2, 0, 10).await {
        Err(StoreError::Corrupt { reason, .. }) => assert!(reason.contains("NoSuchEvent")),
        other => panic!("expected Corrupt, got {other:?}"),
    }
    assert!(!store.verify_stream(&s2).await.expect("verify").valid);
}

/// Records what it applied, per stream, in memory.
#[derive(Default)]
pub struct Recorder {
    pub applied: HashMap<StreamId, u64>,
    pub log: Vec<(StreamId, u64)>,
}

#[async_trait]
impl Consumer for Recorder {
    async fn applied_version(&mut self, stream: &StreamId) -> Result<u64, ConsumerError> {
        Ok(self.applied.get(stream).copied().unwrap_or(0))
    }
    async fn apply(&mut self, event: &EventEnvelope) -> Result<(), ConsumerError> {
        let v = self.applied.entry(event.stream_id.clone()).or_default();
        if event.version != *v + 1 {
            return Err(ConsumerError(format!(
                "{} applied out of order",
                event.stream_id
            )));
        }
        *v = event.version;
        self.log.push((event.stream_id.clone(), event.version));
        Ok(())
    }
}

async fn append_batch(store: &dyn EventStore, streams: &mut [(StreamId, u64)], rounds: u64) {
    for r in 0..rounds {
        for (s, v) in streams.iter_mut() {
            store.append(s, *v, vec![event(r)]).await.expect("append");
            *v += 1;
        }
    }
}

async fn consume_until<F: Fixture>(sub: &mut Subscriber<Recorder>, expected: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while sub.consumer().log.len() < expected {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out: applied {} of {expected}",
            sub.consumer().log.len()
        );
        sub.step(200, Duration::from_millis(50))
            .await
            .expect("step");
    }
    let _ = std::marker::PhantomData::<F>;
}

/// The relay delivers every committed event: after events committed with no relay
/// running (a crash between commit and publish), after a relay killed mid-run, and after
/// the bus loses everything (FLUSHALL). A subscriber applies each exactly once.
pub async fn relay_survives_crash_and_flush<F: Fixture>(f: &F) {
    let store = f.store();
    let bus = f.bus();
    let mut streams: Vec<(StreamId, u64)> = (0..20).map(|_| (stream(), 0)).collect();
    let sub = bus.subscribe("conformance", "c1").await.expect("subscribe");
    let mut subscriber = Subscriber::new(
        sub,
        store.clone(),
        Recorder::default(),
        Duration::from_secs(30),
    );

    // 1. Committed, never published: the relay was not running.
    append_batch(&*store, &mut streams, 10).await;
    let fast = RelayOptions {
        poll_interval: Duration::from_millis(10),
        head_check_interval: Duration::from_millis(50),
        ..RelayOptions::default()
    };
    let stop = CancellationToken::new();
    let relay =
        tokio::spawn(Relay::new(store.clone(), bus.clone(), fast.clone()).run(stop.clone()));
    consume_until::<F>(&mut subscriber, 200).await;

    // 2. The relay is killed while events are being committed; a new one takes over.
    let writer = {
        let store = store.clone();
        let mut streams = streams.clone();
        tokio::spawn(async move {
            append_batch(&*store, &mut streams, 10).await;
            streams
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    relay.abort();
    streams = writer.await.expect("join");
    let relay =
        tokio::spawn(Relay::new(store.clone(), bus.clone(), fast.clone()).run(stop.clone()));
    consume_until::<F>(&mut subscriber, 400).await;

    // 3. The bus loses everything; the relay notices and republishes.
    f.flush_bus().await;
    append_batch(&*store, &mut streams, 5).await;
    consume_until::<F>(&mut subscriber, 500).await;
    stop.cancel();
    relay.await.expect("relay stops");

    let log = &subscriber.consumer().log;
    let unique: HashSet<_> = log.iter().collect();
    assert_eq!(unique.len(), log.len(), "no event applied twice");
    assert_eq!(log.len(), 500);
    assert!(bus.head().await.expect("head") >= store.head_position().await.expect("head"));
    assert_eq!(
        store.outbox_pending().await.expect("outbox"),
        None,
        "the outbox is drained"
    );
}

/// A consumer that dies with entries pending: another member of the group claims them.
pub async fn dead_consumer_entries_are_claimed<F: Fixture>(f: &F) {
    let store = f.store();
    let bus = f.bus();
    let mut dead = bus.subscribe("claim", "dead").await.expect("subscribe");
    let mut alive = bus.subscribe("claim", "alive").await.expect("subscribe");
    let s = stream();
    let envs = store
        .append(&s, 0, (1..=5).map(event).collect())
        .await
        .expect("append");
    bus.publish(&envs).await.expect("publish");
    bus.publish(&envs)
        .await
        .expect("publishing twice is harmless");
    let taken = dead
        .next(10, Duration::from_millis(500))
        .await
        .expect("next");
    assert_eq!(taken.len(), 5, "every entry is delivered once to the group");
    assert!(alive
        .next(10, Duration::from_millis(50))
        .await
        .expect("next")
        .is_empty());
    assert!(
        alive
            .claim_stale(Duration::from_secs(60), 10)
            .await
            .expect("claim")
            .is_empty(),
        "not idle long enough yet"
    );
    tokio::time::sleep(Duration::from_millis(150)).await;
    let claimed = alive
        .claim_stale(Duration::from_millis(100), 10)
        .await
        .expect("claim");
    assert_eq!(
        claimed.iter().map(|d| d.position).collect::<Vec<_>>(),
        envs.iter().map(|e| e.position).collect::<Vec<_>>()
    );
    alive
        .ack(&claimed.iter().map(|d| d.position).collect::<Vec<_>>())
        .await
        .expect("ack");
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(
        alive
            .claim_stale(Duration::from_millis(100), 10)
            .await
            .expect("claim")
            .is_empty(),
        "acked entries are done"
    );
}

/// An unreachable bus never blocks or loses appends; the relay catches up when the bus
/// answers again (here: a relay that starts after the appends, which is what recovering
/// from an outage looks like to the store).
pub async fn appends_do_not_wait_for_the_bus<F: Fixture>(f: &F) {
    let store = f.store();
    let mut streams: Vec<(StreamId, u64)> = (0..5).map(|_| (stream(), 0)).collect();
    append_batch(&*store, &mut streams, 20).await;
    assert_eq!(read_all_everything(&*store).await.len(), 100);
    assert!(
        store.outbox_pending().await.expect("outbox").is_some(),
        "unpublished appends stay in the outbox"
    );
    let bus = f.bus();
    let mut relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default());
    assert_eq!(relay.step().await.expect("step"), 100);
    assert_eq!(
        bus.head().await.expect("head"),
        store.head_position().await.expect("head")
    );
}

/// Reads after a bound past the stored signed 64-bit range find nothing (a wrapped,
/// negative bound would read the whole log), and a `limit` past it reads everything.
pub async fn reads_past_the_largest_position_find_nothing<F: Fixture>(f: &F) {
    let store = f.store();
    let s = stream();
    store
        .append(&s, 0, vec![event(1), event(2)])
        .await
        .expect("append");
    for after in [i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX] {
        let page = store.read_stream(&s, after, 10).await.expect("read_stream");
        assert!(page.is_empty(), "after_version {after}: {page:?}");
        let page = store.read_all(after, 10).await.expect("read_all");
        assert!(page.is_empty(), "after_position {after}: {page:?}");
    }
    let whole = store
        .read_stream(&s, 0, usize::MAX)
        .await
        .expect("read_stream");
    assert_eq!(whole.len(), 2);
    let all = store.read_all(0, usize::MAX).await.expect("read_all");
    assert!(all.len() >= 2, "{all:?}");
}

/// The write side's lookups: executions of a workflow (all / open), open executions,
/// and the execution holding a lease.
pub async fn lookups_find_the_right_streams<F: Fixture>(f: &F) {
    use conflux_engine::store::StreamQuery;
    let store = f.store();
    let workflow = Uuid::now_v7();
    let other = Uuid::now_v7();
    let lease = Uuid::now_v7();
    let mut executions = Vec::new();
    for wf in [workflow, workflow, other] {
        let id = Uuid::now_v7();
        let s = StreamId::execution(id);
        let started = Event::ExecutionStarted {
            execution_id: id,
            workflow_id: wf,
            input: serde_json::json!({}),
            idempotency_key: None,
            parent: None,
        };
        store
            .append(
                &s,
                0,
                vec![NewEvent::new(started, EventMetadata::default())],
            )
            .await
            .expect("append");
        executions.push(s);
    }
    let done = Event::ExecutionCompleted {
        output: serde_json::json!({}),
    };
    store
        .append(
            &executions[0],
            1,
            vec![NewEvent::new(done, EventMetadata::default())],
        )
        .await
        .expect("append");
    let started = Event::TaskStarted {
        task_id: TaskId::parse("t").expect("id"),
        attempt: 1,
        agent_id: Some(Uuid::now_v7()),
        lease_id: Some(lease),
        deadline: None,
        compensation: false,
        routing: None,
    };
    store
        .append(
            &executions[1],
            1,
            vec![NewEvent::new(started, EventMetadata::default())],
        )
        .await
        .expect("append");

    let all = store
        .find_streams(
            &StreamQuery::ExecutionsOfWorkflow {
                workflow_id: workflow,
                open_only: false,
            },
            100,
        )
        .await
        .expect("find");
    assert_eq!(all, executions[..2].to_vec());
    let open = store
        .find_streams(
            &StreamQuery::ExecutionsOfWorkflow {
                workflow_id: workflow,
                open_only: true,
            },
            100,
        )
        .await
        .expect("find");
    assert_eq!(open, vec![executions[1].clone()]);
    let open_all = store
        .find_streams(&StreamQuery::OpenExecutions, 100)
        .await
        .expect("find");
    assert_eq!(open_all, executions[1..].to_vec());
    assert_eq!(
        store
            .find_streams(&StreamQuery::Lease(lease), 1)
            .await
            .expect("find"),
        vec![executions[1].clone()]
    );
    assert!(store
        .find_streams(&StreamQuery::Lease(Uuid::now_v7()), 1)
        .await
        .expect("find")
        .is_empty());
    let hour = chrono::Duration::hours(1);
    let idle = StreamQuery::IdleExecutions {
        idle_since: chrono::Utc::now() + hour,
    };
    assert_eq!(
        store.find_streams(&idle, 100).await.expect("find"),
        executions[1..].to_vec(),
        "open executions idle since before the cut-off"
    );
    let idle = StreamQuery::IdleExecutions {
        idle_since: chrono::Utc::now() - hour,
    };
    assert!(
        store
            .find_streams(&idle, 100)
            .await
            .expect("find")
            .is_empty(),
        "nothing has been idle for an hour"
    );
}

/// One append the database refuses (Postgres `jsonb` cannot hold a NUL character) does
/// not take the other appends of its batch down with it.
pub async fn a_bad_append_does_not_fail_its_batch<F: Fixture>(f: &F) {
    let store = f.store();
    let bad = NewEvent::new(
        Event::TaskCompleted {
            task_id: TaskId::parse("t").expect("id"),
            attempt: 1,
            output: serde_json::json!({"s": "nul\u{0}here"}),
        },
        EventMetadata::default(),
    );
    let requests: Vec<AppendRequest> = (0..6)
        .map(|i| AppendRequest {
            stream: stream(),
            expected_version: 0,
            events: vec![if i == 3 { bad.clone() } else { event(i) }],
        })
        .collect();
    let results = store.append_many(requests).await;
    for (i, r) in results.iter().enumerate() {
        if i != 3 {
            assert!(r.is_ok(), "append {i} failed with its batch: {r:?}");
        }
    }
}

/// The store has one identity (every connection sees the same); the bus records its
/// owner and resets to a new one; the ownership guard accepts the bus only while it is
/// this store's and its head is this store's event; and a consumer never receives an
/// entry another store published on the same transport.
pub async fn the_bus_knows_its_store<F: Fixture>(f: &F) {
    use conflux_engine::bus::ownership::{reset_bus, BusGuard, BusStatus};
    use conflux_engine::queue::local::LocalTaskQueue;

    let store = f.store();
    let bus = f.bus();
    let id = store.store_id().await.expect("store id");
    assert_eq!(
        id,
        f.second_store().await.store_id().await.expect("id"),
        "one identity per store"
    );
    assert_eq!(
        bus.owner().await.expect("owner"),
        None,
        "a new bus has no owner"
    );
    assert_eq!(bus.head_event().await.expect("head"), None);

    let queue = Arc::new(LocalTaskQueue::new());
    let guard = BusGuard::new(store.clone(), bus.clone(), queue.clone(), id, false);
    let first = match guard.check().await.expect("check") {
        BusStatus::Owned { generation } => generation,
        other => panic!("an empty bus is claimed: {other:?}"),
    };
    let other = Uuid::now_v7();
    assert_eq!(
        bus.claim(other).await.expect("claim").store_id,
        id,
        "the first claim stays"
    );

    // Events published by the relay: the head is the store's own event.
    let mut streams: Vec<(StreamId, u64)> = (0..3).map(|_| (stream(), 0)).collect();
    append_batch(&*store, &mut streams, 4).await;
    let mut relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default());
    relay.step().await.expect("relay");
    let head = store.head_position().await.expect("head");
    let newest = read_all_everything(&*store).await.pop().expect("events");
    assert_eq!(
        bus.head_event().await.expect("head"),
        Some((head, newest.event_id))
    );
    assert_eq!(
        guard.check().await.expect("check"),
        BusStatus::Owned { generation: first }
    );

    // Another store takes the bus: this store's guard refuses it.
    let taken = reset_bus(other, &*bus, &*queue).await.expect("reset");
    assert_eq!(taken.owner.store_id, other);
    assert_eq!(
        bus.head().await.expect("head"),
        0,
        "a reset empties the bus"
    );
    match guard.check().await.expect("check") {
        BusStatus::Refused { reason } => {
            assert!(reason.contains("another store"), "{reason}");
            assert!(reason.contains("conflux bus reset --yes"), "{reason}");
        }
        status => panic!("another store's bus is refused: {status:?}"),
    }

    // Reset back: a new generation, and the relay republishes everything.
    let mine = reset_bus(id, &*bus, &*queue).await.expect("reset");
    assert_ne!(mine.owner.generation, first);
    assert_eq!(
        guard.check().await.expect("check"),
        BusStatus::Owned {
            generation: mine.owner.generation
        }
    );
    let mut relay = Relay::new(store.clone(), bus.clone(), RelayOptions::default());
    relay.step().await.expect("relay");
    assert_eq!(bus.head().await.expect("head"), head);

    // A second store on the same transport: it cannot publish into a prefix this
    // store owns (the ownership check is atomic with the publish), and once it owns the
    // prefix its entries never reach this store's consumers, nor stay pending for them.
    if let Some(foreign) = f.foreign_bus(other).await {
        let mut fake = newest.clone();
        fake.position = head + 1;
        fake.event_id = Uuid::now_v7();
        let refused = foreign.publish(std::slice::from_ref(&fake)).await;
        assert!(
            matches!(&refused, Err(e) if e.to_string().contains("belongs to another store")),
            "{refused:?}"
        );
        assert_eq!(bus.head().await.expect("head"), head, "nothing was added");

        let mut sub = bus.subscribe("owners", "c1").await.expect("subscribe");
        reset_bus(other, &*foreign, &*queue).await.expect("reset");
        let theirs: Vec<EventEnvelope> = (1..=5)
            .map(|p| {
                let mut e = newest.clone();
                e.position = p;
                e.event_id = Uuid::now_v7();
                e
            })
            .collect();
        foreign.publish(&theirs).await.expect("the owner publishes");
        let got = sub
            .next(100, Duration::from_millis(200))
            .await
            .expect("next");
        assert!(
            got.is_empty(),
            "another store's entries are not delivered: {got:?}"
        );
        let stale = sub.claim_stale(Duration::ZERO, 100).await.expect("claim");
        assert!(
            stale.is_empty(),
            "and were acked, not left pending: {stale:?}"
        );
        assert!(matches!(
            guard.check().await.expect("check"),
            BusStatus::Refused { .. }
        ));
    }
}
