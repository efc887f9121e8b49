//! The live status streams: `GET /ws/executions/{id}` and `GET /ws/workflows/{id}`
//! (WebSocket).
//!
//! # Design
//!
//! One [`LiveFeed`] per process tails the event store by position (`feed`) — never a
//! store subscription per client. Because positions become visible in commit order,
//! tailing `position > p` sees every event exactly once, in order.
//!
//! Fan-out costs what the event's own subscribers cost, not what every connection
//! costs. Each connection subscribes under one key (`registry`): its execution, or its
//! workflow. The feed publishes each event under the keys of its streams only — the
//! execution's and the execution's workflow's (learned from the `ExecutionStarted` the
//! tail passes, or looked up once for an execution older than the feed, and only while
//! someone watches a workflow) — so a connection is woken only for its own events.
//! Each event's `{"type":"event","event":…}` text is serialised once, when its first
//! subscriber is found, and shared by reference count by every queue it goes into; a
//! connection writes whatever is queued when it wakes with one flush (`connection`).
//! An event nobody watches costs a map lookup.
//!
//! A client first subscribes, then reads what it missed from the store (the snapshot's
//! log, or everything after `?after=`), then forwards queued events with a position
//! above the last one it sent (`streams`): an event published before the subscription
//! was committed before it, so the catch-up holds it; one published after is queued.
//! Nothing falls between catch-up and live, and nothing is sent twice. A workflow spans
//! many streams, so its catch-up is cut at one position of the whole log (the store's
//! head, read after subscribing): everything at or below the cut comes from the store,
//! everything above it from the feed.
//!
//! A connection costs one task, a queue and a few buffers, so everything that can keep
//! one open for nothing is bounded: a client with `QUEUE` (4,096) events queued and not
//! taken gets `{"type":"lagged"}` and is closed (it reconnects with `after`); a frame
//! the client does not take within [`Limits::send_timeout`] drops it; a client that has
//! sent nothing, not even a pong, for [`Limits::silent_limit`] (a vanished peer) is
//! dropped; clients may send at most [`MAX_CLIENT_MESSAGE`] bytes a message; and on
//! shutdown every client is closed with 1001. A subscription leaves the registry with
//! its connection. [`open_connections`] is the `conflux_ws_connections` gauge.
//!
//! # Layout
//! - `feed`: the store tail and the routing of events to keys.
//! - `registry`: subscribers by key, their bounded queues, lag.
//! - `streams`: what a connection streams: snapshot or catch-up, then its queue.
//! - `connection`: the socket loop: batched writes, pings, silence, lag, close codes.

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
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::EventStore;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::QueryParams;
use conflux_http::metrics::ScrapeHook;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use connection::Client;
use registry::{Key, Registry, Subscription};
use streams::{stream_execution, stream_workflow};

mod connection;
mod feed;
#[cfg(test)]
mod feed_tests;
mod registry;
mod streams;
#[cfg(test)]
mod tests;

/// Events queued per client before it counts as lagging: the client's own events only
/// (its execution's, or its workflow's), each a shared reference to one frame.
const QUEUE: usize = 4096;
/// The largest message a client may send. Clients have nothing to say but pongs and a
/// close; the WebSocket default (64 MiB) would let each connection buffer that much.
pub const MAX_CLIENT_MESSAGE: usize = 64 * 1024;
/// The socket's read buffer. Allocated at the upgrade and zeroed up to this size at
/// every read attempt — and a connection attempts a read each time it wakes — so the
/// WebSocket default (128 KiB) costs a 128 KiB memset per event sent and 128 KiB of
/// resident memory per client. Clients send pongs and closes; a larger message (up to
/// [`MAX_CLIENT_MESSAGE`]) still fits, the buffer grows for it.
const READ_BUFFER: usize = 4 * 1024;

/// How a connection is kept alive and when it is given up.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How often the server pings.
    pub ping_every: Duration,
    /// A client that has sent nothing (not even a pong) for this long is gone: a peer
    /// that vanished without closing TCP, or one that stopped reading. It is dropped.
    pub silent_limit: Duration,
    /// The longest one frame may take to be written; a client that does not read is
    /// dropped after it (its queue bounds what it can fall behind, this bounds how long
    /// its task lives).
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

