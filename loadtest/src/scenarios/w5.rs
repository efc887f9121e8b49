//! W5: live fan-out. Many WebSocket subscribers on a few executions, under a W3-like
//! background load.
//!
//! The executions are chains of `agent` tasks, started before any agent of their role
//! exists, so they wait at their first task while every subscriber connects and reads
//! its snapshot; only then do the agents (and the background load) start, so every
//! event after the snapshots flows to subscribers that are already listening. Each
//! subscriber reads until its execution's terminal event.
//!
//! Commit → client latency is the frame's read time minus the envelope's
//! `recorded_at` (stamped by the server when it appends the event, just before the
//! commit), both on this machine's clock. Delivery is then checked against the log
//! (`GET /api/v1/executions/{id}/events`): every subscriber must have received exactly
//! the events after its snapshot position, each once, in order.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::load::{Load, LoadParams};
use super::shapes::{chain, Step};
use super::{run_tag, Figure, Goal, Outcome, RawBasis};
use crate::agents::{AgentPool, Work};
use crate::client::Client;
use crate::progress::Progress;
use crate::stats::{MicrosHistogram, Millis};
use crate::ws::{recorded_at, terminal_event_status, Frame, LiveStream};

/// WebSocket handshakes in flight at once while subscribers connect.
const CONNECTING_AT_ONCE: usize = 64;

/// W5 sizes.
#[derive(Debug, Clone, clap::Args, Serialize)]
#[group(id = "w5")]
pub struct Params {
    /// W5: WebSocket subscribers.
    #[arg(id = "w5-subscribers", long = "w5-subscribers", default_value_t = 1000)]
    pub subscribers: usize,
    /// W5: executions they watch (subscriber i watches execution i mod this).
    #[arg(id = "w5-executions", long = "w5-executions", default_value_t = 50)]
    pub executions: usize,
    /// W5: agent tasks in each watched execution's chain.
    #[arg(id = "w5-steps", long = "w5-steps", default_value_t = 10)]
    pub steps: usize,
    /// W5: polling agents serving the watched executions.
    #[arg(id = "w5-pollers", long = "w5-pollers", default_value_t = 4)]
    pub pollers: usize,
    /// W5: background executions per second (W3's mix) while the events flow.
    #[arg(
        id = "w5-background-rate",
        long = "w5-background-rate",
        default_value_t = 10.0
    )]
    pub background_rate: f64,
    /// W5: seconds every subscriber may take to see its execution end.
    #[arg(
        id = "w5-limit-seconds",
        long = "w5-limit-seconds",
        default_value_t = 300.0
    )]
    pub limit_seconds: f64,
}

/// What one subscriber saw after its snapshot.
struct Seen {
    execution: usize,
    snapshot_position: u64,
    positions: Vec<u64>,
    latencies_us: Vec<i64>,
    reconnects: u64,
}

/// W5's result.
#[derive(Debug, Clone, Serialize)]
pub struct W5 {
    /// Subscribers.
    pub subscribers: usize,
    /// Executions watched.
    pub executions: usize,
    /// Event frames delivered to all subscribers together.
    pub frames: u64,
    /// Commit (`recorded_at`) → frame read.
    pub latency: Option<Millis>,
    /// Subscribers that saw exactly the log after their snapshot, in order.
    pub exact: usize,
    /// Subscribers that did not.
    pub mismatched: usize,
    /// Events of the log a subscriber never received (over all subscribers).
    pub missing: u64,
    /// Events received more than once.
    pub duplicated: u64,
    /// Events received after one with a higher position.
    pub out_of_order: u64,
    /// Events received that are not in the execution's log after the snapshot.
    pub unexpected: u64,
    /// Reconnects after `lagged`.
    pub reconnects: u64,
    /// Background executions started.
    pub background_executions: usize,
    /// Seconds until every subscriber had its snapshot.
    pub connect_seconds: f64,
    /// Seconds from starting the agents until every subscriber saw its execution end.
    pub stream_seconds: f64,
}

