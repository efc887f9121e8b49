//! `GET /api/v1/dead-letters` (the caller's tenant's dead letters, newest first;
//! `?state=open` by default) and `GET /api/v1/dead-letters/{id}`, served from the
//! projector's `rm_dead_letters`, payloads (the error) opened — or hidden from viewers
//! when the operator says so.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{PathId, QueryParams};
use conflux_schema::api::{DeadLetter, DeadLetterList, DeadLetterState};

use crate::reads::{read_error, Reads};

/// Size of the list when `limit` is not given.
pub const DEFAULT_LIMIT: u64 = 100;
/// Largest `limit` of the list.
pub const MAX_LIMIT: u64 = 1000;

/// The dead-letter read routes.
pub fn router(reads: Reads) -> Router {
    Router::new()
        .route("/api/v1/dead-letters", get(list))
        .route("/api/v1/dead-letters/{id}", get(one))
        .with_state(reads)
}

async fn list(
    State(reads): State<Reads>,
    q: QueryParams,
    request: RequestContext,
) -> Result<Json<DeadLetterList>, ApiError> {
    let limit = q.bounded("limit", 1, MAX_LIMIT, DEFAULT_LIMIT)?;
    let state = match q.choice("state", &["open", "redriven", "acknowledged", "all"])? {
        None | Some("open") => Some(DeadLetterState::Open),
        Some("redriven") => Some(DeadLetterState::Redriven),
        Some("acknowledged") => Some(DeadLetterState::Acknowledged),
        Some(_) => None,
    };
    let found = reads
        .models
        .dead_letters(
            request.tenant(),
            state,
            i64::try_from(limit).unwrap_or(i64::MAX),
        )
        .await
        .map_err(read_error)?;
    let mut dead_letters = Vec::with_capacity(found.len());
    for d in found {
        dead_letters.push(shown(&reads, &request, d).await?);
    }
    Ok(Json(DeadLetterList { dead_letters }))
}

async fn one(
    State(reads): State<Reads>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<DeadLetter>, ApiError> {
    let found = reads
        .models
        .dead_letter(request.tenant(), &id)
        .await
        .map_err(read_error)?
        .ok_or_else(|| ApiError::not_found(format!("dead letter `{id}` not found")))?;
    Ok(Json(shown(&reads, &request, found).await?))
}

/// `d` as `request`'s caller may see it: its error opened, or left out for viewers
/// from whom payloads are hidden.
async fn shown(
    reads: &Reads,
    request: &RequestContext,
    mut d: DeadLetter,
) -> Result<DeadLetter, ApiError> {
    if reads.hides_payloads(request) {
        d.error = None;
        return Ok(d);
    }
    if !reads.codec.is_on() {
        return Ok(d);
    }
    let mut error = serde_json::Value::from(d.error.take());
    reads
        .codec
        .open_json(d.execution_id, &mut error)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    d.error = error.as_str().map(str::to_owned);
    Ok(d)
}
