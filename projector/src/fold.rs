//! The pure core of the projector: folds events into read-model rows, with no I/O.
//!
//! [`Projection`] keeps, per execution it has seen recently, the engine's own
//! [`ExecutionState`] (advanced with the same `evolve` the engine uses, so a read model
//! can never disagree with the write side about what an event means) and the task rows
//! it last wrote, so a batch writes only the rows that changed. Workflow summaries are
//! kept the same way. What the fold needs but has not seen (an execution started before
//! this process, a workflow row in the database) the caller loads first: see
//! [`Projection::missing`].

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Utc};

use conflux_engine::execution::{evolve, DeadLetterEntry, ExecutionState};
use conflux_schema::api::{DeadLetter, DeadLetterState};
use conflux_schema::validate::ValidatedWorkflow;
use conflux_schema::{Event, EventEnvelope, StreamType};
use serde_json::Value;
use uuid::Uuid;

use crate::rows::{AgentResult, Changes, DeadLetterRow, ExecutionRow, TaskRow, WorkflowRow};

/// Executions kept in memory after a batch (terminal ones are dropped at once).
const MAX_CACHED_EXECUTIONS: usize = 20_000;
/// Workflow rows kept in memory after a batch.
const MAX_CACHED_WORKFLOWS: usize = 20_000;

/// What a batch needs loaded before it can be folded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Executions with events in the batch that the projection does not hold and that
    /// do not start in the batch: rebuild their state from events up to the checkpoint.
    pub executions: BTreeSet<Uuid>,
    /// Definitions needed to start executions that start in the batch.
    pub definitions: BTreeSet<Uuid>,
    /// Workflow rows the batch changes that the projection does not hold.
    pub workflows: BTreeSet<Uuid>,
}

impl Missing {
    /// Nothing to load.
    pub fn is_empty(&self) -> bool {
        self.executions.is_empty() && self.definitions.is_empty() && self.workflows.is_empty()
    }
}

struct Tracked {
    state: ExecutionState,
    position: u64,
    written: HashMap<String, TaskRow>,
    /// Task slots events changed since the last batch (rendered alone, so a batch
    /// costs what changed, not the size of the execution).
    dirty: BTreeSet<usize>,
    /// Render every slot (a new execution, or slots were added: a map's items).
    all_dirty: bool,
    /// Which agent leased each (task, attempt, compensation) and when, until its result.
    leases: HashMap<(String, u32, bool), (Uuid, DateTime<Utc>)>,
}

/// The in-memory side of the read models: see the module docs.
#[derive(Default)]
pub struct Projection {
    executions: HashMap<Uuid, Tracked>,
    /// Workflow rows known; `None` marks a workflow known not to have a row.
    workflows: HashMap<Uuid, Option<WorkflowRow>>,
    definitions: HashMap<Uuid, Arc<ValidatedWorkflow>>,
    dirty_executions: BTreeSet<Uuid>,
    dirty_workflows: BTreeSet<Uuid>,
    /// Agents' results folded since the last batch.
    agent_results: Vec<AgentResult>,
    /// Dead letters written, with the state written (a row is rewritten when it moves).
    dead_letters_written: HashMap<String, DeadLetterState>,
}

impl Projection {
    /// An empty projection.
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (after another projector moved the checkpoint).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// What must be loaded before `batch` can be folded.
    pub fn missing(&self, batch: &[EventEnvelope]) -> Missing {
        let mut missing = Missing::default();
        let mut started = BTreeSet::new();
        for env in batch {
            if env.stream_type != StreamType::Execution {
                continue;
            }
            let id = env.stream_id.uuid();
            if let Event::ExecutionStarted { workflow_id, .. } = &env.event {
                started.insert(id);
                if !self.definitions.contains_key(workflow_id) {
                    missing.definitions.insert(*workflow_id);
                }
                if !self.workflows.contains_key(workflow_id) {
                    missing.workflows.insert(*workflow_id);
                }
                continue;
            }
            match self.executions.get(&id) {
                Some(t) => {
                    if let Some(w) = t.state.workflow_id() {
                        if !self.workflows.contains_key(&w) {
                            missing.workflows.insert(w);
                        }
                    }
                }
                None if !started.contains(&id) => {
                    missing.executions.insert(id);
                }
                None => {}
            }
        }
        missing
    }

