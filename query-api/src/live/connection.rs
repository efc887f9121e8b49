//! One connection, after the upgrade: what it streams (an execution's or a workflow's
//! snapshot or catch-up, then its live events) and the loop that forwards the feed to
//! the client, pings it, and gives it up when it is gone, silent, slow or lagging.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message};
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::{read_whole_stream, EventStore, StreamQuery};
use conflux_schema::{EventEnvelope, StreamId};
use futures::{Sink, SinkExt, Stream, StreamExt};
use serde_json::json;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{Limits, LiveState};

/// Close code for an unknown id.
const UNKNOWN: u16 = 4404;
/// How many times a workflow snapshot is recomputed when its executions moved while it
/// was folded, before settling for a status that may be newer than its position.
const SNAPSHOT_ATTEMPTS: usize = 2;
/// The most executions of one workflow a workflow stream follows from the start.
const MAX_EXECUTIONS: usize = 100_000;

/// What a connection needs of its socket: axum's WebSocket, or a test double.
pub(super) trait Socket:
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
pub(super) struct Client<S> {
    socket: S,
    limits: Limits,
}

impl<S: Socket> Client<S> {
    pub(super) fn new(socket: S, limits: Limits) -> Self {
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
pub(super) async fn forward<S: Socket>(
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

pub(super) async fn stream_execution<S: Socket>(
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

pub(super) async fn stream_workflow<S: Socket>(
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
