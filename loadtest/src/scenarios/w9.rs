//! W9: dynamic fan-out. One execution of a `map` over N items (10,000 by default) of a
//! `noop` template, `max_parallel` unset (every item at once), timed on the client from
//! the execute request to the terminal frame on `/ws/executions/{id}`, R runs one after
//! another. Items per second is N over that time; each item is four events (scheduled,
//! dispatched, started, completed), so events/s is compared with the raw insert rate.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::json;

use super::{Figure, Outcome, RawBasis};
use crate::client::Client;
use crate::progress::Progress;
use crate::ws::LiveStream;

/// How long one execution may take before the run fails.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// W9 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w9")]
pub struct Params {
    /// W9: items of the map.
    #[arg(id = "w9-items", long = "w9-items", default_value_t = 10_000)]
    pub items: usize,
    /// W9: executions, one after another.
    #[arg(id = "w9-runs", long = "w9-runs", default_value_t = 3)]
    pub runs: usize,
}

/// W9's result.
#[derive(Debug, Clone, Serialize)]
pub struct W9 {
    /// Items per execution.
    pub items: usize,
    /// Every run's submit → completed, seconds, in run order.
    pub runs_seconds: Vec<f64>,
    /// The median run, seconds.
    pub median_seconds: f64,
    /// Items per second of the median run.
    pub items_per_second: f64,
}

/// Runs W9.
pub async fn run(client: &Client, p: &Params) -> Result<W9> {
    let items: Vec<usize> = (0..p.items).collect();
    let definition = json!({"name": "w9-map", "tasks": [
        {"id": "fan", "kind": "map", "items": items,
         "template": {"kind": "noop", "input": {"n": "${item}"}}}
    ]});
    let (workflow, _) = client
        .create(&definition)
        .await
        .context("creating the W9 workflow")?;
    let bar = Progress::bar(p.runs as u64, "w9-map");
    let mut runs = Vec::with_capacity(p.runs);
    for i in 0..p.runs {
        let submitted = Instant::now();
        let (execution, _) = client.execute(&workflow).await?;
        let mut live = LiveStream::execution(client, &execution).await?;
        let end = live
            .wait_terminal(RUN_LIMIT)
            .await
            .with_context(|| format!("W9 run {}", i + 1))?;
        live.close().await;
        if end.status != "completed" {
            bail!(
                "W9 run {}: execution {execution} ended {}",
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
    let mut sorted = runs.clone();
    sorted.sort_by(f64::total_cmp);
    let median_seconds = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(W9 {
        items: p.items,
        runs_seconds: runs,
        median_seconds,
        items_per_second: p.items as f64 / median_seconds,
    })
}

impl Outcome for W9 {
    fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::new(
                "submit → map completed, median",
                Some(self.median_seconds),
                "s",
            ),
            Figure::new(
                "items/s (median run)",
                Some(self.items_per_second),
                "tasks/s",
            )
            .basis(RawBasis::RedisXaddRate),
            Figure::new(
                "events/s (4 per item, median run)",
                Some(self.items_per_second * 4.0),
                "events/s",
            )
            .basis(RawBasis::PgInsertRate),
        ]
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "W9 is one map of {} noop items, every item at once (no max_parallel); runs: {:?} s.",
            self.items, self.runs_seconds
        )]
    }
}