/// Runs W5.
pub async fn run(client: &Client, p: &Params) -> Result<W5> {
    if p.executions == 0 || p.subscribers == 0 {
        bail!("W5 needs at least one execution and one subscriber");
    }
    let role = format!("w5-{}", run_tag());
    let (workflow, _) = client
        .create(&chain("w5-fanout", p.steps, Step::Agent(&role)))
        .await
        .context("creating the W5 workflow")?;
    let starts = (0..p.executions).map(|_| client.execute(&workflow));
    let executions: Vec<String> = futures::future::try_join_all(starts)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect();

    let bar = Progress::bar(p.subscribers as u64, "w5-fanout connecting");
    let connecting = Instant::now();
    let limit = Duration::from_secs_f64(p.limit_seconds.max(1.0));
    let (ready_tx, mut ready_rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(CONNECTING_AT_ONCE));
    // A JoinSet aborts every subscriber if the scenario fails half-way.
    let mut subscribers = JoinSet::new();
    for i in 0..p.subscribers {
        let execution = i % p.executions;
        let id = executions[execution].clone();
        let (client, ready, gate) = (client.clone(), ready_tx.clone(), gate.clone());
        subscribers.spawn(subscribe(client, execution, id, ready, gate, limit));
    }
    drop(ready_tx);
    for connected in 1..=p.subscribers {
        tokio::time::timeout(limit, ready_rx.recv())
            .await
            .map_err(|_| {
                anyhow!(
                    "W5: only {} subscribers connected within {limit:?}",
                    connected - 1
                )
            })?
            .ok_or_else(|| anyhow!("W5: subscribers stopped before their snapshots"))?
            .map_err(|e| anyhow!("W5: subscriber {connected} could not subscribe: {e}"))?;
        bar.set(connected as u64);
    }
    bar.finish();
    let connect_seconds = connecting.elapsed().as_secs_f64();

    let background = LoadParams {
        rate: p.background_rate,
        seconds: f64::INFINITY,
        agent_share: 0.5,
        pollers: 2,
        mixed_capabilities: false,
        poll_wait_ms: 20_000,
        status_rate: 0.0,
        create_rate: 0.0,
    };
    let load = if p.background_rate > 0.0 {
        Some(Load::start(client, &background).await?)
    } else {
        None
    };
    let agents = AgentPool::start(
        client,
        &role,
        p.pollers,
        Duration::from_secs(20),
        Work::Nothing,
    )
    .await?;
    let bar = Progress::bar(p.subscribers as u64, "w5-fanout streaming");
    let streaming = Instant::now();
    let mut seen = Vec::with_capacity(p.subscribers);
    while let Some(s) = subscribers.join_next().await {
        seen.push(s.context("a W5 subscriber panicked")??);
        bar.inc();
    }
    bar.finish();
    let stream_seconds = streaming.elapsed().as_secs_f64();
    agents.stop().await?;
    let background_executions = match load {
        Some(load) => load
            .finish(Duration::from_secs(10))
            .await?
            .generated
            .submitted
            .len(),
        None => 0,
    };
    let mut out = verify(client, p, &executions, &seen, background_executions).await?;
    out.connect_seconds = connect_seconds;
    out.stream_seconds = stream_seconds;
    Ok(out)
}

async fn subscribe(
    client: Client,
    execution: usize,
    id: String,
    ready: mpsc::UnboundedSender<Result<(), String>>,
    gate: Arc<Semaphore>,
    limit: Duration,
) -> Result<Seen> {
    let connected = async {
        let _permit = gate
            .acquire_owned()
            .await
            .context("the connect gate closed")?;
        let mut live = LiveStream::execution(&client, &id).await?;
        match live.next().await? {
            Some(r) => match r.frame {
                Frame::Snapshot { position, .. } => Ok((live, position)),
                Frame::Event(_) => bail!("execution {id}: an event before the snapshot"),
            },
            None => bail!("execution {id}: closed before the snapshot"),
        }
    }
    .await;
    let (mut live, snapshot_position) = match connected {
        Ok(c) => {
            let _ = ready.send(Ok(()));
            c
        }
        Err(e) => {
            let _ = ready.send(Err(format!("{e:#}")));
            return Err(e);
        }
    };
    let mut seen = Seen {
        execution,
        snapshot_position,
        positions: Vec::new(),
        latencies_us: Vec::new(),
        reconnects: 0,
    };
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let next = tokio::time::timeout_at(deadline, live.next())
            .await
            .map_err(|_| anyhow!("execution {id}: not finished within {limit:?}"))??;
        let Some(r) = next else {
            bail!("execution {id}: the stream closed before the execution ended");
        };
        let Frame::Event(e) = &r.frame else { continue };
        seen.latencies_us
            .push((r.wall - recorded_at(e)?).num_microseconds().unwrap_or(0));
        seen.positions.push(e["position"].as_u64().unwrap_or(0));
        if terminal_event_status(e).is_some() {
            break;
        }
    }
    seen.reconnects = live.reconnects();
    live.close().await;
    Ok(seen)
}

