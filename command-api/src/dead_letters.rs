//! `POST /api/v1/dead-letters/{id}/retry` (redrive: run the task again, the execution
//! running again) and `DELETE /api/v1/dead-letters/{id}` (acknowledge). A dead letter's
//! id names its execution, so both are commands on that execution; the rules are the
//! execution core's (`Command::Redrive`, `Command::AcknowledgeDeadLetter`), and the
//! events they record carry the caller as actor.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::commands::CommandError;
use conflux_engine::execution::{parse_dead_letter_id, Command};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::PathId;
use conflux_schema::api::DeadLetterRedriven;
use uuid::Uuid;

use crate::CommandContext;

/// `POST /api/v1/dead-letters/{id}/retry`: `202` with the execution running again.
pub async fn retry(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<(StatusCode, Json<DeadLetterRedriven>), ApiError> {
    let (execution_id, task_id) = locate(&id)?;
    let command = Command::Redrive { id: id.clone() };
    let metadata = request.event_metadata();
    let recorded = ctx
        .commands
        .record(execution_id, metadata.clone(), move |_, _| {
            Ok(command.clone())
        })
        .await
        .map_err(|e| not_found_as_dead_letter(e, &id))?;
    // Under a concurrency key it claims a slot again, as at its start.
    let status = ctx
        .commands
        .claim_if_queued(recorded.state, &metadata)
        .await?
        .status();
    Ok((
        StatusCode::ACCEPTED,
        Json(DeadLetterRedriven {
            dead_letter_id: id,
            execution_id,
            task_id,
            status,
        }),
    ))
}

/// `DELETE /api/v1/dead-letters/{id}`: `204`, the dead letter acknowledged.
pub async fn acknowledge(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<StatusCode, ApiError> {
    let (execution_id, _) = locate(&id)?;
    let command = Command::AcknowledgeDeadLetter { id: id.clone() };
    ctx.commands
        .record(execution_id, request.event_metadata(), move |_, _| {
            Ok(command.clone())
        })
        .await
        .map_err(|e| not_found_as_dead_letter(e, &id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// The execution and task a dead letter id names; an id that is not one is a 404.
fn locate(id: &str) -> Result<(Uuid, String), ApiError> {
    parse_dead_letter_id(id)
        .map(|(execution, _, task)| (execution, task.to_string()))
        .ok_or_else(|| ApiError::not_found(format!("dead letter `{id}` not found")))
}

/// An execution the caller cannot see is, to them, a dead letter that does not exist.
fn not_found_as_dead_letter(e: CommandError, id: &str) -> ApiError {
    match e {
        CommandError::NotFound(_) => ApiError::not_found(format!("dead letter `{id}` not found")),
        other => other.into(),
    }
}
