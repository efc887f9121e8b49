//! An open-loop load: executions started at a target rate (a mix of an all-`noop`
//! workflow and one with an `agent` task, served by the load tester's own agents),
//! plus a trickle of workflow creates and status reads, all timed. Every event of the
//! two workflows is collected from their `/ws/workflows/{id}` streams (completions,
//! `TaskDispatched`/`TaskStarted` times), and `/metrics` is scraped once a second.
//!
//! W3 measures this load; W5 runs it in the background.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use super::run_tag;
use super::shapes::{chain, chain_of, Step};
use crate::agents::{AgentPool, AgentReport, AttemptKey, Work};
use crate::client::Client;
use crate::metrics::Scrape;
use crate::stats::MicrosHistogram;
use crate::ws::{execution_of, recorded_at, terminal_event_status, Frame, Watch};

/// Requests of the generator in flight at most; beyond, it waits (and falls behind
/// its rate, which the achieved rate then shows).
const MAX_IN_FLIGHT: usize = 256;
/// The projector's lag gauge (absent until the server has a projector).
pub const PROJECTOR_LAG: &str = "conflux_projector_lag_events";
/// The server's counter of committed events.
pub const EVENTS_APPENDED: &str = "conflux_events_appended_total";

/// The load's shape.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "load")]
pub struct LoadParams {
    /// W3: executions started per second (open loop).
    #[arg(id = "w3-rate", long = "w3-rate", default_value_t = 20.0)]
    pub rate: f64,
    /// W3: seconds of load.
    #[arg(id = "w3-seconds", long = "w3-seconds", default_value_t = 30.0)]
    pub seconds: f64,
    /// W3: share of executions (0..1) of the workflow with an agent task
    /// (`noop → agent → noop`; the others are three `noop`s).
    #[arg(id = "w3-agent-share", long = "w3-agent-share", default_value_t = 0.5)]
    pub agent_share: f64,
    /// W3: polling agents (each long-polls with max=10).
    #[arg(id = "w3-pollers", long = "w3-pollers", default_value_t = 4)]
    pub pollers: usize,
    /// W3: agents declare mixed capabilities (none, gpu, gpu+python, python, arm in
    /// turn), so that routing scores differing candidates for every task.
    #[arg(id = "w3-mixed-capabilities", long = "w3-mixed-capabilities")]
    pub mixed_capabilities: bool,
    /// W3: long-poll wait_ms of the agents.
    #[arg(
        id = "w3-poll-wait-ms",
        long = "w3-poll-wait-ms",
        default_value_t = 20_000
    )]
    pub poll_wait_ms: u64,
    /// W3: `GET /api/v1/workflows/{id}/status` per second.
    #[arg(id = "w3-status-rate", long = "w3-status-rate", default_value_t = 2.0)]
    pub status_rate: f64,
    /// W3: workflow creates per second.
    #[arg(id = "w3-create-rate", long = "w3-create-rate", default_value_t = 1.0)]
    pub create_rate: f64,
}

/// What the generator did.
#[derive(Debug)]
pub struct Generated {
    /// Started executions: id and when the execute request was sent.
    pub submitted: Vec<(String, Instant)>,
    /// Execute latencies.
    pub execute: MicrosHistogram,
    /// Status latencies.
    pub status: MicrosHistogram,
    /// `GET /api/v1/executions/{id}` latencies (the newest started execution).
    pub execution: MicrosHistogram,
    /// Create latencies.
    pub create: MicrosHistogram,
    /// Failed requests and the first failure.
    pub errors: u64,
    /// The first failure, if any.
    pub first_error: Option<String>,
    /// When the last execute request was sent (or generation was stopped).
    pub ended: Instant,
}

