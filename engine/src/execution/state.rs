//! The state of one execution, as folded from its event stream.
//!
//! [`ExecutionState`] is everything `decide` needs and nothing more: per-task attempt
//! bookkeeping indexed like [`ValidatedWorkflow::tasks`], plus the incremental indexes
//! (ready set, live attempts, pending failures, completion order) that let `Advance`
//! work in time proportional to what changed rather than to the size of the graph. It
//! changes only through [`crate::execution::evolve`], so `replay(log)` always equals the
//! state a live engine holds after the same events.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use conflux_schema::definition::{HttpSpec, OnFailure, TaskBody};
use conflux_schema::validate::ValidatedWorkflow;
use conflux_schema::{EventEnvelope, TaskId};
use serde_json::Value;
use uuid::Uuid;

use super::evolve::evolve;
use super::ready::ReadySet;
use super::status::{ExecutionStatus, TaskStatus};

/// The attempts of one task, or of one task's compensation.
///
/// Attempt numbers are 1-based; `attempt` is the current one: the attempt scheduled,
/// running or just finished, or (status `retrying`) the one planned next. Only the
/// current attempt may start, heartbeat, complete or fail (fencing).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TaskState {
    /// Where the task stands.
    pub status: TaskStatus,
    /// The current attempt number (0 before the first is scheduled).
    pub attempt: u32,
    /// How many attempts were scheduled so far (the API's `attempts`).
    pub attempts: u32,
    /// Whether the current attempt was handed to a runner or an agent queue.
    pub dispatched: bool,
    /// When the task's first attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When the current attempt finished (completed, failed, timed out, cancelled) or
    /// the task was skipped; cleared when a new attempt is scheduled.
    pub completed_at: Option<DateTime<Utc>>,
    /// The output of the attempt that succeeded.
    pub output: Option<Value>,
    /// Why the latest attempt failed, timed out, or why the task was skipped; cleared on
    /// success.
    pub error: Option<String>,
    /// Whether the latest failure may be retried (timeouts may).
    pub retryable: bool,
    /// The agent that leased the current attempt.
    pub agent_id: Option<Uuid>,
    /// The lease of the current attempt.
    pub lease_id: Option<Uuid>,
    /// The current attempt's start-to-close deadline (moved by heartbeats).
    pub deadline: Option<DateTime<Utc>>,
    /// When the planned attempt becomes due (status `retrying`).
    pub retry_due_at: Option<DateTime<Utc>>,
    /// The resolved input the current attempt was dispatched with.
    pub input: Option<Value>,
    /// The resolved request the current attempt was dispatched with (`http` tasks).
    pub http: Option<HttpSpec>,
    /// The priority of its dispatched attempt, if not the default.
    pub priority: Option<u8>,
    /// Why its dispatched attempt is not taken (`TaskUnroutable`), until it starts.
    pub waiting_reason: Option<String>,
    /// Attempts made before its latest redrive (`TaskRedriven`): its retry policy
    /// counts attempts after these.
    pub redrive_base: u32,
    /// What its hooks annotated it with, by phase (`{"pre": …, "post": …}`).
    pub annotations: Option<Value>,
    /// The attempt whose `pre` hook said go on (`TaskAnnotated` of phase `pre`): a
    /// re-sent dispatch of that attempt does not ask it again.
    pub pre_hook_passed: Option<u32>,
}

impl TaskState {
    /// Whether `attempt` is the current attempt and was dispatched or started: the only
    /// attempt whose result may be recorded.
    pub fn accepts_result(&self, attempt: u32) -> bool {
        self.attempt == attempt
            && match self.status {
                TaskStatus::Running => true,
                TaskStatus::Scheduled => self.dispatched,
                _ => false,
            }
    }
}

/// The saga's progress, once `CompensationStarted` was applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Saga {
    /// Candidates left are `completion_order[..cursor]`, newest last.
    pub(crate) cursor: usize,
    /// The task whose compensation is in progress.
    pub(crate) current: Option<usize>,
    /// A compensation failed for good: the saga stops.
    pub(crate) failed: bool,
    /// The task whose failure started the saga.
    pub(crate) failed_task: Option<TaskId>,
    /// Why the execution failed.
    pub(crate) error: String,
}

/// The workflow an execution runs, compared by identity or, failing that, by definition.
#[derive(Clone)]
pub(crate) struct Workflow(pub(crate) Arc<ValidatedWorkflow>);

impl PartialEq for Workflow {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.definition() == other.0.definition()
    }
}

