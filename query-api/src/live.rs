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
//! nothing is sent twice. A client too slow for the channel gets `{"type":"lagged"}` and
//! is closed (it reconnects with `after`), so memory never grows without bound.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use conflux_command_api::error::ApiError;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::{read_whole_stream, EventStore};
use conflux_schema::{EventEnvelope, StreamId};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// Events buffered per client before it counts as lagging.
const CHANNEL: usize = 8192;
/// How often the server pings.
const PING_EVERY: Duration = Duration::from_secs(15);
/// How often the feed looks for commits made by other processes.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// Close code for an unknown id.
const UNKNOWN: u16 = 4404;

/// The process's one tail of the event log, fanned out to every client.
#[derive(Clone)]
pub struct LiveFeed {
    tx: broadcast::Sender<Arc<EventEnvelope>>,
}

impl LiveFeed {
    /// Starts tailing `store` from its current head until `shutdown`.
    pub async fn start(store: Arc<dyn EventStore>, shutdown: CancellationToken) -> Self {
        let (tx, _) = broadcast::channel(CHANNEL);
        let feed = Self { tx: tx.clone() };
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
}

/// What the WebSocket routes need.
#[derive(Clone)]
pub struct LiveState {
    /// Loads executions (snapshots).
    pub commands: ExecutionCommands,
    /// The process's feed.
    pub feed: LiveFeed,
}

/// `GET /ws/executions/{id}`.
pub fn router(state: LiveState) -> Router {
    Router::new()
        .route("/ws/executions/{id}", get(execution))
        .route("/ws/workflows/{id}", get(workflow))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
struct LiveQuery {
    #[serde(default)]
    after: Option<String>,
}

async fn execution(
    ws: WebSocketUpgrade,
    State(state): State<LiveState>,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, ApiError> {
    let after = parse_after(q.after.as_deref())?;
    Ok(ws.on_upgrade(move |socket| stream_execution(socket, state, id, after)))
}

async fn workflow(
    ws: WebSocketUpgrade,
    State(state): State<LiveState>,
    Path(id): Path<String>,
    Query(q): Query<LiveQuery>,
) -> Result<Response, ApiError> {
    let after = parse_after(q.after.as_deref())?;
    Ok(ws.on_upgrade(move |socket| stream_workflow(socket, state, id, after)))
}

fn parse_after(raw: Option<&str>) -> Result<Option<u64>, ApiError> {
    raw.map(|raw| {
        raw.parse::<u64>().map_err(|_| {
            ApiError::invalid_request(format!(
                "after must be a position (a whole number), got {raw:?}"
            ))
        })
    })
    .transpose()
}

/// Which streams belong to one workflow: its own and its executions' (learned from
/// their `ExecutionStarted` as they appear).
struct WorkflowStreams {
    workflow_id: uuid::Uuid,
    streams: std::collections::HashSet<StreamId>,
}

impl WorkflowStreams {
    fn admits(&mut self, e: &EventEnvelope) -> bool {
        if let conflux_schema::Event::ExecutionStarted { workflow_id, .. } = &e.event {
            if *workflow_id == self.workflow_id {
                self.streams.insert(e.stream_id.clone());
            }
        }
        self.streams.contains(&e.stream_id)
    }
}

async fn stream_workflow(mut socket: WebSocket, state: LiveState, id: String, after: Option<u64>) {
    let Ok(workflow_id) = uuid::Uuid::parse_str(&id) else {
        return close(socket, UNKNOWN, "unknown workflow").await;
    };
    // Subscribe before reading the store: whatever commits meanwhile is in the channel.
    let mut live = state.feed.tx.subscribe();
    match state.commands.catalog().get(workflow_id).await {
        Ok(Some(_)) => {}
        Ok(None) => return close(socket, UNKNOWN, "unknown workflow").await,
        Err(e) => {
            tracing::warn!(error = %e, "loading a workflow for a live stream failed");
            return close(socket, 1011, "the store is unavailable").await;
        }
    }
    let query = conflux_engine::store::StreamQuery::ExecutionsOfWorkflow {
        workflow_id,
        open_only: false,
    };
    let Ok(executions) = state.commands.store().find_streams(&query, 100_000).await else {
        return close(socket, 1011, "the store is unavailable").await;
    };
    let mut filter = WorkflowStreams {
        workflow_id,
        streams: executions.iter().cloned().collect(),
    };
    filter.streams.insert(StreamId::workflow(workflow_id));
    let mut last_sent = match after {
        None => match crate::workflows::status(&state.commands, workflow_id, &executions).await {
            Ok((position, status)) => {
                if !send_snapshot(&mut socket, position, status).await {
                    return;
                }
                position
            }
            Err(_) => return close(socket, 1011, "the store is unavailable").await,
        },
        Some(after) => {
            let mut missed = Vec::new();
            for stream in &filter.streams {
                match read_whole_stream(&**state.commands.store(), stream).await {
                    Ok(log) => missed.extend(log.into_iter().filter(|e| e.position > after)),
                    Err(_) => return close(socket, 1011, "the store is unavailable").await,
                }
            }
            missed.sort_by_key(|e| e.position);
            match send_events(&mut socket, &missed, after).await {
                Some(last) => last,
                None => return,
            }
        }
    };
    forward(socket, &mut live, &mut last_sent, |e| filter.admits(e)).await;
}

/// Forwards live events that `wanted` admits with a position above `last_sent`, pings
/// every 15 s, and ends on the client's close, a lag (after telling the client), or
/// shutdown.
async fn forward(
    mut socket: WebSocket,
    live: &mut broadcast::Receiver<Arc<EventEnvelope>>,
    last_sent: &mut u64,
    mut wanted: impl FnMut(&EventEnvelope) -> bool,
) {
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            received = live.recv() => match received {
                Ok(e) => {
                    if wanted(&e) && e.position > *last_sent {
                        if !send_json(&mut socket, json!({"type": "event", "event": &*e})).await {
                            return;
                        }
                        *last_sent = e.position;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    let _ = send_json(&mut socket, json!({"type": "lagged", "position": *last_sent})).await;
                    return close(socket, 1008, "lagged: reconnect with ?after=").await;
                }
                Err(broadcast::error::RecvError::Closed) => return close(socket, 1001, "server stopping").await,
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Sends the snapshot frame; false if the client is gone.
async fn send_snapshot(socket: &mut WebSocket, position: u64, status: serde_json::Value) -> bool {
    send_json(
        socket,
        json!({"type": "snapshot", "position": position, "status": status}),
    )
    .await
}

/// Sends caught-up events above `after`, in the order given; returns the last position
/// sent (or `after`), None if the client is gone.
async fn send_events(socket: &mut WebSocket, events: &[EventEnvelope], after: u64) -> Option<u64> {
    let mut last = after;
    for e in events {
        if e.position <= after {
            continue;
        }
        if !send_json(socket, json!({"type": "event", "event": e})).await {
            return None;
        }
        last = e.position;
    }
    Some(last)
}

async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let frame = CloseFrame {
        code,
        reason: reason.to_owned().into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

async fn send_json(socket: &mut WebSocket, value: serde_json::Value) -> bool {
    socket
        .send(Message::Text(value.to_string().into()))
        .await
        .is_ok()
}

async fn stream_execution(mut socket: WebSocket, state: LiveState, id: String, after: Option<u64>) {
    let Ok(execution_id) = uuid::Uuid::parse_str(&id) else {
        return close(socket, UNKNOWN, "unknown execution").await;
    };
    // Subscribe before reading the store: whatever commits meanwhile is in the channel.
    let mut live = state.feed.tx.subscribe();
    let stream = StreamId::execution(execution_id);
    let mut last_sent = match after {
        None => match state.commands.load(execution_id).await {
            Ok(Some((execution, log))) => {
                let position = log.last().map_or(0, |e| e.position);
                let mut status = execution.to_json();
                status["position"] = json!(position);
                if !send_snapshot(&mut socket, position, status).await {
                    return;
                }
                position
            }
            Ok(None) => return close(socket, UNKNOWN, "unknown execution").await,
            Err(e) => {
                tracing::warn!(error = %e, "a live snapshot failed");
                return close(socket, 1011, "the store is unavailable").await;
            }
        },
        Some(after) => match read_whole_stream(&**state.commands.store(), &stream).await {
            Ok(log) if log.is_empty() => return close(socket, UNKNOWN, "unknown execution").await,
            Ok(log) => match send_events(&mut socket, &log, after).await {
                Some(last) => last,
                None => return,
            },
            Err(e) => {
                tracing::warn!(error = %e, "a live catch-up failed");
                return close(socket, 1011, "the store is unavailable").await;
            }
        },
    };
    forward(socket, &mut live, &mut last_sent, |e| e.stream_id == stream).await;
}
