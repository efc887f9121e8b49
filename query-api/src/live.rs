//! The live status streams: `GET /ws/executions/{id}` and `GET /ws/workflows/{id}`
//! (WebSocket).
//!
//! One [`LiveFeed`] per process tails the event store by position and fans every
//! committed event out to all connected clients through one broadcast channel — never a
//! subscription per client. Because positions become visible in commit order, tailing
//! `position > p` sees every event exactly once, in order.
//!
//! A client first subscribes to the feed, then reads what it missed from the store (the
//! snapshot's log, or everything after `?after=`), then forwards live events with a
//! position above the last one it sent: nothing can fall between catch-up and live, and
//! nothing is sent twice. A workflow spans many streams, so its catch-up is cut at one
//! position of the whole log (the store's head, read after subscribing): everything at
//! or below the cut comes from the store, everything above it from the feed.
//!
//! A connection costs one task and a few buffers, so everything that can keep one open
//! for nothing is bounded: a client too slow for the channel gets `{"type":"lagged"}` and
//! is closed (it reconnects with `after`); a frame the client does not take within
//! [`Limits::send_timeout`] drops it; a client that has sent nothing, not even a pong,
//! for [`Limits::silent_limit`] (a vanished peer) is dropped; clients may send at most
//! [`MAX_CLIENT_MESSAGE`] bytes a message; and on shutdown every client is closed with
//! 1001. [`open_connections`] is the `conflux_ws_connections` gauge.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use conflux_command_api::error::ApiError;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::{read_whole_stream, EventStore, StreamQuery};
use conflux_schema::{EventEnvelope, StreamId};
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::audit::QueryParams;

/// Events buffered per client before it counts as lagging.
const CHANNEL: usize = 8192;
/// How often the feed looks for commits made by other processes.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Close code for an unknown id.
const UNKNOWN: u16 = 4404;
/// The largest message a client may send. Clients have nothing to say but pongs and a
/// close; the WebSocket default (64 MiB) would let each connection buffer that much.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// How many times a workflow snapshot is recomputed when its executions moved while it
/// was folded, before settling for a status that may be newer than its position.
const SNAPSHOT_ATTEMPTS: usize = 2;
/// The most executions of one workflow a workflow stream follows from the start.
const MAX_EXECUTIONS: usize = 100_000;

/// How a connection is kept alive and when it is given up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How often the server pings.
    pub ping_every: Duration,
    /// A client that has sent nothing (not even a pong) for this long is gone: a peer
    /// that vanished without closing TCP, or one that stopped reading. It is dropped.
    pub silent_limit: Duration,
    /// The longest one frame may take to be written; a client that does not read is
    /// dropped after it (the broadcast channel bounds what it can fall behind, this
    /// bounds how long its task lives).
    pub send_timeout: Duration,
    /// How long a close waits for the client's answering close frame.
    pub close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            ping_every: Duration::from_secs(15),
            silent_limit: Duration::from_secs(45),
            send_timeout: Duration::from_secs(10),
            close_grace: Duration::from_secs(1),
        }
    }
}

/// WebSocket clients connected to this process now, over every feed.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// WebSocket clients connected to this process now (the `conflux_ws_connections`
/// gauge): counted from the upgrade to the end of the connection's task.
pub fn open_connections() -> usize {
    OPEN.load(Ordering::Relaxed)
}

/// One open connection in [`OPEN`], for as long as it lives.
struct Counted;

impl Counted {
    fn new() -> Self {
        OPEN.fetch_add(1, Ordering::Relaxed);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The process's one tail of the event log, fanned out to every client.
#[derive(Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<EventEnvelope>>,
    shutdown: CancellationToken,
    limits: Limits,
}

impl LiveFeed {
    /// Starts tailing `store` from its current head until `shutdown`, which also closes
    /// every client (1001).
    pub async fn start(store: Arc<dyn EventStore>, shutdown: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL);
        let feed = Self {
            tx: tx.clone(),
            shutdown: shutdown.clone(),
            limits: Limits::default(),
        };
        let mut after = store.head_position().await.unwrap_or(0);
        let mut commits = store.commits();
        tokio::spawn(async move {
            loop {
                match store.read_all(after, 1000).await {
                    Ok(events) if !events.is_empty() => {
                        for e in events {
                            after = e.position;
                            // No receivers is fine: nobody is watching.
                            let _ = tx.send(Arc::new(e));
                        }
                        continue;
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "the live feed could not read the store"),
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = commits.changed() => {}
                    _ = tokio::time::sleep(POLL_EVERY) => {}
                }
            }
        });
        feed
    }

