//! `GET /api/v1/hooks` (the tenant's webhooks, newest first, cursor pages),
//! `GET /api/v1/hooks/{id}` and `GET /api/v1/hooks/{id}/deliveries` (its deliveries,
//! highest log position first), from the engine's hook service: the hooks folded from
//! their streams (caught up to the log before each answer), the deliveries from their
//! records. Never a secret.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_engine::hooks::Hooks;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{bad_parameter, path_uuid, PathId, QueryParams};
use conflux_schema::api::{Hook, HookDeliveryList, HookList};

/// Page size of the lists when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 50;
/// Largest `limit` of the lists.
pub const MAX_LIMIT: u64 = 1000;

/// The webhook read routes.
pub fn router(hooks: Hooks) -> Router {
    Router::new()
        .route("/api/v1/hooks", get(list))
        .route("/api/v1/hooks/{id}", get(one))
        .route("/api/v1/hooks/{id}/deliveries", get(deliveries))
        .with_state(hooks)
}

fn not_ours(raw: &str) -> ApiError {
    bad_parameter(
        "cursor",
        Some(raw),
        "is not one this API returned (a `next_cursor`)",
    )
}

async fn list(
    State(hooks): State<Hooks>,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<HookList>, ApiError> {
    let limit = q.bounded("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)? as usize;
    let before = match q.get("cursor")? {
        None | Some("") => None,
        Some(raw) => Some(uuid::Uuid::parse_str(raw).map_err(|_| not_ours(raw))?),
    };
    let (items, next) = hooks.list(request.tenant(), before, limit).await?;
    Ok(Json(HookList {
        items,
        next_cursor: next.map(|id| id.to_string()),
    }))
}

async fn one(
    State(hooks): State<Hooks>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<Hook>, ApiError> {
    let id = path_uuid(&id, "hook")?;
    Ok(Json(hooks.get(request.tenant(), id).await?))
}

async fn deliveries(
    State(hooks): State<Hooks>,
    PathId(id): PathId,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<HookDeliveryList>, ApiError> {
    let id = path_uuid(&id, "hook")?;
    let limit = q.bounded("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)? as usize;
    let before = match q.get("cursor")? {
        None | Some("") => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| not_ours(raw))?),
    };
    let (items, next) = hooks
        .deliveries(request.tenant(), id, before, limit)
        .await?;
    Ok(Json(HookDeliveryList {
        items,
        next_cursor: next.map(|p| p.to_string()),
    }))
}
