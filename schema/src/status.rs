//! The statuses of an execution and of its tasks, spelled as API.md spells them.
//!
//! They exist as closed enums so that every `match` over them is checked by the
//! compiler, and so that the wire words live in exactly one place.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Where an execution stands. Serialised in snake_case, as in API.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// No `ExecutionStarted` has been applied yet. Never terminal; shown as `pending`.
    #[serde(rename = "pending")]
    NotStarted,
    /// Ready tasks are scheduled and dispatched as they become ready.
    Running,
    /// Started, and waiting for a slot of its concurrency key: nothing is dispatched.
    Queued,
    /// Nothing new is dispatched; attempts already running may finish and are recorded.
    Paused,
    /// Every task completed. Terminal.
    Completed,
    /// A task failed for good (or the workflow timed out), or a compensation failed.
    /// Terminal.
    Failed,
    /// Cancelled by a command. Terminal.
    Cancelled,
    /// A task failed for good under `on_failure: compensate`: compensations are running.
    Compensating,
    /// The saga finished and every compensation it needed succeeded. Terminal.
    Compensated,
}

impl ExecutionStatus {
    /// The wire word (`"running"`, `"paused"`, …; `"pending"` before the start).
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::NotStarted => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Queued => "queued",
            ExecutionStatus::Paused => "paused",
            ExecutionStatus::Completed => "completed",
            ExecutionStatus::Failed => "failed",
            ExecutionStatus::Cancelled => "cancelled",
            ExecutionStatus::Compensating => "compensating",
            ExecutionStatus::Compensated => "compensated",
        }
    }

    /// Whether no command can change the execution any more: `completed`, `failed`,
    /// `cancelled` or `compensated`.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            ExecutionStatus::Completed
                | ExecutionStatus::Failed
                | ExecutionStatus::Cancelled
                | ExecutionStatus::Compensated
        )
    }
}

impl fmt::Display for ExecutionStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one task (or one task's compensation) stands. Serialised in snake_case.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    /// Not scheduled yet (its dependencies have not all completed, or it is ready but
    /// waiting for the execution to run).
    #[default]
    Pending,
    /// The current attempt is scheduled, and possibly dispatched, but has not started.
    Scheduled,
    /// The current attempt started (an agent leased it, or a built-in runner began).
    Running,
    /// An attempt succeeded (for a compensation: the compensation succeeded).
    Completed,
    /// The latest attempt failed; whether it is retried is decided by `Advance`.
    Failed,
    /// The next attempt is planned for a due time.
    Retrying,
    /// The latest attempt passed its deadline; handled like a retryable failure.
    TimedOut,
    /// The task will never run: its `when` was false, its trigger rule refused its
    /// upstream outcomes (a skipped or failed upstream task, a branch a switch did not
    /// take), its map failed, or its execution ended before it became ready.
    Skipped,
    /// The current attempt was cancelled (execution cancelled or failed).
    Cancelled,
    /// The task completed and its compensation then succeeded.
    Compensated,
}

impl TaskStatus {
    /// The wire word (`"pending"`, `"scheduled"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::Pending => "pending",
            TaskStatus::Scheduled => "scheduled",
            TaskStatus::Running => "running",
            TaskStatus::Completed => "completed",
            TaskStatus::Failed => "failed",
            TaskStatus::Retrying => "retrying",
            TaskStatus::TimedOut => "timed_out",
            TaskStatus::Skipped => "skipped",
            TaskStatus::Cancelled => "cancelled",
            TaskStatus::Compensated => "compensated",
        }
    }

    /// Whether the task has an attempt in flight or planned (`scheduled`, `running`,
    /// `retrying`): exactly the attempts a cancellation must cancel.
    pub fn is_live(self) -> bool {
        matches!(
            self,
            TaskStatus::Scheduled | TaskStatus::Running | TaskStatus::Retrying
        )
    }
}

impl fmt::Display for TaskStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_words_match_serde() {
        for s in [
            ExecutionStatus::NotStarted,
            ExecutionStatus::Running,
            ExecutionStatus::Paused,
            ExecutionStatus::Completed,
            ExecutionStatus::Failed,
            ExecutionStatus::Cancelled,
            ExecutionStatus::Compensating,
            ExecutionStatus::Compensated,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(!ExecutionStatus::NotStarted.is_terminal());
        assert!(!ExecutionStatus::Compensating.is_terminal());
        assert!(ExecutionStatus::Compensated.is_terminal());
        assert_eq!(
            serde_json::to_value(TaskStatus::TimedOut).unwrap(),
            "timed_out"
        );
    }
}
