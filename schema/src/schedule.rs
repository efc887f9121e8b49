//! Schedules: a workflow started on a cron, in a time zone. The words the API, the
//! events and the engine share; the cron arithmetic is the engine's.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What a tick does while the schedule's previous execution is still running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start nothing; the tick is recorded as skipped.
    #[default]
    Skip,
    /// Start another execution beside it.
    Allow,
    /// Cancel the running one, then start.
    CancelPrevious,
}

impl Overlap {
    /// Its name in bodies and events.
    pub fn as_str(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Allow => "allow",
            Overlap::CancelPrevious => "cancel_previous",
        }
    }
}

/// Which ticks run when ticks were missed (no engine ran, or the schedule fell behind
/// by more than the grace period).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// None of the missed ticks.
    None,
    /// Only the newest missed tick.
    #[default]
    Latest,
    /// Every missed tick, oldest first, up to a cap.
    All,
}

impl CatchUp {
    /// Its name in bodies and events.
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

/// Whether a schedule's ticks start executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleStatus {
    /// Ticks start executions.
    Active,
    /// Ticks pass without starting anything (and are not caught up on resume).
    Paused,
}

/// What became of one tick (`ScheduleTicked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TickOutcome {
    /// The tick's execution exists (started by this tick, whichever server started it).
    Started,
    /// The previous execution was still running and the overlap policy is `skip`.
    Skipped,
    /// The tenant's quota refused the start.
    QuotaExceeded,
    /// The start failed for good (e.g. the workflow is gone); `error` says why.
    Failed,
}
