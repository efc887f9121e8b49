//! Conflux's own appends, through the production [`PgStore`] (writer task, group
//! commit, hash chain, commit-order lock, outbox row), measured beside the raw INSERT
//! rate they are judged against.
//!
//! Each worker appends to its own 16 execution streams round-robin and tracks their
//! versions itself, as a command handler that just loaded the stream would; appends
//! never conflict, so the figures are the store's throughput, not its retry path.
//!
//! After each round the probe counts the outbox rows the round wrote: the store writes
//! exactly one per transaction, so this shows how well the writer's group commit
//! batched (`appends_per_transaction`, `events_per_transaction`). Nothing publishes or
//! deletes outbox rows during a benchmark, so the count is exact.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{anyhow, Context, Result};
use async_trait::async_trait;
use conflux_engine::store::postgres::PgStore;
use conflux_engine::store::EventStore;

use crate::limits::{self, PgInsert, BATCH};
use crate::payload::{Payload, StreamCursor};
use crate::report::{ComparisonSpec, Goal};
use crate::runner::{Probe, Worker};
use crate::sandbox::Sandbox;
use crate::stats::{Kind, ProbeInfo, Sample};

/// The goal for single-event appends: at least this share of the raw
/// autocommit INSERT rate with as many connections.
pub const SINGLE_APPEND_GOAL: f64 = 0.60;

/// The goal for batched appends: at least this share of the raw multi-row
/// INSERT rate with as many connections.
pub const BATCHED_APPEND_GOAL: f64 = 0.50;

/// What the `store` subcommand runs, and which results it compares.
pub struct StorePlan {
    /// Every probe in run order: each Conflux probe followed by its raw reference,
    /// then Redis, then round trips.
    pub probes: Vec<Box<dyn Probe>>,
    /// Conflux measurement / raw reference pairs, with the goal for each.
    pub comparisons: Vec<ComparisonSpec>,
}

/// Builds the `store` plan: single and 100-event appends with 1 and 8 tasks, each
/// beside the raw INSERT it is compared with.
pub fn plan(store: &PgStore, sandbox: &Sandbox) -> Result<StorePlan> {
    let mut probes: Vec<Box<dyn Probe>> = Vec::new();
    let mut comparisons = Vec::new();
    for (events_per_append, tasks) in [(1, 1), (1, 8), (BATCH, 1), (BATCH, 8)] {
        let conflux = ConfluxAppend::new(store.clone(), tasks, events_per_append);
        let raw = PgInsert::new(sandbox.pool().clone(), tasks, events_per_append);
        let goal = if events_per_append == 1 {
            Goal {
                min_ratio: SINGLE_APPEND_GOAL,
                description: format!(
                    "single appends ≥ {:.0} % of raw autocommit INSERTs",
                    SINGLE_APPEND_GOAL * 100.0
                ),
            }
        } else {
            Goal {
                min_ratio: BATCHED_APPEND_GOAL,
                description: format!(
                    "batched appends ≥ {:.0} % of the raw batched INSERT rate",
                    BATCHED_APPEND_GOAL * 100.0
                ),
            }
        };
        comparisons.push(ComparisonSpec {
            measurement: conflux.info().id,
            reference: raw.info().id,
            goal: Some(goal),
        });
        probes.push(Box::new(conflux));
        probes.push(Box::new(raw));
    }
    probes.extend(limits::redis_probes(sandbox)?);
    probes.extend(limits::round_trip_probes(sandbox));
    Ok(StorePlan {
        probes,
        comparisons,
    })
}

/// `store.append` of `events_per_append` events per call from `tasks` concurrent
/// tasks sharing one store.
pub struct ConfluxAppend {
    store: PgStore,
    tasks: usize,
    events_per_append: usize,
    /// The highest position before the current round started.
    mark: Mutex<i64>,
}

impl ConfluxAppend {
    /// A probe of `events_per_append` events per append from `tasks` tasks.
    pub fn new(store: PgStore, tasks: usize, events_per_append: usize) -> Self {
        Self {
            store,
            tasks,
            events_per_append: events_per_append.max(1),
            mark: Mutex::new(0),
        }
    }
}

#[async_trait]
impl Probe for ConfluxAppend {
    fn info(&self) -> ProbeInfo {
        let (t, b) = (self.tasks, self.events_per_append);
        let (id, label) = if b == 1 {
            (
                format!("conflux.append.single.x{t}"),
                format!("conflux append 1 event ×{t}"),
            )
        } else {
            (
                format!("conflux.append.batch{b}.x{t}"),
                format!("conflux append {b} events ×{t}"),
            )
        };
        ProbeInfo {
            id,
            label,
            kind: Kind::Conflux,
            workers: t,
            events_per_call: b as u64,
        }
    }

    async fn workers(&self) -> Result<Vec<Box<dyn Worker>>> {
        let mark: i64 = sqlx::query_scalar("SELECT coalesce(max(position), 0) FROM events")
            .fetch_one(self.store.pool())
            .await
            .context("reading the head position")?;
        *self
            .mark
            .lock()
            .map_err(|_| anyhow!("position mark poisoned"))? = mark;
        let mut workers: Vec<Box<dyn Worker>> = Vec::with_capacity(self.tasks);
        for _ in 0..self.tasks {
            workers.push(Box::new(AppendWorker {
                store: self.store.clone(),
                payload: Payload::fresh()?,
                cursor: StreamCursor::new(),
                n: 0,
                events_per_append: self.events_per_append as u64,
            }));
        }
        Ok(workers)
    }

    async fn after_round(&self, sample: &Sample) -> Result<BTreeMap<String, f64>> {
        let mark = *self
            .mark
            .lock()
            .map_err(|_| anyhow!("position mark poisoned"))?;
        let transactions: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE position > $1")
                .bind(mark)
                .fetch_one(self.store.pool())
                .await
                .context("counting the round's transactions")?;
        let transactions = transactions.max(1) as f64;
        Ok(BTreeMap::from([
            (
                "transactions_per_s".to_owned(),
                transactions / sample.elapsed_secs,
            ),
            (
                "appends_per_transaction".to_owned(),
                sample.calls as f64 / transactions,
            ),
            (
                "events_per_transaction".to_owned(),
                sample.events as f64 / transactions,
            ),
        ]))
    }
}

struct AppendWorker {
    store: PgStore,
    payload: Payload,
    cursor: StreamCursor,
    n: u64,
    events_per_append: u64,
}

#[async_trait]
impl Worker for AppendWorker {
    async fn call(&mut self) -> Result<u64> {
        let (stream, expected) = self.cursor.current();
        let events = (self.n..self.n + self.events_per_append)
            .map(|i| self.payload.new_event(i))
            .collect();
        let committed = self
            .store
            .append(stream, expected, events)
            .await
            .with_context(|| format!("appending to {stream} at version {expected}"))?;
        let committed = committed.len() as u64;
        self.n += committed;
        self.cursor.advance(committed);
        Ok(committed)
    }
}
