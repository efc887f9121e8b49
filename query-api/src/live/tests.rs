//! The connection loop against an in-memory socket: what it does when the client is
//! silent, stops reading, falls behind, closes, or the server stops; and the registry's
//! routing, lag and clean-up.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use conflux_schema::EventEnvelope;
use futures::channel::mpsc;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::connection::{forward, Client};
use super::registry::{event_text, Key, Next, Registry};
use super::Limits;

/// The server's end of an in-memory WebSocket: frames from the client come in on
/// `incoming`, frames to it go out on a bounded `outgoing` (so a client that does
/// not read can be played).
struct TestSocket {
    incoming: mpsc::UnboundedReceiver<Result<Message, axum::Error>>,
    outgoing: mpsc::Sender<Message>,
}

impl Stream for TestSocket {
    type Item = Result<Message, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.incoming.poll_next_unpin(cx)
    }
}

impl Sink<Message> for TestSocket {
    type Error = axum::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outgoing.poll_ready_unpin(cx).map_err(axum::Error::new)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
        self.outgoing
            .start_send_unpin(item)
            .map_err(axum::Error::new)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outgoing.poll_flush_unpin(cx).map_err(axum::Error::new)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.outgoing.poll_close_unpin(cx).map_err(axum::Error::new)
    }
}

/// The client's end.
struct Peer {
    to_server: mpsc::UnboundedSender<Result<Message, axum::Error>>,
    from_server: mpsc::Receiver<Message>,
}

fn pair(outgoing_capacity: usize) -> (TestSocket, Peer) {
    let (to_server, incoming) = mpsc::unbounded();
    let (outgoing, from_server) = mpsc::channel(outgoing_capacity);
    (
        TestSocket { incoming, outgoing },
        Peer {
            to_server,
            from_server,
        },
    )
}

const FAST: Limits = Limits {
    ping_every: Duration::from_millis(40),
    silent_limit: Duration::from_millis(150),
    send_timeout: Duration::from_millis(100),
    close_grace: Duration::from_millis(50),
};

/// The execution every test event belongs to.
const EXECUTION: Uuid = Uuid::from_u128(0x0190a3e0_0000_7000_8000_000000000000);
const KEY: Key = Key::Execution(EXECUTION);

fn event(position: u64) -> EventEnvelope {
    let raw = json!({
        "event_id": Uuid::now_v7(), "stream_id": format!("execution-{EXECUTION}"),
        "stream_type": "execution", "version": position, "position": position,
        "type": "ExecutionResumed", "data": {},
        "metadata": {}, "recorded_at": "2026-01-01T00:00:00Z", "hash": "00"
    });
    serde_json::from_value(raw).expect("an envelope")
}

/// Publishes the event at `position` under `keys`; returns how many queues took it.
fn publish(registry: &Registry, keys: &[Key], position: u64) -> usize {
    registry.publish(keys, position, || event_text(&event(position)))
}

fn text_position(message: &Message) -> Option<u64> {
    match message {
        Message::Text(t) => {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
            v["event"]["position"].as_u64()
        }
        _ => None,
    }
}

fn close_code(message: &Message) -> Option<u16> {
    match message {
        Message::Close(Some(frame)) => Some(frame.code),
        _ => None,
    }
}

/// Runs `forward` for a socket on its own task, subscribed to [`KEY`].
fn spawn_forward(
    socket: TestSocket,
    capacity: usize,
    last_sent: u64,
) -> (
    Arc<Registry>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let registry = Registry::new(capacity);
    let mut live = registry.subscribe(KEY);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        forward(
            Client::new(socket, FAST),
            &mut live,
            last_sent,
            &stop,
            &CancellationToken::new(),
        )
        .await;
    });
    (registry, shutdown, task)
}

#[tokio::test]
async fn a_silent_client_is_pinged_then_dropped() {
    let (socket, mut peer) = pair(64);
    let (_tx, _shutdown, task) = spawn_forward(socket, 16, 0);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a client that never answers is dropped")
        .expect("join");
    let mut sent = Vec::new();
    while let Ok(m) = peer.from_server.try_recv() {
        sent.push(m);
    }
    assert!(matches!(sent.first(), Some(Message::Ping(_))), "{sent:?}");
    assert_eq!(sent.last().and_then(close_code), Some(1008), "{sent:?}");
}