/// What the workflow streams showed.
#[derive(Debug, Default)]
pub struct Observed {
    /// Events seen.
    pub events: u64,
    /// Executions that ended: when the client learnt it, and how.
    pub ended: HashMap<String, (Instant, &'static str)>,
    /// `TaskDispatched.recorded_at` by attempt.
    pub dispatched: HashMap<AttemptKey, DateTime<Utc>>,
    /// `TaskStarted.recorded_at` of agent attempts.
    pub agent_started: HashMap<AttemptKey, DateTime<Utc>>,
    /// Stream reconnects after `lagged`.
    pub reconnects: u64,
}

/// The `/metrics` scrapes.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Scraped {
    /// Projector lag samples (events), when the gauge exists.
    pub projector_lag: Vec<f64>,
    /// `conflux_events_appended_total` at the first and last scrape.
    pub events_appended: Option<(f64, f64)>,
    /// Seconds between those two scrapes.
    pub appended_span_seconds: f64,
    /// Scrapes made.
    pub scrapes: u64,
}

/// Everything the load produced.
#[derive(Debug)]
pub struct LoadOutcome {
    /// The generator's record.
    pub generated: Generated,
    /// The streams' record.
    pub observed: Observed,
    /// The agents' record.
    pub agents: AgentReport,
    /// The scrapes.
    pub scraped: Scraped,
    /// When the load started.
    pub started: Instant,
    /// When generation ended.
    pub generation_ended: Instant,
    /// Whether every started execution ended before the drain limit.
    pub drained: bool,
}

/// A running load.
pub struct Load {
    stop: CancellationToken,
    generation: CancellationToken,
    generator: JoinHandle<Result<Generated>>,
    collectors: Vec<JoinHandle<Result<()>>>,
    observed: Arc<Mutex<Observed>>,
    scraper: JoinHandle<Scraped>,
    pool: AgentPool,
    started: Instant,
    /// Cancels `stop` and `generation` if the load is dropped without [`Load::finish`].
    _guard: tokio_util::sync::DropGuard,
}

impl Load {
    /// Creates the workflows, subscribes to them, starts the agents, the scraper and
    /// the generator. `p.seconds` may be infinite: then it runs until [`Load::finish`].
    pub async fn start(client: &Client, p: &LoadParams) -> Result<Self> {
        let tag = run_tag();
        let role = format!("load-{tag}");
        let noop = chain("load-noop", 3, Step::Noop);
        let agent = chain_of("load-agent", &[Step::Noop, Step::Agent(&role), Step::Noop]);
        let (noop_wf, _) = client
            .create(&noop)
            .await
            .context("creating the noop workflow")?;
        let (agent_wf, _) = client
            .create(&agent)
            .await
            .context("creating the agent workflow")?;
        // Whatever fails from here on, everything started so far stops with `guard`.
        let all = CancellationToken::new();
        let guard = all.clone().drop_guard();
        let (stop, generation) = (all.child_token(), all.child_token());
        let observed = Arc::new(Mutex::new(Observed::default()));
        let mut collectors = Vec::new();
        for wf in [&noop_wf, &agent_wf] {
            let watch = Watch::workflow(client, wf).await?;
            collectors.push(tokio::spawn(collect(watch, observed.clone(), stop.clone())));
        }
        let wait = Duration::from_millis(p.poll_wait_ms.max(1));
        let sets: &[&[&str]] = if p.mixed_capabilities {
            &[&[], &["gpu"], &["gpu", "python"], &["python"], &["arm"]]
        } else {
            &[&[]]
        };
        let pool =
            AgentPool::start_with_capabilities(client, &role, p.pollers, wait, Work::Nothing, sets)
                .await?;
        let scraper = tokio::spawn(scrape(client.clone(), stop.clone()));
        let started = Instant::now();
        let generator = tokio::spawn(generate(
            client.clone(),
            p.clone(),
            [noop_wf, agent_wf],
            generation.clone(),
        ));
        Ok(Self {
            stop,
            generation,
            generator,
            collectors,
            observed,
            scraper,
            pool,
            started,
            _guard: guard,
        })
    }

    /// `(executions ended, events seen)` so far, for progress.
    pub fn counts(&self) -> (u64, u64) {
        let o = lock(&self.observed);
        (o.ended.len() as u64, o.events)
    }

    /// Whether the generator has finished (its time is up).
    pub fn generating(&self) -> bool {
        !self.generator.is_finished()
    }