    /// The same feed, holding its clients to `limits` (tuning, tests).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }
}

/// What the WebSocket routes need.
#[derive(Clone)]
pub struct LiveState {
    /// Loads executions (snapshots).
    pub commands: ExecutionCommands,
    /// The process's feed.
    pub feed: LiveFeed,
}

/// `GET /ws/executions/{id}` and `GET /ws/workflows/{id}`.
pub fn router(state: LiveState) -> Router {
    Router::new()
        .route("/ws/executions/{id}", get(execution))
        .route("/ws/workflows/{id}", get(workflow))
        .with_state(state)
}

/// What a connection streams.
enum Target {
    Execution,
    Workflow,
}

async fn execution(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<LiveState>,
    path: Result<Path<String>, PathRejection>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    upgrade(ws, state, path, q, Target::Execution)
}

async fn workflow(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<LiveState>,
    path: Result<Path<String>, PathRejection>,
    q: QueryParams,
) -> Result<Response, ApiError> {
    upgrade(ws, state, path, q, Target::Workflow)
}

/// Checks `?after=` and the upgrade (both answered with the API's JSON error body),
/// then hands the connection to its task. A path id that is not a UUID upgrades and is
/// closed with 4404, like any unknown id.
fn upgrade(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    state: LiveState,
    path: Result<Path<String>, PathRejection>,
    q: QueryParams,
    target: Target,
) -> Result<Response, ApiError> {
    let after = q.number("after")?;
    let ws = ws.map_err(|rejection| {
        ApiError::new(
            rejection.status(),
            "invalid_request",
            format!(
                "this route needs a WebSocket upgrade: {}",
                rejection.body_text()
            ),
        )
        .with_details(json!({"reason": "websocket_upgrade_required"}))
    })?;
    let id = path.ok().and_then(|Path(raw)| Uuid::parse_str(&raw).ok());
    let ws = ws
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        let _counted = Counted::new();
        let client = Client::new(socket, state.feed.limits);
        match target {
            Target::Execution => stream_execution(client, state, id, after).await,
            Target::Workflow => stream_workflow(client, state, id, after).await,
        }
    }))
}

/// What a connection needs of its socket: axum's WebSocket, or a test double.
trait Socket:
    Stream<Item = Result<Message, axum::Error>> + Sink<Message, Error = axum::Error> + Unpin + Send
{
}

impl<T> Socket for T where
    T: Stream<Item = Result<Message, axum::Error>>
        + Sink<Message, Error = axum::Error>
        + Unpin
        + Send
{
}

/// One client's socket and the limits it is held to.
struct Client<S> {
    socket: S,
    limits: Limits,
}

impl<S: Socket> Client<S> {
    fn new(socket: S, limits: Limits) -> Self {
        Self { socket, limits }
    }

    /// Sends one frame; false if the client is gone or did not take it in time.
    async fn send(&mut self, message: Message) -> bool {
        matches!(
            tokio::time::timeout(self.limits.send_timeout, self.socket.send(message)).await,
            Ok(Ok(()))
        )
    }

    async fn send_json(&mut self, value: serde_json::Value) -> bool {
        self.send(Message::Text(value.to_string().into())).await
    }

    /// Sends the snapshot frame; false if the client is gone.
    async fn send_snapshot(&mut self, position: u64, status: serde_json::Value) -> bool {
        self.send_json(json!({"type": "snapshot", "position": position, "status": status}))
            .await
    }

    /// Sends caught-up events above `after`, in the order given; returns the last
    /// position sent (or `after`), None if the client is gone.
    async fn send_events(&mut self, events: &[EventEnvelope], after: u64) -> Option<u64> {
        let mut last = after;
        for e in events.iter().filter(|e| e.position > after) {
            if !self.send_json(json!({"type": "event", "event": e})).await {
                return None;
            }
            last = e.position;
        }
        Some(last)
    }

