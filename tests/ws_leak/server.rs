//! The server under test and the client's side of a WebSocket: a `conflux serve`
//! binary on its own backends (embedded, or a fresh Postgres database and Redis prefix),
//! its HTTP helpers and process gauges, and the frames a client reads.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::binary::Served;

/// A client's WebSocket.
pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub use crate::binary::Mode;

/// A running `conflux serve` and the backends it owns.
pub struct Ctx {
    pub served: Served,
    base: String,
    http: reqwest::Client,
}

impl Ctx {
    pub async fn start(mode: Mode) -> Ctx {
        let served = Served::start(mode).await;
        Ctx {
            base: served.bin.base.clone(),
            served,
            // No idle connections kept: each server-side HTTP connection task ends
            // with its request, so it is not counted in the task gauge.
            http: crate::auth::client_builder()
                .pool_max_idle_per_host(0)
                .build()
                .expect("client"),
        }
    }

    /// Kills the server, then drops its database and Redis keys.
    pub async fn cleanup(mut self) {
        self.served.bin.kill();
        self.served.release().await;
    }

    /// Drops the (stopped) server's database and Redis keys.
    pub async fn release(&mut self) {
        self.served.release().await;
    }

    pub fn ws(&self, path: &str) -> String {
        format!("{}{path}", self.base.replacen("http://", "ws://", 1))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        (status, body)
    }

    pub async fn post(&self, path: &str, body: Value) -> Value {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("request");
        assert!(resp.status().is_success(), "POST {path}: {}", resp.status());
        resp.json().await.expect("json")
    }

    pub async fn create_workflow(&self, definition: Value) -> String {
        let body = self.post("/api/v1/workflows", definition).await;
        body["workflow_id"]
            .as_str()
            .expect("workflow_id")
            .to_owned()
    }

    pub async fn execute(&self, workflow: &str) -> String {
        let body = self
            .post(
                &format!("/api/v1/workflows/{workflow}/execute"),
                json!({"input": {}}),
            )
            .await;
        body["execution_id"]
            .as_str()
            .expect("execution_id")
            .to_owned()
    }

    pub async fn wait_terminal(&self, execution: &str) {
        let started = Instant::now();
        loop {
            let (_, body) = self.get(&format!("/api/v1/executions/{execution}")).await;
            if matches!(
                body["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            ) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{execution}: {body}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The server's process gauges: (open WebSocket clients, alive tasks, RSS bytes).
    pub async fn gauges(&self) -> Gauges {
        let text = self
            .http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text");
        let gauge = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"))
        };
        Gauges {
            connections: gauge("conflux_ws_connections"),
            tasks: gauge("conflux_runtime_alive_tasks"),
            rss_mib: gauge("conflux_process_resident_memory_bytes") / (1024.0 * 1024.0),
        }
    }

    /// Gauges once every WebSocket is gone and the task count has stopped falling.
    pub async fn settled(&self) -> Gauges {
        let started = Instant::now();
        loop {
            let g = self.gauges().await;
            if g.connections == 0.0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "WebSocket connections never went back to 0: {g:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Let short-lived tasks (timers, closing connections) end; take the lowest of
        // a few readings.
        let mut best = self.gauges().await;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let g = self.gauges().await;
            if g.tasks < best.tasks {
                best.tasks = g.tasks;
            }
            best.rss_mib = g.rss_mib;
            best.connections = g.connections;
        }
        best
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    pub connections: f64,
    pub tasks: f64,
    pub rss_mib: f64,
}

pub async fn connect(url: String) -> Socket {
    let (socket, _) = tokio_tungstenite::connect_async(crate::auth::ws_request(&url))
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    socket
}

/// The next text frame (pings skipped), None on close or error.
pub async fn next_text(socket: &mut Socket, what: &str) -> Option<Value> {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no frame within 10 s"))?;
        match frame.ok()? {
            Message::Text(t) => return serde_json::from_str(&t).ok(),
            Message::Close(_) => return None,
            _ => {}
        }
    }
}

/// Drops the connection with a TCP reset: no close frame, no FIN.
pub fn reset(socket: Socket) {
    if let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = socket.get_ref() {
        tcp.set_zero_linger().expect("SO_LINGER 0");
    }
    drop(socket);
}

/// Expects the server to close with `code`.
pub async fn expect_close(socket: &mut Socket, code: u16, what: &str) {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: no close within 10 s"));
        match frame {
            Some(Ok(Message::Close(Some(close)))) => {
                assert_eq!(u16::from(close.code), code, "{what}: {close:?}");
                return;
            }
            Some(Ok(Message::Close(None))) => panic!("{what}: closed without a code"),
            Some(Ok(_)) => {}
            other => panic!("{what}: expected close {code}, got {other:?}"),
        }
    }
}
