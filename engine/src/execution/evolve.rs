//! `evolve`: how each event changes an execution's state.
//!
//! Evolve is total: it never panics and never fails. An event that does not apply to
//! the state (an attempt that is not current, a task the workflow does not have, a
//! second `ExecutionStarted`) changes nothing but the version, so a log written by an
//! older or buggy writer still replays. Every index of [`ExecutionState`] (ready set,
//! live, undispatched, retrying, unresolved, completion order, saga) is maintained here
//! and nowhere else.

use chrono::{DateTime, Utc};
use conflux_schema::event::SCHEMA_VERSION;
use conflux_schema::{Event, EventEnvelope, EventMetadata, StreamId, TaskId};
use uuid::Uuid;

use super::dispatch::add;
use super::state::{ExecutionState, Saga, TaskState};
use super::status::{ExecutionStatus, TaskStatus};

/// Applies one committed event. An envelope whose version is not 0 and is at or below
/// the state's version was applied already (a duplicate delivery) and changes nothing;
/// any other envelope increments the version by one, applied or not.
pub fn evolve(mut state: ExecutionState, envelope: &EventEnvelope) -> ExecutionState {
    if envelope.version != 0 && envelope.version <= state.version {
        return state;
    }
    state.version += 1;
    if matches!(envelope.event, Event::ExecutionStarted { .. })
        && state.status == ExecutionStatus::NotStarted
    {
        envelope.metadata.tenant().clone_into(&mut state.tenant);
    }
    state.apply(&envelope.event, envelope.recorded_at);
    state.apply_dead_letter_closed(
        &envelope.event,
        envelope.recorded_at,
        envelope.metadata.actor.as_deref(),
    );
    state
}

/// The state after `events`, not yet committed, recorded at `now`: folded through
/// [`evolve`] with the versions that follow the state's. What deciding several steps
/// at once (an `Advance` that goes on past a switch, the engine's decision chain)
/// decides the next step on; the committed envelopes are folded instead once appended.
pub fn fold_provisional(
    state: ExecutionState,
    events: &[Event],
    now: DateTime<Utc>,
) -> ExecutionState {
    let stream = StreamId::execution(state.execution_id().unwrap_or_default());
    events.iter().fold(state, |state, event| {
        let envelope = EventEnvelope {
            event_id: Uuid::nil(),
            stream_type: stream.stream_type(),
            stream_id: stream.clone(),
            version: state.version() + 1,
            position: 0,
            event: event.clone(),
            schema_version: SCHEMA_VERSION,
            metadata: EventMetadata::default(),
            recorded_at: now,
            hash: String::new(),
        };
        evolve(state, &envelope)
    })
}

