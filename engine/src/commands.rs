//! Commands against one execution, for the shell's request paths (the command API and
//! agent leases): load the execution by replaying its log, `decide`, append at the
//! version it was loaded at, and on a version conflict reload and decide again, so a
//! command never applies twice and never acts on a stale state.

use std::sync::Arc;

use chrono::Utc;
use conflux_schema::{Event, EventEnvelope, EventMetadata, NewEvent, StreamId};
use uuid::Uuid;

use crate::catalog::WorkflowCatalog;
use crate::execution::{decide, Command, Decision, ExecutionState, Rejection, TaskRef};
use crate::store::{read_whole_stream, EventStore, StoreError};

/// How many times a command is re-decided after version conflicts before giving up:
/// each conflict means another command of the execution went through, so this bounds
/// how many may race on one execution (ten agents completing a diamond's ten branches
/// at once, say).
const MAX_ATTEMPTS: usize = 64;

/// Pause after a version conflict, at most (a random share of it, so that racing
/// commands spread instead of colliding again).
const CONFLICT_BACKOFF_MICROS: u64 = 2_000;

/// Why a command was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// No such execution (or workflow).
    #[error("{0} not found")]
    NotFound(String),
    /// The execution's state does not allow it.
    #[error(transparent)]
    Rejected(#[from] Rejection),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The caller may not do this to this execution (e.g. an agent key reporting a task
    /// of an agent role it does not serve).
    #[error("{0}")]
    Forbidden(String),
    /// The request cannot be carried out as given (e.g. an input its workflow's
    /// concurrency key cannot be computed from).
    #[error("{0}")]
    Invalid(String),
}

/// What a start may add to an execution beyond its input and idempotency key.
#[derive(Debug, Clone, Default)]
pub struct StartExtra {
    /// For a child execution: the parent attempt that starts it.
    pub parent: Option<conflux_schema::ParentLink>,
    /// How much its attempts may spend.
    pub budget: Option<conflux_schema::usage::Budget>,
    /// Its priority, 1 to 10 (None: the default 5).
    pub priority: Option<u8>,
}

/// A recorded command.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The state after the new events.
    pub state: ExecutionState,
    /// The events appended.
    pub events: Vec<EventEnvelope>,
    /// The decision (events and effects to perform).
    pub decision: Decision,
}

/// Loads executions and records commands against them; cheap to clone.
#[derive(Clone)]
pub struct ExecutionCommands {
    store: Arc<dyn EventStore>,
    catalog: WorkflowCatalog,
}

