//! `decide`: from a command and the current state to the events that record it.
//!
//! Commands record facts; `Advance` reacts to them. `Start`, `StartTask`,
//! `CompleteTask`, `FailTask`, `Heartbeat`, `Pause`, `Resume` and an attempt deadline
//! emit only the events that say what happened; scheduling, retries, failing,
//! compensating and completing are left to the `Advance` the engine runs after
//! applying them. `Cancel` and the workflow deadline end the execution themselves, and
//! a due retry timer is an `Advance`.

use chrono::{DateTime, Utc};
use conflux_schema::Event;

use super::advance::{advance, fail, Overlay};
use super::attempt;
use super::command::{Command, Rejection};
use super::dead_letter;
use super::effect::{Decision, Timer};
use super::state::ExecutionState;
use super::status::{ExecutionStatus, TaskStatus};
use super::waits;

/// Decides what `command` records on `state` at time `now`. Pure: no I/O, no clock.
///
/// - `Start` → `[ExecutionStarted]` (rejected once started); effect: the workflow
///   deadline timer.
/// - `Advance` → while running: `ExecutionCompleted` once every task completed; else
///   the execution fails (cancel attempts in flight, skip never-scheduled tasks, then
///   `ExecutionFailed` or `CompensationStarted`) if a failure cannot be retried; else
///   `TaskRetryScheduled` per failed attempt and `TaskScheduled` + `TaskDispatched` per
///   due retry and ready task. While compensating: the saga's next step. Paused, not
///   started or terminal: nothing. Never rejected; empty when nothing is due.
/// - `StartTask` → `[TaskStarted]` with the attempt deadline; `Heartbeat` →
///   `[TaskHeartbeat]` (or nothing without a timeout); `CompleteTask` →
///   `[TaskCompleted]` (`[TaskCompensated]` for a compensation); `FailTask` →
///   `[TaskFailed]`. All fenced: a stale attempt is [`Rejection::StaleAttempt`].
/// - `TimerFired`: a due retry → what `Advance` does; a passed attempt deadline →
///   `[TaskTimedOut]`; the workflow deadline → the execution fails. A timer that no
///   longer applies → an empty decision.
/// - `Signal` (running or paused) → `[SignalReceived]`, plus `TaskCompleted` of the
///   first `signal` task waiting for it; `DecideApproval` → `[ApprovalDecided]`, plus
///   `TaskCompleted` at the last approval needed or `TaskFailed` (not retryable) on a
///   reject (see [`super::waits`]).
/// - `Pause` (running only) → `[ExecutionPaused]`; `Resume` (paused only) →
///   `[ExecutionResumed]`; `Cancel` (running, paused or compensating) → `TaskCancelled`
///   for every attempt in flight, `TaskSkipped` for never-scheduled tasks, then
///   `ExecutionCancelled`.
///
/// The decision must be appended expecting `state.version()`; on a version conflict
/// the caller reloads and decides again.
pub fn decide(
    state: &ExecutionState,
    command: Command,
    now: DateTime<Utc>,
) -> Result<Decision, Rejection> {
    let events = match command {
        Command::Start {
            execution_id,
            workflow_id,
            input,
            idempotency_key,
            parent,
            budget,
            priority,
            concurrency_key,
        } => {
            if state.status != ExecutionStatus::NotStarted {
                return Err(Rejection::AlreadyStarted);
            }
            let started = Event::ExecutionStarted {
                execution_id,
                workflow_id,
                input,
                idempotency_key,
                parent,
            };
            let budget = budget.map(|budget| Event::BudgetSet { budget });
            let priority = priority
                .filter(|p| *p != conflux_schema::kind::DEFAULT_PRIORITY)
                .map(|priority| Event::PrioritySet { priority });
            let queued = concurrency_key.map(|key| Event::ExecutionQueued { key });
            std::iter::once(started)
                .chain(budget)
                .chain(priority)
                .chain(queued)
                .collect()
        }
        Command::Advance => advance(state, now),
        Command::StartTask {
            task,
            agent_id,
            lease_id,
            routing,
        } => attempt::start(state, &task, agent_id, lease_id, routing, now)?,
        Command::CompleteTask {
            task,
            output,
            usage,
        } => attempt::complete(state, task, output, usage)?,
        Command::FailTask {
            task,
            error,
            retryable,
            usage,
        } => attempt::fail(state, task, error, retryable, usage)?,
        Command::Heartbeat { task } => attempt::heartbeat(state, &task, now)?,
        Command::TimerFired(timer) => timer_fired(state, &timer, now),
        Command::NoteUnroutable { task, reason } => attempt::unroutable(state, task, reason),
        Command::Admit => {
            require(state, ExecutionStatus::Queued, "admit")?;
            vec![Event::ExecutionAdmitted {}]
        }
        Command::Pause => {
            require(state, ExecutionStatus::Running, "pause")?;
            vec![Event::ExecutionPaused {}]
        }
        Command::Resume => {
            require(state, ExecutionStatus::Paused, "resume")?;
            vec![Event::ExecutionResumed {}]
        }
        Command::Cancel { reason } => cancel(state, reason)?,
        Command::Signal { name, payload } => waits::signal(state, name, payload)?,
        Command::DecideApproval { task, decision } => waits::approval(state, &task, decision)?,
        Command::Redrive { id } => dead_letter::redrive(state, &id, now)?,
        Command::AcknowledgeDeadLetter { id } => dead_letter::acknowledge(state, &id)?,
        Command::Annotate {
            task,
            phase,
            annotations,
        } => attempt::annotate(state, task, phase, annotations)?,
    };
    Ok(Decision::new(&state.workflow, events, now))
}

