//! The agent routes over HTTP: registration, long-poll leasing, and results by lease.
//!
//! The rules (tenancy, what an agent key may serve, stale leases, not serving another
//! store's queues) are the engine's agent service, [`conflux_engine::agents::Agents`];
//! these handlers only read the path, query string and body, hand the caller on, and
//! turn the answer into the API's JSON (errors through `conflux_http::error`).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::agents::{
    Caller, PollOptions, Registration, Report, Reported, DEFAULT_LEASES_PER_POLL,
    DEFAULT_POLL_WAIT, MAX_LEASES_PER_POLL,
};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId, QueryParams};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::CommandContext;

/// The caller of a request, as the agent service needs it.
fn caller(request: &RequestContext) -> Caller {
    Caller {
        principal: request.principal.clone(),
        metadata: request.event_metadata(),
    }
}

/// Body of `POST /api/v1/agents`.
#[derive(Debug, Deserialize)]
pub struct RegisterBody {
    name: String,
    roles: Vec<String>,
    #[serde(default)]
    capabilities: Vec<String>,
    #[serde(default = "default_capacity")]
    capacity: u32,
}

fn default_capacity() -> u32 {
    10
}

/// `POST /api/v1/agents` → 201 `{"agent_id"}`.
pub async fn register(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let registration = Registration {
        name: body.name,
        roles: body.roles,
        capabilities: body.capabilities,
        capacity: body.capacity,
    };
    let agent = ctx.agents.register(registration, &caller(&request)).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"agent_id": agent.agent_id})),
    ))
}

/// `POST /api/v1/agents/{agent_id}/poll?max=10&wait_ms=20000` → 200 `{"tasks": [...]}`.
/// `max` is `1..=100`; `wait_ms` any whole number, capped to 60,000.
pub async fn poll(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    let agent_id = path_uuid(&id, "agent")?;
    // At most `MAX_LEASES_PER_POLL`: a `usize`.
    let max = q.bounded(
        "max",
        1,
        MAX_LEASES_PER_POLL as u64,
        DEFAULT_LEASES_PER_POLL as u64,
    )? as usize;
    let wait = q
        .number("wait_ms")?
        .map_or(DEFAULT_POLL_WAIT, Duration::from_millis);
    let leases = ctx
        .agents
        .poll(agent_id, PollOptions { max, wait }, &caller(&request))
        .await?;
    Ok(Json(json!({ "tasks": leases })))
}

/// Body of `complete`.
#[derive(Debug, Default, Deserialize)]
pub struct CompleteBody {
    #[serde(default)]
    output: Value,
}

/// Body of `fail`.
#[derive(Debug, Deserialize)]
pub struct FailBody {
    error: String,
    #[serde(default = "default_retryable")]
    retryable: bool,
}

fn default_retryable() -> bool {
    true
}

/// Records `report` on the lease in the path: 200 `{"lease_id", "execution_id",
/// "task": {"task_id", "attempt"}, "recorded"}`.
async fn on_lease(
    ctx: CommandContext,
    id: String,
    request: RequestContext,
    report: Report,
) -> Result<Json<Value>, ApiError> {
    let lease_id = path_uuid(&id, "lease")?;
    let Reported {
        lease_id,
        execution_id,
        task,
        recorded,
    } = ctx
        .agents
        .report(lease_id, report, &caller(&request))
        .await?;
    Ok(Json(json!({
        "lease_id": lease_id,
        "execution_id": execution_id,
        "task": {"task_id": task.task.as_str(), "attempt": task.attempt},
        "recorded": recorded,
    })))
}

/// `POST /api/v1/tasks/{lease_id}/complete`.
pub async fn complete(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Json<Value>, ApiError> {
    let report = Report::Complete {
        output: body.output,
    };
    on_lease(ctx, id, request, report).await
}

/// `POST /api/v1/tasks/{lease_id}/fail`.
pub async fn fail(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<FailBody>,
) -> Result<Json<Value>, ApiError> {
    let report = Report::Fail {
        error: body.error,
        retryable: body.retryable,
    };
    on_lease(ctx, id, request, report).await
}

/// `POST /api/v1/tasks/{lease_id}/heartbeat`.
pub async fn heartbeat(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    on_lease(ctx, id, request, Report::Heartbeat).await
}
