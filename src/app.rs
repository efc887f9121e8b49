//! The roles a process runs and the HTTP surface they share. `serve` runs every role in
//! one process; each role also runs alone (`conflux engine`, `conflux relay`…), against
//! the same backends.

use std::time::Duration;

use axum::Router;
use conflux_command_api::agents::AgentDirectory;
use conflux_command_api::CommandContext;
use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::executor::{Engine, EngineOptions, EngineParts};
use conflux_engine::relay::{Relay, RelayOptions};
use conflux_engine::runner::{BuiltinRunner, RunnerOptions};
use conflux_http::layers;
use conflux_http::metrics::ScrapeHook;
use conflux_http::ops::{self, Probes};
use conflux_projector::Projector;
use conflux_query_api::live::{LiveFeed, LiveState};
use conflux_query_api::reads::Reads;
use conflux_schema::validate::Limits;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backends::Backends;
use crate::config::Config;

/// Events the live projector reads and commits per transaction.
const PROJECTOR_BATCH: usize = 2_000;

/// Everything the roles of one process share.
#[derive(Clone)]
pub struct Runtime {
    /// Store, bus, queues.
    pub backends: Backends,
    /// Workflow definitions.
    pub catalog: WorkflowCatalog,
    /// Built-in task runners.
    pub runner: BuiltinRunner,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Engine tuning.
    pub engine: EngineOptions,
}

impl Runtime {
    /// The runtime over `backends` with the configured limits.
    pub fn new(backends: Backends, config: &Config) -> Self {
        let catalog = WorkflowCatalog::new(
            backends.store.clone(),
            Limits {
                max_tasks: config.max_tasks,
            },
        );
        let stale_after = Duration::from_millis(config.engine_stale_after_ms.max(100));
        let engine = EngineOptions {
            stale_after,
            sweep_every: stale_after / 2,
            ..EngineOptions::default()
        };
        Self {
            backends,
            catalog,
            runner: BuiltinRunner::new(RunnerOptions::default()),
            max_body_bytes: config.max_body_bytes,
            engine,
        }
    }
}

/// The HTTP router: every route of this build, wrapped in the HTTP layer's request ids,
/// tracing, metrics and JSON fallbacks ([`layers::wrap`]).
pub fn router(rt: &Runtime, feed: LiveFeed) -> Router {
    let probes = Probes {
        store: rt.backends.store.clone(),
        bus: rt.backends.bus.clone(),
        mode: rt.backends.mode,
    };
    let commands = ExecutionCommands::new(rt.backends.store.clone(), rt.catalog.clone());
    let reads = Reads {
        commands: commands.clone(),
        models: rt.backends.read_models.clone(),
    };
    let command_ctx = CommandContext {
        commands: commands.clone(),
        queue: rt.backends.queue.clone(),
        agents: AgentDirectory::default(),
    };
    let routes = ops::router(probes)
        .merge(conflux_command_api::router(command_ctx, rt.max_body_bytes))
        .merge(conflux_query_api::live::router(LiveState {
            commands: commands.clone(),
            feed,
        }))
        .merge(conflux_query_api::workflows::router(reads.clone()))
        .merge(conflux_query_api::audit::router(commands.clone()))
        .merge(conflux_query_api::executions::router(reads))
        .merge(conflux_http::metrics::router(vec![
            conflux_query_api::live::connections_gauge(),
            breaker_gauges(rt.runner.clone()),
        ]))
        .merge(conflux_query_api::openapi::router());
    layers::wrap(routes)
}

/// Publishes the built-in runner's circuit breakers as gauges at scrape time.
fn breaker_gauges(runner: BuiltinRunner) -> ScrapeHook {
    std::sync::Arc::new(move || {
        for b in runner.breaker_snapshot() {
            let state = match b.state.as_str() {
                "open" => 2.0,
                "half_open" => 1.0,
                _ => 0.0,
            };
            metrics::gauge!("conflux_http_circuit_breaker_state", "host" => b.host.clone())
                .set(state);
            metrics::gauge!("conflux_http_circuit_breaker_consecutive_failures", "host" => b.host.clone())
                .set(f64::from(b.consecutive_failures));
            metrics::gauge!("conflux_http_circuit_breaker_opened_total", "host" => b.host)
                .set(b.times_opened as f64);
        }
    })
}

/// Runs the relay until `shutdown`.
pub fn spawn_relay(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    let relay = Relay::new(
        rt.backends.store.clone(),
        rt.backends.bus.clone(),
        RelayOptions::default(),
    );
    tokio::spawn(relay.run(shutdown))
}

/// Runs the projector (read models) until `shutdown`.
pub fn spawn_projector(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    let store = rt.backends.store.clone();
    let bus = rt.backends.bus.clone();
    let catalog = rt.catalog.clone();
    let models = rt.backends.read_models.clone();
    let consumer = rt.engine.consumer.replacen("engine", "projector", 1);
    tokio::spawn(async move {
        loop {
            match Projector::new(
                store.clone(),
                catalog.clone(),
                models.clone(),
                PROJECTOR_BATCH,
            )
            .await
            {
                Ok(projector) => return projector.run(bus, consumer, shutdown).await,
                Err(e) => {
                    tracing::warn!(error = %e, "the projector cannot start yet; retrying in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
    })
}

/// Runs the engine (graph executor) until `shutdown`.
pub fn spawn_engine(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    let parts = EngineParts {
        store: rt.backends.store.clone(),
        bus: rt.backends.bus.clone(),
        catalog: rt.catalog.clone(),
        queue: rt.backends.queue.clone(),
        runner: rt.runner.clone(),
    };
    let engine = Engine::new(parts, rt.engine.clone());
    tokio::spawn(async move {
        if let Err(e) = engine.run(shutdown).await {
            tracing::error!(error = %e, "the engine stopped");
        }
    })
}

/// Serves HTTP on `listener` until `shutdown`.
pub async fn serve_http(
    listener: TcpListener,
    rt: &Runtime,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    tracing::info!(%addr, mode = rt.backends.mode, "conflux is serving");
    let feed = LiveFeed::start(rt.backends.store.clone(), shutdown.clone()).await;
    axum::serve(listener, router(rt, feed))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await?;
    Ok(())
}

/// Every role in one process, serving HTTP on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    rt: Runtime,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let relay = spawn_relay(&rt, shutdown.clone());
    let engine = spawn_engine(&rt, shutdown.clone());
    let projector = spawn_projector(&rt, shutdown.clone());
    serve_http(listener, &rt, shutdown.clone()).await?;
    shutdown.cancel();
    for (name, task) in [
        ("relay", relay),
        ("engine", engine),
        ("projector", projector),
    ] {
        if tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .is_err()
        {
            tracing::warn!(role = name, "did not stop within 10 s");
        }
    }
    tracing::info!("stopped");
    Ok(())
}