    /// Sends a close frame, then waits (briefly) for the client's: dropping the TCP
    /// connection at once could reset it before the client has read the frame.
    async fn close(mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code,
            reason: reason.to_owned().into(),
        };
        if !self.send(Message::Close(Some(frame))).await {
            return;
        }
        let _ = tokio::time::timeout(self.limits.close_grace, async {
            while let Some(Ok(message)) = self.socket.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    /// Answers the client's close frame (the closing handshake), then ends.
    async fn closed_by_client(mut self) {
        let _ = tokio::time::timeout(self.limits.send_timeout, self.socket.close()).await;
    }
}

/// Forwards live events that `wanted` admits with a position above `last_sent`, pings,
/// and ends on the client's close, its silence or slowness, a lag (after telling the
/// client), or shutdown (1001).
async fn forward<S: Socket>(
    mut client: Client<S>,
    live: &mut broadcast::Receiver<Arc<EventEnvelope>>,
    mut last_sent: u64,
    shutdown: &CancellationToken,
    mut wanted: impl FnMut(&EventEnvelope) -> bool,
) {
    let limits = client.limits;
    let mut ping = tokio::time::interval_at(Instant::now() + limits.ping_every, limits.ping_every);
    let mut heard = Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return client.close(1001, "server stopping").await,
            received = live.recv() => match received {
                Ok(e) => {
                    if e.position > last_sent && wanted(&e) {
                        if !client.send_json(json!({"type": "event", "event": &*e})).await {
                            return;
                        }
                        last_sent = e.position;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    if client.send_json(json!({"type": "lagged", "position": last_sent})).await {
                        client.close(1008, "lagged: reconnect with ?after=").await;
                    }
                    return;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    return client.close(1001, "server stopping").await;
                }
            },
            _ = ping.tick() => {
                if heard.elapsed() >= limits.silent_limit {
                    return client.close(1008, "no answer to pings").await;
                }
                if !client.send(Message::Ping(Vec::new().into())).await {
                    return;
                }
            }
            incoming = client.socket.next() => match incoming {
                Some(Ok(Message::Close(_))) => return client.closed_by_client().await,
                None | Some(Err(_)) => return,
                Some(Ok(_)) => heard = Instant::now(),
            },
        }
    }
}

async fn stream_execution<S: Socket>(
    mut client: Client<S>,
    state: LiveState,
    id: Option<Uuid>,
    after: Option<u64>,
) {
    let Some(execution_id) = id else {
        return client.close(UNKNOWN, "unknown execution").await;
    };
    // Subscribe before reading the store: whatever commits meanwhile is in the channel.
    let mut live = state.feed.tx.subscribe();
    let stream = StreamId::execution(execution_id);
    // One stream: its log, however long it took to read, is a prefix in position order,
    // so its last position is an exact cut.
    let last_sent = match after {
        None => match state.commands.load(execution_id).await {
            Ok(Some((execution, log))) => {
                let position = log.last().map_or(0, |e| e.position);
                let mut status = execution.to_json();
                status["position"] = json!(position);
                if !client.send_snapshot(position, status).await {
                    return;
                }
                position
            }
            Ok(None) => return client.close(UNKNOWN, "unknown execution").await,
            Err(e) => {
                tracing::warn!(error = %e, "a live snapshot failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
        Some(after) => match read_whole_stream(&**state.commands.store(), &stream).await {
            Ok(log) if log.is_empty() => return client.close(UNKNOWN, "unknown execution").await,
            Ok(log) => match client.send_events(&log, after).await {
                Some(last) => last,
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "a live catch-up failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
    };
    let shutdown = state.feed.shutdown.clone();
    forward(client, &mut live, last_sent, &shutdown, |e| {
        e.stream_id == stream
    })
    .await;
}

/// Which streams belong to one workflow: its own and its executions' (learned from
/// their `ExecutionStarted` as they appear).
struct WorkflowStreams {
    workflow_id: Uuid,
    streams: HashSet<StreamId>,
}

impl WorkflowStreams {
    /// The workflow's streams as of now (every execution started at or below a
    /// position read before this).
    async fn find(store: &dyn EventStore, workflow_id: Uuid) -> Result<Self, String> {
        let query = StreamQuery::ExecutionsOfWorkflow {
            workflow_id,
            open_only: false,
        };
        let executions = store
            .find_streams(&query, MAX_EXECUTIONS)
            .await
            .map_err(|e| e.to_string())?;
        let mut streams: HashSet<StreamId> = executions.into_iter().collect();
        streams.insert(StreamId::workflow(workflow_id));
        Ok(Self {
            workflow_id,
            streams,
        })
    }

    fn executions(&self) -> Vec<StreamId> {
        let own = StreamId::workflow(self.workflow_id);
        let mut executions: Vec<StreamId> = self
            .streams
            .iter()
            .filter(|s| **s != own)
            .cloned()
            .collect();
        // `status` takes the last one as the latest execution.
        executions.sort_by_key(|s| s.uuid());
        executions
    }

    fn admits(&mut self, e: &EventEnvelope) -> bool {
        if let conflux_schema::Event::ExecutionStarted { workflow_id, .. } = &e.event {
            if *workflow_id == self.workflow_id {
                self.streams.insert(e.stream_id.clone());
            }
        }
        self.streams.contains(&e.stream_id)
    }
}

/// The workflow's status as of one position of the whole log (the cut), and its
/// streams. The status is folded stream by stream while executions move, so it is
/// exact only if it reflects nothing above the cut; otherwise it is recomputed, up to
/// [`SNAPSHOT_ATTEMPTS`] times, after which a status slightly newer than its position
/// is sent (events above the cut are still all sent, once).
async fn workflow_snapshot(
    commands: &ExecutionCommands,
    workflow_id: Uuid,
) -> Result<(u64, WorkflowStreams, serde_json::Value), String> {
    let store = commands.store();
    let mut attempt = 1;
    loop {
        let cut = store.head_position().await.map_err(|e| e.to_string())?;
        let streams = WorkflowStreams::find(&**store, workflow_id).await?;
        let (position, mut status) =
            crate::workflows::status(commands, workflow_id, &streams.executions())
                .await
                .map_err(|e| e.to_string())?;
        if position <= cut || attempt == SNAPSHOT_ATTEMPTS {
            if position > cut {
                tracing::debug!(%workflow_id, cut, position, "workflow snapshot newer than its position");
            }
            status["position"] = json!(cut);
            return Ok((cut, streams, status));
        }
        attempt += 1;
    }
}

async fn stream_workflow<S: Socket>(
    mut client: Client<S>,
    state: LiveState,
    id: Option<Uuid>,
    after: Option<u64>,
) {
    let Some(workflow_id) = id else {
        return client.close(UNKNOWN, "unknown workflow").await;
    };
    // Subscribe before reading the store: whatever commits meanwhile is in the channel.
    let mut live = state.feed.tx.subscribe();
    match state.commands.catalog().get(workflow_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return client.close(UNKNOWN, "unknown workflow").await,
        Err(e) => {
            tracing::warn!(error = %e, "loading a workflow for a live stream failed");
            return client.close(1011, "the store is unavailable").await;
        }
    }
    let (mut filter, last_sent) = match after {
        None => match workflow_snapshot(&state.commands, workflow_id).await {
            Ok((cut, streams, status)) => {
                if !client.send_snapshot(cut, status).await {
                    return;
                }
                (streams, cut)
            }
            Err(e) => {
                tracing::warn!(error = %e, "a live workflow snapshot failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
        Some(after) => match workflow_catch_up(&**state.commands.store(), workflow_id, after).await
        {
            Ok((cut, streams, missed)) => {
                if client.send_events(&missed, after).await.is_none() {
                    return;
                }
                (streams, cut.max(after))
            }
            Err(e) => {
                tracing::warn!(error = %e, "a live workflow catch-up failed");
                return client.close(1011, "the store is unavailable").await;
            }
        },
    };
    let shutdown = state.feed.shutdown.clone();
    forward(client, &mut live, last_sent, &shutdown, |e| {
        filter.admits(e)
    })
    .await;
}

/// The workflow's events in `(after, cut]`, in position order, where the cut is the
/// store's head read first: every stream is read after the cut, so each holds all its
/// events up to it, and whatever commits above it reaches the client from the feed.
async fn workflow_catch_up(
    store: &dyn EventStore,
    workflow_id: Uuid,
    after: u64,
) -> Result<(u64, WorkflowStreams, Vec<EventEnvelope>), String> {
    let cut = store.head_position().await.map_err(|e| e.to_string())?;
    let streams = WorkflowStreams::find(store, workflow_id).await?;
    let mut missed = Vec::new();
    for stream in &streams.streams {
        let log = read_whole_stream(store, stream)
            .await
            .map_err(|e| e.to_string())?;
        missed.extend(
            log.into_iter()
                .filter(|e| e.position > after && e.position <= cut),
        );
    }
    missed.sort_by_key(|e| e.position);
    Ok((cut, streams, missed))
}

#[cfg(test)]
mod tests {
    //! The connection loop against an in-memory socket: what it does when the client is
    //! silent, stops reading, falls behind, closes, or the server stops.

    use super::*;
    use futures::channel::mpsc;
    use std::pin::Pin;
    use std::task::{Context, Poll};

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

        fn poll_ready(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing.poll_ready_unpin(cx).map_err(axum::Error::new)
        }

        fn start_send(mut self: Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.outgoing
                .start_send_unpin(item)
                .map_err(axum::Error::new)
        }

        fn poll_flush(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
            self.outgoing.poll_flush_unpin(cx).map_err(axum::Error::new)
        }

        fn poll_close(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Result<(), Self::Error>> {
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
}
