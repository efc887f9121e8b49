//! W8: schedule-tick accuracy. `schedules` schedules (100) fire every second
//! (`* * * * * *`, `overlap: allow`, `catch_up: all`) for `seconds`, each starting a
//! one-`noop` workflow; then they are deleted and the workflow's log is read.
//!
//! Lateness of a tick = its `ExecutionStarted`'s `recorded_at` − the tick's time (the
//! tick is in the event's `causation_id`, `schedule-<id>@<tick>`): how long after the
//! second it was due the execution existed, by the server's clock. The log also says
//! whether any tick started twice (duplicates) or was skipped between a schedule's
//! first and last tick (missing); both must be 0.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use futures::future::try_join_all;
use serde::Serialize;
use serde_json::{json, Value};

use super::shapes::{chain, Step};
use super::{run_tag, Figure, Goal, Outcome};
use crate::client::{string_field, Client};
use crate::progress::Progress;
use crate::stats::{MicrosHistogram, Millis};
use crate::ws::recorded_at;

/// W8 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w8")]
pub struct Params {
    /// W8: schedules firing every second.
    #[arg(id = "w8-schedules", long = "w8-schedules", default_value_t = 100)]
    pub schedules: usize,
    /// W8: seconds they fire for.
    #[arg(id = "w8-seconds", long = "w8-seconds", default_value_t = 30)]
    pub seconds: u64,
}

/// W8's result.
#[derive(Debug, Clone, Serialize)]
pub struct W8 {
    /// Schedules.
    pub schedules: usize,
    /// Seconds they fired for.
    pub seconds: u64,
    /// Ticks that started an execution.
    pub ticks: u64,
    /// Tick → `ExecutionStarted`, by `recorded_at`.
    pub lateness: Option<Millis>,
    /// Ticks that started more than one execution (must be 0).
    pub duplicates: u64,
    /// Ticks without an execution between a schedule's first and last (must be 0).
    pub missing: u64,
}

/// Runs W8.
pub async fn run(client: &Client, p: &Params) -> Result<W8> {
    let (workflow, _) = client
        .create(&chain(&format!("w8-{}", run_tag()), 1, Step::Noop))
        .await
        .context("creating the W8 workflow")?;
    let body = json!({"workflow": workflow, "cron": "* * * * * *",
                      "overlap": "allow", "catch_up": "all"});
    let creates = (0..p.schedules).map(|_| client.post("/api/v1/schedules", &body));
    let ids: Vec<String> = try_join_all(creates)
        .await
        .context("creating the W8 schedules")?
        .iter()
        .map(|a| string_field(&a.body, "id"))
        .collect::<Result<_>>()?;
    let bar = Progress::bar(p.seconds, "w8-schedules");
    for _ in 0..p.seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        bar.inc();
    }
    bar.finish();
    let deletes = ids.iter().map(|id| async move {
        let path = format!("/api/v1/schedules/{id}");
        client.call(reqwest::Method::DELETE, &path, None).await
    });
    try_join_all(deletes)
        .await
        .context("deleting the W8 schedules")?;
    // Passes under way when the deletes landed finish.
    tokio::time::sleep(Duration::from_secs(2)).await;
    measure(client, &workflow, p).await
}

/// Reads the workflow's log and measures every tick's execution.
async fn measure(client: &Client, workflow: &str, p: &Params) -> Result<W8> {
    let mut lateness = MicrosHistogram::new()?;
    let mut per_tick: BTreeMap<(String, DateTime<Utc>), u64> = BTreeMap::new();
    let mut after = 0;
    loop {
        let path = format!("/api/v1/workflows/{workflow}/events?after_position={after}&limit=1000");
        let page = client.get(&path).await?;
        let events = page.body["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            after = after.max(e["position"].as_u64().unwrap_or(0));
            if e["type"] != "ExecutionStarted" {
                continue;
            }
            let (schedule, tick) = tick_of(e)?;
            lateness.record_micros((recorded_at(e)? - tick).num_microseconds().unwrap_or(0));
            *per_tick.entry((schedule, tick)).or_default() += 1;
        }
        if events.len() < 1000 {
            break;
        }
    }
    let duplicates = per_tick.values().filter(|n| **n > 1).count() as u64;
    let mut seconds: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (schedule, tick) in per_tick.keys() {
        seconds
            .entry(schedule)
            .or_default()
            .insert(tick.timestamp());
    }
    let missing = seconds
        .values()
        .map(|s| match (s.first(), s.last()) {
            (Some(first), Some(last)) => (last - first + 1) as u64 - s.len() as u64,
            _ => 0,
        })
        .sum();
    Ok(W8 {
        schedules: p.schedules,
        seconds: p.seconds,
        ticks: per_tick.len() as u64,
        lateness: lateness.summary(),
        duplicates,
        missing,
    })
}

/// The schedule and tick of an `ExecutionStarted` a schedule caused.
fn tick_of(e: &Value) -> Result<(String, DateTime<Utc>)> {
    let cause = e["metadata"]["causation_id"]
        .as_str()
        .ok_or_else(|| anyhow!("an execution not started by a schedule: {e}"))?;
    let (schedule, tick) = cause
        .split_once('@')
        .ok_or_else(|| anyhow!("causation {cause:?} is not schedule-<id>@<tick>"))?;
    let tick = DateTime::parse_from_rfc3339(tick)
        .with_context(|| format!("tick {tick:?}"))?
        .with_timezone(&Utc);
    Ok((schedule.to_owned(), tick))
}

impl Outcome for W8 {
    fn figures(&self) -> Vec<Figure> {
        let l = self.lateness.as_ref();
        vec![
            Figure::new("tick → ExecutionStarted p50", l.map(|m| m.p50), "ms"),
            Figure::new("tick → ExecutionStarted p99", l.map(|m| m.p99), "ms"),
            Figure::new("ticks started", Some(self.ticks as f64), "ticks"),
            Figure::new("ticks started twice", Some(self.duplicates as f64), "ticks")
                .goal(Goal::Below(1.0)),
            Figure::new("ticks missing", Some(self.missing as f64), "ticks").goal(Goal::Below(1.0)),
        ]
    }

    fn notes(&self) -> Vec<String> {
        vec![format!(
            "W8: {} schedules firing every second for {} s (overlap allow, catch_up all), one noop each; \
             lateness = ExecutionStarted.recorded_at − tick, read from the workflow's log; max {} ms.",
            self.schedules,
            self.seconds,
            self.lateness.as_ref().map_or("n/a".to_owned(), |m| format!("{:.1}", m.max)),
        )]
    }
}