impl fmt::Debug for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Workflow({:?}, {} tasks)",
            self.0.name().as_str(),
            self.0.len()
        )
    }
}

impl Deref for Workflow {
    type Target = ValidatedWorkflow;
    fn deref(&self) -> &ValidatedWorkflow {
        &self.0
    }
}

/// One execution of a workflow, as of the events applied so far.
///
/// Equality compares every field (the workflow by identity or definition), so a test
/// can check that `replay(log) == live state`.
#[derive(Clone, Debug, PartialEq)]
pub struct ExecutionState {
    pub(crate) workflow: Workflow,
    pub(crate) execution_id: Option<Uuid>,
    pub(crate) workflow_id: Option<Uuid>,
    /// The tenant of `ExecutionStarted` (`default` before it, or for a log recorded
    /// before tenants existed).
    pub(crate) tenant: String,
    pub(crate) idempotency_key: Option<String>,
    /// For a child execution: the parent attempt that started it.
    pub(crate) parent: Option<conflux_schema::ParentLink>,
    /// What its attempts reported spending, summed (None before the first report).
    pub(crate) usage: Option<conflux_schema::usage::Usage>,
    /// How much it may spend (`BudgetSet`).
    pub(crate) budget: Option<conflux_schema::usage::Budget>,
    /// Its priority (`PrioritySet`; None: the default 5).
    pub(crate) priority: Option<u8>,
    /// Its concurrency key (`ExecutionQueued`), when its workflow limits concurrency.
    pub(crate) concurrency_key: Option<String>,
    pub(crate) status: ExecutionStatus,
    pub(crate) input: Value,
    pub(crate) output: Option<Value>,
    pub(crate) error: Option<String>,
    pub(crate) version: u64,
    pub(crate) started_at: Option<DateTime<Utc>>,
    pub(crate) completed_at: Option<DateTime<Utc>>,
    pub(crate) deadline: Option<DateTime<Utc>>,
    pub(crate) tasks: Vec<TaskState>,
    pub(crate) compensations: BTreeMap<usize, TaskState>,
    pub(crate) ready: ReadySet,
    /// Forward tasks whose status is live (scheduled, running, retrying).
    pub(crate) live: BTreeSet<usize>,
    /// Forward tasks scheduled but not dispatched.
    pub(crate) undispatched: BTreeSet<usize>,
    /// Forward tasks waiting for a planned retry.
    pub(crate) retrying: BTreeSet<usize>,
    /// Forward tasks failed or timed out, whose retry is not decided yet.
    pub(crate) unresolved: BTreeSet<usize>,
    /// Forward tasks in the order they completed.
    pub(crate) completion_order: Vec<usize>,
    /// How many forward tasks settled for good: completed, skipped, or failed where a
    /// downstream trigger rule lets the execution go on. All settled: complete.
    pub(crate) settled: usize,
    /// The item slots of dispatched maps, by map task index. Items live in `tasks`
    /// after the declared tasks (`tasks[workflow.len()..]`), in the order their maps
    /// were dispatched.
    pub(crate) maps: BTreeMap<usize, MapRun>,
    /// For each item slot (`tasks[workflow.len() + k]`): its map and its id.
    pub(crate) items: Vec<(usize, TaskId)>,
    pub(crate) saga: Option<Saga>,
    /// Kept signals and approval decisions (the waiting kinds).
    pub(crate) waits: super::waits::Waits,
    /// Its dead letters, oldest first.
    pub(crate) dead_letters: Vec<super::dead_letter::DeadLetterEntry>,
}

/// The items of one dispatched map and how far they got; kept by evolve so a step of
/// the map costs what it schedules, never the number of its items.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct MapRun {
    /// The slot of item 0 in `ExecutionState::tasks`.
    pub(crate) first: usize,
    /// How many items.
    pub(crate) count: usize,
    /// Items `0..scheduled` had their first attempt scheduled (they go in order).
    pub(crate) scheduled: usize,
    /// Items done: completed, failed for good, skipped or cancelled.
    pub(crate) done: usize,
    /// The first item that failed for good, if one did.
    pub(crate) failed: Option<usize>,
}

