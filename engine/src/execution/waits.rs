//! The waiting kinds (`Runs::Waits`): `signal` and `approval` tasks.
//!
//! Nothing runs a waiting attempt. When it is dispatched, the same decision records
//! `TaskStarted` (with a deadline only if the task names `timeout_seconds`), and the
//! attempt then waits for commands:
//!
//! - [`Command::Signal`](super::Command::Signal) records `SignalReceived` whatever waits;
//!   the signal is kept in the state until a `signal` task of its name consumes it. If a
//!   task of that name is waiting, the same decision completes it (`TaskCompleted`,
//!   output: the payload); a task dispatched later consumes the oldest kept signal in
//!   its dispatch decision. Every `TaskCompleted` of a `signal` task consumes exactly one
//!   kept signal of its name (evolve), so replay keeps the same queue.
//! - [`Command::DecideApproval`](super::Command::DecideApproval) records
//!   `ApprovalDecided` for the current attempt; the `count`-th distinct approval
//!   completes the task (`{"approved_by", "comments"}`), one reject fails it for good
//!   (`retryable: false`).
//!
//! Because a dispatch may complete a signal task at once, `Advance` treats that like a
//! switch's choice: it steps again on the provisional state in the same decision, so
//! `Advance` stays idempotent.

use std::collections::{BTreeMap, VecDeque};

use chrono::{DateTime, Utc};
use conflux_schema::access::Role;
use conflux_schema::api;
use conflux_schema::definition::{Runs, TaskBody, TaskKind};
use conflux_schema::Event;
use serde_json::{json, Value};

use super::command::Rejection;
use super::dispatch::deadline_from;
use super::state::ExecutionState;
use super::status::{ExecutionStatus, TaskStatus};

/// What the waiting kinds keep in an execution's state.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Waits {
    /// Signals received and not consumed yet, oldest first, by name.
    signals: BTreeMap<String, VecDeque<Value>>,
    /// Decisions on approval attempts, by (task index, attempt), in order.
    approvals: BTreeMap<(usize, u32), Vec<Approval>>,
}

/// One recorded approval decision.
#[derive(Clone, Debug, PartialEq)]
struct Approval {
    by: String,
    approve: bool,
    comment: Option<String>,
}

impl Waits {
    /// The approvals (not rejects) of attempt `attempt` of task `index`, in order.
    fn approvals_of(&self, index: usize, attempt: u32) -> impl Iterator<Item = &Approval> {
        self.approvals
            .get(&(index, attempt))
            .into_iter()
            .flatten()
            .filter(|a| a.approve)
    }
}

/// The name of the signal task `index` waits for, if it is a `signal` task.
fn signal_name(state: &ExecutionState, index: usize) -> Option<&str> {
    let body = state.spec(index, false)?;
    if body.kind != TaskKind::Signal {
        return None;
    }
    Some(body.signal_name(state.id(index)?.as_str()))
}

/// The events after `TaskDispatched` of a waiting attempt: `TaskStarted` and, for a
/// `signal` task with a kept signal not consumed earlier in `out`, `TaskCompleted`.
pub(crate) fn begin(
    state: &ExecutionState,
    index: usize,
    attempt: u32,
    spec: &TaskBody<'_>,
    now: DateTime<Utc>,
    out: &mut Vec<Event>,
) {
    let Some(task_id) = state.id(index).cloned() else {
        return;
    };
    out.push(Event::TaskStarted {
        task_id: task_id.clone(),
        attempt,
        agent_id: None,
        lease_id: None,
        deadline: deadline_from(spec, now),
        compensation: false,
        routing: None,
    });
    let Some(name) = signal_name(state, index) else {
        return;
    };
    let taken = out
        .iter()
        .filter(|e| match e {
            Event::TaskCompleted { task_id, .. } => {
                state
                    .workflow
                    .index_of(task_id)
                    .and_then(|i| signal_name(state, i))
                    == Some(name)
            }
            _ => false,
        })
        .count();
    if let Some(payload) = state.waits.signals.get(name).and_then(|q| q.get(taken)) {
        out.push(Event::TaskCompleted {
            task_id,
            attempt,
            output: payload.clone(),
        });
    }
}

