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
//! # Fair shares between tenants
//!
//! The engine's work is shared by every tenant, so each queue of it is a place where one
//! tenant's backlog could hold back another's first task. There are two such queues here:
//! - **The bus** is one stream in commit order: a newcomer's `ExecutionStarted` sits
//!   behind everything committed before it. The engine reads ahead — every delivered
//!   batch is folded in before each round (folding is cheap; deciding and appending is
//!   not) — and never runs further than `max_unread` positions ahead of what it has read
//!   back of its own appends, so what lies in front of a newcomer on the bus stays short.
//! - **The rounds**: executions with work wait in a [`FairQueue`], one lane per tenant,
//!   and a round takes them one lane at a time, round-robin, until it holds its budget
//!   of events: `round_events` while one tenant has work (large rounds, for
//!   throughput), `shared_round_events` while several have (short rounds, so that each
//!   tenant's next step comes soon). A round is therefore bounded whatever the backlog,
//!   and a tenant's first execution goes into the first round that starts after it is
//!   read.
//!   Effects are performed in the same order, so its first task also runs (or reaches
//!   its agent queue) among the first.
//!
//! Built-ins are not queued (each run is its own task, and their results are all taken
//! before each round), and agent queues are per tenant and role (an agent only ever
//! takes its own tenant's tickets), so neither holds one tenant behind another.
//!
//! # Layout
//! - `chain`: folding result → advance → start into one decision.
//! - `fair`: [`FairQueue`], per-tenant lanes served round-robin (pure).
//! - `round`: forming a round from the lanes, appending it, pacing rounds to the bus.
//! - `timers`: the timer index.
//! - `stalled`: executions the store could not take, retried rather than dropped.
//! - `effects`: performing a committed decision's effects (built-in runs, agent tickets,
//!   timers) and recording built-in outcomes.
//! - `recovery`: rebuilding in-flight work on start, and taking over idle executions.
//! - `reader`: the task that reads the bus, so a cancelled wait loses no entry.

mod chain;
mod children;
mod effects;
mod fair;
mod finished;
mod reader;
mod recovery;
mod round;
mod stalled;
mod timers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use conflux_schema::{EventEnvelope, EventMetadata, StreamId, StreamType};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::bus::{Delivery, EventBus};
use crate::catalog::WorkflowCatalog;
use crate::execution::{effects_of, evolve, Command, Effect, ExecutionState, TaskRef, Timer};
use crate::queue::TaskQueue;
use crate::runner::BuiltinRunner;
use crate::store::{read_whole_stream, EventStore, StoreError};

pub use chain::chain;
pub use children::DEFAULT_MAX_WORKFLOW_DEPTH;
use children::{Children, Steer};
pub use fair::FairQueue;
use finished::Finished;
use reader::read_bus;
use stalled::Stalled;
pub use timers::Timers;

/// Finished executions remembered so their returning bus entries are skipped
/// (24 bytes each: about 2.4 MB).
const FINISHED_REMEMBERED: usize = 100_000;

/// The lane of executions whose tenant is not known yet (their state is not in memory:
/// evicted, or stalled on the store); they are loaded when their turn comes.
const UNKNOWN_TENANT: &str = "";

/// How long the engine waits for the bus to hand it anything while its own appends are
/// more than `max_unread` positions ahead of what it read; past it the reader counts as
/// stalled (Redis down, another engine reading the group's entries) and the engine goes
/// on without waiting until it has caught up.
const PACE_WAIT: Duration = Duration::from_millis(500);

/// Delivered batches folded in between two rounds at most (the reader goes on meanwhile).
const READ_AHEAD_BATCHES: usize = 16;

