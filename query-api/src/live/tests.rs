//! The connection loop against an in-memory socket: what it does when the client is
//! silent, stops reading, falls behind, closes, or the server stops.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ws::Message;
use conflux_schema::EventEnvelope;
use futures::channel::mpsc;
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::connection::{forward, Client};
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

fn event(position: u64) -> Arc<EventEnvelope> {
    let raw = json!({
        "event_id": Uuid::now_v7(), "stream_id": "execution-0190a3e0-0000-7000-8000-000000000000",
        "stream_type": "execution", "version": position, "position": position,
        "type": "ExecutionResumed", "data": {},
        "metadata": {}, "recorded_at": "2026-01-01T00:00:00Z", "hash": "00"
    });
    Arc::new(serde_json::from_value(raw).expect("an envelope"))
}

fn close_code(message: &Message) -> Option<u16> {
    match message {
        Message::Close(Some(frame)) => Some(frame.code),
        _ => None,
    }
}

/// Runs `forward` for a socket on its own task.
fn spawn_forward(
    socket: TestSocket,
    capacity: usize,
    last_sent: u64,
) -> (
    broadcast::Sender<Arc<EventEnvelope>>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let (tx, mut rx) = broadcast::channel(capacity);
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let task = tokio::spawn(async move {
        forward(Client::new(socket, FAST), &mut rx, last_sent, &stop, |_| {
            true
        })
        .await;
    });
    (tx, shutdown, task)
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
    let (tx, _shutdown, task) = spawn_forward(socket, 16, 0);
    tx.send(event(1)).expect("send");
    tx.send(event(2)).expect("send");
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a client that does not read is dropped")
        .expect("join");
}

#[tokio::test]
async fn events_are_forwarded_once_above_the_last_sent_then_lag_closes() {
    let (socket, mut peer) = pair(64);
    let (tx, mut rx) = broadcast::channel(4);
    let stop = CancellationToken::new();
    // 3 and 4 are at or below what catch-up sent; 5 and 6 are new.
    for p in [3, 4, 5, 6] {
        tx.send(event(p)).expect("send");
    }
    let task = tokio::spawn(async move {
        forward(Client::new(socket, FAST), &mut rx, 4, &stop, |_| true).await;
    });
    let mut positions = Vec::new();
    while positions.len() < 2 {
        let m = peer.from_server.next().await.expect("a frame");
        if let Message::Text(t) = m {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
            positions.push(v["event"]["position"].as_u64().expect("position"));
        }
    }
    assert_eq!(positions, [5, 6]);
    // More than the channel holds, sent before the loop runs again: a lag.
    for p in 7..20 {
        tx.send(event(p)).expect("send");
    }
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("a lagging client is closed")
        .expect("join");
    let mut rest = Vec::new();
    while let Ok(m) = peer.from_server.try_recv() {
        rest.push(m);
    }
    let lagged = rest
        .iter()
        .any(|m| matches!(m, Message::Text(t) if t.as_str().contains("\"lagged\"")));
    assert!(lagged, "{rest:?}");
    assert_eq!(rest.last().and_then(close_code), Some(1008), "{rest:?}");
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