async fn verify(
    client: &Client,
    p: &Params,
    executions: &[String],
    seen: &[Seen],
    background: usize,
) -> Result<W5> {
    let mut logs: HashMap<usize, Vec<u64>> = HashMap::new();
    for (i, id) in executions.iter().enumerate() {
        let log = client.execution_events(id).await?;
        logs.insert(
            i,
            log.iter().filter_map(|e| e["position"].as_u64()).collect(),
        );
    }
    let mut latency = MicrosHistogram::new()?;
    let mut out = W5 {
        subscribers: p.subscribers,
        executions: p.executions,
        frames: 0,
        latency: None,
        exact: 0,
        mismatched: 0,
        missing: 0,
        duplicated: 0,
        out_of_order: 0,
        unexpected: 0,
        reconnects: 0,
        background_executions: background,
        connect_seconds: 0.0,
        stream_seconds: 0.0,
    };
    for s in seen {
        for us in &s.latencies_us {
            latency.record_micros(*us);
        }
        out.frames += s.positions.len() as u64;
        out.reconnects += s.reconnects;
        let log = logs
            .get(&s.execution)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let expected: Vec<u64> = log
            .iter()
            .copied()
            .filter(|p| *p > s.snapshot_position)
            .collect();
        if s.positions == expected {
            out.exact += 1;
            continue;
        }
        out.mismatched += 1;
        let d = compare(&expected, &s.positions);
        out.missing += d.missing;
        out.duplicated += d.duplicated;
        out.out_of_order += d.out_of_order;
        out.unexpected += d.unexpected;
    }
    out.latency = latency.summary();
    Ok(out)
}

/// How a received sequence of positions differs from the expected one.
#[derive(Debug, Default, PartialEq)]
struct Differences {
    missing: u64,
    duplicated: u64,
    out_of_order: u64,
    unexpected: u64,
}

fn compare(expected: &[u64], got: &[u64]) -> Differences {
    let wanted: HashSet<u64> = expected.iter().copied().collect();
    let mut once = HashSet::new();
    let mut d = Differences::default();
    let mut highest = 0;
    for p in got {
        if !once.insert(*p) {
            d.duplicated += 1;
        } else if !wanted.contains(p) {
            d.unexpected += 1;
        }
        if *p < highest {
            d.out_of_order += 1;
        }
        highest = highest.max(*p);
    }
    d.missing = wanted.difference(&once).count() as u64;
    d
}

impl Outcome for W5 {
    fn figures(&self) -> Vec<Figure> {
        let m = self.latency.as_ref();
        vec![
            Figure::new("commit → client p50", m.map(|m| m.p50), "ms")
                .basis(RawBasis::PgInsertLatency),
            Figure::new("commit → client p99", m.map(|m| m.p99), "ms")
                .goal(Goal::Below(25.0))
                .basis(RawBasis::PgInsertLatency),
            Figure::new("event frames delivered", Some(self.frames as f64), "frames"),
            Figure::new(
                "subscribers with a delivery mismatch",
                Some(self.mismatched as f64),
                "subscribers",
            ),
        ]
    }

    fn notes(&self) -> Vec<String> {
        let mut notes = vec![format!(
            "W5: {} subscribers on {} executions ({:.1} s to connect them all, then {:.1} s of \
             streaming), {} background executions; commit → client is frame read time − envelope \
             recorded_at (same machine clock). Delivery checked against each execution's log: {} \
             subscribers exact, {} mismatched.",
            self.subscribers,
            self.executions,
            self.connect_seconds,
            self.stream_seconds,
            self.background_executions,
            self.exact,
            self.mismatched
        )];
        if self.mismatched > 0 {
            notes.push(format!(
                "W5 mismatches: {} missing, {} duplicated, {} out of order, {} unexpected events.",
                self.missing, self.duplicated, self.out_of_order, self.unexpected
            ));
        }
        if self.reconnects > 0 {
            notes.push(format!(
                "W5: subscribers lagged and reconnected {} time(s).",
                self.reconnects
            ));
        }
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_are_classified() {
        assert_eq!(compare(&[1, 2, 3], &[1, 2, 3]), Differences::default());
        let d = compare(&[1, 2, 3, 4], &[1, 3, 3, 2, 9]);
        assert_eq!(
            d,
            Differences {
                missing: 1,
                duplicated: 1,
                out_of_order: 1,
                unexpected: 1
            }
        );
    }
}