impl ExecutionCommands {
    /// Commands over `store`, with definitions from `catalog`.
    pub fn new(store: Arc<dyn EventStore>, catalog: WorkflowCatalog) -> Self {
        Self { store, catalog }
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The catalog.
    pub fn catalog(&self) -> &WorkflowCatalog {
        &self.catalog
    }

    /// `state` (just recorded) as it stands after claiming a slot of its concurrency
    /// key, when it is queued for one (a start, a redrive): admitted, still waiting, or
    /// cancelled by its key's strategy. A failed claim is logged and left to the
    /// engine's sweep, which claims again; `state` is then returned as it was.
    pub async fn claim_if_queued(
        &self,
        state: ExecutionState,
        metadata: &EventMetadata,
    ) -> Result<ExecutionState, CommandError> {
        if state.status() != crate::execution::ExecutionStatus::Queued {
            return Ok(state);
        }
        let Some(execution_id) = state.execution_id() else {
            return Ok(state);
        };
        let slots = crate::concurrency::ConcurrencySlots::new(self.clone());
        if let Err(e) = slots.claim(&state, metadata).await {
            tracing::warn!(execution = %execution_id, error = %e, "claiming a concurrency slot failed; the engine's sweep claims again");
            return Ok(state);
        }
        Ok(match self.load(execution_id).await? {
            Some((now, _)) => now,
            None => state,
        })
    }

    /// The execution's state and its whole log, or None if it does not exist.
    pub async fn load(
        &self,
        execution_id: Uuid,
    ) -> Result<Option<(ExecutionState, Vec<EventEnvelope>)>, CommandError> {
        let events = read_whole_stream(&*self.store, &StreamId::execution(execution_id)).await?;
        let Some(Event::ExecutionStarted { workflow_id, .. }) = events.first().map(|e| &e.event)
        else {
            return Ok(None);
        };
        let workflow = self.catalog.get(*workflow_id).await?.ok_or_else(|| {
            CommandError::NotFound(format!(
                "workflow {workflow_id} of execution {execution_id}"
            ))
        })?;
        let state = ExecutionState::replay(workflow, &events);
        Ok(Some((state, events)))
    }

    /// The execution's state and log if it is `tenant`'s; None for an unknown id and for
    /// another tenant's alike (no existence oracle).
    pub async fn load_in(
        &self,
        tenant: &str,
        execution_id: Uuid,
    ) -> Result<Option<(ExecutionState, Vec<EventEnvelope>)>, CommandError> {
        Ok(self
            .load(execution_id)
            .await?
            .filter(|(state, _)| state.tenant() == tenant))
    }

    /// Starts execution `execution_id` of `workflow_id`, in the tenant of `metadata`: a
    /// workflow of another tenant is NotFound, exactly as an unknown one. Starting an
    /// execution id that already exists is [`Rejection::AlreadyStarted`].
    pub async fn start(
        &self,
        workflow_id: Uuid,
        execution_id: Uuid,
        input: serde_json::Value,
        idempotency_key: Option<String>,
        metadata: EventMetadata,
    ) -> Result<Recorded, CommandError> {
        let extra = StartExtra::default();
        self.start_with(
            workflow_id,
            execution_id,
            input,
            idempotency_key,
            metadata,
            extra,
        )
        .await
    }

    /// [`ExecutionCommands::start`] with a parent (a child execution: its
    /// `ExecutionStarted` names the attempt that starts it) or a budget (recorded as
    /// `BudgetSet` right after it).
    pub async fn start_with(
        &self,
        workflow_id: Uuid,
        execution_id: Uuid,
        input: serde_json::Value,
        idempotency_key: Option<String>,
        metadata: EventMetadata,
        extra: StartExtra,
    ) -> Result<Recorded, CommandError> {
        let StartExtra {
            parent,
            budget,
            priority,
        } = extra;
        let workflow = self
            .catalog
            .get_in(metadata.tenant(), workflow_id)
            .await?
            .ok_or_else(|| CommandError::NotFound(format!("workflow {workflow_id}")))?;
        let concurrency_key = match &workflow.definition().concurrency {
            Some(limit) => Some(limit.key_for(&input).map_err(CommandError::Invalid)?),
            None => None,
        };
        let state = ExecutionState::new(workflow);
        let command = Command::Start {
            execution_id,
            workflow_id,
            input,
            idempotency_key,
            parent,
            budget,
            priority,
            concurrency_key,
        };
        let decision = decide(&state, command, Utc::now())?;
        let stream = StreamId::execution(execution_id);
        let events = into_new(&decision, &metadata);
        match self.store.append(&stream, 0, events).await {
            Ok(events) => {
                let state = events.iter().fold(state, crate::execution::evolve);
                let state = self.claim_if_queued(state, &metadata).await?;
                Ok(Recorded {
                    state,
                    events,
                    decision,
                })
            }
            Err(StoreError::Conflict { .. }) => Err(Rejection::AlreadyStarted.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Records the command `make` builds from the current state and log; re-decides on a
    /// version conflict. The command acts in the tenant of `metadata`: an execution of
    /// another tenant is NotFound, exactly as an unknown one.
    pub async fn record<F>(
        &self,
        execution_id: Uuid,
        metadata: EventMetadata,
        mut make: F,
    ) -> Result<Recorded, CommandError>
    where
        F: FnMut(&ExecutionState, &[EventEnvelope]) -> Result<Command, CommandError>,
    {
        let stream = StreamId::execution(execution_id);
        let mut last = None;
        for _ in 0..MAX_ATTEMPTS {
            let (state, log) = self
                .load_in(metadata.tenant(), execution_id)
                .await?
                .ok_or_else(|| CommandError::NotFound(format!("execution {execution_id}")))?;
            let command = make(&state, &log)?;
            let decision = decide(&state, command, Utc::now())?;
            if decision.is_empty() {
                return Ok(Recorded {
                    state,
                    events: Vec::new(),
                    decision,
                });
            }
            match self
                .store
                .append(&stream, state.version(), into_new(&decision, &metadata))
                .await
            {
                Ok(events) => {
                    let state = events.iter().fold(state, crate::execution::evolve);
                    return Ok(Recorded {
                        state,
                        events,
                        decision,
                    });
                }
                Err(e @ StoreError::Conflict { .. }) => {
                    last = Some(e);
                    let micros =
                        u64::from(Uuid::new_v4().as_u128() as u16) % CONFLICT_BACKOFF_MICROS;
                    tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| StoreError::Backend("no attempt made".into()))
            .into())
    }
}

/// The events of a decision, with `metadata`.
pub fn into_new(decision: &Decision, metadata: &EventMetadata) -> Vec<NewEvent> {
    decision
        .events
        .iter()
        .cloned()
        .map(|e| NewEvent::new(e, metadata.clone()))
        .collect()
}

/// The attempt a lease was issued for, from the execution's log.
pub fn lease_attempt(log: &[EventEnvelope], lease_id: Uuid) -> Option<TaskRef> {
    lease_of(log, lease_id).map(|lease| lease.task)
}

/// What a lease's `TaskStarted` says.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseOf {
    /// The attempt it was issued for.
    pub task: TaskRef,
    /// The agent it was issued to.
    pub agent: Option<Uuid>,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// The attempt lease `lease_id` was issued for, to whom, and when.
pub fn lease_of(log: &[EventEnvelope], lease_id: Uuid) -> Option<LeaseOf> {
    log.iter().find_map(|e| match &e.event {
        Event::TaskStarted {
            task_id,
            attempt,
            lease_id: Some(l),
            compensation,
            agent_id,
            ..
        } if *l == lease_id => Some(LeaseOf {
            task: TaskRef {
                task: task_id.clone(),
                attempt: *attempt,
                compensation: *compensation,
            },
            agent: *agent_id,
            at: e.recorded_at,
        }),
        _ => None,
    })
}
