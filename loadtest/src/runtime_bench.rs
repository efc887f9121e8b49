//! Workflow scenarios against a running `conflux serve`, over HTTP only.
//!
//! Latencies are read from the server's own event log (`recorded_at` of each event, the
//! same machine's clock as the client's submit time), so they do not depend on how
//! often the client looks: submit → `ExecutionCompleted` for W1, first submit → last
//! completion for W2, `TaskScheduled` → `TaskStarted` for agent tasks.
//!
//! - W1: a chain of 10 `noop` tasks, executed N times one after another.
//! - W2: M diamonds (`start → 10 parallel → join`) submitted at once.
//! - agents: executions of 5 parallel agent tasks, served by P polling agents.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use chrono::{DateTime, Utc};
use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// How often the many-execution scenarios look at each execution: rarely, so that the
/// observer does not compete with the server for the machine.
const SLOW_POLL: Duration = Duration::from_millis(250);

/// A client of one Conflux server.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Result<Self> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .with_context(|| format!("POST {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("POST {path} answered {status}: {body}");
        }
        Ok(body)
    }

    async fn get(&self, path: &str) -> Result<Value> {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .with_context(|| format!("GET {path}"))?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("GET {path} answered {status}: {body}");
        }
        Ok(body)
    }

    /// Creates a workflow and returns its id.
    pub async fn create(&self, definition: &Value) -> Result<String> {
        let created = self.post("/api/v1/workflows", definition).await?;
        created["workflow_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no workflow_id in {created}"))
    }

    /// Starts an execution; returns its id.
    pub async fn execute(&self, workflow_id: &str) -> Result<String> {
        let started = self
            .post(
                &format!("/api/v1/workflows/{workflow_id}/execute"),
                &json!({"input": {}}),
            )
            .await?;
        started["execution_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("no execution_id in {started}"))
    }

    /// Waits until the execution is terminal and returns its event log.
    /// `every` is how long to wait between looks when nothing new arrived; it does not
    /// change the measured latencies (they come from the events' own timestamps).
    pub async fn wait_events(
        &self,
        execution_id: &str,
        limit: Duration,
        every: Duration,
    ) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut events: Vec<Value> = Vec::new();
        loop {
            let after = events
                .last()
                .and_then(|e| e["version"].as_u64())
                .unwrap_or(0);
            let page = self
                .get(&format!(
                    "/api/v1/executions/{execution_id}/events?after_version={after}&limit=1000"
                ))
                .await?;
            let new = page["events"].as_array().cloned().unwrap_or_default();
            let got_new = !new.is_empty();
            events.extend(new);
            if events.iter().any(|e| {
                matches!(
                    e["type"].as_str(),
                    Some("ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled")
                )
            }) {
                return Ok(events);
            }
            if tokio::time::Instant::now() > deadline {
                bail!("execution {execution_id} did not finish within {limit:?}");
            }
            if !got_new {
                tokio::time::sleep(every).await;
            }
        }
    }
}

fn recorded_at(event: &Value) -> Result<DateTime<Utc>> {
    let raw = event["recorded_at"]
        .as_str()
        .ok_or_else(|| anyhow!("event without recorded_at"))?;
    Ok(DateTime::parse_from_rfc3339(raw)?.with_timezone(&Utc))
}

fn completed_at(events: &[Value]) -> Result<DateTime<Utc>> {
    let done = events
        .iter()
        .find(|e| e["type"] == "ExecutionCompleted")
        .ok_or_else(|| {
            anyhow!(
                "execution did not complete: last event {:?}",
                events.last().map(|e| &e["type"])
            )
        })?;
    recorded_at(done)
}

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Millis {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
}

fn millis(samples_us: &[u64]) -> Result<Millis> {
    let mut h = Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for s in samples_us {
        h.record((*s).max(1))?;
    }
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    Ok(Millis {
        count: h.len(),
        p50: ms(0.5),
        p95: ms(0.95),
        p99: ms(0.99),
        max: h.max() as f64 / 1000.0,
    })
}

fn chain(n: usize) -> Value {
    let tasks: Vec<Value> = (0..n)
        .map(|i| if i == 0 { json!({"id": "t0", "kind": "noop"}) } else { json!({"id": format!("t{i}"), "kind": "noop", "depends_on": [format!("t{}", i - 1)]}) })
        .collect();
    json!({"name": "w1-chain", "tasks": tasks})
}

fn diamond(width: usize) -> Value {
    let mut tasks = vec![json!({"id": "start", "kind": "noop"})];
    for i in 0..width {
        tasks.push(json!({"id": format!("p{i}"), "kind": "noop", "depends_on": ["start"]}));
    }
    let all: Vec<String> = (0..width).map(|i| format!("p{i}")).collect();
    tasks.push(json!({"id": "join", "kind": "noop", "depends_on": all}));
    json!({"name": "w2-diamond", "tasks": tasks})
}

