//! Child executions: what a `workflow` task (`Runs::Child`) asks of the shell, and what
//! a child's end tells its parent.
//!
//! An attempt of a `workflow` task starts when it is dispatched (as a waiting attempt
//! does) and calls for [`Effect::StartChild`](super::Effect::StartChild): the shell
//! starts execution [`child_execution_id`] — the same id for the same attempt, so a
//! repeated effect (a retry of the shell, recovery, a second engine) finds the child
//! already started instead of starting another. The child's `ExecutionStarted` names
//! the attempt ([`ParentLink`]), so once the child ends, [`parent_command`] gives the
//! command that completes or fails that attempt; a command for an attempt that is no
//! longer current (the parent cancelled it, it timed out) is rejected as stale, so the
//! parent never records a child's result twice or late.
//!
//! The other way round, an attempt of a `workflow` task that ends without its child —
//! cancelled with its execution, timed out — calls for
//! [`Effect::CancelChild`](super::Effect::CancelChild), and pausing or resuming the parent
//! pauses or resumes every child in [`ExecutionState::running_children`].

use conflux_schema::definition::Runs;
use conflux_schema::ParentLink;
use uuid::Uuid;

use super::command::{Command, TaskRef};
use super::state::ExecutionState;
use super::status::{ExecutionStatus, TaskStatus};

/// The namespace of child execution ids (uuid v5 of `parent NUL task NUL attempt`).
const CHILD_NAMESPACE: Uuid = Uuid::from_u128(0x3c1e_9b0a_5d4f_4e27_8b61_f2a0_c4d8_1e93);

/// The id of the child execution attempt `task` of execution `parent` runs: a function
/// of the attempt only, so starting it twice is a conflict, never a second child.
pub fn child_execution_id(parent: Uuid, task: &TaskRef) -> Uuid {
    let seed = format!("{parent}\u{0}{}\u{0}{}", task.task, task.attempt);
    Uuid::new_v5(&CHILD_NAMESPACE, seed.as_bytes())
}

/// What the parent of an ended child execution records for the attempt that started
/// it: `CompleteTask` with the child's output when it completed; otherwise `FailTask`
/// naming the child and why it ended — retryable when the child failed (the task's
/// retry policy decides whether a new attempt, with a new child, runs), not when it was
/// cancelled. None while the child runs, and for an execution that has no parent.
pub fn parent_command(child: &ExecutionState) -> Option<(Uuid, Command)> {
    let parent = child.parent()?;
    let id = child
        .execution_id
        .map(|id| id.to_string())
        .unwrap_or_default();
    let task = TaskRef::new(parent.task_id.clone(), parent.attempt);
    let command = match child.status() {
        ExecutionStatus::Completed => Command::CompleteTask {
            task,
            output: child.output().cloned().unwrap_or_default(),
            usage: None,
        },
        status @ (ExecutionStatus::Failed
        | ExecutionStatus::Compensated
        | ExecutionStatus::Cancelled) => Command::FailTask {
            task,
            error: format!(
                "child execution {id} {status}: {}",
                child.error().unwrap_or("no reason given")
            ),
            retryable: status != ExecutionStatus::Cancelled,
            usage: None,
        },
        _ => return None,
    };
    Some((parent.execution_id, command))
}

/// The link a child started by attempt `task` of this execution records: the attempt,
/// and a depth one more than this execution's own.
pub fn link_for(parent: &ExecutionState, task: &TaskRef) -> Option<ParentLink> {
    Some(ParentLink {
        execution_id: parent.execution_id?,
        task_id: task.task.clone(),
        attempt: task.attempt,
        depth: parent.depth() + 1,
    })
}

impl ExecutionState {
    /// How deep this execution is: 0 for one started by a caller or a schedule, its
    /// parent's depth plus one for a child.
    pub fn depth(&self) -> u32 {
        self.parent.as_ref().map_or(0, |p| p.depth)
    }

    /// The running attempts of `workflow` tasks: each has a child execution that may
    /// still run. Pausing, resuming or cancelling this execution reaches them.
    pub fn running_children(&self) -> Vec<TaskRef> {
        self.live
            .iter()
            .filter_map(|&i| {
                let t = self.tasks.get(i)?;
                let body = self.spec(i, false)?;
                let running = t.status == TaskStatus::Running && body.kind.runs() == Runs::Child;
                let id = self.id(i)?.clone();
                running.then(|| TaskRef::new(id, t.attempt))
            })
            .collect()
    }

    /// The child execution of the current attempt of the task at `slot`, once that
    /// attempt was dispatched (and for as long as the entry shows it).
    pub(crate) fn child_of(&self, slot: usize) -> Option<Uuid> {
        let t = self.tasks.get(slot)?;
        let body = self.spec(slot, false)?;
        if body.kind.runs() != Runs::Child || t.attempt == 0 || t.input.is_none() {
            return None;
        }
        let task = TaskRef::new(self.id(slot)?.clone(), t.attempt);
        Some(child_execution_id(self.execution_id?, &task))
    }
}
