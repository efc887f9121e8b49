//! The feed against a real (embedded) store: events are routed to the subscribers of
//! their execution and of its workflow — learned from `ExecutionStarted`, or looked up
//! for an execution that started before the feed — and nobody else; the tail publishes
//! what commits and closes every subscription at shutdown.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conflux_engine::store::sqlite::SqliteStore;
use conflux_engine::store::EventStore;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::feed::Routes;
use super::registry::{Key, Next, Registry, Subscription};
use super::LiveFeed;

/// An embedded store in a file of its own, removed on drop.
struct TempStore {
    store: Arc<dyn EventStore>,
    path: PathBuf,
}

impl TempStore {
    async fn open() -> Self {
        let path = std::env::temp_dir().join(format!("conflux-live-{}.db", Uuid::now_v7()));
        let store = SqliteStore::open(&path).await.expect("open the store");
        Self {
            store: Arc::new(store),
            path,
        }
    }

    /// Appends `event` to execution `id` at its next version; returns its position.
    async fn append(&self, id: Uuid, event: Event) -> u64 {
        let stream = StreamId::execution(id);
        let version = self.store.stream_version(&stream).await.expect("version");
        let appended = self
            .store
            .append(
                &stream,
                version,
                vec![NewEvent::new(event, EventMetadata::default())],
            )
            .await
            .expect("append");
        appended[0].position
    }

    async fn start(&self, execution: Uuid, workflow: Uuid) -> u64 {
        self.append(
            execution,
            Event::ExecutionStarted {
                execution_id: execution,
                workflow_id: workflow,
                input: json!({}),
                idempotency_key: None,
                parent: None,
            },
        )
        .await
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Every position queued for `live` now.
fn drain(live: &mut Subscription) -> Vec<u64> {
    std::iter::from_fn(|| live.try_recv().map(|f| f.position)).collect()
}

#[tokio::test]
async fn events_go_to_their_execution_and_its_workflow_only() {
    let db = TempStore::open().await;
    let (w, other) = (Uuid::now_v7(), Uuid::now_v7());
    let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    // Started before the feed: their workflows must be looked up.
    db.start(a, w).await;
    db.start(c, other).await;
    let head = db.store.head_position().await.expect("head");

    let registry = Registry::new(64);
    let mut routes = Routes::new(db.store.clone());
    let mut on_w = registry.subscribe(Key::Workflow(w));
    let mut on_a = registry.subscribe(Key::Execution(a));
    let mut on_other = registry.subscribe(Key::Workflow(other));
    let a_paused = db.append(a, Event::ExecutionPaused {}).await;
    let c_paused = db.append(c, Event::ExecutionPaused {}).await;
    let b_started = db.start(b, w).await;
    let b_paused = db.append(b, Event::ExecutionPaused {}).await;
    let a_done = db
        .append(a, Event::ExecutionCompleted { output: json!({}) })
        .await;

    let events = db.store.read_all(head, 100).await.expect("read");
    let (done, failed) = routes.publish(&events, &registry).await;
    assert!(failed.is_none(), "{failed:?}");
    assert_eq!(done, Some(a_done));
    assert_eq!(drain(&mut on_w), [a_paused, b_started, b_paused, a_done]);
    assert_eq!(drain(&mut on_a), [a_paused, a_done]);
    assert_eq!(drain(&mut on_other), [c_paused]);
    // a ended and is forgotten; b (started in view) and c (looked up) are known.
    assert_eq!(routes.known(), 2);
}

#[tokio::test]
async fn with_no_workflow_watched_nothing_is_looked_up() {
    let db = TempStore::open().await;
    let a = Uuid::now_v7();
    db.start(a, Uuid::now_v7()).await;
    let head = db.store.head_position().await.expect("head");
    let registry = Registry::new(64);
    let mut routes = Routes::new(db.store.clone());
    let mut on_a = registry.subscribe(Key::Execution(a));
    let paused = db.append(a, Event::ExecutionPaused {}).await;
    let events = db.store.read_all(head, 100).await.expect("read");
    routes.publish(&events, &registry).await;
    assert_eq!(drain(&mut on_a), [paused]);
    assert_eq!(routes.known(), 0);
}

#[tokio::test]
async fn the_feed_tails_commits_and_closes_at_shutdown() {
    let db = TempStore::open().await;
    let shutdown = CancellationToken::new();
    let feed = LiveFeed::start(db.store.clone(), shutdown.clone()).await;
    let w = Uuid::now_v7();
    let mut live = feed.subscribe(Key::Workflow(w));
    let mut other = feed.subscribe(Key::Execution(Uuid::now_v7()));
    let started = db.start(Uuid::now_v7(), w).await;
    match tokio::time::timeout(Duration::from_secs(10), live.recv()).await {
        Ok(Next::Frame(frame)) => assert_eq!(frame.position, started),
        other => panic!("expected the event, got {other:?}"),
    }
    assert!(other.try_recv().is_none());
    shutdown.cancel();
    match tokio::time::timeout(Duration::from_secs(10), live.recv()).await {
        Ok(Next::Closed) => {}
        other => panic!("expected the end of the feed, got {other:?}"),
    }
}
