//! W2: M diamonds (`start → 10 parallel → join`, 12 tasks each) submitted at once.
//! Completions are observed on one `/ws/workflows/{id}` stream (opened, and its
//! snapshot received, before the first submit), so the observer costs the server one
//! subscriber rather than M. Wall time is client-side: first submit sent → last
//! terminal event read; the server-side span (first `ExecutionStarted` → last
//! terminal event, by `recorded_at`) is reported beside it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::shapes::{diamond, diamond_of, Step};
use super::{Figure, Goal, Outcome, RawBasis};
use crate::agents::{AgentPool, Work};
use crate::client::Client;
use crate::progress::Progress;
use crate::ws::{execution_of, recorded_at, terminal_event_status, Frame, Watch};

/// How long the whole batch may take.
const LIMIT: Duration = Duration::from_secs(600);

/// W2 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w2")]
pub struct Params {
    /// W2: diamonds submitted at once.
    #[arg(id = "w2-executions", long = "w2-executions", default_value_t = 200)]
    pub executions: usize,
    /// W2: parallel tasks in the middle of each diamond.
    #[arg(id = "w2-width", long = "w2-width", default_value_t = 10)]
    pub width: usize,
    /// W2: run the middle tasks as `agent` tasks served by this many of the load
    /// tester's agents (capacity 10 each, mixed capabilities); 0: noops.
    #[arg(id = "w2-agents", long = "w2-agents", default_value_t = 0)]
    pub agents: usize,
}

/// W2's result.
#[derive(Debug, Clone, Serialize)]
pub struct W2 {
    /// Executions submitted.
    pub executions: usize,
    /// Tasks they ran.
    pub tasks: usize,
    /// First submit sent → every execute answered, seconds.
    pub submit_seconds: f64,
    /// First submit sent → last terminal event read, seconds.
    pub wall_seconds: f64,
    /// `tasks / wall_seconds`.
    pub tasks_per_second: f64,
    /// Events of the workflow's executions seen on the stream.
    pub events: u64,
    /// `events / wall_seconds`.
    pub events_per_second: f64,
    /// First `ExecutionStarted` → last terminal event, by the server's `recorded_at`.
    pub server_span_seconds: Option<f64>,
    /// Executions that ended other than `completed`.
    pub not_completed: usize,
    /// Times the stream reconnected after `lagged`.
    pub reconnects: u64,
    /// Agents that served the middle tasks (0: they were noops).
    pub agents: usize,
}

/// Runs W2.
pub async fn run(client: &Client, p: &Params) -> Result<W2> {
    let role = format!("w2-{}", uuid::Uuid::new_v4().simple());
    let definition = if p.agents > 0 {
        diamond_of("w2-diamond-agents", p.width, Step::Agent(&role))
    } else {
        diamond("w2-diamond", p.width)
    };
    let (workflow, _) = client
        .create(&definition)
        .await
        .context("creating the W2 workflow")?;
    let pool = if p.agents > 0 {
        let sets: &[&[&str]] = &[&[], &["gpu"], &["gpu", "python"], &["python"], &["arm"]];
        Some(
            AgentPool::start_with_capabilities(
                client,
                &role,
                p.agents,
                Duration::from_secs(20),
                Work::Nothing,
                sets,
            )
            .await?,
        )
    } else {
        None
    };
    let mut watch = Watch::workflow(client, &workflow).await?;
    let bar = Progress::bar(p.executions as u64, "w2-diamond");
    bar.message("submitting");
    let started = Instant::now();
    let submits = (0..p.executions).map(|_| client.execute(&workflow));
    let ids: Vec<String> = futures::future::try_join_all(submits)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let submit_seconds = started.elapsed().as_secs_f64();
    bar.message("running");

    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut ended: HashMap<String, (Instant, &'static str)> = HashMap::new();
    let (mut events, mut first_start, mut last_end) = (0u64, None::<DateTime<Utc>>, None);
    while !ids.iter().all(|id| ended.contains_key(id)) {
        let received = tokio::time::timeout_at(deadline, watch.events.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "W2: {} of {} executions ended within {LIMIT:?}",
                    ended.len(),
                    ids.len()
                )
            })?
            .ok_or_else(|| anyhow!("W2: the workflow stream closed early"))?;
        let Frame::Event(e) = &received.frame else {
            continue;
        };
        events += 1;
        if e["type"] == "ExecutionStarted" {
            let at = recorded_at(e)?;
            first_start = Some(first_start.map_or(at, |f: DateTime<Utc>| f.min(at)));
        }
        if let (Some(status), Some(id)) = (terminal_event_status(e), execution_of(e)) {
            ended.insert(id.to_owned(), (received.at, status));
            let at = recorded_at(e)?;
            last_end = Some(last_end.map_or(at, |l: DateTime<Utc>| l.max(at)));
            bar.set(ended.len() as u64);
        }
    }
    bar.finish();
    let reconnects = watch.stop().await?;
    if let Some(pool) = pool {
        pool.stop().await?;
    }
    let last = ended.values().map(|(at, _)| *at).max().unwrap_or(started);
    let wall = last.duration_since(started).as_secs_f64().max(1e-9);
    let tasks = p.executions * (p.width + 2);
    Ok(W2 {
        executions: p.executions,
        tasks,
        submit_seconds,
        wall_seconds: wall,
        tasks_per_second: tasks as f64 / wall,
        events,
        events_per_second: events as f64 / wall,
        server_span_seconds: first_start
            .zip(last_end)
            .and_then(|(f, l)| (l - f).num_microseconds())
            .map(|us| us as f64 / 1e6),
        not_completed: ended.values().filter(|(_, s)| *s != "completed").count(),
        reconnects,
        agents: p.agents,
    })
}

impl Outcome for W2 {
    fn figures(&self) -> Vec<Figure> {
        vec![
            Figure::new(
                "wall time, first submit → last completion",
                Some(self.wall_seconds),
                "s",
            ),
            Figure::new("tasks/s", Some(self.tasks_per_second), "tasks/s")
                .goal(Goal::AtLeast(5000.0))
                .basis(RawBasis::RedisXaddRate),
            Figure::new("events/s", Some(self.events_per_second), "events/s")
                .basis(RawBasis::PgInsertRate),
            Figure::new(
                "server span, first ExecutionStarted → last completion",
                self.server_span_seconds,
                "s",
            ),
        ]
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "W2: {} executions × {} tasks; submitting took {:.2} s; completions read on one \
             /ws/workflows/{{id}} stream (client clock).",
            self.executions,
            self.tasks / self.executions.max(1),
            self.submit_seconds
        )];
        if self.agents > 0 {
            notes.push(format!(
                "W2: the middle tasks ran on {} agents of the load tester (capacity 10, \
                 mixed capabilities, scored routing).",
                self.agents
            ));
        }
        if self.not_completed > 0 {
            notes.push(format!(
                "W2: {} executions did not complete.",
                self.not_completed
            ));
        }
        if self.reconnects > 0 {
            notes.push(format!(
                "W2: the stream lagged and reconnected {} time(s).",
                self.reconnects
            ));
        }
        notes
    }
}
