//! `POST /api/v1/stream-tokens` `{"path": "/ws/executions/<id>"}` (or
//! `/ws/workflows/<id>`) → `201 {"token", "path", "expires_at"}`: a short-lived token
//! (60 s unless `CONFLUX_STREAM_TOKEN_TTL_SECS` says otherwise) that opens that one live
//! stream, as `?access_token=` or a bearer token on its upgrade, so long-lived keys stay
//! out of URLs. It acts exactly as its minter (tenant, role, actor) and stops working
//! when the minter's key does; it is `401` on any other path or route. The path must name
//! a stream of the caller's tenant: another tenant's id is `404`, as an unknown one.
//! Minting records no event.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use conflux_engine::access::Access;
use conflux_engine::store::{is_tenants_stream, EventStore};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::ApiJson;
use conflux_http::live_path::LivePath;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

/// Where tokens are minted.
pub const PATH: &str = "/api/v1/stream-tokens";

/// Body of `POST /api/v1/stream-tokens`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MintStreamToken {
    /// The live stream to open: `/ws/executions/{id}` or `/ws/workflows/{id}` (no query
    /// string), of the caller's tenant.
    #[schema(example = "/ws/executions/0190f5c4-7a2b-7cc3-9d1e-5b8a9c0d1e2f")]
    pub path: String,
}

/// A stream token.
#[derive(Debug, Serialize, ToSchema)]
pub struct StreamTokenMinted {
    /// `cfs_…`: pass it as `?access_token=` (or `Authorization: Bearer`) on the upgrade of
    /// `path`; it is refused everywhere else. Checked at the upgrade: an open stream
    /// stays open after it expires, and closes with 4401 when the minter's key is
    /// revoked.
    pub token: String,
    /// The stream it opens, in canonical form (the id as a lower-case UUID).
    pub path: String,
    /// When it stops opening the stream.
    #[schema(value_type = String, format = DateTime)]
    pub expires_at: DateTime<Utc>,
}

/// What minting needs.
#[derive(Clone)]
pub struct StreamTokenState {
    /// Signs the tokens.
    pub access: Access,
    /// Finds whose a stream is.
    pub store: Arc<dyn EventStore>,
}

/// `POST /api/v1/stream-tokens`, with bodies limited to `max_body_bytes` (413).
pub fn router(state: StreamTokenState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(PATH, post(mint))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn mint(
    State(state): State<StreamTokenState>,
    request: RequestContext,
    ApiJson(body): ApiJson<MintStreamToken>,
) -> Result<(StatusCode, Json<StreamTokenMinted>), ApiError> {
    let Some(who) = request.principal.as_ref() else {
        // Served without the authentication layer: there is nobody to mint for.
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "no caller",
        ));
    };
    let Some(target) = LivePath::parse(&body.path) else {
        return Err(ApiError::invalid_request(
            "`path` must be a live stream: /ws/executions/<id> or /ws/workflows/<id>",
        )
        .with_details(json!({"field": "path", "reason": "not_a_live_stream"})));
    };
    if !is_tenants_stream(&*state.store, request.tenant(), &target.stream()).await? {
        let (what, id) = (target.what(), target.id());
        return Err(ApiError::not_found(format!("{what} {id} not found")));
    }
    let minted = state.access.mint_stream_token(who, &target.scope())?;
    let answer = StreamTokenMinted {
        token: minted.token,
        path: minted.scope,
        expires_at: minted.expires_at,
    };
    Ok((StatusCode::CREATED, Json(answer)))
}
