//! Schedule bodies: create, a schedule as answers show it, and the list.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::schedule::{CatchUp, Overlap, ScheduleStatus};

/// Body of `POST /api/v1/schedules`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateSchedule {
    /// The workflow (id) each tick starts, of the caller's tenant.
    pub workflow: Uuid,
    /// A cron expression: 5 fields (`min hour day month weekday`), or 6 with seconds
    /// first (`*/10 * * * * *`).
    #[schema(example = "0 9 * * MON-FRI")]
    pub cron: String,
    /// The IANA time zone the expression is read in; default `UTC`.
    #[serde(default)]
    #[schema(example = "Europe/Paris")]
    pub timezone: Option<String>,
    /// The input of every execution it starts; default `{}`.
    #[serde(default)]
    pub input: Option<Value>,
    /// While the previous execution runs: `skip` (default), `allow`, `cancel_previous`.
    #[serde(default)]
    pub overlap: Option<Overlap>,
    /// Missed ticks: `none`, `latest` (default), `all`.
    #[serde(default)]
    pub catch_up: Option<CatchUp>,
}

/// A schedule (`201` of `POST /api/v1/schedules`, `GET /api/v1/schedules/{id}`, and the
/// pause and resume answers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Schedule {
    /// Its id.
    pub id: Uuid,
    /// The workflow it starts.
    pub workflow: Uuid,
    /// Its cron expression.
    pub cron: String,
    /// The time zone the expression is read in.
    pub timezone: String,
    /// The input of every execution it starts.
    pub input: Value,
    /// What a tick does while the previous execution runs.
    pub overlap: Overlap,
    /// Which missed ticks run.
    pub catch_up: CatchUp,
    /// `active` or `paused`.
    pub status: ScheduleStatus,
    /// Its next tick (`null` while paused).
    #[schema(required = true)]
    pub next_tick_at: Option<DateTime<Utc>>,
    /// Its latest handled tick (`null` before the first).
    #[schema(required = true)]
    pub last_tick_at: Option<DateTime<Utc>>,
    /// The execution its latest started tick started.
    #[schema(required = true)]
    pub last_execution_id: Option<Uuid>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A page of schedules (`GET /api/v1/schedules`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ScheduleList {
    /// Newest first.
    pub items: Vec<Schedule>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
}
