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
    AgentFilter, Caller, PollOptions, Registration, Report, Reported, DEFAULT_LEASES_PER_POLL,
    DEFAULT_POLL_WAIT, MAX_LEASES_PER_POLL,
};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId, QueryParams};
use conflux_schema::api::{
    AgentChanged, AgentList, AgentRegistered, AgentStatus, AgentView, CompleteTask, FailTask,
    LeaseRecorded, LeasedAttempt, PollAnswer, RegisterAgent,
};

use crate::CommandContext;

/// The caller of a request, as the agent service needs it.
fn caller(request: &RequestContext) -> Caller {
    Caller {
        principal: request.principal.clone(),
        metadata: request.event_metadata(),
    }
}

/// `POST /api/v1/agents` → 201 `{"agent_id"}`.
pub async fn register(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<RegisterAgent>,
) -> Result<(StatusCode, Json<AgentRegistered>), ApiError> {
    let _admitted = ctx
        .quotas
        .admit_agent(request.tenant(), body.name.trim())
        .await?;
    let registration = Registration {
        name: body.name,
        roles: body.roles,
        capabilities: body.capabilities,
        capacity: body.capacity,
        cost: body.cost,
    };
    let agent = ctx.agents.register(registration, &caller(&request)).await?;
    Ok((
        StatusCode::CREATED,
        Json(AgentRegistered {
            agent_id: agent.agent_id,
        }),
    ))
}

/// `GET /api/v1/agents?role=<role>&status=online|stale|offline` → 200 `{"agents"}`.
pub async fn list(
    State(ctx): State<CommandContext>,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<AgentList>, ApiError> {
    let status = match q.choice("status", &["online", "stale", "offline"])? {
        Some("online") => Some(AgentStatus::Online),
        Some("stale") => Some(AgentStatus::Stale),
        Some(_) => Some(AgentStatus::Offline),
        None => None,
    };
    let filter = AgentFilter {
        role: q.get("role")?.map(str::to_owned),
        status,
    };
    let agents = ctx.agents.list(request.tenant(), &filter).await?;
    Ok(Json(AgentList { agents }))
}

/// `GET /api/v1/agents/{agent_id}` → 200, the agent with its status.
pub async fn get(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<AgentView>, ApiError> {
    let agent_id = path_uuid(&id, "agent")?;
    Ok(Json(ctx.agents.view(request.tenant(), agent_id).await?))
}

/// `POST /api/v1/agents/{agent_id}/heartbeat` → 200 `{"agent_id", "state", "released"}`.
pub async fn heartbeat_agent(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<AgentChanged>, ApiError> {
    let agent_id = path_uuid(&id, "agent")?;
    let answer = ctx
        .agents
        .heartbeat_agent(agent_id, &caller(&request))
        .await?;
    Ok(Json(answer))
}

/// `POST /api/v1/agents/{agent_id}/drain` → 200 `{"agent_id", "state": "draining"}`.
pub async fn drain(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<AgentChanged>, ApiError> {
    let agent_id = path_uuid(&id, "agent")?;
    Ok(Json(ctx.agents.drain(agent_id, &caller(&request)).await?))
}

/// `DELETE /api/v1/agents/{agent_id}` → 200 `{"agent_id", "state": "deregistered",
/// "released"}`.
pub async fn deregister(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<AgentChanged>, ApiError> {
    let agent_id = path_uuid(&id, "agent")?;
    Ok(Json(
        ctx.agents.deregister(agent_id, &caller(&request)).await?,
    ))
}

/// `POST /api/v1/agents/{agent_id}/poll?max=10&wait_ms=20000` → 200 `{"tasks": [...]}`.
/// `max` is `1..=100`; `wait_ms` any whole number, capped to 60,000.
pub async fn poll(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<PollAnswer>, ApiError> {
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
    Ok(Json(PollAnswer { tasks: leases }))
}

/// Records `report` on the lease in the path: 200 `{"lease_id", "execution_id",
/// "task": {"task_id", "attempt"}, "recorded"}`.
async fn on_lease(
    ctx: CommandContext,
    id: String,
    request: RequestContext,
    report: Report,
) -> Result<Json<LeaseRecorded>, ApiError> {
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
    Ok(Json(LeaseRecorded {
        lease_id,
        execution_id,
        task: LeasedAttempt {
            task_id: task.task.as_str().to_owned(),
            attempt: task.attempt,
        },
        recorded: recorded.to_owned(),
    }))
}

/// `POST /api/v1/tasks/{lease_id}/complete`.
pub async fn complete(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<CompleteTask>,
) -> Result<Json<LeaseRecorded>, ApiError> {
    ctx.quotas
        .check_payload_of(request.tenant(), &body.output)?;
    if let Some(usage) = &body.usage {
        usage.check().map_err(|reason| {
            ApiError::invalid_request(reason.clone())
                .with_details(serde_json::json!({"field": "usage", "reason": reason}))
        })?;
    }
    let report = Report::Complete {
        output: body.output,
        usage: body.usage,
    };
    on_lease(ctx, id, request, report).await
}

/// `POST /api/v1/tasks/{lease_id}/fail`.
pub async fn fail(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<FailTask>,
) -> Result<Json<LeaseRecorded>, ApiError> {
    ctx.quotas.check_payload_of(request.tenant(), &body.error)?;
    if let Some(usage) = &body.usage {
        usage.check().map_err(|reason| {
            ApiError::invalid_request(reason.clone())
                .with_details(serde_json::json!({"field": "usage", "reason": reason}))
        })?;
    }
    let report = Report::Fail {
        error: body.error,
        retryable: body.retryable,
        usage: body.usage,
    };
    on_lease(ctx, id, request, report).await
}

/// `POST /api/v1/tasks/{lease_id}/heartbeat`.
pub async fn heartbeat(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<LeaseRecorded>, ApiError> {
    on_lease(ctx, id, request, Report::Heartbeat).await
}
