//! The projector process: tails the event store in position order, folds each batch
//! ([`crate::fold`]) and commits its rows with the checkpoint ([`crate::db`]).
//!
//! The bus (consumer group `projector`) tells it when to look: each delivery wakes it,
//! and it then reads the store after its checkpoint, so order and completeness come
//! from the system of record, never from the transport. Without deliveries (bus down,
//! a quiet system) it still looks once a second.

use std::sync::Arc;
use std::time::Duration;

use conflux_engine::bus::{EventBus, Subscription};
use conflux_engine::catalog::WorkflowCatalog;
use conflux_engine::execution::ExecutionState;
use conflux_engine::store::{read_whole_stream, EventStore, StoreError};
use conflux_schema::{Event, EventEnvelope, StreamId};
use tokio_util::sync::CancellationToken;

use crate::db::{ReadModelError, ReadModels};
use crate::fold::{Missing, Projection};

/// The consumer group the projector reads the bus with.
pub const GROUP: &str = "projector";
/// How long the projector waits for a delivery before looking at the store anyway.
const IDLE_LOOK: Duration = Duration::from_secs(1);

/// What stops a projection step.
#[derive(Debug, thiserror::Error)]
pub enum ProjectorError {
    /// Reading events failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing the read models failed.
    #[error(transparent)]
    ReadModels(#[from] ReadModelError),
}

/// What one projection step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Applied this many events and moved the checkpoint past them.
    Applied(usize),
    /// Nothing after the checkpoint.
    Idle,
    /// Another projector (or a rebuild) moved the checkpoint first: nothing was
    /// written, and the projection restarted from the stored checkpoint.
    Resynced,
}

/// Maintains the read models from the event store: see the module docs.
pub struct Projector {
    store: Arc<dyn EventStore>,
    catalog: WorkflowCatalog,
    models: ReadModels,
    projection: Projection,
    checkpoint: u64,
    batch: usize,
}

impl Projector {
    /// A projector resuming from the read models' checkpoint, reading `batch` events a
    /// step.
    pub async fn new(
        store: Arc<dyn EventStore>,
        catalog: WorkflowCatalog,
        models: ReadModels,
        batch: usize,
    ) -> Result<Self, ProjectorError> {
        let checkpoint = models.checkpoint().await?;
        Ok(Self {
            store,
            catalog,
            models,
            projection: Projection::new(),
            checkpoint,
            batch: batch.max(1),
        })
    }

    /// The position of the last event applied.
    pub fn checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Reads up to one batch after the checkpoint, folds it, and commits its rows with
    /// the new checkpoint. If another projector moved the checkpoint meanwhile, nothing
    /// is written and this one starts over from the stored checkpoint.
    pub async fn step(&mut self) -> Result<Step, ProjectorError> {
        let events = self.store.read_all(self.checkpoint, self.batch).await?;
        self.apply_batch(events).await
    }

    /// Folds and commits `events`, which must be the events right after the checkpoint.
    async fn apply_batch(&mut self, events: Vec<EventEnvelope>) -> Result<Step, ProjectorError> {
        let Some(last) = events.last().map(|e| e.position) else {
            return Ok(Step::Idle);
        };
        let result = self.fold_and_commit(&events, last).await;
        match result {
            Ok(true) => {
                self.checkpoint = last;
                metrics::counter!("conflux_projector_events_total").increment(events.len() as u64);
                metrics::gauge!("conflux_projector_position").set(last as f64);
                Ok(Step::Applied(events.len()))
            }
            Ok(false) => {
                tracing::info!(
                    from = self.checkpoint,
                    "the checkpoint moved under this projector (another projector, or a rebuild): starting over from it"
                );
                self.resync().await?;
                Ok(Step::Resynced)
            }
            Err(e) => {
                // The commit may or may not have landed: forget what was folded and
                // trust only the stored checkpoint.
                self.projection.clear();
                if let Ok(stored) = self.models.checkpoint().await {
                    self.checkpoint = stored;
                }
                Err(e)
            }
        }
    }

    async fn fold_and_commit(
        &mut self,
        events: &[EventEnvelope],
        last: u64,
    ) -> Result<bool, ProjectorError> {
        let started = std::time::Instant::now();
        let missing = self.projection.missing(events);
        if !missing.is_empty() {
            self.load(missing).await?;
        }
        let loaded = started.elapsed();
        for env in events {
            self.projection.apply(env);
        }
        let changes = self.projection.take_changes();
        let folded = started.elapsed();
        let moved = self.models.commit(self.checkpoint, last, &changes).await?;
        tracing::debug!(
            events = events.len(),
            executions = changes.executions.len(),
            tasks = changes.tasks.len(),
            load_ms = loaded.as_secs_f64() * 1e3,
            fold_ms = (folded - loaded).as_secs_f64() * 1e3,
            commit_ms = (started.elapsed() - folded).as_secs_f64() * 1e3,
            "projected a batch"
        );
        if !moved {
            self.projection.clear();
        }
        Ok(moved)
    }

    async fn resync(&mut self) -> Result<(), ProjectorError> {
        self.projection.clear();
        self.checkpoint = self.models.checkpoint().await?;
        Ok(())
    }

