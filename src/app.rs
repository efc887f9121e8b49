//! The roles a process runs and the HTTP surface they share. `serve` runs every role in
//! one process; each role also runs alone (`conflux relay`…), against the same backends.

use std::time::Duration;

use axum::http::{HeaderName, Request};
use axum::Router;
use conflux_command_api::error::ApiError;
use conflux_engine::relay::{Relay, RelayOptions};
use conflux_query_api::ops::{self, Probes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::backends::Backends;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The HTTP router: every route of this build, with request ids and request tracing.
pub fn router(backends: &Backends) -> Router {
    let probes = Probes {
        store: backends.store.clone(),
        bus: backends.bus.clone(),
        mode: backends.mode,
    };
    ops::router(probes)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(TraceLayer::new_for_http().make_span_with(|req: &Request<_>| {
            let id = req
                .headers()
                .get(&REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
        }))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}

/// Runs the relay until `shutdown`.
pub fn spawn_relay(
    backends: &Backends,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let relay = Relay::new(
        backends.store.clone(),
        backends.bus.clone(),
        RelayOptions::default(),
    );
    tokio::spawn(relay.run(shutdown))
}

/// Every role in one process, serving HTTP on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    backends: Backends,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let relay = spawn_relay(&backends, shutdown.clone());
    let addr = listener.local_addr()?;
    tracing::info!(%addr, mode = backends.mode, "conflux is serving");
    axum::serve(listener, router(&backends))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .await?;
    shutdown.cancel();
    if tokio::time::timeout(Duration::from_secs(10), relay)
        .await
        .is_err()
    {
        tracing::warn!("relay did not stop within 10 s");
    }
    tracing::info!("stopped");
    Ok(())
}
