//! A local HTTP service for `http` tasks to call, on `127.0.0.1:0`, counting its calls:
//! `/ok` (200 JSON echoing the request), `/fail500` (500), `/missing` (404), `/flaky`
//! (503 on the first two calls, then 200), `/nul` (200, a NUL character in the JSON)
//! and `/nul500` (500, NUL bytes in a text body), `/headers` (200 JSON echoing the
//! `Authorization` header and the body, and keeping each `Authorization` it saw).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

/// How many calls each route received.
#[derive(Default)]
pub struct Calls {
    pub ok: AtomicUsize,
    pub fail500: AtomicUsize,
    pub missing: AtomicUsize,
    pub flaky: AtomicUsize,
    /// Every `Authorization` header `/headers` received, in order.
    pub authorizations: std::sync::Mutex<Vec<String>>,
}

/// The running service; stops when dropped.
pub struct Target {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    pub calls: Arc<Calls>,
    stop: CancellationToken,
}

impl Target {
    /// Starts the service.
    pub async fn start() -> Target {
        let calls = Arc::new(Calls::default());
        let app = Router::new()
            .route("/ok", any(ok))
            .route("/fail500", any(fail500))
            .route("/missing", any(missing))
            .route("/flaky", any(flaky))
            .route("/nul", any(nul))
            .route("/nul500", any(nul500))
            .route("/headers", any(headers))
            .with_state(calls.clone());
        let (base, stop) = crate::harness::serve_local(app).await;
        Target { base, calls, stop }
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// How many calls a counter saw.
    pub fn count(counter: &AtomicUsize) -> usize {
        counter.load(Ordering::SeqCst)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn ok(State(calls): State<Arc<Calls>>, method: Method, body: Bytes) -> Json<Value> {
    calls.ok.fetch_add(1, Ordering::SeqCst);
    let echo: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Json(json!({"ok": true, "method": method.as_str(), "echo": echo}))
}

async fn headers(
    State(calls): State<Arc<Calls>>,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Json<Value> {
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if let Ok(mut seen) = calls.authorizations.lock() {
        seen.push(authorization.clone());
    }
    let echo: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Json(json!({"authorization": authorization, "echo": echo}))
}

async fn fail500(State(calls): State<Arc<Calls>>) -> (StatusCode, Json<Value>) {
    calls.fail500.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"error": "boom"})),
    )
}

async fn missing(State(calls): State<Arc<Calls>>) -> (StatusCode, Json<Value>) {
    calls.missing.fetch_add(1, Ordering::SeqCst);
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no such thing"})),
    )
}

async fn nul() -> Json<Value> {
    Json(json!({"text": "a\u{0}b"}))
}

async fn nul500() -> (StatusCode, &'static str) {
    (StatusCode::INTERNAL_SERVER_ERROR, "broken\0\0 down")
}

async fn flaky(State(calls): State<Arc<Calls>>) -> (StatusCode, Json<Value>) {
    let n = calls.flaky.fetch_add(1, Ordering::SeqCst) + 1;
    if n <= 2 {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"call": n})))
    } else {
        (StatusCode::OK, Json(json!({"call": n})))
    }
}
