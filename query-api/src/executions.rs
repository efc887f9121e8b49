//! `GET /api/v1/executions/{id}`, served from the projector's read model
//! (`rm_executions` + `rm_tasks`). An execution the projector has not reached yet (just
//! started) is folded from its log with the engine's own `evolve`, so a client never
//! sees 404 for an execution it was just given. The body's `position` says which event
//! it reflects. (The execution's audit log, `/events`, is served by [`crate::audit`].)

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::commands::ExecutionCommands;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, PathId};
use conflux_schema::api::Execution;
use uuid::Uuid;

use crate::reads::{read_error, Reads};

/// The execution read route.
pub fn router(reads: Reads) -> Router {
    Router::new()
        .route("/api/v1/executions/{id}", get(get_execution))
        .with_state(reads)
}

async fn get_execution(
    State(reads): State<Reads>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Execution>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let tenant = request.tenant();
    if let Some(view) = reads
        .models
        .execution(tenant, execution_id)
        .await
        .map_err(read_error)?
    {
        return Ok(Json(reads.shown(&request, view.view()).await?));
    }
    let execution = folded(&reads.commands, tenant, execution_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {execution_id} not found")))?;
    Ok(Json(reads.shown(&request, execution).await?))
}

/// The execution body folded from the log (None: no such execution).
pub async fn folded(
    commands: &ExecutionCommands,
    tenant: &str,
    execution_id: Uuid,
) -> Result<Option<Execution>, ApiError> {
    let Some((state, log)) = commands.load_in(tenant, execution_id).await? else {
        return Ok(None);
    };
    let mut view = state.view();
    view.position = Some(log.last().map_or(0, |e| e.position));
    Ok(Some(view))
}
