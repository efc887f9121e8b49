//! Workflow reads, served from the projector's `rm_workflows` and `rm_executions`:
//! `GET /api/v1/workflows` (filters, newest first, cursor pages),
//! `GET /api/v1/workflows/{id}` (the definition with its version and creation time) and
//! `GET /api/v1/workflows/{id}/status` (API.md's status body). A workflow the projector
//! has not reached yet (just created) is folded from the log instead, so a client never
//! sees 404 for an id it was just given; the same fold is the snapshot of
//! `/ws/workflows/{id}`, which must reflect an exact position.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::commands::ExecutionCommands;
use conflux_engine::store::{is_tenants_stream, StreamQuery};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{bad_parameter, path_uuid, PathId, QueryParams};
use conflux_projector::rows::{WorkflowFilter, WORKFLOW_STATUSES};
use conflux_schema::api::{ExecutionCounts, WorkflowList, WorkflowStatus};
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
) -> Result<Json<WorkflowList>, ApiError> {
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
    Ok(Json(WorkflowList {
        items: rows.iter().map(|r| r.summary()).collect(),
        next_cursor,
    }))
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
) -> Result<Json<WorkflowStatus>, ApiError> {
    let workflow_id = path_uuid(&id, "workflow")?;
    let tenant = request.tenant();
    if let Some(row) = reads
        .models
        .workflow(Some(tenant), workflow_id)
        .await
        .map_err(read_error)?
    {
        let latest = match row.latest_execution_id {
            Some(execution_id) => {
                match reads
                    .models
                    .execution(tenant, execution_id)
                    .await
                    .map_err(read_error)?
                {
                    Some(view) => Some(reads.shown(&request, view.view()).await?),
                    None => None,
                }
            }
            None => None,
        };
        return Ok(Json(WorkflowStatus {
            workflow_id: row.workflow_id,
            name: row.name.clone(),
            status: row.status.clone(),
            latest_execution: latest,
            executions: row.counts(),
            position: u64::try_from(row.position).unwrap_or(0),
        }));
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
    let mut body = status(commands, workflow_id, &executions).await?;
    if let Some(latest) = body.latest_execution.take() {
        body.latest_execution = Some(reads.shown(&request, latest).await?);
    }
    Ok(Json(body))
}

/// The workflow's status (API.md `/status` shape), folded from its executions' logs;
/// its `position` is the last event it reflects.
pub async fn status(
    commands: &ExecutionCommands,
    workflow_id: uuid::Uuid,
    executions: &[StreamId],
) -> Result<WorkflowStatus, conflux_engine::commands::CommandError> {
    let created = commands.catalog().created_event(workflow_id).await?;
    let mut position = created.as_ref().map_or(0, |e| e.position);
    let mut counts = ExecutionCounts::default();
    let mut latest = None;
    for stream in executions {
        if let Some((execution, log)) = commands.load(stream.uuid()).await? {
            let last = log.last().map_or(0, |e| e.position);
            position = position.max(last);
            let mut view = execution.view();
            counts.add(view.status);
            view.position = Some(last);
            latest = Some(view);
        }
    }
    let name = match created.map(|e| e.event) {
        Some(conflux_schema::Event::WorkflowCreated { name, .. }) => name,
        _ => String::new(),
    };
    let status = latest
        .as_ref()
        .map_or_else(|| "idle".to_owned(), |l| l.status.as_str().to_owned());
    Ok(WorkflowStatus {
        workflow_id,
        name,
        status,
        latest_execution: latest,
        executions: counts,
        position,
    })
}
