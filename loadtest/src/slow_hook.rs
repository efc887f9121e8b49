//! A slow webhook receiver for W3 (`--w3-slow-hook-seconds`): a raw HTTP/1.1 server on
//! `127.0.0.1:0` that holds every request for the given time before answering 200, and
//! a webhook for every event of the tenant pointing at it — so the schedule-to-start of
//! a run with it can be compared with one without (deliveries must never hold back the
//! engine). The server must allow loopback egress (`CONFLUX_EGRESS_ALLOW=127.0.0.0/8`)
//! and run on this machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use reqwest::Method;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::client::Client;

/// The receiver and its hook; [`SlowHook::finish`] deletes the hook.
pub struct SlowHook {
    hook_id: String,
    received: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl SlowHook {
    /// Starts a receiver that answers after `hold`, and registers a hook (`*`) to it.
    pub async fn start(client: &Client, hold: Duration) -> Result<SlowHook> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the slow webhook receiver")?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let received = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (count, until) = (received.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = until.cancelled() => return,
                    accepted = listener.accept() => {
                        if let Ok((socket, _)) = accepted {
                            tokio::spawn(serve(socket, hold, count.clone(), until.clone()));
                        }
                    }
                }
            }
        });
        let created = client
            .post("/api/v1/hooks", &json!({"url": url, "events": ["*"]}))
            .await
            .context(
                "registering the slow webhook (does CONFLUX_EGRESS_ALLOW allow 127.0.0.0/8?)",
            )?;
        let hook_id = created.body["id"]
            .as_str()
            .context("the hook's id")?
            .to_owned();
        Ok(SlowHook {
            hook_id,
            received,
            stop,
        })
    }

    /// Deletes the hook, stops the receiver; returns how many deliveries it received.
    pub async fn finish(self, client: &Client) -> Result<u64> {
        self.stop.cancel();
        client
            .call(
                Method::DELETE,
                &format!("/api/v1/hooks/{}", self.hook_id),
                None,
            )
            .await?;
        Ok(self.received.load(Ordering::Relaxed))
    }
}

/// Reads requests on one connection (headers, then `Content-Length` bytes), holds each
/// for `hold`, answers `200` with an empty body.
async fn serve(
    mut socket: TcpStream,
    hold: Duration,
    count: Arc<AtomicU64>,
    stop: CancellationToken,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let end = loop {
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while buf.len() < end + length {
            match socket.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        buf.drain(..end + length);
        count.fetch_add(1, Ordering::Relaxed);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(hold) => {}
        }
        let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
        if socket.write_all(answer).await.is_err() {
            return;
        }
    }
}
