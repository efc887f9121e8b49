//! The roles a process runs and the HTTP surface they share. `serve` runs every role in
//! one process; each role also runs alone (`conflux engine`, `conflux relay`…), against
//! the same backends, and the HTTP API runs whole (`conflux api`) or split into its write
//! and read sides (`conflux command-api`, `conflux query-api`; see [`Surface`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use conflux_command_api::CommandContext;
use conflux_engine::access::Access;
use conflux_engine::agents::Agents;
use conflux_engine::bus::ownership::{BusGuard, BusStatus};
use conflux_engine::bus::EventBus;
use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::crypto::erasure::Erasure;
use conflux_engine::executor::{Engine, EngineOptions, EngineParts};
use conflux_engine::hooks::worker::HookWorker;
use conflux_engine::relay::{Relay, RelayOptions};
use conflux_engine::runner::{BuiltinRunner, RunnerOptions};
use conflux_engine::schedules::ticker::Ticker;
use conflux_engine::schedules::Schedules;
use conflux_engine::store::EventStore;
use conflux_http::layers;
use conflux_http::metrics::ScrapeHook;
use conflux_http::ops::{self, Probes};
use conflux_projector::Projector;
use conflux_projector::ReadModels;
use conflux_query_api::live::{LiveFeed, LiveState};
use conflux_query_api::reads::Reads;
use conflux_query_api::stream_tokens::StreamTokenState;
use conflux_schema::validate::Limits;
use tokio::net::TcpListener;
use tokio::sync::watch;
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
    /// Requests per second per caller (0: unlimited).
    pub rate_limit: u32,
    /// The configured bootstrap admin token (see [`crate::bootstrap`]).
    pub admin_token: Option<String>,
    /// Where a generated admin token is kept.
    pub data_dir: std::path::PathBuf,
    /// Whether `viewer` callers see payloads hidden (`CONFLUX_VIEWER_PAYLOADS`).
    pub hide_payloads_from_viewers: bool,
    /// Every tenant's quotas where it has none of its own (`CONFLUX_QUOTA_*`).
    pub quota_defaults: conflux_schema::quota::QuotaLimits,
    /// When an agent not heard from counts as stale, then offline.
    pub liveness: conflux_engine::agents::Liveness,
    /// Whether the bus is this store's; the relay, engine and projector run only
    /// while it is (see [`supervised`]).
    pub guard: BusGuard,
    /// How webhook deliveries are retried (`CONFLUX_HOOK_*`).
    pub hooks: conflux_engine::hooks::worker::HookOptions,
}

impl Runtime {
    /// The runtime over `backends` with the configured limits.
    pub fn new(backends: Backends, config: &Config) -> Self {
        let egress = backends.egress.clone();
        let tenant_allowlists = std::sync::Arc::new(backends.access.clone());
        let catalog = WorkflowCatalog::new(
            backends.store.clone(),
            Limits {
                max_tasks: config.max_tasks,
                default_task_timeout_seconds: config.default_task_timeout_seconds,
            },
        )
        .with_secrets(backends.secrets.clone())
        .with_egress(backends.egress.clone())
        .with_tenant_egress(std::sync::Arc::new(backends.access.clone()));
        let stale_after = Duration::from_millis(config.engine_stale_after_ms.max(100));
        let engine = config.engine_rounds.apply(EngineOptions {
            stale_after,
            sweep_every: stale_after / 2,
            max_workflow_depth: config.max_workflow_depth,
            ..EngineOptions::default()
        });
        let guard = BusGuard::new(
            backends.stored.clone(),
            backends.bus.clone(),
            backends.queue.clone(),
            backends.store_id,
            config.bus_reset_on_mismatch,
        );
        Self {
            guard,
            backends,
            catalog,
            runner: BuiltinRunner::with_tenant_allowlists(
                RunnerOptions {
                    egress: egress.clone(),
                    ..RunnerOptions::default()
                },
                tenant_allowlists,
            ),
            quota_defaults: config.quotas.limits(),
            liveness: conflux_engine::agents::Liveness {
                stale_after: Duration::from_secs(config.agent_stale_after_seconds),
                offline_after: Duration::from_secs(
                    config
                        .agent_offline_after_seconds
                        .max(config.agent_stale_after_seconds),
                ),
            },
            hooks: config.hooks.options(),
            max_body_bytes: config.max_body_bytes,
            rate_limit: config.rate_limit,
            admin_token: config.admin_token.clone().filter(|t| !t.is_empty()),
            data_dir: config.data_dir.clone(),
            hide_payloads_from_viewers: config.viewer_payloads
                == crate::config::ViewerPayloads::Hidden,
            engine,
        }
    }
}

