//! Operations probes. `/health` answers while the process runs; `/ready` answers 200 only
//! when the event store and the bus both answer within a second, so a load balancer
//! stops sending traffic to a process whose Postgres or Redis is gone, or whose Redis
//! prefix holds another store's events (see `conflux_engine::bus::ownership`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::bus::ownership::BusStatus;
use conflux_engine::bus::EventBus;
use conflux_engine::store::EventStore;
use conflux_schema::api::{Health, Ready};
use serde_json::json;
use tokio::sync::watch;

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
    /// Whether the bus is this store's (a bus holding another store's events is not
    /// ready, whatever its ping says).
    pub bus_status: watch::Receiver<BusStatus>,
}

/// `/health` and `/ready`.
pub fn router(probes: Probes) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .with_state(probes)
}

async fn health() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

async fn ready(State(p): State<Probes>) -> Result<Json<Ready>, ApiError> {
    let store = tokio::time::timeout(PROBE_TIMEOUT, p.store.ping()).await;
    let bus = tokio::time::timeout(PROBE_TIMEOUT, p.bus.ping()).await;
    let describe = |r: Result<Result<(), String>, _>| match r {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(_) => Some("did not answer within 1 s".to_owned()),
    };
    let store_err = describe(store.map(|r| r.map_err(|e| e.to_string())));
    let bus_err = describe(bus.map(|r| r.map_err(|e| e.to_string()))).or_else(|| {
        match &*p.bus_status.borrow() {
            BusStatus::Owned { .. } => None,
            BusStatus::Checking => Some("checking that the bus belongs to this store".to_owned()),
            BusStatus::Refused { reason } => Some(reason.clone()),
        }
    });
    if store_err.is_none() && bus_err.is_none() {
        return Ok(Json(Ready {
            status: "ready".into(),
            mode: p.mode.to_owned(),
            store: "ok".into(),
            bus: "ok".into(),
        }));
    }
    let message = match (&store_err, &*p.bus_status.borrow()) {
        (None, BusStatus::Refused { .. }) => "the bus (Redis prefix) does not belong to this store",
        (None, BusStatus::Checking) => "checking that the bus belongs to this store",
        _ => "a backing store is unreachable",
    };
    Err(ApiError::unavailable(message).with_details(json!({
        "mode": p.mode,
        "store": store_err.unwrap_or_else(|| "ok".into()),
        "bus": bus_err.unwrap_or_else(|| "ok".into()),
    })))
}
