//! `POST /api/v1/hooks` (create) and `DELETE /api/v1/hooks/{id}`. The rules are the
//! engine's hook service; these routes translate HTTP.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::hooks::NewHook;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId};
use conflux_schema::api::{CreateHook, HookCreated};

use crate::CommandContext;

/// `POST /api/v1/hooks` → 201 with the hook and its secret (shown only here). A URL
/// that is not `http`/`https` or that the egress policy denies, an unknown event type,
/// or a bad secret is `422` naming it; nothing is recorded then.
pub async fn create(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<CreateHook>,
) -> Result<(StatusCode, Json<HookCreated>), ApiError> {
    let created = ctx
        .hooks
        .create(
            NewHook {
                url: body.url,
                events: body.events,
                secret: body.secret,
            },
            request.event_metadata(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// `DELETE /api/v1/hooks/{id}` → 204: nothing more is delivered to it.
pub async fn delete(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<StatusCode, ApiError> {
    let id = path_uuid(&id, "hook")?;
    ctx.hooks.delete(id, request.event_metadata()).await?;
    Ok(StatusCode::NO_CONTENT)
}
