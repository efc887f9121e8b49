//! The engine role: the graph executor.
//!
//! It consumes the bus (consumer group `engine`), folds each execution's events into a
//! cached [`ExecutionState`], decides what happens next (a chained decision: the result,
//! what it makes ready, the start of each built-in), appends every execution's decision
//! of a round in one group commit at the version it decided on, and only then performs
//! the effects: built-in runs, agent-queue tickets, timers. A version conflict means
//! another process appended first: reload from the store and decide again; nothing is
//! ever recorded twice. On start it rebuilds timers and in-flight work of every open
//! execution from the log, so a restart loses nothing.
//!
//! # Layout
//! - `chain`: folding result → advance → start into one decision.
//! - `timers`: the timer index.
//! - `stalled`: executions the store could not take, retried rather than dropped.
//! - `effects`: performing a committed decision's effects (built-in runs, agent tickets,
//!   timers) and recording built-in outcomes.
//! - `recovery`: rebuilding in-flight work on start, and taking over idle executions.
//! - `reader`: the task that reads the bus, so a cancelled wait loses no entry.

mod chain;
mod effects;
mod finished;
mod reader;
mod recovery;
mod stalled;
mod timers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conflux_schema::access::DEFAULT_TENANT;
use conflux_schema::{EventEnvelope, EventMetadata, StreamId, StreamType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Delivery, EventBus};
use crate::catalog::WorkflowCatalog;
use crate::commands::into_new;
use crate::execution::{effects_of, evolve, Command, Effect, ExecutionState, TaskRef, Timer};
use crate::queue::TaskQueue;
use crate::runner::BuiltinRunner;
use crate::store::{read_whole_stream, AppendRequest, EventStore, StoreError};

pub use chain::chain;
use finished::Finished;
use reader::read_bus;
use stalled::Stalled;
pub use timers::Timers;

/// Finished executions remembered so their returning bus entries are skipped
/// (24 bytes each: about 2.4 MB).
const FINISHED_REMEMBERED: usize = 100_000;

/// Tuning for [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// This engine's consumer name in the group (unique per process).
    pub consumer: String,
    /// Bus entries read per round.
    pub batch: usize,
    /// Entries pending this long for a dead consumer are claimed.
    pub claim_after: Duration,
    /// Executions kept in memory (terminal ones are dropped at once).
    pub max_cached: usize,
    /// How often to look for open executions no engine has touched for `stale_after`
    /// (their engine may have died): their timers are re-armed, their started
    /// built-ins re-run and their dispatched agent tasks re-queued.
    pub sweep_every: Duration,
    /// How long an open execution may go without a new event before a sweep takes it.
    pub stale_after: Duration,
    /// How long a stopping engine waits for its running built-ins to report.
    pub drain_for: Duration,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            consumer: format!("engine-{}", Uuid::now_v7()),
            batch: 512,
            claim_after: Duration::from_secs(15),
            max_cached: 100_000,
            sweep_every: Duration::from_secs(15),
            stale_after: Duration::from_secs(30),
            drain_for: Duration::from_secs(8),
        }
    }
}

/// What the engine needs from the rest of the process.
#[derive(Clone)]
pub struct EngineParts {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The bus.
    pub bus: Arc<dyn EventBus>,
    /// Workflow definitions.
    pub catalog: WorkflowCatalog,
    /// Agent task queues.
    pub queue: Arc<dyn TaskQueue>,
    /// Built-in runners.
    pub runner: BuiltinRunner,
    /// Opens the sealed payloads the bus carries and seals agent tickets' inputs (off:
    /// payloads are plaintext everywhere).
    pub codec: crate::crypto::PayloadCodec,
    /// The tenants' secrets, revealed for `http` requests just before they are sent.
    pub secrets: crate::secrets::Secrets,
}

/// Why the engine stopped.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The bus could not be joined.
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
    /// The store failed during recovery.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The graph executor.
pub struct Engine {
    parts: EngineParts,
    options: EngineOptions,
    states: HashMap<Uuid, ExecutionState>,
    timers: Timers,
    /// Commands waiting for their execution's next round (runner results, timers).
    pending: HashMap<Uuid, VecDeque<Command>>,
    /// Executions to advance in the next round.
    touched: HashSet<Uuid>,
    /// Executions whose load or append failed, with their commands, to retry.
    stalled: Stalled,
    results_tx: mpsc::UnboundedSender<(Uuid, Command)>,
    results_rx: mpsc::UnboundedReceiver<(Uuid, Command)>,
    /// Built-in attempts running in this process (never started twice here).
    running: HashSet<(Uuid, TaskRef)>,
    /// Executions seen ending, so their events coming back from the bus are skipped.
    finished: Finished,
    metadata: EventMetadata,
}