/// `Signal`: `SignalReceived`, and `TaskCompleted` for the first task waiting for it.
pub(crate) fn signal(
    state: &ExecutionState,
    name: String,
    payload: Value,
) -> Result<Vec<Event>, Rejection> {
    match state.status {
        ExecutionStatus::NotStarted => return Err(Rejection::NotStarted),
        s if s.is_terminal() => return Err(Rejection::Terminal(s)),
        // A queued execution keeps signals for the tasks that will wait for them.
        ExecutionStatus::Running | ExecutionStatus::Paused | ExecutionStatus::Queued => {}
        s => {
            return Err(Rejection::InvalidState {
                status: s,
                command: "signal",
            })
        }
    }
    let known = (0..state.tasks.len()).any(|i| signal_name(state, i) == Some(name.as_str()));
    if !known {
        return Err(Rejection::UnknownSignal(name));
    }
    // A waiting task has consumed every kept signal of its name at dispatch, so one
    // waits only while none is kept.
    let kept = state
        .waits
        .signals
        .get(&name)
        .is_some_and(|q| !q.is_empty());
    let waiting = state.live.iter().copied().find(|&i| {
        state.tasks[i].status == TaskStatus::Running && signal_name(state, i) == Some(&name)
    });
    let mut out = vec![Event::SignalReceived {
        name,
        payload: payload.clone(),
    }];
    if let (false, Some(i), Some(task_id)) = (kept, waiting, waiting.and_then(|i| state.id(i))) {
        out.push(Event::TaskCompleted {
            task_id: task_id.clone(),
            attempt: state.tasks[i].attempt,
            output: payload,
        });
    }
    Ok(out)
}

/// Who decides on an approval, and how.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalBy {
    /// The caller, as recorded in the event (`key:<key_id>`, `jwt:<subject>`, `admin`).
    pub by: String,
    /// The role the caller acts with (the system administrator acts as `admin`).
    pub role: Role,
    /// Approve (true) or reject (false).
    pub approve: bool,
    /// Why, if given.
    pub comment: Option<String>,
}

/// `DecideApproval` on the current attempt of approval task `task`. Checked in this
/// order: the execution (not started: 404, finished: 409), the task (unknown: 404, not
/// an approval: 409), the caller's role (403), the attempt (not waiting: 409), the
/// caller (decided already: 409).
pub(crate) fn approval(
    state: &ExecutionState,
    task: &str,
    decision: ApprovalBy,
) -> Result<Vec<Event>, Rejection> {
    match state.status {
        ExecutionStatus::NotStarted => return Err(Rejection::NotStarted),
        s if s.is_terminal() => return Err(Rejection::Terminal(s)),
        _ => {}
    }
    let index = state
        .workflow
        .index_of_str(task)
        .ok_or_else(|| Rejection::UnknownTask(task.to_owned()))?;
    let task_id = state
        .id(index)
        .cloned()
        .ok_or_else(|| Rejection::UnknownTask(task.to_owned()))?;
    let not_waiting = |reason: String| Rejection::NotWaiting {
        task: task_id.clone(),
        reason,
    };
    let body = state
        .spec(index, false)
        .ok_or_else(|| Rejection::UnknownTask(task.to_owned()))?;
    let approvers = match (body.kind, body.approvers) {
        (TaskKind::Approval, Some(a)) => a,
        (kind, _) => return Err(not_waiting(format!("it is a {kind} task, not an approval"))),
    };
    if !approvers.admits(decision.role) {
        return Err(Rejection::NotApprover {
            task: task_id,
            role: decision.role.as_str().to_owned(),
            roles: approvers.roles.join(", "),
        });
    }
    let t = &state.tasks[index];
    if t.status != TaskStatus::Running {
        let why = match t.status {
            TaskStatus::Pending => "it has not been reached yet".to_owned(),
            s => format!("it is {s}"),
        };
        return Err(not_waiting(why));
    }
    let decided = state.waits.approvals.get(&(index, t.attempt));
    if decided.is_some_and(|d| d.iter().any(|a| a.by == decision.by)) {
        return Err(Rejection::AlreadyDecided {
            task: task_id,
            by: decision.by,
        });
    }
    let mut out = vec![Event::ApprovalDecided {
        task_id: task_id.clone(),
        attempt: t.attempt,
        approve: decision.approve,
        by: decision.by.clone(),
        comment: decision.comment.clone(),
    }];
    if !decision.approve {
        let error = match &decision.comment {
            Some(c) => format!("rejected by {}: {c}", decision.by),
            None => format!("rejected by {}", decision.by),
        };
        out.push(Event::TaskFailed {
            task_id,
            attempt: t.attempt,
            error,
            retryable: false,
            compensation: false,
        });
        return Ok(out);
    }
    let mut approved: Vec<(&str, Option<&str>)> = state
        .waits
        .approvals_of(index, t.attempt)
        .map(|a| (a.by.as_str(), a.comment.as_deref()))
        .collect();
    approved.push((&decision.by, decision.comment.as_deref()));
    if approved.len() >= approvers.count as usize {
        let (by, comments): (Vec<_>, Vec<_>) = approved.into_iter().unzip();
        out.push(Event::TaskCompleted {
            task_id,
            attempt: t.attempt,
            output: json!({"approved_by": by, "comments": comments}),
        });
    }
    Ok(out)
}

