//! W3: a sustained target rate of executions (a mix of all-`noop` executions and ones
//! with an `agent` task served by the load tester's agents) for T seconds, then a
//! drain until every started execution has ended.
//!
//! Schedule-to-start is measured two ways, both on this machine's one clock: from the
//! server's `TaskDispatched.recorded_at` (read on the workflow stream) to the moment
//! the agent's long poll returned the task (client side, the figure the goal judges),
//! and from `TaskDispatched` to `TaskStarted` by their `recorded_at`s (server side).

use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;

use super::figure::latency_figures;
use super::load::{Load, LoadOutcome, LoadParams};
use super::{Figure, Goal, Outcome, RawBasis};
use crate::client::Client;
use crate::progress::Progress;
use crate::stats::{MicrosHistogram, Millis};

/// W3 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w3")]
pub struct Params {
    /// The load.
    #[command(flatten)]
    pub load: LoadParams,
    /// W3: seconds to wait, after the load, for started executions to end.
    #[arg(
        id = "w3-drain-seconds",
        long = "w3-drain-seconds",
        default_value_t = 60.0
    )]
    pub drain_seconds: f64,
    /// W3: also register a webhook for every event, to a receiver this load tester runs
    /// that holds each delivery this many seconds (e.g. 5): compare schedule-to-start
    /// with and without it. The server must allow loopback egress.
    #[arg(id = "w3-slow-hook-seconds", long = "w3-slow-hook-seconds")]
    pub slow_hook_seconds: Option<f64>,
}

/// W3's result.
#[derive(Debug, Clone, Serialize)]
pub struct W3 {
    /// Executions started.
    pub submitted: usize,
    /// Executions that ended `completed`.
    pub completed: usize,
    /// Executions that ended otherwise.
    pub failed: usize,
    /// Executions still running when the drain limit passed.
    pub unfinished: usize,
    /// Executions started per second, as achieved.
    pub submit_rate: f64,
    /// Completed executions / (first submit → last end), per second.
    pub completions_per_second: f64,
    /// Events seen on the workflow streams.
    pub events: u64,
    /// `events` over the same span.
    pub events_per_second: f64,
    /// `conflux_events_appended_total` growth over the run / its length (all events
    /// the server committed, including agents' and creates').
    pub server_events_per_second: Option<f64>,
    /// `TaskDispatched.recorded_at` → the agent's poll returned it (client clock).
    pub schedule_to_start: Option<Millis>,
    /// `TaskDispatched` → `TaskStarted`, by `recorded_at` (server clock).
    pub schedule_to_start_server: Option<Millis>,
    /// Largest `conflux_projector_lag_events` seen; None if the gauge is absent.
    pub projector_lag_max: Option<f64>,
    /// Last `conflux_projector_lag_events` seen.
    pub projector_lag_last: Option<f64>,
    /// `POST /api/v1/workflows`.
    pub http_create: Option<Millis>,
    /// `POST /api/v1/workflows/{id}/execute`.
    pub http_execute: Option<Millis>,
    /// `GET /api/v1/workflows/{id}/status`.
    pub http_status: Option<Millis>,
    /// `GET /api/v1/executions/{id}` of the newest started execution.
    pub http_execution: Option<Millis>,
    /// Failed requests.
    pub errors: u64,
    /// The first failure.
    pub first_error: Option<String>,
    /// Workflow stream reconnects after `lagged`.
    pub reconnects: u64,
    /// Agent completions refused as `409 stale_attempt`.
    pub stale_completions: u64,
    /// Deliveries the slow webhook received (`--w3-slow-hook-seconds`; None without).
    pub slow_hook_deliveries: Option<u64>,
}

/// Runs W3.
pub async fn run(client: &Client, p: &Params) -> Result<W3> {
    if p.load.seconds.is_nan() || p.load.seconds <= 0.0 || p.load.seconds.is_infinite() {
        bail!(
            "--w3-seconds must be a positive number, got {}",
            p.load.seconds
        );
    }
    let hook = match p.slow_hook_seconds {
        Some(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Some(crate::slow_hook::SlowHook::start(client, Duration::from_secs_f64(seconds)).await?)
        }
        Some(seconds) => bail!("--w3-slow-hook-seconds must be a number ≥ 0, got {seconds}"),
        None => None,
    };
    let load = Load::start(client, &p.load).await?;
    let bar = Progress::bar(p.load.seconds.ceil() as u64, "w3-sustained (s)");
    let started = Instant::now();
    while load.generating() {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (ended, events) = load.counts();
        bar.set(started.elapsed().as_secs());
        bar.message(format!("{ended} executions ended, {events} events"));
    }
    bar.message("draining");
    let outcome = load
        .finish(Duration::from_secs_f64(p.drain_seconds.max(0.0)))
        .await?;
    bar.finish();
    let mut w3 = summarise(&outcome)?;
    if let Some(hook) = hook {
        w3.slow_hook_deliveries = Some(hook.finish(client).await?);
    }
    Ok(w3)
}

