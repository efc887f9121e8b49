//! `POST /api/v1/schedules` (create), `POST /api/v1/schedules/{id}/pause | resume`
//! and `DELETE /api/v1/schedules/{id}`. The rules are the engine's schedule service;
//! these routes translate HTTP.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::quota::Admission;
use conflux_engine::schedules::NewSchedule;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId};
use conflux_schema::api::{CreateSchedule, Schedule};

use crate::CommandContext;

/// `POST /api/v1/schedules` → 201 with the schedule. An invalid cron expression or time
/// zone is `422`, a workflow the tenant lacks `404`, one schedule over the tenant's
/// `schedules` quota `429`; nothing is recorded then.
pub async fn create(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<CreateSchedule>,
) -> Result<(StatusCode, Json<Schedule>), ApiError> {
    let tenant = request.tenant();
    if let Some(input) = &body.input {
        ctx.quotas.check_payload_of(tenant, input)?;
    }
    let _admitted = ctx.quotas.admit(tenant, Admission::Schedule).await?;
    let schedule = ctx
        .schedules
        .create(
            NewSchedule {
                workflow_id: body.workflow,
                cron: body.cron,
                timezone: body.timezone,
                input: body.input,
                overlap: body.overlap,
                catch_up: body.catch_up,
            },
            request.event_metadata(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(schedule)))
}

/// `POST /api/v1/schedules/{id}/pause` → 200 with the schedule; `409` if paused.
pub async fn pause(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Schedule>, ApiError> {
    let id = path_uuid(&id, "schedule")?;
    Ok(Json(
        ctx.schedules.pause(id, request.event_metadata()).await?,
    ))
}

/// `POST /api/v1/schedules/{id}/resume` → 200 with the schedule; `409` if active.
pub async fn resume(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Schedule>, ApiError> {
    let id = path_uuid(&id, "schedule")?;
    Ok(Json(
        ctx.schedules.resume(id, request.event_metadata()).await?,
    ))
}

/// `DELETE /api/v1/schedules/{id}` → 204: it never ticks again.
pub async fn delete(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<StatusCode, ApiError> {
    let id = path_uuid(&id, "schedule")?;
    ctx.schedules.delete(id, request.event_metadata()).await?;
    Ok(StatusCode::NO_CONTENT)
}