impl ExecutionState {
    fn apply(&mut self, event: &Event, at: DateTime<Utc>) {
        match event {
            Event::ExecutionStarted {
                execution_id,
                workflow_id,
                input,
                idempotency_key,
                parent,
            } => {
                if self.status != ExecutionStatus::NotStarted {
                    return;
                }
                self.parent = parent.clone();
                self.status = ExecutionStatus::Running;
                self.execution_id = Some(*execution_id);
                self.workflow_id = Some(*workflow_id);
                self.input = input.clone();
                self.idempotency_key = idempotency_key.clone();
                self.started_at = Some(at);
                self.deadline = self
                    .workflow
                    .definition()
                    .timeout_seconds
                    .map(|secs| add(at, std::time::Duration::from_secs(secs)));
                let workflow = self.workflow.clone();
                self.ready.start(&workflow);
            }
            Event::TaskScheduled {
                task_id,
                attempt,
                compensation,
            } => self.scheduled(task_id, *attempt, *compensation),
            Event::TaskDispatched {
                task_id,
                attempt,
                input,
                deadline,
                http,
                compensation,
                priority,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let Some(t) = self.track_mut(i, *compensation) else {
                    return;
                };
                if t.attempt != *attempt || t.status != TaskStatus::Scheduled || t.dispatched {
                    return;
                }
                t.dispatched = true;
                t.input = Some(input.clone());
                t.http = http.clone();
                t.priority = *priority;
                if deadline.is_some() {
                    t.deadline = *deadline;
                }
                if !compensation {
                    self.undispatched.remove(&i);
                }
            }
            Event::TaskUnroutable {
                task_id,
                attempt,
                compensation,
                reason,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let Some(t) = self.track_mut(i, *compensation) else {
                    return;
                };
                if t.attempt == *attempt && t.status == TaskStatus::Scheduled {
                    t.waiting_reason = Some(reason.clone());
                }
            }
            Event::TaskStarted {
                task_id,
                attempt,
                agent_id,
                lease_id,
                deadline,
                compensation,
                ..
            } => {
                let Some(i) = self.index(task_id) else { return };
                let Some(t) = self.track_mut(i, *compensation) else {
                    return;
                };
                if t.attempt != *attempt || t.status != TaskStatus::Scheduled {
                    return;
                }
                t.status = TaskStatus::Running;
                t.started_at.get_or_insert(at);
                t.waiting_reason = None;
                t.agent_id = *agent_id;
                t.lease_id = *lease_id;
                if deadline.is_some() {
                    t.deadline = *deadline;
                }
                if !compensation {
                    self.undispatched.remove(&i);
                }
            }
            Event::TaskHeartbeat {
                task_id,
                attempt,
                deadline,
                compensation,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let Some(t) = self.track_mut(i, *compensation) else {
                    return;
                };
                if t.attempt == *attempt && t.status == TaskStatus::Running {
                    t.deadline = *deadline;
                }
            }
            Event::TaskCompleted {
                task_id,
                attempt,
                output,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let t = &mut self.tasks[i];
                if t.attempt != *attempt
                    || !matches!(t.status, TaskStatus::Scheduled | TaskStatus::Running)
                {
                    return;
                }
                t.status = TaskStatus::Completed;
                t.output = Some(output.clone());
                t.error = None;
                t.deadline = None;
                t.completed_at = Some(at);
                self.live.remove(&i);
                self.undispatched.remove(&i);
                if self.is_item(i) {
                    self.item_done(i, false);
                } else {
                    self.completion_order.push(i);
                    self.wait_completed(i);
                    self.settle(i);
                }
            }
            Event::TaskFailed {
                task_id,
                attempt,
                error,
                retryable,
                compensation,
            } => {
                let failure = (TaskStatus::Failed, error.clone(), *retryable);
                self.attempt_failed(task_id, *attempt, failure, *compensation, at);
            }
            Event::TaskTimedOut {
                task_id,
                attempt,
                compensation,
            } => {
                let failure = (
                    TaskStatus::TimedOut,
                    format!("attempt {attempt} timed out"),
                    true,
                );
                self.attempt_failed(task_id, *attempt, failure, *compensation, at);
            }
            Event::TaskRetryScheduled {
                task_id,
                attempt,
                due_at,
                compensation,
            } => {
                let Some(i) = self.index(task_id) else { return };
                // A forward failure settled for good (tolerated, or an item's) is not
                // retried, whatever a log says.
                let settled = !compensation && !self.unresolved.contains(&i);
                let Some(t) = self.track_mut(i, *compensation) else {
                    return;
                };
                if settled
                    || !matches!(t.status, TaskStatus::Failed | TaskStatus::TimedOut)
                    || *attempt != t.attempt.saturating_add(1)
                {
                    return;
                }
                t.status = TaskStatus::Retrying;
                t.attempt = *attempt;
                t.retry_due_at = Some(*due_at);
                if !compensation {
                    self.unresolved.remove(&i);
                    self.live.insert(i);
                    self.retrying.insert(i);
                }
            }
            Event::TaskSkipped { task_id, reason } => {
                let Some(i) = self.index(task_id) else { return };
                let t = &mut self.tasks[i];
                if t.status != TaskStatus::Pending {
                    return;
                }
                t.status = TaskStatus::Skipped;
                t.error = Some(reason.clone());
                t.completed_at = Some(at);
                if self.is_item(i) {
                    self.item_done(i, false);
                } else {
                    self.ready.take(i);
                    self.settle(i);
                }
            }
            Event::TaskCancelled {
                task_id,
                attempt,
                compensation,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let Some(t) = self.track_mut(i, *compensation) else {
                    return;
                };
                if t.attempt != *attempt || !t.status.is_live() {
                    return;
                }
                t.status = TaskStatus::Cancelled;
                t.deadline = None;
                t.retry_due_at = None;
                t.completed_at = Some(at);
                if !compensation {
                    self.forget_forward(i);
                    if self.is_item(i) {
                        self.item_done(i, false);
                    }
                }
            }
            Event::ExecutionQueued { key } => {
                if self.status == ExecutionStatus::Running {
                    self.status = ExecutionStatus::Queued;
                }
                self.concurrency_key = Some(key.clone());
            }
            Event::ExecutionAdmitted {} => {
                if self.status == ExecutionStatus::Queued {
                    self.status = ExecutionStatus::Running;
                }
            }
            Event::ExecutionPaused {} => {
                if self.status == ExecutionStatus::Running {
                    self.status = ExecutionStatus::Paused;
                }
            }
            Event::ExecutionResumed {} => {
                if self.status == ExecutionStatus::Paused {
                    self.status = ExecutionStatus::Running;
                }
            }
            Event::ExecutionCancelled { reason } => {
                if self.status == ExecutionStatus::NotStarted || self.is_terminal() {
                    return;
                }
                self.status = ExecutionStatus::Cancelled;
                self.error = reason.clone();
                self.completed_at = Some(at);
            }
            Event::CompensationStarted { failed_task, error } => {
                if !matches!(
                    self.status,
                    ExecutionStatus::Running | ExecutionStatus::Paused
                ) {
                    return;
                }
                self.status = ExecutionStatus::Compensating;
                self.saga = Some(Saga {
                    cursor: self.completion_order.len(),
                    current: None,
                    failed: false,
                    failed_task: failed_task.clone(),
                    error: error
                        .clone()
                        .unwrap_or_else(|| "the execution failed".to_owned()),
                });
            }
            Event::TaskCompensated {
                task_id,
                attempt,
                output,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let Some(t) = self.compensations.get_mut(&i) else {
                    return;
                };
                if attempt.is_some_and(|a| a != t.attempt)
                    || !matches!(t.status, TaskStatus::Scheduled | TaskStatus::Running)
                {
                    return;
                }
                t.status = TaskStatus::Completed;
                t.output = Some(output.clone());
                t.error = None;
                t.deadline = None;
                t.completed_at = Some(at);
                self.tasks[i].status = TaskStatus::Compensated;
                if let Some(saga) = &mut self.saga {
                    if saga.current == Some(i) {
                        saga.current = None;
                    }
                }
            }
            Event::CompensationFailed { task_id, error } => {
                if let Some(saga) = &mut self.saga {
                    saga.failed = true;
                }
                let Some(i) = self.index(task_id) else { return };
                if let Some(t) = self.compensations.get_mut(&i) {
                    t.error = Some(error.clone());
                }
            }
            Event::ExecutionCompleted { output } => {
                if !matches!(
                    self.status,
                    ExecutionStatus::Running | ExecutionStatus::Paused
                ) {
                    return;
                }
                self.status = ExecutionStatus::Completed;
                self.output = Some(output.clone());
                self.completed_at = Some(at);
            }
            Event::ExecutionFailed { error, .. } => {
                if self.status == ExecutionStatus::NotStarted || self.is_terminal() {
                    return;
                }
                let compensated = self.status == ExecutionStatus::Compensating
                    && self.saga.as_ref().is_some_and(|s| !s.failed);
                self.status = if compensated {
                    ExecutionStatus::Compensated
                } else {
                    ExecutionStatus::Failed
                };
                self.error = Some(error.clone());
                self.completed_at = Some(at);
            }
            Event::WorkflowCreated { .. }
            | Event::AgentRegistered { .. }
            | Event::AgentDrained { .. }
            | Event::AgentDeregistered { .. }
            | Event::TenantCreated { .. }
            | Event::ApiKeyCreated { .. }
            | Event::ApiKeyRevoked { .. }
            | Event::TenantDataErased { .. }
            | Event::TenantPolicySet { .. }
            // Erasure changes what payloads read as, not the execution's state.
            | Event::ExecutionDataErased { .. }
            // Schedules are streams of their own.
            | Event::ScheduleCreated { .. }
            | Event::SchedulePaused {}
            | Event::ScheduleResumed {}
            | Event::ScheduleDeleted {}
            | Event::ScheduleTicked { .. }
            // Concurrency keys' slots are streams of their own.
            | Event::ConcurrencySlotTaken { .. }
            | Event::ConcurrencySlotAwaited { .. }
            | Event::ConcurrencySlotFreed { .. }
            // Webhooks are streams of their own.
            | Event::HookCreated { .. }
            | Event::HookDeleted {} => {}
            Event::SignalReceived { .. } | Event::ApprovalDecided { .. } => self.apply_wait(event),
            Event::UsageRecorded { usage, .. } => {
                let sum = self.usage.unwrap_or_default().plus(usage);
                self.usage = Some(sum);
            }
            Event::BudgetSet { budget } => self.budget = Some(*budget),
            Event::PrioritySet { priority } => self.priority = Some(*priority),
            Event::TaskDeadLettered { .. } => self.apply_dead_lettered(event, at),
            Event::TaskAnnotated {
                task_id,
                attempt,
                phase,
                annotations,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let t = &mut self.tasks[i];
                if t.attempt != *attempt {
                    return;
                }
                if *phase == conflux_schema::task_hooks::HookPhase::Pre {
                    t.pre_hook_passed = Some(*attempt);
                }
                if annotations.as_object().is_some_and(serde_json::Map::is_empty) {
                    return;
                }
                let mut by_phase = match t.annotations.take() {
                    Some(serde_json::Value::Object(map)) => map,
                    _ => serde_json::Map::new(),
                };
                by_phase.insert(phase.as_str().to_owned(), annotations.clone());
                t.annotations = Some(serde_json::Value::Object(by_phase));
            }
            Event::TaskRedriven { task_id, attempt } => self.apply_task_redriven(task_id, *attempt),
            // Applied by `evolve`, which knows the actor.
            Event::ExecutionRedriven { .. } | Event::DeadLetterAcknowledged { .. } => {}
            Event::MapExpanded {
                task_id,
                attempt,
                count,
            } => {
                let Some(i) = self.index(task_id) else { return };
                let current = self.tasks[i].attempt == *attempt && self.tasks[i].dispatched;
                if current {
                    self.open_map(i, *count as usize);
                }
            }
        }
    }

