//! The live streams of API.md over WebSocket: `/ws/executions/{id}` and
//! `/ws/workflows/{id}`. The first frame is a snapshot with its position, then every
//! later event once, in position order. A `lagged` frame (the client fell behind) is
//! handled here: the stream reconnects with `?after=<last position seen>` and goes on,
//! so callers still see every event exactly once; [`LiveStream::reconnects`] says how
//! often that happened.
//!
//! Every frame carries the instant and wall-clock time it was read, taken before the
//! JSON is parsed, so commit → client latencies do not include the client's parsing.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::client::{bearer, Client};

/// The server's close code for an unknown id.
const UNKNOWN_ID: u16 = 4404;

/// One frame of a live stream.
#[derive(Debug, Clone)]
pub enum Frame {
    /// The state as of `position` (the `/executions/{id}` or `/status` body).
    Snapshot {
        /// The position the snapshot reflects.
        position: u64,
        /// The status body.
        status: Value,
    },
    /// One event envelope.
    Event(Value),
}

/// A frame and when it was read.
#[derive(Debug, Clone)]
pub struct Received {
    /// The frame.
    pub frame: Frame,
    /// When it was read (monotonic).
    pub at: Instant,
    /// When it was read (this machine's wall clock, to compare with `recorded_at`).
    pub wall: DateTime<Utc>,
}

/// One live stream, reconnecting on `lagged`.
pub struct LiveStream {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    url: String,
    token: Option<String>,
    last_position: u64,
    reconnects: u64,
}

impl LiveStream {
    /// Subscribes to an execution (snapshot first).
    pub async fn execution(client: &Client, execution_id: &str) -> Result<Self> {
        Self::open(client, &format!("/ws/executions/{execution_id}")).await
    }

    /// Subscribes to a workflow and all its executions (snapshot first).
    pub async fn workflow(client: &Client, workflow_id: &str) -> Result<Self> {
        Self::open(client, &format!("/ws/workflows/{workflow_id}")).await
    }

    async fn open(client: &Client, path: &str) -> Result<Self> {
        let url = client.ws_url(path);
        let token = client.token().map(str::to_owned);
        let socket = connect(&url, token.as_deref()).await?;
        Ok(Self {
            socket,
            url,
            token,
            last_position: 0,
            reconnects: 0,
        })
    }

    /// Times the stream reconnected after a `lagged` frame.
    pub fn reconnects(&self) -> u64 {
        self.reconnects
    }

    /// The next frame; None when the server closed the stream (other than for an unknown
    /// id, which is an error).
    pub async fn next(&mut self) -> Result<Option<Received>> {
        loop {
            let Some(message) = self.socket.next().await else {
                return Ok(None);
            };
            let (at, wall) = (Instant::now(), Utc::now());
            let text = match message.with_context(|| format!("reading {}", self.url))? {
                Message::Text(text) => text,
                Message::Close(frame) => {
                    let code = frame.as_ref().map(|f| u16::from(f.code));
                    if code == Some(UNKNOWN_ID) {
                        bail!("{}: unknown id (close 4404)", self.url);
                    }
                    return Ok(None);
                }
                _ => continue,
            };
            let value: Value = serde_json::from_str(text.as_str())
                .with_context(|| format!("{}: a frame that is not JSON", self.url))?;
            let frame = match value["type"].as_str() {
                Some("snapshot") => {
                    let position = value["position"].as_u64().unwrap_or(0);
                    self.last_position = position;
                    Frame::Snapshot {
                        position,
                        status: value["status"].clone(),
                    }
                }
                Some("event") => {
                    let mut value = value;
                    let event = value["event"].take();
                    if let Some(p) = event["position"].as_u64() {
                        self.last_position = p;
                    }
                    Frame::Event(event)
                }
                Some("lagged") => {
                    self.reconnect().await?;
                    continue;
                }
                _ => continue,
            };
            return Ok(Some(Received { frame, at, wall }));
        }
    }

    async fn reconnect(&mut self) -> Result<()> {
        let _ = self.socket.close(None).await;
        let url = format!("{}?after={}", self.url, self.last_position);
        self.socket = connect(&url, self.token.as_deref()).await?;
        self.reconnects += 1;
        Ok(())
    }

    /// Waits, for at most `limit`, until the execution this stream follows is over:
    /// a terminal snapshot or a terminal event.
    pub async fn wait_terminal(&mut self, limit: Duration) -> Result<Terminal> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let received = tokio::time::timeout_at(deadline, self.next())
                .await
                .map_err(|_| anyhow!("{}: not finished within {limit:?}", self.url))??
                .ok_or_else(|| anyhow!("{}: closed before the execution finished", self.url))?;
            let (status, recorded) = match &received.frame {
                Frame::Snapshot { status, .. } => (
                    status["status"]
                        .as_str()
                        .filter(|s| is_terminal_status(s))
                        .map(str::to_owned),
                    None,
                ),
                Frame::Event(e) => (
                    terminal_event_status(e).map(str::to_owned),
                    recorded_at(e).ok(),
                ),
            };
            if let Some(status) = status {
                return Ok(Terminal {
                    status,
                    at: received.at,
                    recorded_at: recorded,
                    from_snapshot: matches!(received.frame, Frame::Snapshot { .. }),
                });
            }
        }
    }

    /// Closes the stream politely.
    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

