//! Workflow reads, served from the projector's `rm_workflows` and `rm_executions`:
//! `GET /api/v1/workflows` (filters, newest first, cursor pages),
//! `GET /api/v1/workflows/{id}` (the definition with its version and creation time) and
//! `GET /api/v1/workflows/{id}/status` (API.md's status body). A workflow the projector
//! has not reached yet (just created) is folded from the log instead, so a client never
//! sees 404 for an id it was just given; the same fold is the snapshot of
//! `/ws/workflows/{id}`, which must reflect an exact position.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::{is_tenants_stream, StreamQuery};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{bad_parameter, path_uuid, PathId, QueryParams};
use conflux_projector::rows::{WorkflowFilter, COUNTED_STATUSES, WORKFLOW_STATUSES};
use conflux_schema::{Event, StreamId};
use serde_json::{json, Value};

use crate::reads::{read_error, Reads};

/// Page size of the list when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest `limit` of the list.
pub const MAX_LIMIT: u64 = 1000;

/// `GET /api/v1/workflows`, `/api/v1/workflows/{id}` and `/status`.
pub fn router(reads: Reads) -> Router {
    Router::new()
        .route("/api/v1/workflows", get(list))
        .route("/api/v1/workflows/{id}", get(definition))
        .route("/api/v1/workflows/{id}/status", get(get_status))
        .with_state(reads)
}

/// The list's query (`status`, `name`, `limit`, `cursor`) checked; an empty `status`,
/// `name` or `cursor` is no filter, unknown parameters are ignored.
fn list_filter(q: &QueryParams, tenant: &str) -> Result<WorkflowFilter, ApiError> {
    let status = match q.get("status")? {
        None | Some("") => None,
        Some(_) => q.choice("status", &WORKFLOW_STATUSES)?.map(str::to_owned),
    };
    let name = q.get("name")?.filter(|n| !n.is_empty()).map(str::to_owned);
    // At most `MAX_LIMIT`: an `i64`.
    let limit = q.bounded("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)? as i64;
    let before_position = match q.get("cursor")? {
        None | Some("") => None,
        Some(raw) => match raw.parse::<i64>() {
            Ok(n) if n > 0 && raw.bytes().all(|b| b.is_ascii_digit()) => Some(n),
            _ => {
                return Err(bad_parameter(
                    "cursor",
                    Some(raw),
                    "is not one this API returned (a `next_cursor`)",
                ))
            }
        },
    };
    Ok(WorkflowFilter {
        tenant: tenant.to_owned(),
        status,
        name,
        before_position,
        limit,
    })
}

async fn list(
    State(reads): State<Reads>,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    let mut filter = list_filter(&q, request.tenant())?;
    let page = filter.limit;
    filter.limit = page + 1;
    let mut rows = reads.models.workflows(&filter).await.map_err(read_error)?;
    let next_cursor = (rows.len() as i64 > page)
        .then(|| {
            rows.truncate(page as usize);
            rows.last().map(|r| r.created_position.to_string())
        })
        .flatten();
    let items: Vec<Value> = rows.iter().map(|r| r.summary_json()).collect();
    Ok(Json(json!({"items": items, "next_cursor": next_cursor})))
}

async fn definition(
    State(reads): State<Reads>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    if let Some(row) = reads
        .models
        .workflow(Some(request.tenant()), workflow_id)
        .await
        .map_err(read_error)?
    {
        return Ok(Json(row.definition_json()));
    }
    let not_found = || ApiError::not_found(format!("workflow {workflow_id} not found"));
    let created = reads
        .commands
        .catalog()
        .created_event_in(request.tenant(), workflow_id)
        .await?
        .ok_or_else(not_found)?;
    let recorded_at = created.recorded_at;
    let Event::WorkflowCreated {
        name,
        version,
        definition,
        ..
    } = created.event
    else {
        return Err(not_found());
    };
    let mut body = serde_json::to_value(&*definition).unwrap_or_else(|_| json!({}));
    body["workflow_id"] = json!(workflow_id);
    body["name"] = json!(name);
    body["version"] = json!(version);
    body["created_at"] = json!(recorded_at);
    Ok(Json(body))
}

async fn get_status(
    State(reads): State<Reads>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let tenant = request.tenant();
    if let Some(row) = reads
        .models
        .workflow(Some(tenant), workflow_id)
        .await
        .map_err(read_error)?
    {
        let latest = match row.latest_execution_id {
            Some(execution_id) => match reads
                .models
                .execution(tenant, execution_id)
                .await
                .map_err(read_error)?
            {
                Some(view) => view.to_json(),
                None => Value::Null,
            },
            None => Value::Null,
        };
        return Ok(Json(json!({
            "workflow_id": row.workflow_id,
            "name": row.name,
            "status": row.status,
            "latest_execution": latest,
            "executions": row.executions,
            "position": row.position,
        })));
    }
    let commands = &reads.commands;
    if !is_tenants_stream(
        &**commands.store(),
        tenant,
        &StreamId::workflow(workflow_id),
    )
    .await?
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
    let (_, body) = status(commands, workflow_id, &executions).await?;
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
    let mut counts: BTreeMap<String, u64> = COUNTED_STATUSES
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
        json!({"workflow_id": workflow_id, "name": name, "status": status, "latest_execution": latest, "executions": counts, "position": position}),
    ))
}