    fn index(&self, task_id: &TaskId) -> Option<usize> {
        self.index_of(task_id)
    }

    fn track_mut(&mut self, index: usize, compensation: bool) -> Option<&mut TaskState> {
        if compensation {
            self.compensations.get_mut(&index)
        } else {
            self.tasks.get_mut(index)
        }
    }

    /// `TaskScheduled`: applies to a pending task's first attempt or a retrying task's
    /// planned attempt; a compensation's first attempt also moves the saga to its task.
    fn scheduled(&mut self, task_id: &TaskId, attempt: u32, compensation: bool) {
        let Some(i) = self.index(task_id) else { return };
        let (status, current) = match self.track(i, compensation) {
            Some(t) => (t.status, t.attempt),
            None => (TaskStatus::Pending, 0),
        };
        // A pending task's next attempt: 1, or after a redrive made it pending again,
        // the one after its last.
        let fresh = attempt == current.saturating_add(1) && status == TaskStatus::Pending;
        let retry = status == TaskStatus::Retrying && attempt == current;
        if !fresh && !retry {
            return;
        }
        let t = if compensation {
            let Some(saga) = &mut self.saga else { return };
            if self.tasks[i].status != TaskStatus::Completed {
                return;
            }
            if fresh {
                let candidates =
                    &self.completion_order[..saga.cursor.min(self.completion_order.len())];
                let Some(at) = candidates.iter().rposition(|&t| t == i) else {
                    return;
                };
                saga.cursor = at;
            }
            saga.current = Some(i);
            self.compensations.entry(i).or_default()
        } else {
            &mut self.tasks[i]
        };
        t.status = TaskStatus::Scheduled;
        t.attempt = attempt;
        t.attempts = t.attempts.max(attempt);
        t.dispatched = false;
        t.completed_at = None;
        t.deadline = None;
        t.retry_due_at = None;
        t.agent_id = None;
        t.lease_id = None;
        t.waiting_reason = None;
        t.input = None;
        t.http = None;
        if !compensation {
            self.ready.take(i);
            self.retrying.remove(&i);
            self.live.insert(i);
            self.undispatched.insert(i);
            if let (true, Some((map, k))) = (fresh, self.item_at(i)) {
                if let Some(run) = self.maps.get_mut(&map) {
                    run.scheduled = run.scheduled.max(k + 1);
                }
            }
        }
    }