impl Engine {
    /// An engine over `parts`.
    pub fn new(parts: EngineParts, options: EngineOptions) -> Self {
        let (results_tx, results_rx) = mpsc::unbounded_channel();
        let metadata = EventMetadata {
            actor: Some("engine".into()),
            ..EventMetadata::default()
        };
        Self {
            parts,
            options,
            states: HashMap::new(),
            timers: Timers::default(),
            pending: HashMap::new(),
            touched: HashSet::new(),
            stalled: Stalled::default(),
            results_tx,
            results_rx,
            running: HashSet::new(),
            finished: Finished::new(FINISHED_REMEMBERED),
            metadata,
        }
    }

    /// Runs until `shutdown`: recovers open executions, then consumes the bus.
    pub async fn run(mut self, shutdown: CancellationToken) -> Result<(), EngineError> {
        let group = "engine";
        let reader = self
            .parts
            .bus
            .subscribe(group, &self.options.consumer)
            .await?;
        let mut acker = self
            .parts
            .bus
            .subscribe(group, &self.options.consumer)
            .await?;
        let (deliveries_tx, mut deliveries) = mpsc::channel::<Vec<Delivery>>(8);
        let read_stop = shutdown.child_token();
        tokio::spawn(read_bus(
            reader,
            self.parts.codec.clone(),
            deliveries_tx,
            self.options.batch,
            read_stop.clone(),
        ));
        self.recover().await?;
        let mut claim = tokio::time::interval(self.options.claim_after);
        claim.tick().await;
        let mut sweep = tokio::time::interval(self.options.sweep_every);
        sweep.tick().await;
        loop {
            let mut acks = Vec::new();
            let sleep = self.timer_sleep();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(batch) = deliveries.recv() => {
                    acks.extend(batch.iter().map(|d| d.position));
                    self.apply_deliveries(batch).await;
                }
                Some((execution, command)) = self.results_rx.recv() => self.on_result(execution, command),
                _ = sweep.tick() => self.sweep().await,
                _ = sleep => self.fire_due_timers(),
                _ = claim.tick() => {
                    match acker.claim_stale(self.options.claim_after, self.options.batch).await {
                        Ok(batch) if !batch.is_empty() => {
                            tracing::info!(entries = batch.len(), "claimed entries of a dead engine");
                            acks.extend(batch.iter().map(|d| d.position));
                            self.apply_deliveries(batch).await;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "claiming stale entries failed"),
                    }
                }
            }
            while let Ok((execution, command)) = self.results_rx.try_recv() {
                self.on_result(execution, command);
            }
            self.fire_due_timers();
            self.unstall_due();
            self.rounds().await;
            if !acks.is_empty() {
                if let Err(e) = acker.ack(&acks).await {
                    tracing::warn!(error = %e, "acking bus entries failed; they will be redelivered");
                }
            }
        }
        read_stop.cancel();
        self.drain().await;
        Ok(())
    }

    /// A runner reported: the attempt is no longer running here; decide its result.
    fn on_result(&mut self, execution: Uuid, command: Command) {
        if let Command::CompleteTask { task, .. } | Command::FailTask { task, .. } = &command {
            self.running.remove(&(execution, task.clone()));
        }
        self.pending
            .entry(execution)
            .or_default()
            .push_back(command);
    }

    /// On shutdown: waits (at most `drain_for`) for running built-ins and records their
    /// results, so a graceful stop neither loses nor repeats them.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.options.drain_for;
        if !self.running.is_empty() {
            tracing::info!(
                running = self.running.len(),
                "waiting for running built-in tasks before stopping"
            );
        }
        while !self.running.is_empty() {
            match tokio::time::timeout_at(deadline, self.results_rx.recv()).await {
                Ok(Some((execution, command))) => self.on_result(execution, command),
                _ => break,
            }
            while let Ok((execution, command)) = self.results_rx.try_recv() {
                self.on_result(execution, command);
            }
            self.rounds().await;
        }
        self.rounds().await;
        if !self.running.is_empty() {
            tracing::warn!(
                running = self.running.len(),
                "stopped with built-in tasks still running; the next sweep or start re-runs them"
            );
        }
    }

    fn timer_sleep(&self) -> tokio::time::Sleep {
        let next = [self.timers.next_due(), self.stalled.retry_at()];
        let wait = next
            .into_iter()
            .flatten()
            .min()
            .map(|due| (due - Utc::now()).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(Duration::from_secs(3600));
        tokio::time::sleep(wait)
    }

    fn fire_due_timers(&mut self) {
        for (execution, timer) in self.timers.take_due(Utc::now()) {
            self.pending
                .entry(execution)
                .or_default()
                .push_back(Command::TimerFired(timer));
        }
    }

    /// Stalled executions whose retry is due go back to work, their commands first.
    fn unstall_due(&mut self) {
        for (id, mut commands) in self.stalled.take_due(Utc::now()) {
            commands.extend(self.pending.remove(&id).into_iter().flatten());
            if !commands.is_empty() {
                self.pending.insert(id, commands);
            }
            self.touched.insert(id);
        }
    }

    /// Loads an execution from the store into the cache and arms its timers.
    async fn load(&mut self, id: Uuid) -> Option<()> {
        let events = match read_whole_stream(&*self.parts.store, &StreamId::execution(id)).await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(execution = %id, error = %e, "loading an execution failed; will retry");
                self.stalled.add(id, [], Utc::now());
                return None;
            }
        };
        let workflow_id = match events.first().map(|e| &e.event) {
            Some(conflux_schema::Event::ExecutionStarted { workflow_id, .. }) => *workflow_id,
            _ => return None,
        };
        let workflow = match self.parts.catalog.get(workflow_id).await {
            Ok(Some(w)) => w,
            Ok(None) => {
                tracing::error!(execution = %id, workflow = %workflow_id, "execution of an unknown workflow");
                return None;
            }
            Err(e) => {
                tracing::warn!(execution = %id, error = %e, "loading a workflow failed; will retry");
                self.stalled.add(id, [], Utc::now());
                return None;
            }
        };
        let state = ExecutionState::replay(workflow, &events);
        for timer in state.pending_timers() {
            self.timers.arm(id, timer);
        }
        if state.is_terminal() {
            self.states.remove(&id);
            self.finished.record(id, state.version());
        } else {
            self.evict_if_full();
            self.states.insert(id, state);
        }
        Some(())
    }

    /// Caches a new execution from its `ExecutionStarted` event without reading the
    /// store. Returns false if the event is not a start or its workflow is unknown.
    async fn start_from(&mut self, event: &EventEnvelope) -> bool {
        let conflux_schema::Event::ExecutionStarted { workflow_id, .. } = &event.event else {
            return false;
        };
        let workflow = match self.parts.catalog.get(*workflow_id).await {
            Ok(Some(w)) => w,
            _ => return self.load(event.stream_id.uuid()).await.is_some(),
        };
        let state = evolve(ExecutionState::new(workflow), event);
        let id = event.stream_id.uuid();
        for timer in state.pending_timers() {
            self.timers.arm(id, timer);
        }
        self.evict_if_full();
        self.states.insert(id, state);
        true
    }

    fn evict_if_full(&mut self) {
        if self.states.len() >= self.options.max_cached {
            // Reloaded from the store on next use; correctness never depends on the cache.
            if let Some(victim) = self.states.keys().next().copied() {
                self.states.remove(&victim);
            }
        }
    }

    /// Folds delivered events into the cached states (skipping what was applied,
    /// reloading on a gap) and marks their executions for advancing.
    async fn apply_deliveries(&mut self, batch: Vec<Delivery>) {
        for delivery in batch {
            let event = delivery.envelope;
            if event.stream_type != StreamType::Execution {
                continue;
            }
            let id = event.stream_id.uuid();
            let applied = self.states.get(&id).map(ExecutionState::version);
            if applied.is_none() && self.finished.covers(id, event.version) {
                continue;
            }
            match applied {
                Some(v) if event.version <= v => continue,
                Some(v) if event.version == v + 1 => {
                    if let Some(state) = self.states.remove(&id) {
                        let state = evolve(state, &event);
                        let timers = chain::timers_only(effects_of(
                            state.workflow(),
                            &event.event,
                            event.recorded_at,
                        ));
                        for effect in timers {
                            if let Effect::ArmTimer(t) = effect {
                                self.timers.arm(id, t);
                            }
                        }
                        if state.is_terminal() {
                            self.finished.record(id, state.version());
                        } else {
                            self.states.insert(id, state);
                        }
                    }
                }
                // A new execution: its first event is all there is to fold.
                None if event.version == 1 => {
                    if !self.start_from(&event).await {
                        continue;
                    }
                }
                // Not cached, or a gap: the store has everything up to this event.
                _ => {
                    if self.load(id).await.is_none() {
                        continue;
                    }
                }
            }
            self.touched.insert(id);
        }
    }

    /// Decides and appends until no execution has anything more to record.
    async fn rounds(&mut self) {
        for _ in 0..64 {
            if !self.round().await {
                return;
            }
        }
    }

    /// One round: at most one chained decision per execution, all appended together.
    /// Returns whether anything was appended.
    async fn round(&mut self) -> bool {
        let mut ids: Vec<Uuid> = self.touched.drain().collect();
        ids.extend(
            self.pending
                .keys()
                .filter(|id| !ids_contains(&ids, id))
                .copied()
                .collect::<Vec<_>>(),
        );
        let now = Utc::now();
        let mut requests = Vec::new();
        let mut decided = Vec::new();
        for id in ids {
            if !self.states.contains_key(&id) && self.load(id).await.is_none() {
                let waiting = self.pending.remove(&id).into_iter().flatten();
                if self.stalled.contains(id) {
                    self.stalled.add(id, waiting, now);
                }
                continue;
            }
            let Some(state) = self.states.get(&id) else {
                // Terminal: late results and timers have nothing left to do.
                self.pending.remove(&id);
                continue;
            };
            let command = self.pending.get_mut(&id).and_then(VecDeque::pop_front);
            if self.pending.get(&id).is_some_and(VecDeque::is_empty) {
                self.pending.remove(&id);
            }
            let had_command = command.is_some();
            let decision = match chain(state, command.clone(), now) {
                Ok(d) => d,
                Err(rejection) => {
                    tracing::debug!(execution = %id, %rejection, "command no longer applies");
                    if self.pending.contains_key(&id) {
                        self.touched.insert(id);
                    }
                    continue;
                }
            };
            if decision.is_empty() {
                if had_command && self.pending.contains_key(&id) {
                    self.touched.insert(id);
                }
                continue;
            }
            requests.push(AppendRequest {
                stream: StreamId::execution(id),
                expected_version: state.version(),
                // The engine acts in the execution's tenant.
                events: into_new(
                    &decision,
                    &EventMetadata {
                        tenant_id: Some(state.tenant().to_owned()),
                        ..self.metadata.clone()
                    },
                ),
            });
            decided.push((id, decision, command));
        }
        if requests.is_empty() {
            return !self.pending.is_empty() || !self.touched.is_empty();
        }
        let results = self.parts.store.append_many(requests).await;
        let mut progressed = false;
        for ((id, decision, command), result) in decided.into_iter().zip(results) {
            match result {
                Ok(envelopes) => {
                    progressed = true;
                    self.commit(id, &envelopes);
                    let tenant = envelopes
                        .first()
                        .map_or(DEFAULT_TENANT, |e| e.metadata.tenant());
                    self.perform(id, tenant, decision.effects).await;
                    self.touched.insert(id);
                }
                Err(StoreError::Conflict { .. }) => {
                    // Another process appended first: reload and decide again.
                    self.states.remove(&id);
                    self.touched.insert(id);
                    progressed = true;
                }
                Err(e) => {
                    // The command is the only copy of a runner result or a timer: keep it.
                    tracing::warn!(execution = %id, error = %e, "appending a decision failed; will retry");
                    self.states.remove(&id);
                    let waiting = self.pending.remove(&id).into_iter().flatten();
                    self.stalled
                        .add(id, command.into_iter().chain(waiting), now);
                }
            }
        }
        progressed
    }

    fn commit(&mut self, id: Uuid, envelopes: &[EventEnvelope]) {
        if let Some(state) = self.states.remove(&id) {
            let state = envelopes.iter().fold(state, evolve);
            if !state.is_terminal() {
                self.states.insert(id, state);
            } else {
                self.finished.record(id, state.version());
                self.pending.remove(&id);
            }
        }
    }
}

fn ids_contains(ids: &[Uuid], id: &Uuid) -> bool {
    ids.contains(id)
}

/// Which timer kinds exist (re-exported for the shell's metrics and tests).
pub type EngineTimer = Timer;