/// The scrape hook that sets the `conflux_ws_connections` gauge to
/// [`open_connections`] before each `/metrics` answer.
pub fn connections_gauge() -> ScrapeHook {
    Arc::new(|| metrics::gauge!("conflux_ws_connections").set(open_connections() as f64))
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

/// The process's one tail of the event log, routed to the clients of each event's
/// streams.
#[derive(Clone)]
pub struct LiveFeed {
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    limits: Limits,
}

impl LiveFeed {
    /// Starts tailing `store` from its current head until `shutdown`, which also closes
    /// every client (1001).
    pub async fn start(store: Arc<dyn EventStore>, shutdown: CancellationToken) -> Self {
        let registry = Registry::new(QUEUE);
        feed::start(store, registry.clone(), shutdown.clone()).await;
        Self {
            registry,
            shutdown,
            limits: Limits::default(),
        }
    }

    /// The same feed, holding its clients to `limits` (tuning, tests).
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Queues every event for `key` from now on.
    fn subscribe(&self, key: Key) -> Subscription {
        self.registry.subscribe(key)
    }
}

/// What the WebSocket routes need.
#[derive(Clone)]
pub struct LiveState {
    /// Loads executions (snapshots).
    pub commands: ExecutionCommands,
    /// The process's feed.
    pub feed: LiveFeed,
    /// Keys, to close a stream whose key is revoked (4401).
    pub access: conflux_engine::access::Access,
    /// Cancelled when this connection's key is revoked (set per connection).
    pub revoked: CancellationToken,
    /// Held by one connection: dropping it stops the connection's revocation watch.
    connection: Option<Arc<tokio_util::sync::DropGuard>>,
    /// The caller's tenant (set per connection): another tenant's id is closed with
    /// 4404, exactly as an unknown one.
    pub tenant: String,
    /// Whether `viewer` callers see payloads hidden (`CONFLUX_VIEWER_PAYLOADS=hidden`).
    pub hide_from_viewers: bool,
    /// Whether this connection's caller sees payloads hidden (set per connection).
    hide_payloads: bool,
}

impl LiveState {
    /// The state of the WebSocket routes over `commands`, `feed` and `access`.
    pub fn new(
        commands: ExecutionCommands,
        feed: LiveFeed,
        access: conflux_engine::access::Access,
    ) -> Self {
        Self {
            commands,
            feed,
            access,
            revoked: CancellationToken::new(),
            connection: None,
            tenant: conflux_schema::access::DEFAULT_TENANT.to_owned(),
            hide_from_viewers: false,
            hide_payloads: false,
        }
    }

    /// Hides payloads from `viewer` callers when `hide` is set.
    pub fn hiding_from_viewers(mut self, hide: bool) -> Self {
        self.hide_from_viewers = hide;
        self
    }
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
    request: RequestContext,
) -> Result<Response, ApiError> {
    upgrade(ws, state.for_caller(&request), path, q, Target::Execution)
}

async fn workflow(
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    State(state): State<LiveState>,
    path: Result<Path<String>, PathRejection>,
    q: QueryParams,
    request: RequestContext,
) -> Result<Response, ApiError> {
    upgrade(ws, state.for_caller(&request), path, q, Target::Workflow)
}

impl LiveState {
    /// This state for one connection of `request`'s caller: when the caller's key is
    /// revoked (anywhere), `revoked` is cancelled and the stream closes with 4401.
    fn for_caller(mut self, request: &RequestContext) -> Self {
        self.revoked = CancellationToken::new();
        request.tenant().clone_into(&mut self.tenant);
        self.hide_payloads = self.hide_from_viewers && request.is_viewer();
        let Some(key_id) = request.principal.as_ref().and_then(|p| p.key_id) else {
            return self;
        };
        let (access, revoked) = (self.access.clone(), self.revoked.clone());
        let mut changes = access.revocations();
        let closed = self.feed.shutdown.clone();
        let done = CancellationToken::new();
        self.connection = Some(Arc::new(done.clone().drop_guard()));
        tokio::spawn(async move {
            // Ends with the connection (its state, holding the guard, is dropped), with
            // the server, or once the key is revoked or expired (looked at again every
            // second: expiry is no event).
            loop {
                if !access.key_is_valid(key_id) {
                    revoked.cancel();
                    return;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    () = closed.cancelled() => return,
                    () = done.cancelled() => return,
                    () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        });
        self
    }
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
        .read_buffer_size(READ_BUFFER)
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE);
    Ok(ws.on_upgrade(move |socket| async move {
        let _counted = Counted::new();
        let client = Client::new(socket, state.feed.limits).hiding_payloads(state.hide_payloads);
        match target {
            Target::Execution => stream_execution(client, state, id, after).await,
            Target::Workflow => stream_workflow(client, state, id, after).await,
        }
    }))
}