/// Which API routes an HTTP-serving process answers, beside `/health`, `/ready` and
/// `/metrics`, which every one answers. The design's CQRS split: reads and writes scale
/// separately, behind one Postgres + Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Every route (`conflux serve`, `conflux api`).
    All,
    /// The write routes of the command API (`conflux command-api`): workflows create,
    /// execute, pause, resume; executions pause, resume, cancel; agents and their leases;
    /// keys; tenants.
    Commands,
    /// The read routes of the query API (`conflux query-api`): the workflow list, a
    /// definition, its status and events; an execution, its events, replay and
    /// verification; the live WebSockets; the OpenAPI document.
    Queries,
}

impl Surface {
    /// Whether the command API's routes are served.
    pub fn commands(self) -> bool {
        matches!(self, Surface::All | Surface::Commands)
    }

    /// Whether the query API's routes are served.
    pub fn queries(self) -> bool {
        matches!(self, Surface::All | Surface::Queries)
    }

    /// `all`, `commands` or `queries`, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::All => "all",
            Surface::Commands => "commands",
            Surface::Queries => "queries",
        }
    }
}

/// The API routes one process answers.
pub struct Sides {
    /// Serve the command API's routes.
    pub commands: bool,
    /// Serve the query API's routes, with the live feed their WebSockets read.
    pub queries: Option<LiveFeed>,
}

/// The HTTP router: the operations routes and the API `sides` asked for, behind the
/// bearer-token gate, wrapped in the HTTP layer's request ids, tracing, metrics and JSON
/// fallbacks ([`layers::wrap`]). A route of a side not served answers `404 not_found`,
/// as an unknown one.
pub fn router(rt: &Runtime, access: Access, sides: Sides) -> Router {
    let probes = Probes {
        store: rt.backends.store.clone(),
        bus: rt.backends.bus.clone(),
        mode: rt.backends.mode,
        bus_status: rt.guard.status(),
    };
    let commands = ExecutionCommands::new(rt.backends.store.clone(), rt.catalog.clone());
    let schedules = Schedules::new(commands.clone());
    let mut hooks = vec![breaker_gauges(rt.runner.clone())];
    let mut routes = ops::router(probes);
    if sides.commands {
        let command_ctx = CommandContext {
            commands: commands.clone(),
            agents: Agents::new(
                commands.clone(),
                rt.backends.queue.clone(),
                rt.guard.status(),
            )
            .with_codec(rt.backends.codec.clone())
            .with_secrets(rt.backends.secrets.clone())
            .with_hook_runner(rt.runner.clone())
            .with_liveness(rt.liveness)
            .with_result_counts(std::sync::Arc::new(AgentResultsModel(
                rt.backends.read_models.clone(),
            )))
            .with_routing_weights({
                let access = access.clone();
                std::sync::Arc::new(move |tenant: &str| access.routing_weights(tenant))
            }),
            access: access.clone(),
            erasure: Erasure::new(commands.clone(), rt.backends.codec.clone()),
            secrets: rt.backends.secrets.clone(),
            quotas: conflux_engine::quota::Quotas::new(
                rt.backends.store.clone(),
                access.clone(),
                rt.quota_defaults,
            ),
            schedules: schedules.clone(),
            hooks: rt.backends.hooks.clone(),
        };
        routes = routes.merge(conflux_command_api::router(command_ctx, rt.max_body_bytes));
    }
    if let Some(feed) = sides.queries {
        let reads = Reads {
            commands: commands.clone(),
            models: rt.backends.read_models.clone(),
            codec: rt.backends.codec.clone(),
            hide_from_viewers: rt.hide_payloads_from_viewers,
        };
        routes = routes
            .merge(conflux_query_api::live::router(
                LiveState::new(commands.clone(), feed, access.clone())
                    .hiding_from_viewers(rt.hide_payloads_from_viewers),
            ))
            .merge(conflux_query_api::stream_tokens::router(
                StreamTokenState {
                    access: access.clone(),
                    store: rt.backends.store.clone(),
                },
                rt.max_body_bytes,
            ))
            .merge(conflux_query_api::workflows::router(reads.clone()))
            .merge(conflux_query_api::schedules::router(schedules))
            .merge(conflux_query_api::hooks::router(rt.backends.hooks.clone()))
            .merge(conflux_query_api::audit::router(commands))
            .merge(conflux_query_api::dead_letters::router(reads.clone()))
            .merge(conflux_query_api::executions::router(reads))
            .merge(conflux_query_api::openapi::router());
        hooks.push(conflux_query_api::live::connections_gauge());
    }
    let routes = routes.merge(conflux_http::metrics::router(hooks)).layer(
        axum::middleware::from_fn_with_state(
            conflux_http::auth::Gate::new(access, rt.rate_limit),
            conflux_http::auth::require,
        ),
    );
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

/// Checks the bus's owner once (so that `/ready` answers for it from the first
/// request), then every second until `shutdown`. Every process that uses the bus runs
/// one.
pub async fn start_guard(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    if let Some(keyring) = rt.backends.codec.keyring() {
        // Erasures by any server reach this one's cached keys within a second.
        keyring.spawn_refresh(shutdown.clone());
    }
    match tokio::time::timeout(Duration::from_secs(5), rt.guard.check()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "the first check of the bus's owner failed; retrying")
        }
        Err(_) => tracing::warn!("the first check of the bus's owner took over 5 s; retrying"),
    }
    tokio::spawn(rt.guard.clone().run(shutdown))
}

