//! A tenant's policy and usage: `PUT|GET /api/v1/tenants/{tenant}/policy` (the system
//! administrator only) sets and shows its own egress allowlist and quota limits;
//! `GET /api/v1/tenants/{tenant}/usage` shows its use of every quota against its
//! limits (the system administrator for any tenant, a tenant's `admin` for its own —
//! another tenant is `404`, as an unknown one).

use axum::extract::{Path, State};
use axum::Json;
use conflux_engine::access::TenantPolicyRecord;
use conflux_http::context::RequestContext;
use conflux_http::error::ApiError;
use conflux_http::extract::ApiJson;
use conflux_schema::access::TenantName;
use conflux_schema::api::{SetTenantPolicy, TenantPolicy, TenantUsage};
use conflux_schema::EventMetadata;
use serde_json::json;

use crate::CommandContext;

/// The tenant in the path, if it exists and the caller may see it.
fn tenant_in_path(
    ctx: &CommandContext,
    request: &RequestContext,
    raw: &str,
) -> Result<TenantName, ApiError> {
    let unknown = || ApiError::not_found(format!("no tenant {raw}"));
    let tenant = TenantName::parse(raw).map_err(|_| unknown())?;
    let own = request
        .principal
        .as_ref()
        .is_some_and(|p| p.role.is_none() || p.tenant == tenant);
    if !own || !ctx.access.has_tenant(&tenant) {
        return Err(unknown());
    }
    Ok(tenant)
}

fn policy_body(
    ctx: &CommandContext,
    tenant: &TenantName,
    p: Option<TenantPolicyRecord>,
) -> TenantPolicy {
    let defaults = ctx.quotas.defaults();
    match p {
        Some(p) => TenantPolicy {
            tenant: tenant.to_string(),
            egress_allow: p.egress_allow,
            quotas: p.quotas,
            effective_quotas: p.quotas.or(defaults),
            routing_weights: p.routing_weights.unwrap_or_default(),
            updated_at: Some(p.updated_at),
        },
        None => TenantPolicy {
            tenant: tenant.to_string(),
            egress_allow: Vec::new(),
            quotas: Default::default(),
            effective_quotas: defaults,
            routing_weights: Default::default(),
            updated_at: None,
        },
    }
}

/// `PUT /api/v1/tenants/{tenant}/policy` → `200` the policy now in force; the tenant's
/// outbound calls and quota checks use it on every server within a second.
pub async fn set_policy(
    State(ctx): State<CommandContext>,
    Path(raw): Path<String>,
    request: RequestContext,
    ApiJson(body): ApiJson<SetTenantPolicy>,
) -> Result<Json<TenantPolicy>, ApiError> {
    let tenant = tenant_in_path(&ctx, &request, &raw)?;
    let meta = EventMetadata {
        tenant_id: Some(tenant.to_string()),
        ..request.event_metadata()
    };
    let record = ctx
        .access
        .set_tenant_policy(
            tenant.clone(),
            body.egress_allow,
            body.quotas,
            body.routing_weights,
            meta,
        )
        .await
        .map_err(|e| {
            let e = ApiError::from(e);
            if e.code != "invalid_request" {
                return e;
            }
            let field = if e.message.starts_with("routing_weights") {
                "routing_weights"
            } else {
                "egress_allow"
            };
            e.with_details(json!({ "field": field }))
        })?;
    Ok(Json(policy_body(&ctx, &tenant, Some(record))))
}

/// `GET /api/v1/tenants/{tenant}/policy` → `200` (the defaults when never set).
pub async fn get_policy(
    State(ctx): State<CommandContext>,
    Path(raw): Path<String>,
    request: RequestContext,
) -> Result<Json<TenantPolicy>, ApiError> {
    let tenant = tenant_in_path(&ctx, &request, &raw)?;
    let record = ctx.access.tenant_policy(tenant.as_str());
    Ok(Json(policy_body(&ctx, &tenant, record)))
}

/// `GET /api/v1/tenants/{tenant}/usage` → `200 {"tenant", "quotas": [{"quota", "used",
/// "limit"}]}`, counted from the log as it stands.
pub async fn usage(
    State(ctx): State<CommandContext>,
    Path(raw): Path<String>,
    request: RequestContext,
) -> Result<Json<TenantUsage>, ApiError> {
    let tenant = tenant_in_path(&ctx, &request, &raw)?;
    let quotas = ctx.quotas.usage(tenant.as_str()).await?;
    Ok(Json(TenantUsage {
        tenant: tenant.to_string(),
        quotas,
    }))
}
