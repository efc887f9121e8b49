//! `GET /api/v1/schedules` (the tenant's schedules, newest first, cursor pages) and
//! `GET /api/v1/schedules/{id}`, folded from the schedule streams by the engine's
//! schedule service (caught up to the log before each answer).

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::schedules::Schedules;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{bad_parameter, path_uuid, PathId, QueryParams};
use conflux_schema::api::{Schedule, ScheduleList};

/// Page size of the list when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest `limit` of the list.
pub const MAX_LIMIT: u64 = 1000;

/// `GET /api/v1/schedules` and `/api/v1/schedules/{id}`.
pub fn router(schedules: Schedules) -> Router {
    Router::new()
        .route("/api/v1/schedules", get(list))
        .route("/api/v1/schedules/{id}", get(one))
        .with_state(schedules)
}

async fn list(
    State(schedules): State<Schedules>,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<ScheduleList>, ApiError> {
    let limit = q.bounded("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)? as usize;
    let before = match q.get("cursor")? {
        None | Some("") => None,
        Some(raw) => Some(uuid::Uuid::parse_str(raw).map_err(|_| {
            bad_parameter(
                "cursor",
                Some(raw),
                "is not one this API returned (a `next_cursor`)",
            )
        })?),
    };
    let (items, next) = schedules.list(request.tenant(), before, limit).await?;
    Ok(Json(ScheduleList {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}

async fn one(
    State(schedules): State<Schedules>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Schedule>, ApiError> {
    let id = path_uuid(&id, "schedule")?;
    Ok(Json(schedules.get(request.tenant(), id).await?))
}