impl ExecutionState {
    /// The state before `ExecutionStarted`: status [`ExecutionStatus::NotStarted`],
    /// version 0, every task pending.
    pub fn new(workflow: Arc<ValidatedWorkflow>) -> Self {
        let ready = ReadySet::new(&workflow);
        let tasks = vec![TaskState::default(); workflow.len()];
        ExecutionState {
            workflow: Workflow(workflow),
            execution_id: None,
            workflow_id: None,
            tenant: conflux_schema::access::DEFAULT_TENANT.to_owned(),
            idempotency_key: None,
            parent: None,
            usage: None,
            budget: None,
            priority: None,
            concurrency_key: None,
            status: ExecutionStatus::NotStarted,
            input: Value::Null,
            output: None,
            error: None,
            version: 0,
            started_at: None,
            completed_at: None,
            deadline: None,
            tasks,
            compensations: BTreeMap::new(),
            ready,
            live: BTreeSet::new(),
            undispatched: BTreeSet::new(),
            retrying: BTreeSet::new(),
            unresolved: BTreeSet::new(),
            completion_order: Vec::new(),
            settled: 0,
            maps: BTreeMap::new(),
            items: Vec::new(),
            saga: None,
            waits: Default::default(),
            dead_letters: Vec::new(),
        }
    }

