//! Redis goes down under a running relay: appends to Postgres neither fail nor wait,
//! and when Redis comes back (empty, as after a restart without persistence) the relay
//! republishes everything. Uses a private `redis-server` this test starts and kills, so
//! the shared server is never disturbed.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use conflux_engine::bus::redis::RedisBus;
use conflux_engine::bus::EventBus;
use conflux_engine::relay::{Relay, RelayOptions};
use conflux_engine::store::postgres::{PgStore, PgStoreOptions};
use conflux_engine::store::EventStore;
use conflux_engine::testing::TestDatabase;
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId};
use tokio_util::sync::CancellationToken;

struct PrivateRedis {
    child: Child,
    port: u16,
}

impl PrivateRedis {
    async fn start(port: u16) -> Self {
        let mut child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (it is on every CI machine)");
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(url.as_str()) {
                if let Ok(mut c) = client.get_multiplexed_async_connection().await {
                    if redis::cmd("PING")
                        .query_async::<String>(&mut c)
                        .await
                        .is_ok()
                    {
                        return Self { child, port };
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("private redis-server on port {port} did not start");
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

async fn wait_until_bus_has(bus: &dyn EventBus, position: u64) {
    for _ in 0..400 {
        if bus.head().await.is_ok_and(|h| h >= position) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the relay did not bring the bus up to position {position}");
}

async fn append_some(store: &dyn EventStore, stream: &StreamId, from: u64, n: u64) {
    for v in from..from + n {
        let event = NewEvent::new(Event::ExecutionPaused {}, EventMetadata::default());
        tokio::time::timeout(
            Duration::from_secs(10),
            store.append(stream, v, vec![event]),
        )
        .await
        .expect("an append must not wait for the bus")
        .expect("an append must not fail because the bus is down");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_survive_a_redis_outage_and_the_relay_catches_up() {
    let db = TestDatabase::create().await;
    let mut redis = PrivateRedis::start(free_port()).await;
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let store: Arc<dyn EventStore> = Arc::new(
        PgStore::connect(&db.url, &PgStoreOptions::default())
            .await
            .expect("store"),
    );
    let bus: Arc<dyn EventBus> = Arc::new(RedisBus::connect(&url, "outage:").await.expect("bus"));
    let stop = CancellationToken::new();
    let options = RelayOptions {
        poll_interval: Duration::from_millis(10),
        head_check_interval: Duration::from_millis(100),
        ..RelayOptions::default()
    };
    let relay = tokio::spawn(Relay::new(store.clone(), bus.clone(), options).run(stop.clone()));
    let stream = StreamId::execution(uuid::Uuid::now_v7());

    append_some(&*store, &stream, 0, 50).await;
    wait_until_bus_has(&*bus, store.head_position().await.expect("head")).await;

    redis.kill();
    append_some(&*store, &stream, 50, 50).await;
    assert!(bus.ping().await.is_err(), "Redis is down");
    assert!(
        store.outbox_pending().await.expect("outbox").is_some(),
        "unpublished events wait in the outbox"
    );

    let port = redis.port;
    let _redis = PrivateRedis::start(port).await;
    let head = store.head_position().await.expect("head");
    wait_until_bus_has(&*bus, head).await;

    // Redis came back empty: everything was republished, not just the events appended
    // during the outage.
    let mut sub = bus.subscribe("check", "c").await.expect("subscribe");
    let mut seen = Vec::new();
    while seen.len() < 100 {
        let got = sub
            .next(200, Duration::from_millis(500))
            .await
            .expect("next");
        assert!(
            !got.is_empty(),
            "the bus holds only {} of 100 events",
            seen.len()
        );
        seen.extend(got.into_iter().map(|d| d.envelope.version));
    }
    assert_eq!(seen, (1..=100).collect::<Vec<u64>>());
    stop.cancel();
    relay.await.expect("relay stops");
    db.drop_database().await;
}
