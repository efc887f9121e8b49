//! Execution reads folded straight from the event log: `GET /api/v1/executions/{id}`
//! and its audit log `GET /api/v1/executions/{id}/events`. Folding uses the engine's own
//! `evolve`, so what is served is exactly what the engine acts on.

use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use conflux_command_api::error::ApiError;
use conflux_command_api::extract::path_uuid;
use conflux_engine::commands::ExecutionCommands;
use serde::Deserialize;
use serde_json::{json, Value};

/// The execution read routes.
pub fn router(commands: ExecutionCommands) -> Router {
    Router::new()
        .route("/api/v1/executions/{id}", get(get_execution))
        .route("/api/v1/executions/{id}/events", get(events))
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

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    after_version: Option<u64>,
    #[serde(default)]
    limit: Option<usize>,
}

async fn events(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
) -> Result<Json<Value>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let limit = q.limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid_request(
            "limit must be between 1 and 10000",
        ));
    }
    let after = q.after_version.unwrap_or(0);
    let stream = conflux_schema::StreamId::execution(execution_id);
    let events = commands.store().read_stream(&stream, after, limit).await?;
    if events.is_empty() && after == 0 {
        return Err(ApiError::not_found(format!(
            "execution {execution_id} not found"
        )));
    }
    let next = events
        .last()
        .map(|e| e.version)
        .filter(|_| events.len() == limit);
    Ok(Json(json!({"events": events, "next_after_version": next})))
}