#[tokio::test]
async fn a_client_answering_pings_stays_until_shutdown() {
    let (socket, mut peer) = pair(64);
    let (_tx, shutdown, task) = spawn_forward(socket, 16, 0);
    let answer = peer.to_server.clone();
    let answering = tokio::spawn(async move {
        let mut frames = Vec::new();
        while let Some(m) = peer.from_server.next().await {
            if let Message::Ping(p) = &m {
                let _ = answer.unbounded_send(Ok(Message::Pong(p.clone())));
            }
            frames.push(m);
        }
        frames
    });
    tokio::time::sleep(FAST.silent_limit * 4).await;
    assert!(!task.is_finished(), "a client that answers pings is kept");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("shutdown ends the connection")
        .expect("join");
    peer.to_server.close_channel();
    let frames = answering.await.expect("join");
    assert_eq!(frames.last().and_then(close_code), Some(1001), "{frames:?}");
}

#[tokio::test]
async fn a_client_that_stops_reading_is_dropped() {
    // Room for one frame, never read: the second send cannot complete.
    let (socket, _peer) = pair(0);
    let (registry, _shutdown, task) = spawn_forward(socket, 16, 0);
    assert_eq!(publish(&registry, &[KEY], 1), 1);
    assert_eq!(publish(&registry, &[KEY], 2), 1);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a client that does not read is dropped")
        .expect("join");
}

#[tokio::test]
async fn events_are_forwarded_once_above_the_last_sent_then_lag_closes() {
    let (socket, mut peer) = pair(64);
    let registry = Registry::new(4);
    let mut live = registry.subscribe(KEY);
    let stop = CancellationToken::new();
    // 3 and 4 are at or below what catch-up sent; 5 and 6 are new.
    for p in [3, 4, 5, 6] {
        assert_eq!(publish(&registry, &[KEY], p), 1);
    }
    let task = tokio::spawn(async move {
        forward(
            Client::new(socket, FAST),
            &mut live,
            4,
            &stop,
            &CancellationToken::new(),
        )
        .await;
    });
    let mut positions = Vec::new();
    while positions.len() < 2 {
        let m = peer.from_server.next().await.expect("a frame");
        positions.extend(text_position(&m));
    }
    assert_eq!(positions, [5, 6]);
    // More than the queue holds, published before the loop runs again: a lag, which
    // also takes the subscriber out of the registry.
    let queued: usize = (7..20).map(|p| publish(&registry, &[KEY], p)).sum();
    assert_eq!(queued, 4);
    assert_eq!(registry.len(), 0);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a lagging client is closed")
        .expect("join");
    let mut rest = Vec::new();
    while let Ok(m) = peer.from_server.try_recv() {
        rest.push(m);
    }
    // Told at once: none of the queued events is sent after the lag.
    assert_eq!(rest.len(), 2, "{rest:?}");
    let lagged: serde_json::Value = match &rest[0] {
        Message::Text(t) => serde_json::from_str(t.as_str()).expect("json"),
        other => panic!("expected the lagged frame, got {other:?}"),
    };
    assert_eq!(lagged, json!({"type": "lagged", "position": 6}));
    assert_eq!(rest.last().and_then(close_code), Some(1008), "{rest:?}");
}

#[tokio::test]
async fn a_burst_goes_out_whole_and_in_order() {
    let (socket, mut peer) = pair(1024);
    let registry = Registry::new(1024);
    let mut live = registry.subscribe(KEY);
    for p in 1..=200 {
        publish(&registry, &[KEY], p);
    }
    let stop = CancellationToken::new();
    let shutdown = stop.clone();
    let task = tokio::spawn(async move {
        forward(
            Client::new(socket, FAST),
            &mut live,
            0,
            &stop,
            &CancellationToken::new(),
        )
        .await;
    });
    let mut positions = Vec::new();
    while positions.len() < 200 {
        let m = peer.from_server.next().await.expect("a frame");
        positions.extend(text_position(&m));
    }
    assert_eq!(positions, (1..=200).collect::<Vec<_>>());
    shutdown.cancel();
    task.await.expect("join");
}

#[tokio::test]
async fn the_feed_stopping_closes_clients_with_1001() {
    let (socket, mut peer) = pair(64);
    let (registry, _shutdown, task) = spawn_forward(socket, 16, 0);
    registry.close();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a closed registry ends the connection")
        .expect("join");
    let mut sent = Vec::new();
    while let Ok(m) = peer.from_server.try_recv() {
        sent.push(m);
    }
    assert_eq!(sent.last().and_then(close_code), Some(1001), "{sent:?}");
}