/// Turns a load's record into W3's figures.
pub fn summarise(o: &LoadOutcome) -> Result<W3> {
    let g = &o.generated;
    let mut completed = 0;
    let mut failed = 0;
    let mut last_end = o.started;
    for (id, _) in &g.submitted {
        if let Some((at, status)) = o.observed.ended.get(id) {
            last_end = last_end.max(*at);
            if *status == "completed" {
                completed += 1;
            } else {
                failed += 1;
            }
        }
    }
    let span = last_end.duration_since(o.started).as_secs_f64().max(1e-9);
    let generation = o
        .generation_ended
        .duration_since(o.started)
        .as_secs_f64()
        .max(1e-9);
    let (client_side, server_side) = schedule_to_start(o)?;
    Ok(W3 {
        submitted: g.submitted.len(),
        completed,
        failed,
        unfinished: g.submitted.len() - completed - failed,
        submit_rate: g.submitted.len() as f64 / generation,
        completions_per_second: completed as f64 / span,
        events: o.observed.events,
        events_per_second: o.observed.events as f64 / span,
        server_events_per_second: o
            .scraped
            .events_appended
            .filter(|(first, last)| last > first && o.scraped.appended_span_seconds > 0.0)
            .map(|(first, last)| (last - first) / o.scraped.appended_span_seconds),
        schedule_to_start: client_side.summary(),
        schedule_to_start_server: server_side.summary(),
        projector_lag_max: o.scraped.projector_lag.iter().copied().reduce(f64::max),
        projector_lag_last: o.scraped.projector_lag.last().copied(),
        http_create: g.create.summary(),
        http_execute: g.execute.summary(),
        http_status: g.status.summary(),
        http_execution: g.execution.summary(),
        errors: g.errors,
        first_error: g.first_error.clone(),
        reconnects: o.observed.reconnects,
        stale_completions: o.agents.stale,
        slow_hook_deliveries: None,
    })
}

/// (client side, server side) schedule-to-start of every agent attempt.
fn schedule_to_start(o: &LoadOutcome) -> Result<(MicrosHistogram, MicrosHistogram)> {
    let mut client_side = MicrosHistogram::new()?;
    let mut server_side = MicrosHistogram::new()?;
    for (key, dispatched) in &o.observed.dispatched {
        if let Some(received) = o.agents.received.get(key) {
            client_side.record_micros((*received - *dispatched).num_microseconds().unwrap_or(0));
        }
        if let Some(started) = o.observed.agent_started.get(key) {
            server_side.record_micros((*started - *dispatched).num_microseconds().unwrap_or(0));
        }
    }
    Ok((client_side, server_side))
}

impl Outcome for W3 {
    fn figures(&self) -> Vec<Figure> {
        let s2s = self.schedule_to_start.as_ref();
        let mut out = vec![
            Figure::new(
                "executions started/s (achieved)",
                Some(self.submit_rate),
                "executions/s",
            ),
            Figure::new(
                "completion throughput",
                Some(self.completions_per_second),
                "executions/s",
            ),
            Figure::new(
                "events/s (seen on the streams)",
                Some(self.events_per_second),
                "events/s",
            )
            .basis(RawBasis::PgInsertRate),
            Figure::new(
                "events/s (server counter)",
                self.server_events_per_second,
                "events/s",
            )
            .basis(RawBasis::PgInsertRate),
            Figure::new(
                "schedule-to-start p50 (dispatched → agent has it)",
                s2s.map(|m| m.p50),
                "ms",
            )
            .basis(RawBasis::PgInsertLatency),
            Figure::new(
                "schedule-to-start p99 (dispatched → agent has it)",
                s2s.map(|m| m.p99),
                "ms",
            )
            .goal(Goal::Below(10.0))
            .basis(RawBasis::PgInsertLatency),
        ];
        out.extend(latency_figures(
            "schedule-to-start, server (TaskDispatched → TaskStarted)",
            self.schedule_to_start_server.as_ref(),
            RawBasis::PgInsertLatency,
        ));
        out.push(Figure::new(
            "projector lag, max",
            self.projector_lag_max,
            "events",
        ));
        out.extend(latency_figures(
            "HTTP create",
            self.http_create.as_ref(),
            RawBasis::PgInsertLatency,
        ));
        out.extend(latency_figures(
            "HTTP execute",
            self.http_execute.as_ref(),
            RawBasis::PgInsertLatency,
        ));
        out.extend(latency_figures(
            "HTTP status",
            self.http_status.as_ref(),
            RawBasis::PgRoundTripLatency,
        ));
        out.extend(latency_figures(
            "HTTP GET execution",
            self.http_execution.as_ref(),
            RawBasis::PgRoundTripLatency,
        ));
        if let Some(received) = self.slow_hook_deliveries {
            out.push(Figure::new(
                "slow webhook deliveries received",
                Some(received as f64),
                "deliveries",
            ));
        }
        out
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "W3: {} executions started, {} completed, {} failed, {} unfinished. Schedule-to-start \
             is TaskDispatched.recorded_at (server) → the agent's long poll returned the task \
             (client), same machine clock; the server-side figure is TaskDispatched → TaskStarted.",
            self.submitted, self.completed, self.failed, self.unfinished
        )];
        if self.projector_lag_max.is_none() {
            notes.push(
                "W3: projector lag n/a — the server exports no conflux_projector_lag_events gauge."
                    .into(),
            );
        }
        if self.errors > 0 {
            notes.push(format!(
                "W3: {} requests failed; first: {}",
                self.errors,
                self.first_error.as_deref().unwrap_or("?")
            ));
        }
        if self.reconnects > 0 {
            notes.push(format!(
                "W3: workflow streams lagged and reconnected {} time(s).",
                self.reconnects
            ));
        }
        notes
    }
}