    /// Adds an execution's state as of the checkpoint (loaded by the caller because
    /// [`Projection::missing`] listed it). Its task rows are taken as written.
    pub fn insert_execution(&mut self, state: ExecutionState, position: u64) {
        let Some(id) = state.execution_id() else {
            return;
        };
        let written = (0..state.slots())
            .filter_map(|slot| task_row(id, &state, slot))
            .map(|t| (t.task_id.clone(), t))
            .collect();
        self.executions.insert(
            id,
            Tracked {
                state,
                position,
                written,
                dirty: BTreeSet::new(),
                all_dirty: false,
                leases: HashMap::new(),
            },
        );
    }

    /// Adds a workflow's row as stored (`None`: it has none).
    pub fn insert_workflow(&mut self, workflow_id: Uuid, row: Option<WorkflowRow>) {
        self.workflows.insert(workflow_id, row);
    }

    /// Whether the workflow's row (or its absence) is known.
    pub fn has_workflow(&self, workflow_id: Uuid) -> bool {
        self.workflows.contains_key(&workflow_id)
    }

    /// Adds a validated definition.
    pub fn insert_definition(&mut self, workflow_id: Uuid, workflow: Arc<ValidatedWorkflow>) {
        self.definitions.insert(workflow_id, workflow);
    }

    /// Folds one event. Events must come in position order, each once; what
    /// [`Projection::missing`] listed must have been inserted.
    pub fn apply(&mut self, env: &EventEnvelope) {
        match env.stream_type {
            StreamType::Workflow => self.apply_workflow_event(env),
            StreamType::Execution => self.apply_execution_event(env),
            _ => {}
        }
    }

    fn apply_workflow_event(&mut self, env: &EventEnvelope) {
        let id = env.stream_id.uuid();
        if let Event::WorkflowCreated {
            workflow_id,
            name,
            version,
            definition,
        } = &env.event
        {
            let row = WorkflowRow {
                workflow_id: *workflow_id,
                name: name.clone(),
                version: i64::from(*version),
                task_count: definition.tasks.len() as i64,
                created_at: env.recorded_at,
                created_position: env.position as i64,
                definition: serde_json::to_string(definition).unwrap_or_else(|_| "{}".into()),
                status: "idle".into(),
                latest_execution_id: None,
                executions: WorkflowRow::zero_counts(),
                position: env.position as i64,
                tenant_id: env.metadata.tenant().to_owned(),
            };
            self.workflows.insert(*workflow_id, Some(row));
            self.dirty_workflows.insert(*workflow_id);
        } else if let Some(Some(row)) = self.workflows.get_mut(&id) {
            row.position = env.position as i64;
            self.dirty_workflows.insert(id);
        }
    }