    /// The state after applying `events` in order to [`ExecutionState::new`]: a fold of
    /// [`evolve`]. Audit replay, crash recovery and tests all rebuild state this way.
    pub fn replay<'a>(
        workflow: Arc<ValidatedWorkflow>,
        events: impl IntoIterator<Item = &'a EventEnvelope>,
    ) -> Self {
        events
            .into_iter()
            .fold(ExecutionState::new(workflow), evolve)
    }

    /// The tenant the execution belongs to (its `ExecutionStarted`'s): every event of
    /// its stream carries it, and only that tenant's callers see or steer it.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The workflow this execution runs.
    pub fn workflow(&self) -> &Arc<ValidatedWorkflow> {
        &self.workflow.0
    }

    /// How many events were applied: the stream version this state reflects. A decision
    /// taken on this state must be appended expecting this version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Where the execution stands.
    pub fn status(&self) -> ExecutionStatus {
        self.status
    }

    /// Its concurrency key, when its workflow limits concurrency (it holds, or waits
    /// for, a slot of it until it ends).
    pub fn concurrency_key(&self) -> Option<&str> {
        self.concurrency_key.as_deref()
    }

    /// For a child execution: the parent's `workflow` task attempt that started it.
    pub fn parent(&self) -> Option<&conflux_schema::ParentLink> {
        self.parent.as_ref()
    }

    /// What its attempts reported spending, summed; None before the first report.
    pub fn usage(&self) -> Option<&conflux_schema::usage::Usage> {
        self.usage.as_ref()
    }

    /// Why the execution is past its budget (`budget_exceeded: …`), if it is.
    pub fn over_budget(&self) -> Option<String> {
        self.budget?.exceeded_by(self.usage.as_ref()?)
    }

    /// Whether the execution reached a terminal status.
    pub fn is_terminal(&self) -> bool {
        self.status.is_terminal()
    }

    /// The execution id, once started.
    pub fn execution_id(&self) -> Option<Uuid> {
        self.execution_id
    }

    /// The workflow definition id, once started.
    pub fn workflow_id(&self) -> Option<Uuid> {
        self.workflow_id
    }

    /// The `Idempotency-Key` the execution was started with, if any.
    pub fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_deref()
    }

    /// The execution input (`null` before the start).
    pub fn input(&self) -> &Value {
        &self.input
    }

    /// The output (the map of sink task outputs), once completed.
    pub fn output(&self) -> Option<&Value> {
        self.output.as_ref()
    }

    /// Why the execution failed or was cancelled, if it did.
    pub fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }

    /// When `ExecutionStarted` was recorded.
    pub fn started_at(&self) -> Option<DateTime<Utc>> {
        self.started_at
    }

    /// When the terminal event was recorded.
    pub fn completed_at(&self) -> Option<DateTime<Utc>> {
        self.completed_at
    }

    /// The workflow deadline: the start time plus the definition's `timeout_seconds`.
    pub fn deadline(&self) -> Option<DateTime<Utc>> {
        self.deadline
    }

    /// The state of task `id`; `None` for an id that is not a task of the workflow.
    pub fn task(&self, id: &str) -> Option<&TaskState> {
        self.index_of_str(id)
            .and_then(|index| self.tasks.get(index))
    }

    /// The items of every dispatched map, in slot order: `(map task id, item id)`.
    pub fn items(&self) -> impl Iterator<Item = (&TaskId, &TaskId)> + '_ {
        let ids = self.workflow.task_ids();
        self.items
            .iter()
            .filter_map(move |(map, id)| Some((ids.get(*map)?, id)))
    }

    /// The slot of task (or map item) `id`.
    pub(crate) fn index_of_str(&self, id: &str) -> Option<usize> {
        if let Some(index) = self.workflow.index_of_str(id) {
            return Some(index);
        }
        let (map, k) = TaskId::parse(id)
            .ok()?
            .item_of()
            .map(|(m, k)| (m.to_owned(), k))?;
        let run = self.maps.get(&self.workflow.index_of_str(&map)?)?;
        (k < run.count).then_some(run.first + k)
    }

    /// The slot of task (or map item) `id`.
    pub(crate) fn index_of(&self, id: &TaskId) -> Option<usize> {
        self.index_of_str(id.as_str())
    }

    /// Whether slot `index` is a map's item rather than a declared task.
    pub(crate) fn is_item(&self, index: usize) -> bool {
        index >= self.workflow.len()
    }

    /// For item slot `index`: its map's task index and its own index in the map.
    pub(crate) fn item_at(&self, index: usize) -> Option<(usize, usize)> {
        let (map, _) = self.items.get(index.checked_sub(self.workflow.len())?)?;
        Some((*map, index - self.maps.get(map)?.first))
    }

    /// What one attempt at slot `index` runs: a declared task's own spec or its
    /// compensation's, or for a map's item the map's template; with the default
    /// attempt limit when it names none.
    pub(crate) fn spec(&self, index: usize, compensation: bool) -> Option<TaskBody<'_>> {
        match self.item_at(index) {
            Some((map, _)) if !compensation => self.workflow.template_of(map),
            Some(_) => None,
            None => self.workflow.body_of(index, compensation),
        }
    }

    /// For item slot `index`: the element it runs for and its index in the map.
    pub(crate) fn item_scope(&self, index: usize) -> Option<(&Value, usize)> {
        let (map, k) = self.item_at(index)?;
        let items = self.tasks.get(map)?.input.as_ref()?;
        Some((items.get(k)?, k))
    }

    /// The state of the task at `index` (the order of [`ValidatedWorkflow::tasks`]).
    pub fn task_at(&self, index: usize) -> Option<&TaskState> {
        self.tasks.get(index)
    }

    /// The state of task `id`'s compensation, once its first attempt was scheduled.
    pub fn compensation(&self, id: &str) -> Option<&TaskState> {
        self.index_of_str(id)
            .and_then(|index| self.compensations.get(&index))
    }

    /// The tasks in the order they completed (the saga compensates newest first).
    pub fn completion_order(&self) -> impl Iterator<Item = &TaskId> + '_ {
        let ids = self.workflow.task_ids();
        self.completion_order.iter().filter_map(|&i| ids.get(i))
    }

    /// The tasks whose dependencies all completed and that are not scheduled yet (they
    /// wait while the execution is paused), in index order.
    pub fn ready_tasks(&self) -> impl Iterator<Item = &TaskId> + '_ {
        let ids = self.workflow.task_ids();
        self.ready.iter().filter_map(|i| ids.get(i))
    }

    /// The forward task (or, with `compensation`, the compensation) at `index`.
    pub(crate) fn track(&self, index: usize, compensation: bool) -> Option<&TaskState> {
        if compensation {
            self.compensations.get(&index)
        } else {
            self.tasks.get(index)
        }
    }

    /// Whether a failure of forward task `index` lets the execution go on: some direct
    /// dependent's trigger rule may run after an upstream failure.
    /// Never under `on_failure: compensate`, where a failure always starts the saga.
    pub(crate) fn failure_tolerated(&self, index: usize) -> bool {
        if self.workflow.definition().on_failure == OnFailure::Compensate {
            return false;
        }
        self.workflow.dependents(index).iter().any(|&d| {
            self.workflow
                .task(d as usize)
                .is_some_and(|t| t.trigger_rule.tolerates_failure())
        })
    }

    /// The id of the task at `index`.
    pub(crate) fn id(&self, index: usize) -> Option<&TaskId> {
        match index.checked_sub(self.workflow.len()) {
            None => self.workflow.task_ids().get(index),
            Some(k) => self.items.get(k).map(|(_, id)| id),
        }
    }

    /// The output of task `id` if it completed (also once compensated): what
    /// `${tasks.<id>.output}` reads.
    pub(crate) fn output_of(&self, id: &str) -> Option<Value> {
        let task = self.task(id)?;
        match task.status {
            TaskStatus::Completed | TaskStatus::Compensated => {
                Some(task.output.clone().unwrap_or(Value::Null))
            }
            _ => None,
        }
    }
}
