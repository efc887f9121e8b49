//! Erasure bodies: `DELETE /api/v1/tenants/{tenant}/data` and
//! `DELETE /api/v1/executions/{id}/data` (crypto-shredding).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// Body of `DELETE /api/v1/tenants/{tenant}/data`: the tenant's name again, so that a
/// slip of the path cannot erase a tenant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EraseTenantData {
    /// Must equal the `{tenant}` of the path.
    #[schema(example = "acme")]
    pub confirm: String,
}

/// What an erasure did (`200`). It cannot be undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DataErased {
    /// `tenant` or `execution`.
    #[schema(example = "tenant")]
    pub scope: String,
    /// The tenant whose data (or whose execution's data) was erased.
    pub tenant: String,
    /// The execution, for `scope = execution`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<Uuid>,
    /// How many data keys were destroyed.
    pub keys_destroyed: u64,
    /// The audit event recording the erasure (`TenantDataErased` in the tenant's
    /// stream, `ExecutionDataErased` in the execution's).
    pub event_id: Uuid,
    /// Its position in the log.
    pub position: u64,
    /// When it was recorded.
    pub erased_at: DateTime<Utc>,
}
