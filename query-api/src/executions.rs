//! Execution reads folded straight from the event log: `GET /api/v1/executions/{id}`
//! (its audit log, `/events`, is served by [`crate::audit`]). Folding uses the engine's own
//! `evolve`, so what is served is exactly what the engine acts on.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use conflux_command_api::error::ApiError;
use conflux_command_api::extract::path_uuid;
use conflux_engine::commands::ExecutionCommands;
use serde_json::{json, Value};

/// The execution read routes.
pub fn router(commands: ExecutionCommands) -> Router {
    Router::new()
        .route("/api/v1/executions/{id}", get(get_execution))
        .with_state(commands)
}

async fn get_execution(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let (state, log) = commands
        .load(execution_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("execution {execution_id} not found")))?;
    let mut body = state.to_json();
    body["position"] = json!(log.last().map_or(0, |e| e.position));
    body["version"] = json!(state.version());
    Ok(Json(body))
}
