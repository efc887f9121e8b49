//! `POST /api/v1/executions/{id}/tasks/{task_id}/approve | reject` `{"comment"}`: one
//! caller's decision on the current attempt of an `approval` task. The rules (approver
//! roles, one decision per caller, only a waiting task) are the execution core's
//! (`conflux_engine::execution::decide`); this module turns HTTP into the command.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::execution::{ApprovalBy, Command, TaskStatus};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson};
use conflux_schema::access::Role;
use conflux_schema::api::{ApprovalRecorded, ApprovalRequest};
use conflux_schema::Event;

use crate::CommandContext;

/// `POST .../tasks/{task_id}/approve` → `202` [`ApprovalRecorded`].
pub async fn approve(
    State(ctx): State<CommandContext>,
    Path((id, task)): Path<(String, String)>,
    request: RequestContext,
    ApiJson(body): ApiJson<ApprovalRequest>,
) -> Result<(StatusCode, Json<ApprovalRecorded>), ApiError> {
    decide(ctx, id, task, request, body, true).await
}

/// `POST .../tasks/{task_id}/reject` → `202` [`ApprovalRecorded`]; the task fails for
/// good (not retried).
pub async fn reject(
    State(ctx): State<CommandContext>,
    Path((id, task)): Path<(String, String)>,
    request: RequestContext,
    ApiJson(body): ApiJson<ApprovalRequest>,
) -> Result<(StatusCode, Json<ApprovalRecorded>), ApiError> {
    decide(ctx, id, task, request, body, false).await
}

/// Records the decision: `403` for a role the task's approvers do not list, `404` for
/// an unknown execution or task, `409` for a task that is not an approval waiting now
/// or a caller who already decided on this attempt.
async fn decide(
    ctx: CommandContext,
    id: String,
    task: String,
    request: RequestContext,
    body: ApprovalRequest,
    approve: bool,
) -> Result<(StatusCode, Json<ApprovalRecorded>), ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    ctx.quotas
        .check_payload_of(request.tenant(), &body.comment)?;
    let meta = request.event_metadata();
    // The system administrator (no role) and a router served without authentication
    // act as `admin`.
    let role = request
        .principal
        .as_ref()
        .and_then(|p| p.role)
        .unwrap_or(Role::Admin);
    let decision = ApprovalBy {
        by: meta.actor.clone().unwrap_or_else(|| "api".to_owned()),
        role,
        approve,
        comment: body.comment,
    };
    let command = Command::DecideApproval {
        task: task.clone(),
        decision,
    };
    let recorded = ctx
        .commands
        .record(execution_id, meta, move |_, _| Ok(command.clone()))
        .await?;
    let attempt = recorded
        .events
        .iter()
        .find_map(|e| match &e.event {
            Event::ApprovalDecided { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .unwrap_or_default();
    let task_status = recorded
        .state
        .task(&task)
        .map_or(TaskStatus::Pending, |t| t.status);
    let (given, needed) = recorded.state.approvals(&task).unwrap_or((0, 0));
    Ok((
        StatusCode::ACCEPTED,
        Json(ApprovalRecorded {
            execution_id,
            task_id: task,
            attempt,
            approve,
            task_status,
            given,
            needed,
        }),
    ))
}
