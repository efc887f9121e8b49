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

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use conflux_command_api::error::ApiError;
use conflux_command_api::extract::QueryParams;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::EventStore;
use conflux_schema::EventEnvelope;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use connection::{stream_execution, stream_workflow, Client};

mod connection;
#[cfg(test)]
mod tests;

/// Events buffered per client before it counts as lagging.
const CHANNEL: usize = 8192;
/// How often the feed looks for commits made by other processes.
const POLL_EVERY: Duration = Duration::from_millis(20);
/// The largest message a client may send. Clients have nothing to say but pongs and a
/// close; the WebSocket default (64 MiB) would let each connection buffer that much.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;

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
