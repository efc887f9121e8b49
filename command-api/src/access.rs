//! `POST|GET /api/v1/tenants` (the system administrator only) and `POST|GET
//! /api/v1/keys`, `DELETE /api/v1/keys/{key_id}`: API keys. The system administrator
//! manages every tenant's keys; a tenant's `admin` only its own (another tenant's key is
//! `404`, as an unknown one). A key's token is in the creation answer only; lists never
//! hold a secret. The events of a tenant's creation and of its keys carry that tenant as
//! `metadata.tenant_id`, whoever acted.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use conflux_engine::access::{KeyRecord, NewKey, Principal};
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::{ApiJson, PathId};
use conflux_schema::access::TenantName;
use conflux_schema::api::{CreateKey, CreateTenant, Key, KeyCreated, KeyList, Tenant, TenantList};
use conflux_schema::EventMetadata;
use serde_json::json;

use crate::CommandContext;

fn caller(request: &RequestContext) -> Result<&Principal, ApiError> {
    request
        .principal
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", "no caller"))
}

/// The tenants whose keys `who` manages (None: every tenant).
fn scope(who: &Principal) -> Option<&TenantName> {
    who.role.map(|_| &who.tenant)
}

fn key_body(k: &KeyRecord) -> Key {
    Key {
        key_id: k.key_id.simple().to_string(),
        name: k.name.clone(),
        tenant: k.tenant.to_string(),
        role: k.role,
        agent_roles: k.agent_roles.clone(),
        expires_at: k.expires_at,
        created_at: k.created_at,
        revoked_at: k.revoked_at,
    }
}

/// `POST /api/v1/keys` → `201` the key with its `token` (shown this once).
pub async fn create_key(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<KeyCreated>), ApiError> {
    let who = caller(&request)?;
    let tenant = match body.tenant.as_deref() {
        None => who.tenant.clone(),
        Some(raw) => TenantName::parse(raw).map_err(|e| {
            ApiError::invalid_request(e.message).with_details(json!({"field": "tenant"}))
        })?,
    };
    if scope(who).is_some_and(|own| own != &tenant) {
        // Another tenant is indistinguishable from one that does not exist.
        return Err(ApiError::not_found(format!("no tenant {tenant}")));
    }
    let key = NewKey {
        name: body.name,
        tenant,
        role: body.role,
        agent_roles: body.agent_roles,
        expires_at: body.expires_at,
    };
    let meta = EventMetadata {
        tenant_id: Some(key.tenant.to_string()),
        ..request.event_metadata()
    };
    let (record, token) = ctx
        .access
        .create_key(key, meta)
        .await
        .map_err(ApiError::from)?;
    Ok((
        StatusCode::CREATED,
        Json(KeyCreated {
            key: key_body(&record),
            token,
        }),
    ))
}

/// `GET /api/v1/keys` → `200 {"items": [...]}` (never a secret).
pub async fn list_keys(
    State(ctx): State<CommandContext>,
    request: RequestContext,
) -> Result<Json<KeyList>, ApiError> {
    let who = caller(&request)?;
    let items = ctx.access.keys(scope(who)).iter().map(key_body).collect();
    Ok(Json(KeyList { items }))
}

/// `DELETE /api/v1/keys/{key_id}` → `204`; the key stops working on every server
/// within a second.
pub async fn revoke_key(
    State(ctx): State<CommandContext>,
    PathId(id): PathId,
    request: RequestContext,
) -> Result<StatusCode, ApiError> {
    let who = caller(&request)?;
    let key_id =
        uuid::Uuid::try_parse(&id).map_err(|_| ApiError::not_found(format!("no key {id}")))?;
    let tenant = ctx
        .access
        .keys(scope(who))
        .into_iter()
        .find(|k| k.key_id == key_id)
        .map_or_else(|| who.tenant.to_string(), |k| k.tenant.to_string());
    let meta = EventMetadata {
        tenant_id: Some(tenant),
        ..request.event_metadata()
    };
    ctx.access
        .revoke_key(key_id, scope(who), meta)
        .await
        .map_err(ApiError::from)?;
    Ok(StatusCode::NO_CONTENT)
}

fn tenant_body(tenant: &TenantName, created_at: Option<DateTime<Utc>>) -> Tenant {
    Tenant {
        tenant: tenant.to_string(),
        created_at,
    }
}

/// `POST /api/v1/tenants` `{"tenant"}` → `201 {"tenant", "created_at"}`; `409 conflict`
/// if it exists (`default` always does).
pub async fn create_tenant(
    State(ctx): State<CommandContext>,
    request: RequestContext,
    ApiJson(body): ApiJson<CreateTenant>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let tenant = TenantName::parse(&body.tenant).map_err(|e| {
        ApiError::invalid_request(e.message).with_details(json!({"field": "tenant"}))
    })?;
    let meta = EventMetadata {
        tenant_id: Some(tenant.to_string()),
        ..request.event_metadata()
    };
    ctx.access
        .create_tenant(tenant.clone(), meta)
        .await
        .map_err(ApiError::from)?;
    let created_at = ctx
        .access
        .tenants()
        .into_iter()
        .find(|(t, _)| *t == tenant)
        .and_then(|(_, at)| at);
    Ok((StatusCode::CREATED, Json(tenant_body(&tenant, created_at))))
}

/// `GET /api/v1/tenants` → `200 {"items": [{"tenant", "created_at"}]}` (`default`,
/// which every store has, with `created_at` null).
pub async fn list_tenants(State(ctx): State<CommandContext>) -> Json<TenantList> {
    let items = ctx
        .access
        .tenants()
        .iter()
        .map(|(t, at)| tenant_body(t, *at))
        .collect();
    Json(TenantList { items })
}