#[tokio::test]
async fn events_reach_only_the_subscribers_of_their_keys() {
    let registry = Registry::new(16);
    let (a, b, w) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    let mut on_a = registry.subscribe(Key::Execution(a));
    let mut on_b = registry.subscribe(Key::Execution(b));
    let mut on_w = registry.subscribe(Key::Workflow(w));
    assert!(registry.watches_workflows());
    // An event of a (of workflow w), one of b (of another workflow), one of nobody's.
    assert_eq!(
        publish(&registry, &[Key::Execution(a), Key::Workflow(w)], 1),
        2
    );
    assert_eq!(
        publish(
            &registry,
            &[Key::Execution(b), Key::Workflow(Uuid::now_v7())],
            2
        ),
        1
    );
    let mut built = false;
    let nobody = registry.publish(&[Key::Execution(Uuid::now_v7())], 3, || {
        built = true;
        event_text(&event(3))
    });
    assert_eq!((nobody, built), (0, false), "no frame is built for nobody");
    let position = |next: Next| match next {
        Next::Frame(f) => f.position,
        other => panic!("expected an event, got {other:?}"),
    };
    assert_eq!(position(on_a.recv().await), 1);
    assert_eq!(position(on_w.recv().await), 1);
    assert_eq!(position(on_b.recv().await), 2);
    assert!(on_a.try_recv().is_none() && on_w.try_recv().is_none());
    // The frame is the envelope's, built once and shared.
    publish(&registry, &[Key::Execution(a), Key::Workflow(w)], 4);
    let (Next::Frame(x), Next::Frame(y)) = (on_a.recv().await, on_w.recv().await) else {
        panic!("two frames");
    };
    assert_eq!(x.text.as_ptr(), y.text.as_ptr(), "one shared frame");
    let v: serde_json::Value = serde_json::from_str(x.text.as_str()).expect("json");
    assert_eq!(v["type"], "event");
    let envelope: EventEnvelope = serde_json::from_value(v["event"].clone()).expect("an envelope");
    assert_eq!(
        (envelope.position, envelope.stream_id),
        (4, event(4).stream_id)
    );
    // Dropping subscriptions empties the registry.
    drop((on_a, on_b, on_w));
    assert_eq!(registry.len(), 0);
    assert!(!registry.watches_workflows());
}

#[tokio::test]
async fn a_subscription_after_close_is_closed() {
    let registry = Registry::new(4);
    let mut before = registry.subscribe(KEY);
    registry.close();
    let mut after = registry.subscribe(KEY);
    assert!(matches!(before.recv().await, Next::Closed));
    assert!(matches!(after.recv().await, Next::Closed));
    assert_eq!(publish(&registry, &[KEY], 1), 0);
}

#[tokio::test]
async fn a_client_close_ends_the_connection() {
    let (socket, mut peer) = pair(64);
    let (_tx, _shutdown, task) = spawn_forward(socket, 16, 0);
    peer.to_server
        .unbounded_send(Ok(Message::Close(None)))
        .expect("send");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the client's close ends the connection")
        .expect("join");
    // Whatever was sent before, the server's end is closed (on a real WebSocket,
    // closing the sink sends the answering close frame).
    while peer.from_server.next().await.is_some() {}
}

#[tokio::test]
async fn a_revoked_key_closes_its_streams_with_4401() {
    let (socket, mut peer) = pair(64);
    let registry = Registry::new(16);
    let mut live = registry.subscribe(KEY);
    let (stop, revoked) = (CancellationToken::new(), CancellationToken::new());
    let revoke = revoked.clone();
    let task = tokio::spawn(async move {
        forward(Client::new(socket, FAST), &mut live, 0, &stop, &revoked).await;
    });
    revoke.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the stream ends")
        .expect("join");
    let mut sent = Vec::new();
    while let Ok(m) = peer.from_server.try_recv() {
        sent.push(m);
    }
    assert_eq!(sent.last().and_then(close_code), Some(4401), "{sent:?}");
}

#[test]
fn event_frames_are_the_documented_live_frame() {
    let envelope = event(7);
    let text = event_text(&envelope);
    let frame: conflux_schema::api::LiveFrame =
        serde_json::from_str(text.as_str()).expect("a LiveFrame");
    assert_eq!(
        frame,
        conflux_schema::api::LiveFrame::Event {
            event: Box::new(envelope)
        }
    );
}
