//! The webhook receiver the hook tests run on `127.0.0.1:0`: it keeps every request
//! (body, headers, when) and answers 500 for the first N or for all of them, else 200;
//! and a receiver's check of `Conflux-Signature`, written from the README's recipe.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio_util::sync::CancellationToken;

/// How long a test waits for deliveries on a loaded machine: a guard, never an
/// expectation.
pub const DELIVERY_PATIENCE: Duration = Duration::from_secs(90);

/// One request the receiver got, and what it answered.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: Value,
    pub raw: Bytes,
    pub signature: String,
    pub hook: String,
    pub event: String,
    pub attempt: u32,
    pub answered: u16,
    pub at: Instant,
}

#[derive(Default)]
pub struct Inbox {
    requests: Mutex<Vec<Received>>,
    /// Requests answered 500 before the first 200 (then 200 for good).
    pub fail_first: AtomicUsize,
    /// Answer 500 to everything.
    pub always_fail: AtomicBool,
}

/// A webhook receiver on `127.0.0.1:0`; stops when dropped.
pub struct Receiver {
    pub url: String,
    pub inbox: Arc<Inbox>,
    stop: CancellationToken,
}

impl Receiver {
    pub async fn start(fail_first: usize, always_fail: bool) -> Receiver {
        let inbox = Arc::new(Inbox::default());
        inbox.fail_first.store(fail_first, Ordering::SeqCst);
        inbox.always_fail.store(always_fail, Ordering::SeqCst);
        let app = Router::new()
            .route("/in", post(receive))
            .with_state(inbox.clone());
        let (base, stop) = crate::harness::serve_local(app).await;
        let url = format!("{base}/in");
        Receiver { url, inbox, stop }
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inbox.requests.lock().expect("inbox").clone()
    }

    /// The event ids answered 2xx, in the order they were, first success of each only.
    pub fn delivered(&self) -> Vec<Received> {
        let mut seen = HashSet::new();
        self.requests()
            .into_iter()
            .filter(|r| r.answered == 200 && seen.insert(r.event.clone()))
            .collect()
    }

    /// Waits until every event of `expected` was answered 2xx.
    pub async fn wait_for(&self, expected: &[Value]) -> Vec<Received> {
        let started = Instant::now();
        loop {
            let delivered = self.delivered();
            let ids: HashSet<&str> = delivered.iter().map(|r| r.event.as_str()).collect();
            if expected
                .iter()
                .all(|e| ids.contains(e["event_id"].as_str().unwrap_or_default()))
            {
                return delivered;
            }
            assert!(
                started.elapsed() < DELIVERY_PATIENCE,
                "only {} of {} events delivered: {:?}",
                ids.len(),
                expected.len(),
                self.requests()
                    .iter()
                    .map(|r| (&r.event, r.answered))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn receive(State(inbox): State<Arc<Inbox>>, headers: HeaderMap, raw: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let failing = inbox.always_fail.load(Ordering::SeqCst)
        || inbox
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
    let answered = if failing { 500 } else { 200 };
    assert_eq!(header("content-type"), "application/json");
    inbox.requests.lock().expect("inbox").push(Received {
        body: serde_json::from_slice(&raw).unwrap_or(Value::Null),
        raw,
        signature: header("conflux-signature"),
        hook: header("conflux-hook-id"),
        event: header("conflux-event-id"),
        attempt: header("conflux-delivery-attempt").parse().unwrap_or(0),
        answered,
        at: Instant::now(),
    });
    StatusCode::from_u16(answered).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Checks `Conflux-Signature` (`t=<unix>,v1=<hex>`) as a receiver would: HMAC-SHA256 of
/// `"<t>.<raw body>"` under the secret, and a time within five minutes.
pub fn signature_is_valid(secret: &str, header: &str, raw: &[u8]) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (chrono::Utc::now().timestamp() - t).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
    mac.update(format!("{t}.").as_bytes());
    mac.update(raw);
    mac.verify_slice(&v1).is_ok()
}