    /// The current attempt failed or timed out: `(status, error, retryable)`.
    fn attempt_failed(
        &mut self,
        task_id: &TaskId,
        attempt: u32,
        (status, error, retryable): (TaskStatus, String, bool),
        compensation: bool,
        at: DateTime<Utc>,
    ) {
        let Some(i) = self.index(task_id) else { return };
        let Some(t) = self.track_mut(i, compensation) else {
            return;
        };
        if t.attempt != attempt || !matches!(t.status, TaskStatus::Scheduled | TaskStatus::Running)
        {
            return;
        }
        t.status = status;
        t.error = Some(error);
        t.retryable = retryable;
        t.deadline = None;
        t.completed_at = Some(at);
        if !compensation {
            self.forget_forward(i);
            let for_good = self.fails_for_good(i);
            if self.is_item(i) && for_good {
                // Its map decides what that means (fail fast, or collect).
                self.item_done(i, true);
            } else if for_good && self.failure_tolerated(i) {
                self.settle(i);
            } else {
                self.unresolved.insert(i);
            }
        }
    }

    /// Whether the latest failure of forward task `index` can no longer be retried.
    fn fails_for_good(&self, index: usize) -> bool {
        let t = &self.tasks[index];
        let max = self.spec(index, false).map_or(1, |b| b.max_attempts());
        !t.retryable || t.attempt.saturating_sub(t.redrive_base) >= max
    }

    /// Forward task `index` settled: it counts towards completion, and its dependents
    /// whose every dependency settled become ready to be judged.
    fn settle(&mut self, index: usize) {
        if self.is_item(index) {
            return;
        }
        self.settled += 1;
        let workflow = self.workflow.clone();
        let tasks = &self.tasks;
        self.ready
            .settled(&workflow, index, |d| tasks[d].status == TaskStatus::Pending);
    }

    /// Task `index` has no live attempt any more.
    fn forget_forward(&mut self, index: usize) {
        self.live.remove(&index);
        self.undispatched.remove(&index);
        self.retrying.remove(&index);
    }
}
