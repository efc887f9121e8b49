//! `POST /api/v1/patterns/{pattern}`: an orchestration pattern's parameters in, the
//! workflow definitions it expands to out (`200`), or with `?create=true` those
//! workflows created (`201`).
//!
//! The handler is thin: the expansion is `conflux_schema::patterns::expand`, a pure
//! function; creating is the catalog's ordinary create, once per definition, children
//! before the workflows that start them. Every definition is validated, and admitted by
//! the tenant's quotas, before the first is created, so parameters that expand to an
//! invalid workflow, or to more workflows than the quota leaves, create nothing.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use conflux_engine::quota::Admission;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{ApiJson, PathId, QueryParams};
use conflux_schema::api::{PatternCreated, PatternExpansion, WorkflowCreated};
use conflux_schema::patterns::expand as expand_pattern;
use conflux_schema::validate::validate;
use serde_json::Value;

use crate::CommandContext;

/// `POST /api/v1/patterns/{pattern}[?create=true]` → 200 with the definitions, or 201
/// with the workflows created (the main one named apart).
pub async fn expand(
    State(ctx): State<CommandContext>,
    PathId(pattern): PathId,
    q: QueryParams,
    request: RequestContext,
    ApiJson(params): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let create = q.flag("create")?;
    let expansion = expand_pattern(&pattern, &params)?;
    let catalog = ctx.commands.catalog();
    for definition in &expansion.workflows {
        validate(definition.clone(), catalog.limits())?;
    }
    if !create {
        let body = PatternExpansion {
            pattern: expansion.pattern.to_owned(),
            main: expansion.main,
            workflows: expansion.workflows,
        };
        return Ok((StatusCode::OK, Json(body)).into_response());
    }
    let meta = request.event_metadata();
    let tenant = request.tenant();
    for definition in &expansion.workflows {
        ctx.quotas.check_payload_of(tenant, definition)?;
    }
    // Every definition is admitted before the first is created (each admission held
    // counts against the quota), so a pattern over the `definitions` quota creates none.
    let mut admitted = Vec::with_capacity(expansion.workflows.len());
    for _ in &expansion.workflows {
        admitted.push(ctx.quotas.admit(tenant, Admission::Define).await?);
    }
    let mut workflows = Vec::with_capacity(expansion.workflows.len());
    for definition in expansion.workflows {
        let created = catalog.create(definition, meta.clone()).await?;
        workflows.push(WorkflowCreated {
            workflow_id: created.workflow_id,
            name: created.workflow.name().as_str().to_owned(),
            version: created.version,
            task_count: created.workflow.len() as u64,
            created_at: created.event.recorded_at,
            execution_id: None,
        });
    }
    drop(admitted);
    let main = workflows
        .iter()
        .find(|w| w.name == expansion.main)
        .cloned()
        .ok_or_else(|| ApiError::unavailable("the main workflow was not created"))?;
    let body = PatternCreated {
        pattern: expansion.pattern.to_owned(),
        main,
        workflows,
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
}