/// Tuning for [`Engine`].
#[derive(Debug, Clone)]
pub struct EngineOptions {
    /// This engine's consumer name in the group (unique per process).
    pub consumer: String,
    /// Bus entries read at a time.
    pub batch: usize,
    /// Events one round appends at most while only one tenant has executions waiting
    /// (the round's first decision is taken whatever its size; an execution looked at
    /// and found with nothing to do counts as one). Larger rounds commit more per
    /// transaction; this is the single-tenant throughput knob.
    pub round_events: usize,
    /// Events one round appends at most while several tenants have executions waiting.
    /// It bounds how long such a round takes, and so how long each tenant's next
    /// execution waits for the round after it: smaller rounds answer every tenant
    /// sooner, at the cost of more transactions.
    pub shared_round_events: usize,
    /// How many positions the engine's own appends may be ahead of what it has read from
    /// the bus before it waits for the bus (at most `PACE_WAIT` at a time) instead of
    /// starting another round: what lies in front of another tenant's new execution on
    /// the bus stays about this long.
    pub max_unread: u64,
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
    /// How deep child executions may nest (a top-level execution is depth 0, its
    /// children 1, …): a `workflow` task whose child would be deeper fails for good.
    pub max_workflow_depth: u32,
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            consumer: format!("engine-{}", Uuid::now_v7()),
            batch: 512,
            round_events: 1024,
            shared_round_events: 128,
            max_unread: 2048,
            claim_after: Duration::from_secs(15),
            max_cached: 100_000,
            sweep_every: Duration::from_secs(15),
            stale_after: Duration::from_secs(30),
            drain_for: Duration::from_secs(8),
            max_workflow_depth: DEFAULT_MAX_WORKFLOW_DEPTH,
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
    /// Every execution with commands here is also in `ready` (or stalled).
    pending: HashMap<Uuid, VecDeque<Command>>,
    /// Executions to decide in a coming round, in lanes per tenant.
    ready: FairQueue<String, Uuid>,
    /// Bus entries that gave an execution work, acked once it has been decided.
    unacked: Vec<(u64, Uuid)>,
    /// The highest position this engine appended.
    appended_to: u64,
    /// The highest position the bus handed this engine.
    read_to: u64,
    /// The bus handed nothing for `PACE_WAIT` while the engine waited for it: rounds go
    /// on without waiting until the engine has read up to its own appends again.
    reader_stalled: bool,
    /// Executions whose load or append failed, with their commands, to retry.
    stalled: Stalled,
    results_tx: mpsc::UnboundedSender<(Uuid, Command)>,
    results_rx: mpsc::UnboundedReceiver<(Uuid, Command)>,
    /// Built-in attempts running in this process (never started twice here).
    running: HashSet<(Uuid, TaskRef)>,
    /// Executions seen ending, so their events coming back from the bus are skipped.
    finished: Finished,
    /// Starts and steers child executions.
    children: Children,
    /// Gives back the concurrency slots of executions that end; claims for queued ones.
    slots: crate::concurrency::ConcurrencySlots,
    /// The agents' lifecycles, to tell when a task requires capabilities no agent has.
    fleet: crate::agents::AgentDirectory,
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
        let commands =
            crate::commands::ExecutionCommands::new(parts.store.clone(), parts.catalog.clone());
        let children = Children::new(commands.clone(), options.max_workflow_depth);
        Self {
            children,
            slots: crate::concurrency::ConcurrencySlots::new(commands),
            fleet: crate::agents::AgentDirectory::default(),
            parts,
            options,
            states: HashMap::new(),
            timers: Timers::default(),
            pending: HashMap::new(),
            ready: FairQueue::new(),
            unacked: Vec::new(),
            appended_to: 0,
            read_to: 0,
            reader_stalled: false,
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
            let busy = !self.ready.is_empty();
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(batch) = deliveries.recv() => self.apply_deliveries(batch, &mut acks).await,
                Some((execution, command)) = self.results_rx.recv() => self.on_result(execution, command),
                _ = sweep.tick() => self.sweep().await,
                _ = sleep => self.fire_due_timers(),
                _ = claim.tick() => {
                    match acker.claim_stale(self.options.claim_after, self.options.batch).await {
                        Ok(batch) if !batch.is_empty() => {
                            tracing::info!(entries = batch.len(), "claimed entries of a dead engine");
                            self.apply_deliveries(batch, &mut acks).await;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "claiming stale entries failed"),
                    }
                }
                // Work is waiting: go on with the next round.
                () = std::future::ready(()), if busy => {}
            }
            self.read_ahead(&mut deliveries, &mut acks).await;
            while let Ok((execution, command)) = self.results_rx.try_recv() {
                self.on_result(execution, command);
            }
            self.fire_due_timers();
            self.unstall_due();
            self.round().await;
            self.ack_decided(&mut acks);
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
        self.mark(execution);
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
            self.mark(execution);
        }
    }

    /// Stalled executions whose retry is due go back to work, their commands first.
    fn unstall_due(&mut self) {
        for (id, mut commands) in self.stalled.take_due(Utc::now()) {
            commands.extend(self.pending.remove(&id).into_iter().flatten());
            if !commands.is_empty() {
                self.pending.insert(id, commands);
            }
            self.mark(id);
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
            self.ended(&state);
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
    /// reloading on a gap) and queues their executions for a round. An entry that gave
    /// an execution work is acked once the execution has been decided
    /// ([`Engine::ack_decided`]); every other entry goes into `acks` at once.
    async fn apply_deliveries(&mut self, batch: Vec<Delivery>, acks: &mut Vec<u64>) {
        for delivery in batch {
            self.read_to = self.read_to.max(delivery.position);
            let position = delivery.position;
            let event = delivery.envelope;
            if event.stream_type != StreamType::Execution {
                acks.push(position);
                continue;
            }
            let id = event.stream_id.uuid();
            let applied = self.states.get(&id).map(ExecutionState::version);
            if applied.is_none() && self.finished.covers(id, event.version) {
                acks.push(position);
                continue;
            }
            match applied {
                Some(v) if event.version <= v => {
                    acks.push(position);
                    continue;
                }
                Some(v) if event.version == v + 1 => {
                    if let Some(state) = self.states.remove(&id) {
                        let state = evolve(state, &event);
                        let effects = chain::from_elsewhere(effects_of(
                            state.workflow(),
                            &event.event,
                            event.recorded_at,
                        ));
                        for effect in effects {
                            match effect {
                                Effect::ArmTimer(t) => self.timers.arm(id, t),
                                Effect::CancelChild { task, reason } => {
                                    self.cancel_child(id, state.tenant(), &task, reason)
                                }
                                _ => {}
                            }
                        }
                        match event.event {
                            conflux_schema::Event::ExecutionPaused {} => {
                                self.steer_children(id, &state, Steer::Pause)
                            }
                            conflux_schema::Event::ExecutionResumed {} => {
                                self.steer_children(id, &state, Steer::Resume)
                            }
                            _ => {}
                        }
                        if state.is_terminal() {
                            // Ended by someone else: nothing left to decide.
                            self.finished.record(id, state.version());
                            self.ended(&state);
                            acks.push(position);
                            continue;
                        }
                        self.states.insert(id, state);
                    }
                }
                // A new execution: its first event is all there is to fold.
                None if event.version == 1 => {
                    if !self.start_from(&event).await {
                        acks.push(position);
                        continue;
                    }
                }
                // Not cached, or a gap: the store has everything up to this event.
                _ => {
                    if self.load(id).await.is_none() {
                        acks.push(position);
                        continue;
                    }
                }
            }
            self.mark(id);
            self.unacked.push((position, id));
        }
    }
}

/// Which timer kinds exist (re-exported for the shell's metrics and tests).
pub type EngineTimer = Timer;