    fn apply_execution_event(&mut self, env: &EventEnvelope) {
        let id = env.stream_id.uuid();
        if let Event::ExecutionStarted { workflow_id, .. } = &env.event {
            if self.executions.contains_key(&id) {
                // A second start of the same stream cannot commit (version 1 is taken);
                // nothing to fold.
                return;
            }
            let Some(definition) = self.definitions.get(workflow_id) else {
                tracing::warn!(execution = %id, workflow = %workflow_id, "execution of an unknown workflow: not projected");
                return;
            };
            let state = ExecutionState::new(definition.clone());
            self.executions.insert(
                id,
                Tracked {
                    state,
                    position: 0,
                    written: HashMap::new(),
                    dirty: BTreeSet::new(),
                    all_dirty: true,
                    leases: HashMap::new(),
                },
            );
        }
        let Some(mut tracked) = self.executions.remove(&id) else {
            tracing::warn!(execution = %id, position = env.position, "event of an execution never started: not projected");
            return;
        };
        if let Some(result) = agent_result(&mut tracked, env) {
            self.agent_results.push(result);
        }
        let before = tracked.state.execution_id().map(|_| tracked.state.status());
        let slots = tracked.state.slots();
        tracked.state = evolve(tracked.state, env);
        tracked.position = env.position;
        if tracked.state.slots() != slots {
            tracked.all_dirty = true;
        } else if let Some(slot) = env
            .event
            .task_id()
            .and_then(|t| tracked.state.slot(t.as_str()))
        {
            tracked.dirty.insert(slot);
        }
        let after = tracked.state.status();
        let workflow_id = tracked.state.workflow_id();
        self.executions.insert(id, tracked);
        self.dirty_executions.insert(id);

        let Some(workflow_id) = workflow_id else {
            return;
        };
        let Some(Some(row)) = self.workflows.get_mut(&workflow_id) else {
            return;
        };
        row.position = env.position as i64;
        if matches!(env.event, Event::ExecutionStarted { .. }) {
            row.latest_execution_id = Some(id);
        }
        if before != Some(after) {
            if let Some(old) = before {
                if let Some(n) = row.executions.get_mut(old.as_str()) {
                    *n -= 1;
                }
            }
            if let Some(n) = row.executions.get_mut(after.as_str()) {
                *n += 1;
            }
        }
        if row.latest_execution_id == Some(id) {
            row.status = after.as_str().to_owned();
        }
        self.dirty_workflows.insert(workflow_id);
    }

    /// The rows the events folded since the last call changed; forgets executions that
    /// ended and trims the caches.
    pub fn take_changes(&mut self) -> Changes {
        let mut changes = Changes {
            agent_results: std::mem::take(&mut self.agent_results),
            ..Changes::default()
        };
        for id in std::mem::take(&mut self.dirty_workflows) {
            if let Some(Some(row)) = self.workflows.get(&id) {
                changes.workflows.push(row.clone());
            }
        }
        for id in std::mem::take(&mut self.dirty_executions) {
            let Some(tracked) = self.executions.get_mut(&id) else {
                continue;
            };
            for entry in tracked.state.dead_letters() {
                if self.dead_letters_written.get(&entry.id) == Some(&entry.state) {
                    continue;
                }
                self.dead_letters_written
                    .insert(entry.id.clone(), entry.state);
                changes
                    .dead_letters
                    .push(dead_letter_row(id, &tracked.state, entry));
            }
            let body = serde_json::to_value(tracked.state.summary_view()).unwrap_or(Value::Null);
            changes.executions.push(execution_row(
                id,
                &body,
                tracked.position,
                tracked.state.tenant(),
            ));
            let dirty = std::mem::take(&mut tracked.dirty);
            let slots: Vec<usize> = if std::mem::take(&mut tracked.all_dirty) {
                (0..tracked.state.slots()).collect()
            } else {
                dirty.into_iter().collect()
            };
            for slot in slots {
                let Some(row) = task_row(id, &tracked.state, slot) else {
                    continue;
                };
                if tracked.written.get(&row.task_id) != Some(&row) {
                    tracked.written.insert(row.task_id.clone(), row.clone());
                    changes.tasks.push(row);
                }
            }
            if tracked.state.is_terminal() {
                self.executions.remove(&id);
            }
        }
        if self.executions.len() > MAX_CACHED_EXECUTIONS {
            self.executions.clear();
        }
        if self.workflows.len() > MAX_CACHED_WORKFLOWS {
            self.workflows.clear();
        }
        // Forgetting what was written only costs rewriting a row with the same body.
        if self.dead_letters_written.len() > MAX_CACHED_WORKFLOWS {
            self.dead_letters_written.clear();
        }
        changes
    }
}

