//! W6: a chain of 40 `agent` tasks whose agent (built into the load tester) does about
//! 10 ms of real CPU work per task (SHA-256 in a busy loop, on a blocking thread).
//! Timed on the client: execute request sent → `ExecutionCompleted` read on
//! `/ws/executions/{id}`. The floor is 40 × 10 ms = 0.4 s of work; the rest is the
//! engine's hand-offs.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::shapes::{chain, Step};
use super::{run_tag, Figure, Goal, Outcome, RawBasis};
use crate::agents::{AgentPool, Work};
use crate::client::Client;
use crate::progress::Progress;
use crate::stats::median;
use crate::ws::LiveStream;

/// W6 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w6")]
pub struct Params {
    /// W6: agent tasks in the chain.
    #[arg(id = "w6-chain", long = "w6-chain", default_value_t = 40)]
    pub chain: usize,
    /// W6: milliseconds of CPU work per task.
    #[arg(id = "w6-work-ms", long = "w6-work-ms", default_value_t = 10)]
    pub work_ms: u64,
    /// W6: executions, one after another (the median is reported).
    #[arg(id = "w6-runs", long = "w6-runs", default_value_t = 3)]
    pub runs: usize,
    /// W6: polling agents (one is always waiting while another works).
    #[arg(id = "w6-pollers", long = "w6-pollers", default_value_t = 2)]
    pub pollers: usize,
}

/// W6's result.
#[derive(Debug, Clone, Serialize)]
pub struct W6 {
    /// Tasks per execution.
    pub chain: usize,
    /// CPU work per task, ms.
    pub work_ms: u64,
    /// Every run's submit → completed, seconds.
    pub runs_seconds: Vec<f64>,
    /// Their median.
    pub median_seconds: f64,
    /// Median minus the work itself, per task, ms: what each hand-off costs.
    pub overhead_per_task_ms: f64,
}

/// Runs W6.
pub async fn run(client: &Client, p: &Params) -> Result<W6> {
    let role = format!("w6-{}", run_tag());
    let (workflow, _) = client
        .create(&chain("w6-chain40", p.chain, Step::Agent(&role)))
        .await
        .context("creating the W6 workflow")?;
    let work = Duration::from_millis(p.work_ms);
    let agents = AgentPool::start(
        client,
        &role,
        p.pollers,
        Duration::from_secs(20),
        Work::Cpu(work),
    )
    .await?;
    let bar = Progress::bar(p.runs as u64, "w6-chain40");
    let limit = Duration::from_secs(60) + work * p.chain as u32 * 10;
    let mut runs = Vec::with_capacity(p.runs);
    for i in 0..p.runs {
        let submitted = Instant::now();
        let (execution, _) = client.execute(&workflow).await?;
        let mut live = LiveStream::execution(client, &execution).await?;
        let end = live
            .wait_terminal(limit)
            .await
            .with_context(|| format!("W6 run {}", i + 1))?;
        live.close().await;
        if end.status != "completed" {
            bail!(
                "W6 run {}: execution {execution} ended {}",
                i + 1,
                end.status
            );
        }
        let took = end.at.duration_since(submitted).as_secs_f64();
        runs.push(took);
        bar.inc();
        bar.message(format!("last {took:.2} s"));
    }
    bar.finish();
    agents.stop().await?;
    let median_seconds = median(&runs);
    let work_total = work.as_secs_f64() * p.chain as f64;
    Ok(W6 {
        chain: p.chain,
        work_ms: p.work_ms,
        runs_seconds: runs,
        median_seconds,
        overhead_per_task_ms: (median_seconds - work_total).max(0.0) * 1e3 / p.chain.max(1) as f64,
    })
}

impl Outcome for W6 {
    fn figures(&self) -> Vec<Figure> {
        let has_runs = !self.runs_seconds.is_empty();
        vec![
            Figure::new(
                "submit → ExecutionCompleted (median)",
                has_runs.then_some(self.median_seconds),
                "s",
            )
            .goal(Goal::Below(0.6)),
            Figure::new(
                "hand-off per task (median − work) / tasks",
                has_runs.then_some(self.overhead_per_task_ms),
                "ms",
            )
            .basis(RawBasis::PgInsertLatency),
        ]
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "W6: {} agent tasks × {} ms CPU (agent-side SHA-256 busy loop), runs: {}; timed on the client to \
             ExecutionCompleted on the execution's WebSocket. Published totals for this shape (their \
             hardware): Hatchet 1.22 s, Windmill 2.09 s, Temporal 2.97 s, Prefect 4.87 s, Airflow 116 s.",
            self.chain,
            self.work_ms,
            self.runs_seconds
                .iter()
                .map(|s| format!("{s:.3} s"))
                .collect::<Vec<_>>()
                .join(", ")
        )]
    }
}