/// Checks that the execution started, is not terminal, and is `status`.
fn require(
    state: &ExecutionState,
    status: ExecutionStatus,
    command: &'static str,
) -> Result<(), Rejection> {
    match state.status {
        ExecutionStatus::NotStarted => Err(Rejection::NotStarted),
        s if s.is_terminal() => Err(Rejection::Terminal(s)),
        s if s == status => Ok(()),
        s => Err(Rejection::InvalidState { status: s, command }),
    }
}

fn cancel(state: &ExecutionState, reason: Option<String>) -> Result<Vec<Event>, Rejection> {
    match state.status {
        ExecutionStatus::NotStarted => return Err(Rejection::NotStarted),
        s if s.is_terminal() => return Err(Rejection::Terminal(s)),
        _ => {}
    }
    let mut out = Vec::new();
    for &i in &state.live {
        if let Some(task_id) = state.id(i) {
            out.push(Event::TaskCancelled {
                task_id: task_id.clone(),
                attempt: state.tasks[i].attempt,
                compensation: false,
            });
        }
    }
    let saga_current = state.saga.as_ref().and_then(|s| s.current);
    if let Some((i, t)) = saga_current.and_then(|i| Some((i, state.compensations.get(&i)?))) {
        if let (true, Some(task_id)) = (t.status.is_live(), state.id(i)) {
            out.push(Event::TaskCancelled {
                task_id: task_id.clone(),
                attempt: t.attempt,
                compensation: true,
            });
        }
    }
    for (i, t) in state.tasks.iter().enumerate() {
        if let (TaskStatus::Pending, Some(task_id)) = (t.status, state.id(i)) {
            out.push(Event::TaskSkipped {
                task_id: task_id.clone(),
                reason: "the execution was cancelled".to_owned(),
            });
        }
    }
    out.push(Event::ExecutionCancelled { reason });
    Ok(out)
}

fn timer_fired(state: &ExecutionState, timer: &Timer, now: DateTime<Utc>) -> Vec<Event> {
    match timer {
        Timer::Retry { task, .. } => {
            let Some(index) = state.index_of(&task.task) else {
                return Vec::new();
            };
            let phase = if task.compensation {
                state.status == ExecutionStatus::Compensating
                    && state
                        .saga
                        .as_ref()
                        .is_some_and(|s| s.current == Some(index))
            } else {
                state.status == ExecutionStatus::Running
            };
            let due = state.track(index, task.compensation).is_some_and(|t| {
                t.status == TaskStatus::Retrying
                    && t.attempt == task.attempt
                    && t.retry_due_at.is_none_or(|due| due <= now)
            });
            if phase && due {
                advance(state, now)
            } else {
                Vec::new()
            }
        }
        Timer::AttemptDeadline { task, .. } => {
            let Some(index) = state.index_of(&task.task) else {
                return Vec::new();
            };
            let passed = state.track(index, task.compensation).is_some_and(|t| {
                t.status == TaskStatus::Running
                    && t.attempt == task.attempt
                    && t.deadline.is_some_and(|deadline| deadline <= now)
            });
            if passed && !state.is_terminal() {
                vec![Event::TaskTimedOut {
                    task_id: task.task.clone(),
                    attempt: task.attempt,
                    compensation: task.compensation,
                }]
            } else {
                Vec::new()
            }
        }
        Timer::ExecutionDeadline { deadline } => {
            // The deadline runs from the start, queued time included.
            let active = matches!(
                state.status,
                ExecutionStatus::Running | ExecutionStatus::Paused | ExecutionStatus::Queued
            );
            if active && state.deadline.is_some() && *deadline <= now {
                let mut out = Vec::new();
                fail(
                    state,
                    None,
                    "workflow timed out".to_owned(),
                    &Overlay::default(),
                    &mut out,
                );
                out
            } else {
                Vec::new()
            }
        }
    }
}
