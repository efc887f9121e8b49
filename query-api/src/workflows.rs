//! Workflow reads folded from the log (until the projector's read models exist):
//! `GET /api/v1/workflows/{id}` (the definition with its version and creation time) and
//! `GET /api/v1/workflows/{id}/status` (API.md's status body). The same status is the
//! snapshot of `/ws/workflows/{id}`.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use conflux_command_api::error::ApiError;
use conflux_command_api::extract::path_uuid;
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::StreamQuery;
use conflux_schema::{Event, StreamId};
use serde_json::{json, Value};

/// `GET /api/v1/workflows/{id}` and `/status`.
pub fn router(commands: ExecutionCommands) -> Router {
    Router::new()
        .route("/api/v1/workflows/{id}", get(definition))
        .route("/api/v1/workflows/{id}/status", get(get_status))
        .with_state(commands)
}

async fn definition(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let created = commands
        .catalog()
        .created_event(workflow_id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("workflow {workflow_id} not found")))?;
    let recorded_at = created.recorded_at;
    let Event::WorkflowCreated {
        name,
        version,
        definition,
        ..
    } = created.event
    else {
        return Err(ApiError::not_found(format!(
            "workflow {workflow_id} not found"
        )));
    };
    let mut body = serde_json::to_value(&*definition).unwrap_or_else(|_| json!({}));
    body["workflow_id"] = json!(workflow_id);
    body["name"] = json!(name);
    body["version"] = json!(version);
    body["created_at"] = json!(recorded_at);
    Ok(Json(body))
}

async fn get_status(
    State(commands): State<ExecutionCommands>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    if commands
        .store()
        .stream_version(&StreamId::workflow(workflow_id))
        .await?
        == 0
    {
        return Err(ApiError::not_found(format!(
            "workflow {workflow_id} not found"
        )));
    }
    let query = StreamQuery::ExecutionsOfWorkflow {
        workflow_id,
        open_only: false,
    };
    let executions = commands.store().find_streams(&query, 100_000).await?;
    let (_, body) = status(&commands, workflow_id, &executions).await?;
    Ok(Json(body))
}

/// The workflow's status (API.md `/status` shape), folded from its executions' logs, and
/// the position it reflects.
pub async fn status(
    commands: &ExecutionCommands,
    workflow_id: uuid::Uuid,
    executions: &[StreamId],
) -> Result<(u64, serde_json::Value), conflux_engine::commands::CommandError> {
    let created = commands.catalog().created_event(workflow_id).await?;
    let mut position = created.as_ref().map_or(0, |e| e.position);
    let mut counts: std::collections::BTreeMap<String, u64> =
        ["running", "completed", "failed", "cancelled", "paused"]
            .into_iter()
            .map(|s| (s.to_owned(), 0))
            .collect();
    let mut latest = serde_json::Value::Null;
    for stream in executions {
        if let Some((execution, log)) = commands.load(stream.uuid()).await? {
            let last = log.last().map_or(0, |e| e.position);
            position = position.max(last);
            let mut body = execution.to_json();
            if let Some(status) = body["status"].as_str() {
                *counts.entry(status.to_owned()).or_default() += 1;
            }
            body["position"] = json!(last);
            latest = body;
        }
    }
    let name = match created.map(|e| e.event) {
        Some(conflux_schema::Event::WorkflowCreated { name, .. }) => name,
        _ => String::new(),
    };
    let status = latest.get("status").cloned().unwrap_or(json!("idle"));
    Ok((
        position,
        json!({"workflow_id": workflow_id, "name": name, "status": status, "latest_execution": latest, "executions": counts}),
    ))
}