/// How an execution ended, as the stream told it.
#[derive(Debug, Clone)]
pub struct Terminal {
    /// `completed`, `failed`, `cancelled`…
    pub status: String,
    /// When the client learnt it.
    pub at: Instant,
    /// The terminal event's `recorded_at` (None when the snapshot told it).
    pub recorded_at: Option<DateTime<Utc>>,
    /// Whether the snapshot already showed it (the execution was over before the
    /// stream opened).
    pub from_snapshot: bool,
}

/// A workflow stream read by a background task into a channel, so a scenario can
/// submit work while every event of the workflow's executions is collected.
pub struct Watch {
    /// Every event frame, in position order (the snapshot is consumed by
    /// [`Watch::workflow`]).
    pub events: mpsc::UnboundedReceiver<Received>,
    reader: Option<JoinHandle<Result<u64>>>,
    stop: CancellationToken,
}

impl Watch {
    /// Subscribes to `workflow_id` and returns once the snapshot arrived: from then
    /// on every event of the workflow and its executions reaches [`Watch::events`].
    pub async fn workflow(client: &Client, workflow_id: &str) -> Result<Self> {
        let mut live = LiveStream::workflow(client, workflow_id).await?;
        match live.next().await? {
            Some(Received {
                frame: Frame::Snapshot { .. },
                ..
            }) => {}
            other => bail!("workflow {workflow_id}: expected a snapshot first, got {other:?}"),
        }
        let (tx, events) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let token = stop.clone();
        let reader = tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = token.cancelled() => break,
                    next = live.next() => next?,
                };
                match next {
                    Some(r) if matches!(r.frame, Frame::Event(_)) => {
                        if tx.send(r).is_err() {
                            break;
                        }
                    }
                    Some(_) => {}
                    None => break,
                }
            }
            let reconnects = live.reconnects();
            live.close().await;
            Ok(reconnects)
        });
        Ok(Self {
            events,
            reader: Some(reader),
            stop,
        })
    }

    /// Stops reading; returns how often the stream had to reconnect after `lagged`.
    pub async fn stop(mut self) -> Result<u64> {
        self.stop.cancel();
        match self.reader.take() {
            Some(reader) => reader
                .await
                .map_err(|e| anyhow!("the WebSocket reader panicked: {e}"))?,
            None => Ok(0),
        }
    }
}

impl Drop for Watch {
    /// A watch dropped on an error path closes its socket too.
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Opens the WebSocket at `url`, the upgrade request carrying `token` as
/// `Authorization: Bearer <token>` when given.
async fn connect(
    url: &str,
    token: Option<&str>,
) -> Result<WebSocketStream<MaybeTlsStream<TcpStream>>> {
    let mut request = url
        .into_client_request()
        .with_context(|| format!("bad WebSocket URL {url}"))?;
    if let Some(token) = token {
        request
            .headers_mut()
            .insert(reqwest::header::AUTHORIZATION, bearer(token)?);
    }
    // A 4 KiB read buffer: the default 128 KiB is zeroed on every wake-up, which with
    // 1,000 sockets cost the load tester ~7% of the machine's CPU (w5).
    let config =
        tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(4096);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .with_context(|| format!("opening WebSocket {url}"))?;
    Ok(socket)
}

/// Whether an execution `status` is final.
pub fn is_terminal_status(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "cancelled" | "compensated")
}

/// The status an envelope ends its execution with (`ExecutionCompleted` →
/// `completed`…), or None.
pub fn terminal_event_status(envelope: &Value) -> Option<&'static str> {
    match envelope["type"].as_str()? {
        "ExecutionCompleted" => Some("completed"),
        "ExecutionFailed" => Some("failed"),
        "ExecutionCancelled" => Some("cancelled"),
        _ => None,
    }
}

/// The execution id of an envelope of an execution stream (`execution-<uuid>`).
pub fn execution_of(envelope: &Value) -> Option<&str> {
    envelope["stream_id"].as_str()?.strip_prefix("execution-")
}

/// The envelope's `recorded_at`.
pub fn recorded_at(envelope: &Value) -> Result<DateTime<Utc>> {
    let raw = envelope["recorded_at"]
        .as_str()
        .ok_or_else(|| anyhow!("an event without recorded_at: {envelope}"))?;
    Ok(DateTime::parse_from_rfc3339(raw)
        .with_context(|| format!("recorded_at {raw:?}"))?
        .with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn terminal_events_and_ids_are_read_from_envelopes() -> Result<()> {
        let e = json!({"type": "ExecutionCompleted", "stream_id": "execution-abc",
            "recorded_at": "2026-01-02T03:04:05.000006Z"});
        assert_eq!(terminal_event_status(&e), Some("completed"));
        assert_eq!(execution_of(&e), Some("abc"));
        assert_eq!(recorded_at(&e)?.timestamp_subsec_micros(), 6);
        assert_eq!(terminal_event_status(&json!({"type": "TaskStarted"})), None);
        assert!(is_terminal_status("failed") && !is_terminal_status("running"));
        Ok(())
    }
}
