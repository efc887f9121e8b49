//! Agents: registration, long-poll leasing, and results by lease.
//!
//! A poll takes tickets from the agent's role queues and turns each into a lease by
//! recording `TaskStarted` (with the agent, a new lease id and the attempt's deadline)
//! against the execution; a ticket whose attempt is no longer current is dropped. Results
//! name the lease; the lease's attempt is found in the execution's log, so a result for
//! an attempt that timed out, was cancelled or already finished is `409 stale_attempt`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::commands::{lease_attempt, CommandError};
use conflux_engine::execution::{Command, Rejection, TaskRef};
use conflux_engine::store::{StoreError, StreamQuery};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId, QueryParams};
use conflux_schema::{Event, EventMetadata, NewEvent, StreamId, TaskId};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;
use uuid::Uuid;

use crate::CommandContext;

/// A registered agent.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Its id.
    pub agent_id: Uuid,
    /// The tenant it was registered in: it takes that tenant's tasks only.
    pub tenant: String,
    /// The roles it polls.
    pub roles: Vec<String>,
}

/// Registered agents, loaded from their streams and cached; cheap to clone.
#[derive(Clone, Default)]
pub struct AgentDirectory {
    cache: Arc<Mutex<HashMap<Uuid, Agent>>>,
}

impl AgentDirectory {
    async fn get(&self, ctx: &CommandContext, id: Uuid) -> Result<Option<Agent>, StoreError> {
        if let Some(a) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
        {
            return Ok(Some(a.clone()));
        }
        let events = ctx
            .commands
            .store()
            .read_stream(&StreamId::agent(id), 0, 1)
            .await?;
        let agent = events.into_iter().find_map(|e| match e.event {
            Event::AgentRegistered {
                agent_id, roles, ..
            } => Some(Agent {
                agent_id,
                tenant: e.metadata.tenant().to_owned(),
                roles,
            }),
            _ => None,
        });
        if let Some(a) = &agent {
            self.cache
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, a.clone());
        }
        Ok(agent)
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

/// `503 unavailable` while the bus is not this store's: the agent queues live under the
/// same prefix, and a ticket of another store must never be taken (and dropped) here.
fn bus_is_ours(ctx: &CommandContext) -> Result<(), ApiError> {
    match &*ctx.bus_status.borrow() {
        conflux_engine::bus::ownership::BusStatus::Owned { .. } => Ok(()),
        _ => Err(ApiError::unavailable(
            "the bus (Redis prefix) is not this store's (see /ready): agents are not served",
        )),
    }
}

/// An `agent` key serves only the agent roles on it: `403 forbidden` for any other.
fn may_serve_all(request: &RequestContext, roles: &[String]) -> Result<(), ApiError> {
    let Some(who) = &request.principal else {
        return Ok(());
    };
    let refused: Vec<&String> = roles.iter().filter(|r| !who.may_serve(r)).collect();
    if refused.is_empty() {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this agent key may not serve these agent roles",
    )
    .with_details(json!({"roles": refused, "allowed": who.agent_roles})))
}

/// `POST /api/v1/agents` → 201 `{"agent_id"}`.
pub async fn register(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<RegisterBody>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid_request("name must not be empty"));
    }
    if body.roles.is_empty() || body.roles.iter().any(|r| r.trim().is_empty()) {
        return Err(ApiError::invalid_request(
            "roles must be a non-empty list of non-empty names",
        ));
    }
    if body.capacity == 0 {
        return Err(ApiError::invalid_request("capacity must be at least 1"));
    }
    may_serve_all(&request, &body.roles)?;
    let agent_id = Uuid::now_v7();
    let event = Event::AgentRegistered {
        agent_id,
        name: body.name,
        roles: body.roles.clone(),
        capabilities: body.capabilities,
        capacity: body.capacity,
    };
    ctx.commands
        .store()
        .append(
            &StreamId::agent(agent_id),
            0,
            vec![NewEvent::new(event, request.event_metadata())],
        )
        .await?;
    ctx.agents
        .cache
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(
            agent_id,
            Agent {
                agent_id,
                tenant: request.tenant().to_owned(),
                roles: body.roles,
            },
        );
    Ok((StatusCode::CREATED, Json(json!({"agent_id": agent_id}))))
}

