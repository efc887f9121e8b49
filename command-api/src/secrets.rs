//! `POST|GET /api/v1/secrets`, `PUT|DELETE /api/v1/secrets/{name}`: the caller's
//! tenant's secrets (`admin` and `developer`). A value goes in and never comes out:
//! answers carry names and times only, and no error quotes a value.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use conflux_engine::secrets::{SecretName, SecretRecord, SecretValue};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{ApiJson, PathId};
use conflux_schema::api::{CreateSecret, RotateSecret, Secret, SecretList};

use crate::CommandContext;

fn body(record: SecretRecord) -> Secret {
    Secret {
        name: record.name,
        created_at: record.created_at,
        updated_at: record.updated_at,
    }
}

/// The secret named in the path: an invalid name cannot exist (`404`).
fn path_name(raw: &str) -> Result<SecretName, ApiError> {
    SecretName::parse(raw)
        .map_err(|_| ApiError::not_found(format!("secret {raw:?} does not exist")))
}

/// `POST /api/v1/secrets` `{"name", "value"}` → `201 {"name", "created_at",
/// "updated_at"}`; `409 conflict` if the tenant has the name.
pub async fn create(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(create): ApiJson<CreateSecret>,
) -> Result<(StatusCode, Json<Secret>), ApiError> {
    let name = SecretName::parse(&create.name)?;
    let value = SecretValue::parse(create.value)?;
    let record = ctx.secrets.create(request.tenant(), &name, &value).await?;
    Ok((StatusCode::CREATED, Json(body(record))))
}

/// `GET /api/v1/secrets` → `200 {"secrets": [{"name", "created_at", "updated_at"}]}`,
/// sorted by name, never a value.
pub async fn list(
    State(ctx): State<CommandContext>,
    request: RequestContext,
) -> Result<Json<SecretList>, ApiError> {
    let records = ctx.secrets.list(request.tenant()).await?;
    Ok(Json(SecretList {
        secrets: records.into_iter().map(body).collect(),
    }))
}

/// `PUT /api/v1/secrets/{name}` `{"value"}` → `200` (rotated; used from the next
/// attempt on); `404` if the tenant has no such secret.
pub async fn rotate(
    State(ctx): State<CommandContext>,
    PathId(raw): PathId,
    request: RequestContext,
    ApiJson(rotate): ApiJson<RotateSecret>,
) -> Result<Json<Secret>, ApiError> {
    let name = path_name(&raw)?;
    let value = SecretValue::parse(rotate.value)?;
    let record = ctx.secrets.rotate(request.tenant(), &name, &value).await?;
    Ok(Json(body(record)))
}

/// `DELETE /api/v1/secrets/{name}` → `204`; `404` if the tenant has no such secret. A
/// workflow that references it fails its next attempt that needs it, naming it.
pub async fn delete(
    State(ctx): State<CommandContext>,
    PathId(raw): PathId,
    request: RequestContext,
) -> Result<StatusCode, ApiError> {
    let name = path_name(&raw)?;
    ctx.secrets.delete(request.tenant(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
