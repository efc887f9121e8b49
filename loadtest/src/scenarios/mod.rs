//! The workload scenarios, each driving a running server over HTTP and WebSocket only.
//!
//! - [`w1`]: a chain of 10 `noop` tasks, run one execution after another; submit →
//!   `ExecutionCompleted` seen on the execution's WebSocket.
//! - [`w2`]: many diamonds (`start → 10 parallel → join`) submitted at once.
//! - [`w3`]: a target rate of executions (noop and agent tasks) for a while: throughput,
//!   schedule-to-start, events/s, projector lag, HTTP latencies.
//! - [`w4`]: creating (and so validating) a 10,000-task DAG and a 100,000-task chain.
//! - [`w5`]: many WebSocket subscribers under load: commit → client latency, and
//!   exactly-once in-order delivery checked against the log.
//! - [`w6`]: a chain of 40 agent tasks, each ~10 ms of CPU work in the agent.
//! - [`w7`]: fair shares between tenants: one tenant's backlog of 2,000 executions, and
//!   how long another tenant's first task waits meanwhile.
//! - [`w9`]: dynamic fan-out: one map of 10,000 noop items, submit → completed.
//! - [`w8`]: schedule-tick accuracy: 100 schedules firing every second, tick →
//!   `ExecutionStarted` lateness, and exactly one execution per tick.
//!
//! [`load`] is the open-loop generator w3 measures and w5 runs in the background;
//! [`shapes`] builds the workflow definitions; [`figure`] is what every scenario
//! reports.

pub mod figure;
pub mod load;
pub mod shapes;
pub mod w1;
pub mod w2;
pub mod w3;
pub mod w4;
pub mod w5;
pub mod w6;
pub mod w7;
pub mod w8;
pub mod w9;

use std::time::Instant;

use anyhow::Result;
use serde::Serialize;
use serde_json::Value;

use crate::client::Client;
pub use figure::{Figure, Goal, RawBasis, RawRatio};

/// One scenario with its sizes.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "scenario", rename_all = "kebab-case")]
pub enum Scenario {
    /// W1.
    W1Chain(w1::Params),
    /// W2.
    W2Diamond(w2::Params),
    /// W3.
    W3Sustained(w3::Params),
    /// W4.
    W4Planning(w4::Params),
    /// W5.
    W5Fanout(w5::Params),
    /// W6.
    W6Chain40(w6::Params),
    /// W7.
    W7Fairness(w7::Params),
    /// W8.
    W8Schedules(w8::Params),
    /// W9.
    W9Map(w9::Params),
}

impl Scenario {
    /// The subcommand name (`w1-chain`…).
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::W1Chain(_) => "w1-chain",
            Scenario::W2Diamond(_) => "w2-diamond",
            Scenario::W3Sustained(_) => "w3-sustained",
            Scenario::W4Planning(_) => "w4-planning",
            Scenario::W5Fanout(_) => "w5-fanout",
            Scenario::W6Chain40(_) => "w6-chain40",
            Scenario::W7Fairness(_) => "w7-fairness",
            Scenario::W8Schedules(_) => "w8-schedules",
            Scenario::W9Map(_) => "w9-map",
        }
    }

    /// A one-line description with the sizes.
    pub fn describe(&self) -> String {
        match self {
            Scenario::W1Chain(p) => format!(
                "W1: chain of {} noop tasks, {} runs one after another",
                p.chain, p.runs
            ),
            Scenario::W2Diamond(p) => format!(
                "W2: {} diamonds (1 → {} → 1) submitted at once",
                p.executions, p.width
            ),
            Scenario::W3Sustained(p) => format!(
                "W3: {} executions/s for {} s, {:.0} % with an agent task, {} polling agents",
                p.load.rate,
                p.load.seconds,
                p.load.agent_share * 100.0,
                p.load.pollers
            ),
            Scenario::W4Planning(p) => format!(
                "W4: create+validate a {}-task DAG (fan-out {}) and a {}-task chain, {} time(s) each",
                p.dag_tasks, p.fanout, p.chain_tasks, p.repeats
            ),
            Scenario::W5Fanout(p) => format!(
                "W5: {} WebSocket subscribers on {} executions of {} agent steps, background load {}/s",
                p.subscribers, p.executions, p.steps, p.background_rate
            ),
            Scenario::W6Chain40(p) => format!(
                "W6: chain of {} agent tasks of ~{} ms CPU each, {} run(s)",
                p.chain, p.work_ms, p.runs
            ),
            Scenario::W7Fairness(p) => format!(
                "W7: tenant A {} diamonds (1 → {} → 1) at once; tenant B one {} task every {} ms, {} times, from {} ms later",
                p.backlog,
                p.width,
                if p.agent { "agent" } else { "noop" },
                p.interval_ms,
                p.probes,
                p.delay_ms
            ),
            Scenario::W8Schedules(p) => format!(
                "W8: {} schedules firing every second for {} s, one noop execution per tick",
                p.schedules, p.seconds
            ),
            Scenario::W9Map(p) => format!(
                "W9: one map of {} noop items (all at once), {} run(s) one after another",
                p.items, p.runs
            ),
        }
    }

    /// Runs the scenario against the server `client` talks to.
    pub async fn run(&self, client: &Client) -> Result<ScenarioRun> {
        let started = Instant::now();
        let (result, figures, notes) = match self {
            Scenario::W1Chain(p) => report(w1::run(client, p).await?),
            Scenario::W2Diamond(p) => report(w2::run(client, p).await?),
            Scenario::W3Sustained(p) => report(w3::run(client, p).await?),
            Scenario::W4Planning(p) => report(w4::run(client, p).await?),
            Scenario::W5Fanout(p) => report(w5::run(client, p).await?),
            Scenario::W6Chain40(p) => report(w6::run(client, p).await?),
            Scenario::W7Fairness(p) => report(w7::run(client, p).await?),
            Scenario::W8Schedules(p) => report(w8::run(client, p).await?),
            Scenario::W9Map(p) => report(w9::run(client, p).await?),
        };
        Ok(ScenarioRun {
            result,
            figures,
            notes,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

/// What a scenario's result says for the report.
pub trait Outcome: Serialize {
    /// The figures, in the order to show them.
    fn figures(&self) -> Vec<Figure>;
    /// How figures were measured, and anything surprising.
    fn notes(&self) -> Vec<String>;
}

fn report<O: Outcome>(outcome: O) -> (Value, Vec<Figure>, Vec<String>) {
    let result = serde_json::to_value(&outcome).unwrap_or(Value::Null);
    (result, outcome.figures(), outcome.notes())
}

/// A finished scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioRun {
    /// The scenario's own result, as JSON.
    pub result: Value,
    /// Its figures.
    pub figures: Vec<Figure>,
    /// Its notes.
    pub notes: Vec<String>,
    /// How long it took, seconds.
    pub seconds: f64,
}

/// A short random tag, so each run's agent roles and workflow names are its own.
pub fn run_tag() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}