/// The most tasks one poll leases (`max`), and how many when `max` is absent.
const MAX_TASKS: u64 = 100;
const DEFAULT_TASKS: u64 = 10;
/// The longest wait of one poll (`wait_ms` is capped to it), and the default.
const MAX_WAIT_MS: u64 = 60_000;
const DEFAULT_WAIT_MS: u64 = 20_000;

/// `POST /api/v1/agents/{agent_id}/poll?max=10&wait_ms=20000` → 200 `{"tasks": [...]}`.
/// `max` is `1..=100`; `wait_ms` any whole number, capped to 60,000.
pub async fn poll(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    let agent_id = path_uuid(&id, "agent")?;
    bus_is_ours(&ctx)?;
    // At most `MAX_TASKS`: a `usize`.
    let max = q.bounded("max", 1, MAX_TASKS, DEFAULT_TASKS)? as usize;
    let wait_ms = q.number("wait_ms")?.unwrap_or(DEFAULT_WAIT_MS);
    // Another tenant's agent answers exactly as an unknown one.
    let agent = ctx
        .agents
        .get(&ctx, agent_id)
        .await?
        .filter(|a| a.tenant == request.tenant())
        .ok_or_else(|| ApiError::not_found(format!("agent {agent_id} not found")))?;
    may_serve_all(&request, &agent.roles)?;
    let wait = Duration::from_millis(wait_ms.min(MAX_WAIT_MS));
    let deadline = Instant::now() + wait;
    let meta = EventMetadata {
        actor: Some(format!("agent:{agent_id}")),
        ..request.event_metadata()
    };
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let tickets = ctx
            .queue
            .take(&agent.tenant, &agent.roles, max, remaining)
            .await
            .map_err(|e| ApiError::unavailable(e.to_string()))?;
        let mut leases = Vec::new();
        for ticket in tickets {
            let Ok(task_id) = TaskId::parse(&ticket.task_id) else {
                continue;
            };
            let task = TaskRef {
                task: task_id,
                attempt: ticket.attempt,
                compensation: ticket.compensation,
            };
            let lease_id = Uuid::now_v7();
            let command = Command::StartTask {
                task: task.clone(),
                agent_id: Some(agent_id),
                lease_id: Some(lease_id),
            };
            let mut scheduled_at = None;
            let started = ctx
                .commands
                .record(ticket.execution_id, meta.clone(), |_, log| {
                    scheduled_at = scheduled_time(log, &task);
                    Ok(command.clone())
                })
                .await;
            match started {
                Ok(recorded) => {
                    if let (Some(at), Some(started)) = (scheduled_at, recorded.events.first()) {
                        let secs = (started.recorded_at - at)
                            .num_microseconds()
                            .unwrap_or(0)
                            .max(0) as f64
                            / 1e6;
                        metrics::histogram!("conflux_task_schedule_to_start_seconds").record(secs);
                    }
                    let state = &recorded.state;
                    let track = if task.compensation {
                        state.compensation(task.task.as_str())
                    } else {
                        state.task(task.task.as_str())
                    };
                    let deadline = track.and_then(|t| t.deadline);
                    leases.push(json!({
                        "lease_id": lease_id,
                        "execution_id": ticket.execution_id,
                        "task_id": task.task.as_str(),
                        "attempt": task.attempt,
                        "compensation": task.compensation,
                        "input": ticket.input,
                        "deadline": deadline,
                    }));
                }
                // The attempt moved on (timed out, cancelled, done): drop the ticket.
                Err(CommandError::Rejected(_)) | Err(CommandError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        if !leases.is_empty() || Instant::now() >= deadline {
            return Ok(Json(json!({"tasks": leases})));
        }
    }
}

/// When the attempt `task` was scheduled, from the execution's log.
fn scheduled_time(
    log: &[conflux_schema::EventEnvelope],
    task: &TaskRef,
) -> Option<chrono::DateTime<chrono::Utc>> {
    log.iter().rev().find_map(|e| match &e.event {
        Event::TaskScheduled {
            task_id,
            attempt,
            compensation,
            ..
        } if *task_id == task.task
            && *attempt == task.attempt
            && *compensation == task.compensation =>
        {
            Some(e.recorded_at)
        }
        _ => None,
    })
}

/// An `agent` key reports only tasks of the agent roles on it: the attempt's role is
/// read from the definition in the state the command is decided on (no extra read).
fn may_report(
    who: Option<&conflux_engine::access::Principal>,
    state: &conflux_engine::execution::ExecutionState,
    task: &TaskRef,
) -> Result<(), CommandError> {
    let Some(who) = who.filter(|w| w.role == Some(conflux_schema::access::Role::Agent)) else {
        return Ok(());
    };
    let workflow = state.workflow();
    let spec = workflow.index_of(&task.task).and_then(|i| workflow.task(i));
    let role = spec.and_then(|s| match (&s.compensate, task.compensation) {
        (Some(c), true) => c.agent_role.as_deref(),
        (_, false) => s.agent_role.as_deref(),
        (None, true) => None,
    });
    match role {
        Some(role) if who.may_serve(role) => Ok(()),
        _ => Err(CommandError::Forbidden(
            "this agent key does not serve the agent role of this lease's task".into(),
        )),
    }
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

async fn on_lease(
    ctx: CommandContext,
    id: String,
    request: RequestContext,
    what: &'static str,
    make: impl Fn(TaskRef) -> Command,
) -> Result<Json<Value>, ApiError> {
    let lease_id = path_uuid(&id, "lease")?;
    bus_is_ours(&ctx)?;
    let stream = ctx
        .commands
        .store()
        .find_streams(&StreamQuery::Lease(lease_id), 1)
        .await?
        .pop()
        .ok_or_else(|| ApiError::not_found(format!("lease {lease_id} not found")))?;
    let meta = request.event_metadata();
    let execution_id = stream.uuid();
    let mut attempt = None;
    let recorded = ctx
        .commands
        .record(execution_id, meta, |state, log| {
            let task = lease_attempt(log, lease_id)
                .ok_or_else(|| CommandError::NotFound(format!("lease {lease_id}")))?;
            may_report(request.principal.as_ref(), state, &task)?;
            attempt = Some(task.clone());
            Ok(make(task))
        })
        .await;
    match recorded {
        Ok(_) => {
            let outcome = match what {
                "completed" => Some("completed"),
                "failed" => Some("failed"),
                _ => None,
            };
            if let Some(outcome) = outcome {
                metrics::counter!("conflux_tasks_total", "kind" => "agent", "outcome" => outcome).increment(1);
            }
        }
        Err(CommandError::Rejected(Rejection::StaleAttempt { .. })) | Err(CommandError::Rejected(Rejection::Terminal(_))) => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "stale_attempt",
                format!("lease {lease_id} is no longer current: its attempt timed out, was cancelled or already finished"),
            ))
        }
        // Another tenant's execution: answered exactly as an unknown lease.
        Err(CommandError::NotFound(_)) => {
            return Err(ApiError::not_found(format!("lease {lease_id} not found")))
        }
        Err(e) => return Err(e.into()),
    }
    let task = attempt.map(|t| json!({"task_id": t.task.as_str(), "attempt": t.attempt}));
    Ok(Json(
        json!({"lease_id": lease_id, "execution_id": execution_id, "task": task, "recorded": what}),
    ))
}

/// `POST /api/v1/tasks/{lease_id}/complete`.
pub async fn complete(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<CompleteBody>,
) -> Result<Json<Value>, ApiError> {
    on_lease(ctx, id, request, "completed", move |task| {
        Command::CompleteTask {
            task,
            output: body.output.clone(),
        }
    })
    .await
}

/// `POST /api/v1/tasks/{lease_id}/fail`.
pub async fn fail(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
    ApiJson(body): ApiJson<FailBody>,
) -> Result<Json<Value>, ApiError> {
    on_lease(ctx, id, request, "failed", move |task| Command::FailTask {
        task,
        error: body.error.clone(),
        retryable: body.retryable,
    })
    .await
}

/// `POST /api/v1/tasks/{lease_id}/heartbeat`.
pub async fn heartbeat(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Value>, ApiError> {
    on_lease(ctx, id, request, "heartbeat", |task| Command::Heartbeat {
        task,
    })
    .await
}
