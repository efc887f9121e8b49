//! `DELETE /api/v1/tenants/{tenant}/data` (the system administrator, with the tenant's
//! name again as `confirm`) and `DELETE /api/v1/executions/{id}/data` (a tenant's
//! `admin`, for a finished execution): crypto-shredding. The data keys are destroyed, so
//! every payload sealed under them reads as `{"redacted": "erased"}` from then on; the
//! log, its hash chains and the events' structure stay; the erasure itself is an event.
//! Without encryption at rest there is no key to destroy: `409 encryption_off`.

use axum::extract::State;
use axum::Json;
use conflux_engine::crypto::erasure::Erased;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{path_uuid, ApiJson, PathId};
use conflux_schema::access::TenantName;
use conflux_schema::api::{DataErased, EraseTenantData};
use conflux_schema::EventMetadata;
use serde_json::json;
use uuid::Uuid;

use crate::CommandContext;

fn body(scope: &str, tenant: &str, execution_id: Option<Uuid>, erased: Erased) -> DataErased {
    DataErased {
        scope: scope.to_owned(),
        tenant: tenant.to_owned(),
        execution_id,
        keys_destroyed: erased.keys_destroyed,
        event_id: erased.event.event_id,
        position: erased.event.position,
        erased_at: erased.event.recorded_at,
    }
}

/// `DELETE /api/v1/tenants/{tenant}/data` → `200` what was destroyed.
pub async fn erase_tenant(
    State(ctx): State<CommandContext>,
    PathId(raw): PathId,
    request: RequestContext,
    ApiJson(confirmation): ApiJson<EraseTenantData>,
) -> Result<Json<DataErased>, ApiError> {
    let tenant = TenantName::parse(&raw).map_err(|e| {
        ApiError::invalid_request(e.message).with_details(json!({"field": "tenant"}))
    })?;
    if !ctx.access.has_tenant(&tenant) {
        return Err(ApiError::not_found(format!("no tenant {tenant}")));
    }
    if confirmation.confirm != tenant.as_str() {
        return Err(ApiError::invalid_request(format!(
            "erasing a tenant's data cannot be undone: send {{\"confirm\": \"{tenant}\"}} to confirm"
        ))
        .with_details(json!({"field": "confirm"})));
    }
    let meta = EventMetadata {
        tenant_id: Some(tenant.to_string()),
        ..request.event_metadata()
    };
    let erased = ctx.erasure.erase_tenant(&tenant, meta).await?;
    Ok(Json(body("tenant", tenant.as_str(), None, erased)))
}

/// `DELETE /api/v1/executions/{id}/data` → `200` what was destroyed.
pub async fn erase_execution(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<Json<DataErased>, ApiError> {
    let execution_id = path_uuid(&id, "execution")?;
    let tenant = request.tenant().to_owned();
    let erased = ctx
        .erasure
        .erase_execution(&tenant, execution_id, request.event_metadata())
        .await?;
    Ok(Json(body("execution", &tenant, Some(execution_id), erased)))
}
