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
