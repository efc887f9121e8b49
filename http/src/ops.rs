//! Operations probes. `/health` answers while the process runs; `/ready` answers 200 only
//! when the event store and the bus both answer within a second, so a load balancer
//! stops sending traffic to a process whose Postgres or Redis is gone.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::bus::EventBus;
use conflux_engine::store::EventStore;
use serde_json::{json, Value};

use crate::error::ApiError;

const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// What the probes check.
#[derive(Clone)]
pub struct Probes {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The bus.
    pub bus: Arc<dyn EventBus>,
    /// `postgres+redis` or `embedded`, reported by `/ready`.
    pub mode: &'static str,
}

/// `/health` and `/ready`.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(probes)
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(p): State<Probes>) -> Result<Json<Value>, ApiError> {
    let store = tokio::time::timeout(PROBE_TIMEOUT, p.store.ping()).await;
    let bus = tokio::time::timeout(PROBE_TIMEOUT, p.bus.ping()).await;
    let describe = |r: Result<Result<(), String>, _>| match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("did not answer within 1 s".to_owned()),
    };
    let store_err = describe(store.map(|r| r.map_err(|e| e.to_string())));
    let bus_err = describe(bus.map(|r| r.map_err(|e| e.to_string())));
    if store_err.is_none() && bus_err.is_none() {
        return Ok(Json(
            json!({"status": "ready", "mode": p.mode, "store": "ok", "bus": "ok"}),
        ));
    }
    Err(
        ApiError::unavailable("a backing store is unreachable").with_details(json!({
            "mode": p.mode,
            "store": store_err.unwrap_or_else(|| "ok".into()),
            "bus": bus_err.unwrap_or_else(|| "ok".into()),
        })),
    )
}