/// W1: a chain of 10 noop tasks, `runs` times one after another.
pub async fn w1(client: &Client, runs: usize) -> Result<Millis> {
    let workflow = client.create(&chain(10)).await?;
    let mut samples = Vec::with_capacity(runs);
    for i in 0..runs {
        let submitted = Utc::now();
        let execution = client.execute(&workflow).await?;
        let events = client
            .wait_events(
                &execution,
                Duration::from_secs(60),
                Duration::from_millis(2),
            )
            .await?;
        let took = (completed_at(&events)? - submitted)
            .num_microseconds()
            .unwrap_or(i64::MAX);
        samples.push(took.max(0) as u64);
        eprintln!("  w1 run {}/{runs}: {:.1} ms", i + 1, took as f64 / 1000.0);
    }
    millis(&samples)
}

/// W2's outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Throughput {
    /// Executions.
    pub executions: usize,
    /// Tasks run.
    pub tasks: usize,
    /// First submit → last completion, seconds.
    pub wall_seconds: f64,
    /// Tasks per second.
    pub tasks_per_second: f64,
}

/// W2: `count` diamonds of 1 → 10 → 1 submitted at once.
pub async fn w2(client: &Client, count: usize) -> Result<Throughput> {
    let workflow = client.create(&diamond(10)).await?;
    let started = Utc::now();
    let submits = (0..count).map(|_| client.execute(&workflow));
    let executions: Vec<String> = futures::future::try_join_all(submits).await?;
    eprintln!("  w2: {count} executions submitted");
    let waits = executions
        .iter()
        .map(|e| client.wait_events(e, Duration::from_secs(300), SLOW_POLL));
    let logs = futures::future::try_join_all(waits).await?;
    let mut last = started;
    for log in &logs {
        last = last.max(completed_at(log)?);
    }
    let wall = (last - started).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let tasks = count * 12;
    Ok(Throughput {
        executions: count,
        tasks,
        wall_seconds: wall,
        tasks_per_second: tasks as f64 / wall.max(1e-9),
    })
}

/// Schedule-to-start of agent tasks: `executions` runs of 5 parallel agent tasks, served
/// by `agents` agents long-polling over HTTP.
pub async fn agents(client: &Client, executions: usize, agents: usize) -> Result<Millis> {
    let tasks: Vec<Value> = (0..5)
        .map(|i| json!({"id": format!("a{i}"), "kind": "agent", "agent_role": "bench"}))
        .collect();
    let workflow = client
        .create(&json!({"name": "agent-latency", "tasks": tasks}))
        .await?;
    let stop = tokio_util::sync::CancellationToken::new();
    let mut pollers = Vec::new();
    for i in 0..agents {
        let c = client.clone();
        let stop = stop.clone();
        pollers.push(tokio::spawn(async move { poll_agent(c, i, stop).await }));
    }
    let ids =
        futures::future::try_join_all((0..executions).map(|_| client.execute(&workflow))).await?;
    let logs = futures::future::try_join_all(
        ids.iter()
            .map(|e| client.wait_events(e, Duration::from_secs(120), SLOW_POLL)),
    )
    .await?;
    stop.cancel();
    for p in pollers {
        let _ = p.await;
    }
    let mut samples = Vec::new();
    for log in &logs {
        let mut scheduled: HashMap<(String, u64), DateTime<Utc>> = HashMap::new();
        for e in log {
            let key = (
                e["data"]["task_id"].as_str().unwrap_or("").to_owned(),
                e["data"]["attempt"].as_u64().unwrap_or(0),
            );
            match e["type"].as_str() {
                Some("TaskScheduled") => {
                    scheduled.insert(key, recorded_at(e)?);
                }
                Some("TaskStarted") => {
                    if let Some(s) = scheduled.get(&key) {
                        samples.push(
                            (recorded_at(e)? - *s)
                                .num_microseconds()
                                .unwrap_or(0)
                                .max(0) as u64,
                        );
                    }
                }
                _ => {}
            }
        }
    }
    millis(&samples)
}

async fn poll_agent(
    client: Client,
    i: usize,
    stop: tokio_util::sync::CancellationToken,
) -> Result<()> {
    let agent = client
        .post(
            "/api/v1/agents",
            &json!({"name": format!("bench-{i}"), "roles": ["bench"], "capacity": 10}),
        )
        .await?;
    let id = agent["agent_id"]
        .as_str()
        .ok_or_else(|| anyhow!("no agent_id"))?
        .to_owned();
    let path = format!("/api/v1/agents/{id}/poll?max=10&wait_ms=1000");
    let empty = json!({});
    while !stop.is_cancelled() {
        let polled = tokio::select! {
            _ = stop.cancelled() => break,
            p = client.post(&path, &empty) => p?,
        };
        for task in polled["tasks"].as_array().cloned().unwrap_or_default() {
            let lease = task["lease_id"].as_str().unwrap_or_default();
            client
                .post(
                    &format!("/api/v1/tasks/{lease}/complete"),
                    &json!({"output": {"ok": true}}),
                )
                .await?;
        }
    }
    Ok(())
}