impl ExecutionState {
    /// Applies `SignalReceived` and `ApprovalDecided` (evolve's arm for them).
    pub(crate) fn apply_wait(&mut self, event: &Event) {
        match event {
            Event::SignalReceived { name, payload } => {
                if self.status == ExecutionStatus::NotStarted || self.is_terminal() {
                    return;
                }
                self.waits
                    .signals
                    .entry(name.clone())
                    .or_default()
                    .push_back(payload.clone());
            }
            Event::ApprovalDecided {
                task_id,
                attempt,
                approve,
                by,
                comment,
            } => {
                let Some(i) = self.workflow.index_of(task_id) else {
                    return;
                };
                let t = &self.tasks[i];
                if t.attempt != *attempt || t.status != TaskStatus::Running {
                    return;
                }
                self.waits
                    .approvals
                    .entry((i, *attempt))
                    .or_default()
                    .push(Approval {
                        by: by.clone(),
                        approve: *approve,
                        comment: comment.clone(),
                    });
            }
            _ => {}
        }
    }

    /// Task `index` completed: a `signal` task consumed the oldest kept signal of its
    /// name (evolve calls this from `TaskCompleted`).
    pub(crate) fn wait_completed(&mut self, index: usize) {
        let Some(name) = signal_name(self, index).map(str::to_owned) else {
            return;
        };
        if let Some(queue) = self.waits.signals.get_mut(&name) {
            queue.pop_front();
            if queue.is_empty() {
                self.waits.signals.remove(&name);
            }
        }
    }

    /// What task `index` waits for, while an attempt of a waiting kind runs.
    pub(crate) fn waiting_for(&self, index: usize) -> Option<api::WaitingFor> {
        let t = self.tasks.get(index)?;
        let body = self.spec(index, false)?;
        if t.status != TaskStatus::Running || body.kind.runs() != Runs::Waits {
            return None;
        }
        let approvals = body.approvers.map(|a| {
            let approved_by: Vec<String> = self
                .waits
                .approvals_of(index, t.attempt)
                .map(|a| a.by.clone())
                .collect();
            api::ApprovalProgress {
                needed: a.count,
                given: u32::try_from(approved_by.len()).unwrap_or(u32::MAX),
                approved_by,
                roles: a.roles.clone(),
            }
        });
        Some(api::WaitingFor {
            signal: signal_name(self, index).map(str::to_owned),
            approvals: approvals.filter(|_| body.kind == TaskKind::Approval),
        })
    }

    /// How many signals of `name` are kept for tasks not reached yet.
    pub fn kept_signals(&self, name: &str) -> usize {
        self.waits.signals.get(name).map_or(0, VecDeque::len)
    }

    /// The distinct approvals of task `id`'s current attempt so far, and how many it
    /// needs (None: not an approval task).
    pub fn approvals(&self, id: &str) -> Option<(u32, u32)> {
        let index = self.workflow.index_of_str(id)?;
        let body = self.spec(index, false)?;
        let needed = body
            .approvers
            .filter(|_| body.kind == TaskKind::Approval)?
            .count;
        let attempt = self.tasks.get(index)?.attempt;
        let given = self.waits.approvals_of(index, attempt).count();
        Some((u32::try_from(given).unwrap_or(u32::MAX), needed))
    }
}
