//! `POST /api/v1/executions/{id}/signals/{signal}` `{"payload"}`: a signal for the
//! execution's `signal` tasks of that name. The payload is checked against the tenant's
//! `event_payload_bytes` before anything is recorded (the body limit applies first).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::execution::Command;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson};
use conflux_schema::api::{SignalAccepted, SignalRequest};
use conflux_schema::Event;

use crate::CommandContext;

/// `POST /api/v1/executions/{id}/signals/{signal}` → `202` [`SignalAccepted`]: the
/// signal completed the task waiting for it (`delivered_to`) or is kept for one not
/// reached yet. `404` for an unknown execution or a name no task waits for, `409` once
/// the execution finished (or while it compensates).
pub async fn send(
    State(ctx): State<CommandContext>,
    Path((id, signal)): Path<(String, String)>,
    request: RequestContext,
    ApiJson(body): ApiJson<SignalRequest>,
) -> Result<(StatusCode, Json<SignalAccepted>), ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    ctx.quotas
        .check_payload_of(request.tenant(), &body.payload)?;
    let command = Command::Signal {
        name: signal.clone(),
        payload: body.payload,
    };
    let recorded = ctx
        .commands
        .record(execution_id, request.event_metadata(), move |_, _| {
            Ok(command.clone())
        })
        .await?;
    let delivered_to = recorded.events.iter().find_map(|e| match &e.event {
        Event::TaskCompleted { task_id, .. } => Some(task_id.as_str().to_owned()),
        _ => None,
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(SignalAccepted {
            execution_id,
            signal,
            delivered_to,
            status: recorded.state.status(),
        }),
    ))
}