    /// Stops generating (if it still is), waits at most `drain` for every started
    /// execution to end, then stops the agents, streams and scraper.
    pub async fn finish(self, drain: Duration) -> Result<LoadOutcome> {
        self.generation.cancel();
        let generated = self
            .generator
            .await
            .context("the load generator panicked")??;
        let generation_ended = generated.ended;
        let deadline = Instant::now() + drain;
        let drained = loop {
            let all = {
                let o = lock(&self.observed);
                generated
                    .submitted
                    .iter()
                    .all(|(id, _)| o.ended.contains_key(id))
            };
            if all || Instant::now() >= deadline {
                break all;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        self.stop.cancel();
        let agents = self.pool.stop().await?;
        for c in self.collectors {
            c.await.context("a stream collector panicked")??;
        }
        let scraped = self.scraper.await.context("the scraper panicked")?;
        let observed = std::mem::take(&mut *lock(&self.observed));
        Ok(LoadOutcome {
            generated,
            observed,
            agents,
            scraped,
            started: self.started,
            generation_ended,
            drained,
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Folds one workflow stream into `observed` until `stop` or the stream ends.
async fn collect(
    mut watch: Watch,
    observed: Arc<Mutex<Observed>>,
    stop: CancellationToken,
) -> Result<()> {
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => break,
            r = watch.events.recv() => match r {
                Some(r) => r,
                None => break,
            },
        };
        if let Frame::Event(e) = &r.frame {
            fold(&mut lock(&observed), e, r.at)?;
        }
    }
    let reconnects = watch.stop().await?;
    lock(&observed).reconnects += reconnects;
    Ok(())
}

/// Adds one event to the record.
fn fold(o: &mut Observed, e: &serde_json::Value, at: Instant) -> Result<()> {
    o.events += 1;
    if let (Some(status), Some(id)) = (terminal_event_status(e), execution_of(e)) {
        o.ended.insert(id.to_owned(), (at, status));
        return Ok(());
    }
    let key = || -> Option<AttemptKey> {
        Some((
            execution_of(e)?.to_owned(),
            e["data"]["task_id"].as_str()?.to_owned(),
            e["data"]["attempt"].as_u64()?,
        ))
    };
    match e["type"].as_str() {
        Some("TaskDispatched") => {
            if let Some(k) = key() {
                o.dispatched.insert(k, recorded_at(e)?);
            }
        }
        Some("TaskStarted") if !e["data"]["agent_id"].is_null() => {
            if let Some(k) = key() {
                o.agent_started.insert(k, recorded_at(e)?);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Scrapes `/metrics` once a second until `stop` (and once more at the end).
async fn scrape(client: Client, stop: CancellationToken) -> Scraped {
    let mut out = Scraped::default();
    let mut first_at = None;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = tick.tick() => false,
        };
        if let Ok(Some(text)) = client.metrics().await {
            let s = Scrape::parse(&text);
            out.scrapes += 1;
            if let Some(lag) = s.value(PROJECTOR_LAG, &[]) {
                out.projector_lag.push(lag);
            }
            if let Some(total) = s.total(EVENTS_APPENDED) {
                let first = out.events_appended.map_or(total, |(f, _)| f);
                out.events_appended = Some((first, total));
                let since = *first_at.get_or_insert_with(Instant::now);
                out.appended_span_seconds = since.elapsed().as_secs_f64();
            }
        }
        if stopping {
            return out;
        }
    }
}

/// Starts executions at `p.rate` for `p.seconds` (or until `stop`), with creates and
/// status reads at their own rates.
async fn generate(
    client: Client,
    p: LoadParams,
    [noop_wf, agent_wf]: [String; 2],
    stop: CancellationToken,
) -> Result<Generated> {
    if p.rate.is_nan() || p.rate <= 0.0 {
        bail!("the load rate must be positive, got {}", p.rate);
    }
    let every = Duration::from_secs_f64(1.0 / p.rate);
    let total = (p.rate * p.seconds).round();
    let share = p.agent_share.clamp(0.0, 1.0);
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let start = tokio::time::Instant::now();
    let wfs = [noop_wf.clone(), agent_wf.clone()];
    // The newest started execution, read by the execution probe (served from the read
    // model, or folded from the log while the projector has not reached it).
    let newest: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
    let newest_read = newest.clone();
    let execution = tokio::spawn(probe_loop(
        client.clone(),
        p.status_rate,
        stop.clone(),
        move |c, _| {
            let id = newest_read
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            async move {
                match id {
                    Some(id) => c.get(&format!("/api/v1/executions/{id}")).await.map(|_| ()),
                    None => c.get("/health").await.map(|_| ()),
                }
            }
        },
    ));
    let status = tokio::spawn(probe_loop(
        client.clone(),
        p.status_rate,
        stop.clone(),
        move |c, i| {
            let wf = wfs[(i % 2) as usize].clone();
            async move { c.workflow_status(&wf).await.map(|_| ()) }
        },
    ));
    let create = tokio::spawn(probe_loop(
        client.clone(),
        p.create_rate,
        stop.clone(),
        |c, _| async move {
            c.create(&chain("load-create-probe", 3, Step::Noop))
                .await
                .map(|_| ())
        },
    ));
    let mut executes = JoinSet::new();
    let mut i = 0u64;
    while (i as f64) < total {
        let at = start + every.mul_f64(i as f64);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(at) => {}
        }
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        let agent = ((i + 1) as f64 * share).floor() > (i as f64 * share).floor();
        let wf = if agent {
            agent_wf.clone()
        } else {
            noop_wf.clone()
        };
        let c = client.clone();
        let newest = newest.clone();
        executes.spawn(async move {
            let sent = Instant::now();
            let outcome = c.execute(&wf).await;
            drop(permit);
            if let Ok((id, _)) = &outcome {
                *newest.lock().unwrap_or_else(|e| e.into_inner()) = Some(id.clone());
            }
            outcome.map(|(id, answer)| (id, sent, answer.elapsed))
        });
        i += 1;
    }
    let ended = Instant::now();
    stop.cancel();
    let mut out = Generated {
        submitted: Vec::new(),
        execute: MicrosHistogram::new()?,
        status: MicrosHistogram::new()?,
        execution: MicrosHistogram::new()?,
        create: MicrosHistogram::new()?,
        errors: 0,
        first_error: None,
        ended,
    };
    while let Some(done) = executes.join_next().await {
        match done.context("an execute task panicked")? {
            Ok((id, sent, elapsed)) => {
                out.execute.record(elapsed);
                out.submitted.push((id, sent));
            }
            Err(e) => out.fail(e),
        }
    }
    let status = status.await.context("the status probe panicked")??;
    let create = create.await.context("the create probe panicked")??;
    let execution = execution.await.context("the execution probe panicked")??;
    for probe in [&status, &create, &execution] {
        out.errors += probe.errors;
        if let Some(e) = &probe.first_error {
            out.first_error.get_or_insert_with(|| e.clone());
        }
    }
    out.status = status.latencies;
    out.execution = execution.latencies;
    out.create = create.latencies;
    out.submitted.sort_by_key(|(_, sent)| *sent);
    Ok(out)
}

impl Generated {
    fn fail(&mut self, e: anyhow::Error) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| format!("{e:#}"));
    }
}

/// A side probe's record.
struct ProbeStats {
    latencies: MicrosHistogram,
    errors: u64,
    first_error: Option<String>,
}

/// Calls `probe` `rate` times a second until `stop` (never if `rate` is not positive).
async fn probe_loop<F, Fut>(
    client: Client,
    rate: f64,
    stop: CancellationToken,
    probe: F,
) -> Result<ProbeStats>
where
    F: Fn(Client, u64) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let mut out = ProbeStats {
        latencies: MicrosHistogram::new()?,
        errors: 0,
        first_error: None,
    };
    if rate.is_nan() || rate <= 0.0 || rate.is_infinite() {
        return Ok(out);
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for i in 0u64.. {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let sent = Instant::now();
        match probe(client.clone(), i).await {
            Ok(()) => out.latencies.record(sent.elapsed()),
            Err(e) => {
                out.errors += 1;
                out.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    Ok(out)
}
