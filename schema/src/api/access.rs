//! Access bodies: tenants and API keys (never a key's secret, except the token in the
//! answer that issues it).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::access::Role;

/// Body of `POST /api/v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateTenant {
    /// 1 to 63 characters of `a-z`, `0-9` and `-`.
    #[schema(example = "acme")]
    pub tenant: String,
}

/// A tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    /// Its name.
    pub tenant: String,
    /// When it was created (null for `default`, which every store has).
    pub created_at: Option<DateTime<Utc>>,
}

/// `GET /api/v1/tenants`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantList {
    /// The tenants, `default` first.
    pub items: Vec<Tenant>,
}

/// Body of `POST /api/v1/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CreateKey {
    /// For humans (1 to 200 characters).
    pub name: String,
    /// What its holder may do.
    pub role: Role,
    /// Its tenant (default: the caller's; another needs the system administrator).
    #[serde(default)]
    #[schema(required = false)]
    pub tenant: Option<String>,
    /// For `agent` keys (required for them): the agent roles it may serve.
    #[serde(default)]
    #[schema(required = false)]
    pub agent_roles: Vec<String>,
    /// When it stops working.
    #[serde(default)]
    #[schema(required = false)]
    pub expires_at: Option<DateTime<Utc>>,
}

/// An API key (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Key {
    /// The `<key_id>` of its token (32 hex digits).
    pub key_id: String,
    /// For humans.
    pub name: String,
    /// Its tenant.
    pub tenant: String,
    /// Its role.
    pub role: Role,
    /// For agent keys: the agent roles it may serve.
    pub agent_roles: Vec<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was issued.
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A key just issued: the key, and its token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyCreated {
    /// The key.
    #[serde(flatten)]
    pub key: Key,
    /// `cfx_<key_id>_<secret>`: shown only in this answer; only its hash is stored.
    pub token: String,
}

/// `GET /api/v1/keys`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct KeyList {
    /// The keys, oldest first.
    pub items: Vec<Key>,
}

/// Body of `PUT /api/v1/tenants/{tenant}/policy`: the tenant's whole policy (what it
/// leaves out is back to the default).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SetTenantPolicy {
    /// What the tenant's outbound calls (`http` tasks) may reach beyond the operator's
    /// `CONFLUX_EGRESS_ALLOW`: CIDRs (`10.1.0.0/16`), addresses, host names and
    /// `*.suffix` patterns.
    #[serde(default)]
    #[schema(example = json!(["10.20.0.0/16", "*.billing.internal"]))]
    pub egress_allow: Vec<String>,
    /// The tenant's own limits; a quota left out takes the configured default.
    #[serde(default)]
    pub quotas: crate::quota::QuotaLimits,
    /// How its agents are scored for routing (left out: 0.4 capability, 0.2
    /// availability, 0.3 history, 0.1 cost).
    #[serde(default)]
    pub routing_weights: Option<crate::routing::RoutingWeights>,
}

/// A tenant's policy: `GET` and `PUT /api/v1/tenants/{tenant}/policy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantPolicy {
    /// The tenant.
    pub tenant: String,
    /// Its own egress allowlist (added to the operator's).
    pub egress_allow: Vec<String>,
    /// Its own limits (a quota not named takes the default).
    pub quotas: crate::quota::QuotaLimits,
    /// The limits in force: its own, else the configured defaults (absent: no limit).
    pub effective_quotas: crate::quota::QuotaLimits,
    /// The routing weights in force: its own, else the defaults.
    pub routing_weights: crate::routing::RoutingWeights,
    /// When the policy was last set (null: never, the defaults apply).
    pub updated_at: Option<DateTime<Utc>>,
}

/// One quota's use: `used` of `limit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct QuotaUse {
    /// `running_executions`, `executions_per_minute`, `definitions`,
    /// `event_payload_bytes`, `payload_bytes` or `agents`.
    #[schema(value_type = String, example = "running_executions")]
    pub quota: crate::quota::Quota,
    /// What the tenant uses now (null for `event_payload_bytes`, a per-payload limit).
    pub used: Option<u64>,
    /// Its limit (null: none).
    pub limit: Option<u64>,
}

/// `GET /api/v1/tenants/{tenant}/usage`: the tenant's use of every quota, counted from
/// its log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TenantUsage {
    /// The tenant.
    pub tenant: String,
    /// Every quota, in a fixed order.
    pub quotas: Vec<QuotaUse>,
}
