//! W1: a chain of 10 `noop` tasks, executed N times one after another. Each run is
//! timed on the client from sending the execute request to reading the terminal frame
//! on `/ws/executions/{id}`, opened right after the execute answer: the snapshot tells
//! the status as of its position and every later event follows, so a completion that
//! beats the socket is still seen (in the snapshot) and none is missed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::Utc;
use serde::Serialize;

use super::shapes::{chain, Step};
use super::{Figure, Goal, Outcome, RawBasis};
use crate::client::Client;
use crate::progress::Progress;
use crate::stats::{millis_of, MicrosHistogram, Millis};
use crate::ws::LiveStream;

/// How long one execution may take before the run fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// W1 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w1")]
pub struct Params {
    /// W1: executions, one after another.
    #[arg(id = "w1-runs", long = "w1-runs", default_value_t = 20)]
    pub runs: usize,
    /// W1: noop tasks in the chain.
    #[arg(id = "w1-chain", long = "w1-chain", default_value_t = 10)]
    pub chain: usize,
}

/// W1's result.
#[derive(Debug, Clone, Serialize)]
pub struct W1 {
    /// Tasks per execution.
    pub chain: usize,
    /// Every run's submit → completed, ms, in run order.
    pub runs_ms: Vec<f64>,
    /// Their percentiles.
    pub latency: Option<Millis>,
    /// Submit → the terminal event's `recorded_at` (server side of the same runs,
    /// without the delivery to the client), percentiles.
    pub recorded: Option<Millis>,
    /// Runs whose completion was already in the snapshot.
    pub completed_in_snapshot: usize,
}

/// Runs W1.
pub async fn run(client: &Client, p: &Params) -> Result<W1> {
    let (workflow, _) = client
        .create(&chain("w1-chain", p.chain, Step::Noop))
        .await
        .context("creating the W1 workflow")?;
    let bar = Progress::bar(p.runs as u64, "w1-chain");
    let mut samples = Vec::with_capacity(p.runs);
    let mut in_snapshot = 0;
    let mut recorded = MicrosHistogram::new()?;
    for i in 0..p.runs {
        let submitted = Instant::now();
        let submitted_wall = Utc::now();
        let (execution, _) = client.execute(&workflow).await?;
        let mut live = LiveStream::execution(client, &execution).await?;
        let end = live
            .wait_terminal(RUN_LIMIT)
            .await
            .with_context(|| format!("W1 run {}", i + 1))?;
        live.close().await;
        if end.status != "completed" {
            bail!(
                "W1 run {}: execution {execution} ended {}",
                i + 1,
                end.status
            );
        }
        in_snapshot += usize::from(end.from_snapshot);
        if let Some(at) = end.recorded_at {
            recorded.record_micros((at - submitted_wall).num_microseconds().unwrap_or(0));
        }
        let took = end.at.duration_since(submitted);
        samples.push(took);
        bar.inc();
        bar.message(format!("last {:.1} ms", took.as_secs_f64() * 1e3));
    }
    bar.finish();
    Ok(W1 {
        chain: p.chain,
        runs_ms: samples.iter().map(|d| d.as_secs_f64() * 1e3).collect(),
        latency: millis_of(&samples)?,
        recorded: recorded.summary(),
        completed_in_snapshot: in_snapshot,
    })
}

impl Outcome for W1 {
    fn figures(&self) -> Vec<Figure> {
        let m = self.latency.as_ref();
        vec![
            Figure::new(
                "submit → ExecutionCompleted, median",
                m.map(|m| m.p50),
                "ms",
            )
            .goal(Goal::Below(20.0))
            .basis(RawBasis::PgInsertLatency),
            Figure::new("submit → ExecutionCompleted, p95", m.map(|m| m.p95), "ms")
                .basis(RawBasis::PgInsertLatency),
            Figure::new(
                "submit → ExecutionCompleted recorded (server clock), median",
                self.recorded.as_ref().map(|m| m.p50),
                "ms",
            )
            .basis(RawBasis::PgInsertLatency),
            Figure::new(
                "per step (median / tasks)",
                m.map(|m| m.p50 / self.chain.max(1) as f64),
                "ms",
            )
            .basis(RawBasis::PgInsertLatency),
        ]
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "W1 is timed on the client: execute request sent → terminal frame read on \
             /ws/executions/{{id}} (opened after the execute answer); {} of {} runs were \
             already complete in the snapshot. The \"recorded\" figure is submit → the \
             ExecutionCompleted event's recorded_at (same clock), i.e. without the delivery \
             to the client.",
            self.completed_in_snapshot,
            self.runs_ms.len()
        )]
    }
}