/// Runs `role` while the bus is this store's: not before the first check says so,
/// stopped when a check refuses the bus, and started afresh (nothing remembered of the
/// old stream) when the bus was reset to a new generation. Returns at `shutdown`; a
/// role that ends by itself (an error it could not get past) is started again after a
/// second.
pub async fn supervised<F, Fut>(
    name: &'static str,
    mut status: watch::Receiver<BusStatus>,
    shutdown: CancellationToken,
    mut role: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        let generation = loop {
            if let BusStatus::Owned { generation } = *status.borrow_and_update() {
                break generation;
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                changed = status.changed() => if changed.is_err() { return },
            }
        };
        let run = shutdown.child_token();
        let task = role(run.clone());
        tokio::pin!(task);
        loop {
            tokio::select! {
                () = &mut task => {
                    if shutdown.is_cancelled() {
                        return;
                    }
                    tracing::warn!(role = name, "the role stopped by itself; starting it again in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    break;
                }
                changed = status.changed() => {
                    let still = changed.is_ok()
                        && *status.borrow_and_update() == (BusStatus::Owned { generation });
                    if !still {
                        tracing::warn!(role = name, "the bus changed owner or was reset; stopping this role until it is this store's");
                        run.cancel();
                        task.await;
                        break;
                    }
                }
            }
        }
    }
}

/// Runs the relay until `shutdown`, while the bus is this store's.
pub fn spawn_relay(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    // The bus carries events as stored: payloads stay sealed.
    let (store, bus) = (rt.backends.stored.clone(), rt.backends.bus.clone());
    tokio::spawn(supervised(
        "relay",
        rt.guard.status(),
        shutdown,
        move |run| Relay::new(store.clone(), bus.clone(), RelayOptions::default()).run(run),
    ))
}

/// Runs the projector (read models) until `shutdown`.
pub fn spawn_projector(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    // Read models hold payloads as stored (sealed); the query side opens them.
    let store = rt.backends.stored.clone();
    let bus = rt.backends.bus.clone();
    let catalog = rt.catalog.clone();
    let models = rt.backends.read_models.clone();
    let consumer = rt.engine.consumer.replacen("engine", "projector", 1);
    let status = rt.guard.status();
    tokio::spawn(supervised("projector", status, shutdown, move |shutdown| {
        run_projector(
            store.clone(),
            bus.clone(),
            catalog.clone(),
            models.clone(),
            consumer.clone(),
            shutdown,
        )
    }))
}

async fn run_projector(
    store: Arc<dyn EventStore>,
    bus: Arc<dyn EventBus>,
    catalog: WorkflowCatalog,
    models: ReadModels,
    consumer: String,
    shutdown: CancellationToken,
) {
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
}