/// The result of an agent's lease that `env` records, if it is one (a `TaskCompleted`,
/// `TaskFailed` or `TaskCompensated` of an attempt an agent leased), timed from the
/// lease; also remembers leases as they start. A lease folded before this process's
/// checkpoint is found on the task's state, without its start time.
fn agent_result(tracked: &mut Tracked, env: &EventEnvelope) -> Option<AgentResult> {
    let (task_id, attempt, compensation, ok) = match &env.event {
        Event::TaskStarted {
            task_id,
            attempt,
            compensation,
            agent_id: Some(agent),
            ..
        } => {
            let key = (task_id.as_str().to_owned(), *attempt, *compensation);
            tracked.leases.insert(key, (*agent, env.recorded_at));
            return None;
        }
        Event::TaskCompleted {
            task_id, attempt, ..
        } => (task_id, *attempt, false, true),
        Event::TaskFailed {
            task_id,
            attempt,
            compensation,
            ..
        } => (task_id, *attempt, *compensation, false),
        Event::TaskCompensated {
            task_id,
            attempt: Some(attempt),
            ..
        } => (task_id, *attempt, true, true),
        _ => return None,
    };
    let (agent_id, started) =
        match tracked
            .leases
            .remove(&(task_id.as_str().to_owned(), attempt, compensation))
        {
            Some((agent, at)) => (agent, Some(at)),
            None => {
                let track = if compensation {
                    tracked.state.compensation(task_id.as_str())
                } else {
                    tracked.state.task(task_id.as_str())
                }?;
                if track.attempt != attempt {
                    return None;
                }
                (track.agent_id?, None)
            }
        };
    Some(AgentResult {
        agent_id,
        position: i64::try_from(env.position).unwrap_or(i64::MAX),
        ok,
        duration_ms: started.map(|at| (env.recorded_at - at).num_milliseconds().max(0)),
    })
}

fn dead_letter_row(id: Uuid, state: &ExecutionState, entry: &DeadLetterEntry) -> DeadLetterRow {
    DeadLetterRow {
        tenant_id: state.tenant().to_owned(),
        body: DeadLetter {
            id: entry.id.clone(),
            execution_id: id,
            workflow_id: state.workflow_id().unwrap_or_default(),
            task_id: entry.task_id.to_string(),
            attempts: entry.attempts,
            error: Some(entry.error.clone()),
            state: entry.state,
            dead_lettered_at: entry.at,
            closed_at: entry.closed_at,
            closed_by: entry.closed_by.clone(),
        },
    }
}

fn execution_row(id: Uuid, body: &Value, position: u64, tenant: &str) -> ExecutionRow {
    let text = |v: &Value| (!v.is_null()).then(|| v.to_string());
    let time = |v: &Value| serde_json::from_value(v.clone()).ok();
    ExecutionRow {
        execution_id: id,
        workflow_id: serde_json::from_value(body["workflow_id"].clone()).unwrap_or_default(),
        status: body["status"].as_str().unwrap_or("pending").to_owned(),
        version: body["version"].as_i64().unwrap_or(0),
        position: position as i64,
        started_at: time(&body["started_at"]),
        completed_at: time(&body["completed_at"]),
        input: body["input"].to_string(),
        output: text(&body["output"]),
        error: body["error"].as_str().map(str::to_owned),
        tenant_id: tenant.to_owned(),
        parent: body.get("parent").and_then(text),
        usage: body.get("usage").and_then(text),
        budget: body.get("budget").and_then(text),
    }
}

/// The row of the task (or map item) at `slot`; its ordinal is the slot (declared
/// tasks in topological order, then items as their maps were dispatched).
fn task_row(id: Uuid, state: &ExecutionState, slot: usize) -> Option<TaskRow> {
    let (task_id, task) = state.task_entry(slot)?;
    let body = serde_json::to_value(&task).ok()?;
    Some(TaskRow {
        execution_id: id,
        task_id,
        ordinal: slot as i64,
        status: body["status"].as_str().unwrap_or("pending").to_owned(),
        attempts: body["attempts"].as_i64().unwrap_or(0),
        body: body.to_string(),
    })
}
