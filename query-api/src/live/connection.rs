//! One connection's socket and the loop that forwards its subscription to the client,
//! pings it, and gives it up when it is gone, silent, slow or lagging.
//!
//! Frames go out in batches: whatever is queued when the connection wakes (up to
//! [`BATCH`]) is written with one flush, so a burst costs one write, not one per event.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use conflux_engine::crypto::codec::hide_envelopes;
use conflux_schema::api::LiveFrame;
use conflux_schema::payload::hide_execution_json;
use conflux_schema::EventEnvelope;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::registry::{event_text, Next, Subscription};
use super::Limits;

/// The most frames written with one flush.
const BATCH: usize = 64;

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
    /// Whether the caller's role may not see payloads (`CONFLUX_VIEWER_PAYLOADS=hidden`).
    hide_payloads: bool,
}

impl<S: Socket> Client<S> {
    pub(super) fn new(socket: S, limits: Limits) -> Self {
        Self {
            socket,
            limits,
            hide_payloads: false,
        }
    }

    /// This client with every payload it is sent hidden.
    pub(super) fn hiding_payloads(mut self, hide: bool) -> Self {
        self.hide_payloads = hide;
        self
    }

    /// A shared event frame's text as this client may see it: unchanged, or with its
    /// payloads hidden (parsed and written again, for this client alone).
    fn event_frame(&self, text: Utf8Bytes) -> Utf8Bytes {
        if !self.hide_payloads {
            return text;
        }
        match serde_json::from_str::<LiveFrame>(text.as_str()) {
            Ok(LiveFrame::Event { mut event }) => {
                hide_envelopes(std::slice::from_mut(&mut *event));
                event_text(&event)
            }
            // Not an event frame: nothing to hide.
            _ => text,
        }
    }

    /// Sends one frame; false if the client is gone or did not take it in time.
    async fn send(&mut self, message: Message) -> bool {
        matches!(
            tokio::time::timeout(self.limits.send_timeout, self.socket.send(message)).await,
            Ok(Ok(()))
        )
    }

    /// Sends (and empties) `messages` with one flush; false if the client is gone or
    /// did not take them within the send timeout.
    async fn send_all(&mut self, messages: &mut Vec<Message>) -> bool {
        let socket = &mut self.socket;
        let sending = async move {
            for message in messages.drain(..) {
                socket.feed(message).await?;
            }
            socket.flush().await
        };
        matches!(
            tokio::time::timeout(self.limits.send_timeout, sending).await,
            Ok(Ok(()))
        )
    }

    async fn send_frame(&mut self, frame: &LiveFrame) -> bool {
        match serde_json::to_string(frame) {
            Ok(text) => self.send(Message::Text(text.into())).await,
            Err(error) => {
                tracing::error!(%error, "a live frame could not be serialised");
                false
            }
        }
    }

    /// Sends the snapshot frame; false if the client is gone.
    pub(super) async fn send_snapshot(
        &mut self,
        position: u64,
        mut status: serde_json::Value,
    ) -> bool {
        if self.hide_payloads {
            hide_execution_json(&mut status);
        }
        self.send_frame(&LiveFrame::Snapshot { position, status })
            .await
    }

    /// Sends caught-up events above `after`, in the order given; returns the last
    /// position sent (or `after`), None if the client is gone.
    pub(super) async fn send_events(
        &mut self,
        events: &[EventEnvelope],
        after: u64,
    ) -> Option<u64> {
        let mut last = after;
        let mut batch = Vec::with_capacity(BATCH);
        for e in events.iter().filter(|e| e.position > after) {
            batch.push(Message::Text(self.event_frame(event_text(e))));
            last = e.position;
            if batch.len() == BATCH && !self.send_all(&mut batch).await {
                return None;
            }
        }
        if !batch.is_empty() && !self.send_all(&mut batch).await {
            return None;
        }
        Some(last)
    }

    /// Sends a close frame, then waits (briefly) for the client's: dropping the TCP
    /// connection at once could reset it before the client has read the frame.
    pub(super) async fn close(mut self, code: u16, reason: &str) {
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

/// Forwards the subscription's events with a position above `last_sent`, pings, and
/// ends on the client's close, its silence or slowness, a lag (after telling the
/// client), shutdown (1001), or the revocation of the key it was opened with (4401).
pub(super) async fn forward<S: Socket>(
    mut client: Client<S>,
    live: &mut Subscription,
    mut last_sent: u64,
    shutdown: &CancellationToken,
    revoked: &CancellationToken,
) {
    let limits = client.limits;
    let mut ping = tokio::time::interval_at(Instant::now() + limits.ping_every, limits.ping_every);
    let mut heard = Instant::now();
    let mut batch = Vec::new();
    // Registered with the token once, not at every wake-up.
    let stopping = shutdown.cancelled();
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            _ = &mut stopping => return client.close(1001, "server stopping").await,
            _ = revoked.cancelled() => return client.close(4401, "the key was revoked").await,
            next = live.recv() => match next {
                Next::Frame(first) => {
                    let mut next = Some(first);
                    while let Some(frame) = next {
                        if frame.position > last_sent {
                            last_sent = frame.position;
                            batch.push(Message::Text(client.event_frame(frame.text)));
                        }
                        next = if batch.len() < BATCH { live.try_recv() } else { None };
                    }
                    if !batch.is_empty() && !client.send_all(&mut batch).await {
                        return;
                    }
                }
                Next::Lagged => {
                    if client.send_frame(&LiveFrame::Lagged { position: last_sent }).await {
                        client.close(1008, "lagged: reconnect with ?after=").await;
                    }
                    return;
                }
                Next::Closed => return client.close(1001, "server stopping").await,
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