    /// Loads what the fold needs: definitions, workflow rows, and the state of
    /// executions started before the checkpoint (folded from their events up to it).
    async fn load(&mut self, missing: Missing) -> Result<(), ProjectorError> {
        for workflow_id in missing.definitions {
            if let Some(definition) = self.catalog.get(workflow_id).await? {
                self.projection.insert_definition(workflow_id, definition);
            }
        }
        for workflow_id in missing.workflows {
            let row = self.models.workflow(None, workflow_id).await?;
            self.projection.insert_workflow(workflow_id, row);
        }
        for execution_id in missing.executions {
            let stream = StreamId::execution(execution_id);
            let mut events = read_whole_stream(&*self.store, &stream).await?;
            events.retain(|e| e.position <= self.checkpoint);
            let Some(Event::ExecutionStarted { workflow_id, .. }) =
                events.first().map(|e| &e.event)
            else {
                continue;
            };
            let workflow_id = *workflow_id;
            let Some(definition) = self.catalog.get(workflow_id).await? else {
                continue;
            };
            let position = events.last().map_or(0, |e| e.position);
            let state = ExecutionState::replay(definition, &events);
            self.projection.insert_execution(state, position);
            if !self.projection.has_workflow(workflow_id) {
                let row = self.models.workflow(None, workflow_id).await?;
                self.projection.insert_workflow(workflow_id, row);
            }
        }
        Ok(())
    }

    /// Steps until the store has nothing after the checkpoint; `progress` sees the
    /// checkpoint and the events applied so far after every step. Returns the events
    /// applied. While a full batch is folded and committed, the next one is already
    /// being read; a short batch means the log is drained (what commits later wakes
    /// the projector again), so no further read is made.
    pub async fn catch_up(
        &mut self,
        mut progress: impl FnMut(u64, u64),
    ) -> Result<u64, ProjectorError> {
        let mut applied = 0u64;
        let mut events = self.store.read_all(self.checkpoint, self.batch).await?;
        loop {
            let Some(last) = events.last().map(|e| e.position) else {
                return Ok(applied);
            };
            let full = events.len() >= self.batch;
            let next = full.then(|| {
                let (store, batch) = (self.store.clone(), self.batch);
                tokio::spawn(async move { store.read_all(last, batch).await })
            });
            let step = self.apply_batch(std::mem::take(&mut events)).await;
            let next = match next {
                Some(read) => Some(
                    read.await
                        .map_err(|e| StoreError::Backend(format!("read task failed: {e}"))),
                ),
                None => None,
            };
            match step? {
                Step::Applied(n) => {
                    applied += n as u64;
                    progress(self.checkpoint, applied);
                    match next {
                        Some(read) => events = read??,
                        None => return Ok(applied),
                    }
                }
                Step::Resynced | Step::Idle => {
                    progress(self.checkpoint, applied);
                    events = self.store.read_all(self.checkpoint, self.batch).await?;
                }
            }
        }
    }

    /// Runs until `shutdown`: wakes on bus deliveries (group `projector`) or once a
    /// second, catches up from the store, acknowledges what it delivered, and publishes
    /// `conflux_projector_lag_events` (committed head − checkpoint).
    pub async fn run(
        mut self,
        bus: Arc<dyn EventBus>,
        consumer: String,
        shutdown: CancellationToken,
    ) {
        let mut subscription: Option<Box<dyn Subscription>> = None;
        let mut delivered: Vec<u64> = Vec::new();
        tracing::info!(checkpoint = self.checkpoint, "projector running");
        while !shutdown.is_cancelled() {
            // The lag when woken is the one worth seeing; after the catch-up it is what
            // is left of that head (no second query).
            let head = self.publish_lag().await;
            match self.catch_up(|_, _| {}).await {
                Ok(_) => {
                    if let (Some(sub), false) = (subscription.as_mut(), delivered.is_empty()) {
                        if let Err(e) = sub.ack(&delivered).await {
                            tracing::warn!(error = %e, "acking projector deliveries failed; they will be redelivered");
                        }
                    }
                    delivered.clear();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "projection step failed; retrying in 1 s");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(IDLE_LOOK) => {}
                    }
                    continue;
                }
            }
            if let Some(head) = head {
                let lag = head.saturating_sub(self.checkpoint);
                metrics::gauge!("conflux_projector_lag_events").set(lag as f64);
            }
            if subscription.is_none() {
                match bus.subscribe(GROUP, &consumer).await {
                    Ok(sub) => subscription = Some(sub),
                    Err(e) => {
                        tracing::warn!(error = %e, "projector cannot subscribe to the bus; polling the store")
                    }
                }
            }
            let wait = async {
                match subscription.as_mut() {
                    Some(sub) => sub.next(4096, IDLE_LOOK).await.map_err(|e| e.to_string()),
                    None => {
                        tokio::time::sleep(IDLE_LOOK).await;
                        Ok(Vec::new())
                    }
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                got = wait => match got {
                    Ok(batch) => delivered.extend(batch.iter().map(|d| d.position)),
                    Err(e) => {
                        tracing::warn!(error = %e, "projector bus read failed; polling the store");
                        subscription = None;
                    }
                },
            }
        }
        tracing::info!(checkpoint = self.checkpoint, "projector stopped");
    }

    /// Publishes committed head − checkpoint and returns the head (None if the store
    /// did not answer).
    async fn publish_lag(&self) -> Option<u64> {
        let head = self.store.head_position().await.ok()?;
        let lag = head.saturating_sub(self.checkpoint);
        metrics::gauge!("conflux_projector_lag_events").set(lag as f64);
        Some(head)
    }
}