/// Runs the engine (graph executor), the schedule ticker and the webhook deliveries
/// until `shutdown`.
pub fn spawn_engine(rt: &Runtime, shutdown: CancellationToken) -> JoinHandle<()> {
    // Tenants' egress allowlists change through any server: keep them current here too
    // (a no-op where this process already refreshes them for its HTTP routes).
    tokio::spawn(rt.backends.access.clone().run(shutdown.clone()));
    let parts = EngineParts {
        store: rt.backends.store.clone(),
        bus: rt.backends.bus.clone(),
        catalog: rt.catalog.clone(),
        queue: rt.backends.queue.clone(),
        runner: rt.runner.clone(),
        codec: rt.backends.codec.clone(),
        secrets: rt.backends.secrets.clone(),
    };
    let options = rt.engine.clone();
    let engine = tokio::spawn(supervised(
        "engine",
        rt.guard.status(),
        shutdown.clone(),
        move |run| {
            let engine = Engine::new(parts.clone(), options.clone());
            async move {
                if let Err(e) = engine.run(run).await {
                    tracing::error!(error = %e, "the engine stopped");
                }
            }
        },
    ));
    // Every engine process ticks the schedules: a tick's execution id is derived from
    // the tick, so several tickers start it once.
    let commands = ExecutionCommands::new(rt.backends.store.clone(), rt.catalog.clone());
    let quotas = conflux_engine::quota::Quotas::new(
        rt.backends.store.clone(),
        rt.backends.access.clone(),
        rt.quota_defaults,
    );
    let ticker = Ticker::new(Schedules::new(commands), Some(quotas));
    let ticker = tokio::spawn(supervised(
        "scheduler",
        rt.guard.status(),
        shutdown.clone(),
        move |run| ticker.clone().run(run),
    ));
    // Every engine process delivers webhooks, each hook under a lease, in tasks of
    // their own (never on the executor's path).
    let worker = {
        let (hooks, options) = (rt.backends.hooks.clone(), rt.hooks.clone());
        tokio::spawn(supervised(
            "hooks",
            rt.guard.status(),
            shutdown.clone(),
            move |run| HookWorker::new(hooks.clone(), options.clone()).run(run),
        ))
    };
    tokio::spawn(async move {
        let _ = engine.await;
        let _ = ticker.await;
        let _ = worker.await;
    })
}

/// Serves the routes of `surface` over HTTP on `listener` until `shutdown`; only a
/// process that serves queries tails the store for the live WebSockets.
pub async fn serve_http(
    listener: TcpListener,
    rt: &Runtime,
    surface: Surface,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let addr = listener.local_addr()?;
    // Only a process that serves HTTP has (and, on a store without keys, generates)
    // the bootstrap admin token.
    let admin = crate::bootstrap::admin_token(
        rt.admin_token.as_deref(),
        &rt.data_dir,
        rt.backends.access.any_key(),
    )?;
    let access = rt.backends.access.clone().with_admin_token(admin);
    tokio::spawn(access.clone().run(shutdown.clone()));
    let queries = if surface.queries() {
        Some(LiveFeed::start(rt.backends.store.clone(), shutdown.clone()).await)
    } else {
        None
    };
    if surface.commands() {
        let quotas = conflux_engine::quota::Quotas::new(
            rt.backends.store.clone(),
            access.clone(),
            rt.quota_defaults,
        );
        tokio::spawn(quotas.publish_gauges(Duration::from_secs(15), shutdown.clone()));
    }
    let sides = Sides {
        commands: surface.commands(),
        queries,
    };
    // Said once the admin token exists: a caller that waits for this line can use it.
    tracing::info!(%addr, mode = rt.backends.mode, routes = surface.as_str(), "conflux is serving");
    axum::serve(listener, router(rt, access, sides))
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
    let guard = start_guard(&rt, shutdown.clone()).await;
    let relay = spawn_relay(&rt, shutdown.clone());
    let engine = spawn_engine(&rt, shutdown.clone());
    let projector = spawn_projector(&rt, shutdown.clone());
    serve_http(listener, &rt, Surface::All, shutdown.clone()).await?;
    shutdown.cancel();
    for (name, task) in [
        ("bus guard", guard),
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

/// The agent body's result counters, from the projector's `rm_agent_results`.
struct AgentResultsModel(ReadModels);

#[async_trait::async_trait]
impl conflux_engine::agents::ResultCounts for AgentResultsModel {
    async fn results_of(
        &self,
        agent: uuid::Uuid,
    ) -> Result<conflux_engine::queue::AgentStats, String> {
        let r = self
            .0
            .agent_results(agent)
            .await
            .map_err(|e| e.to_string())?;
        Ok(conflux_engine::queue::AgentStats {
            held: 0,
            completed: r.completed,
            failed: r.failed,
            recent_ms: r.recent_ms,
        })
    }
}
