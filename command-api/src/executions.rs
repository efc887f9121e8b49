//! `POST /api/v1/executions/{id}/pause | resume | cancel`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::execution::Command;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId};
use conflux_schema::api::{CancelRequest, ExecutionControlled};

use crate::CommandContext;

async fn record(
    ctx: CommandContext,
    id: String,
    meta: conflux_schema::EventMetadata,
    command: Command,
) -> Result<(StatusCode, Json<ExecutionControlled>), ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let recorded = ctx
        .commands
        .record(execution_id, meta, move |_, _| Ok(command.clone()))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(ExecutionControlled {
            execution_id,
            status: recorded.state.status(),
        }),
    ))
}

/// `POST /api/v1/executions/{id}/pause`.
pub async fn pause(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<(StatusCode, Json<ExecutionControlled>), ApiError> {
    record(ctx, id, request.event_metadata(), Command::Pause).await
}

/// `POST /api/v1/executions/{id}/resume`.
pub async fn resume(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<(StatusCode, Json<ExecutionControlled>), ApiError> {
    record(ctx, id, request.event_metadata(), Command::Resume).await
}

/// `POST /api/v1/executions/{id}/cancel`.
pub async fn cancel(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<CancelRequest>,
) -> Result<(StatusCode, Json<ExecutionControlled>), ApiError> {
    record(
        ctx,
        id,
        request.event_metadata(),
        Command::Cancel {
            reason: body.reason,
        },
    )
    .await
}
