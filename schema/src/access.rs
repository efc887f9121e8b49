//! Who may do what: tenants, roles and the permissions each role grants (API.md
//! "Identity, tenants and access"). Pure data and rules; the engine keeps the keys, the
//! HTTP layer maps each route to the one permission it needs.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::IdError;

/// The tenant every store has, and the one every event recorded before tenants existed
/// belongs to.
pub const DEFAULT_TENANT: &str = "default";

/// A tenant's name: 1 to 63 characters of `[a-z0-9-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantName(String);

impl TenantName {
    /// Validates `raw`.
    pub fn parse(raw: &str) -> Result<Self, IdError> {
        let ok = (1..=63).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(IdError::new(format!(
                "tenant {raw:?} must be 1 to 63 characters of a-z, 0-9 and -"
            )))
        }
    }

    /// The `default` tenant.
    pub fn default_tenant() -> Self {
        Self(DEFAULT_TENANT.to_owned())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        TenantName::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A key's role: what its holder may do within its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads definitions, executions, status and live streams.
    Viewer,
    /// A viewer who also reads the audit log (`/events`, `/replay`, `/verify`).
    Auditor,
    /// A viewer who also runs and steers executions.
    Operator,
    /// Operator and auditor, and creates workflows.
    Developer,
    /// Everything in its tenant, including its keys.
    Admin,
    /// An external agent: registers, polls and reports, for the agent roles on its key.
    Agent,
}

impl Role {
    /// Every role, for tables and tests.
    pub const ALL: [Role; 6] = [
        Role::Viewer,
        Role::Auditor,
        Role::Operator,
        Role::Developer,
        Role::Admin,
        Role::Agent,
    ];

    /// Whether this role grants `permission` (deny by default: anything not listed).
    pub fn allows(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Viewer => matches!(permission, P::Read),
            Role::Auditor => matches!(permission, P::Read | P::Audit),
            Role::Operator => matches!(permission, P::Read | P::Operate),
            Role::Developer => matches!(
                permission,
                P::Read | P::Audit | P::Operate | P::Define | P::ManageSecrets
            ),
            Role::Admin => !matches!(permission, P::ManageTenants),
            Role::Agent => matches!(permission, P::AgentWork),
        }
    }

    /// The role's name as in API.md.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
            Role::Operator => "operator",
            Role::Developer => "developer",
            Role::Admin => "admin",
            Role::Agent => "agent",
        }
    }
}

/// What a route needs. Every route names exactly one (or none, for the open operations
/// routes); a role grants a fixed set ([`Role::allows`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Read definitions, executions, status; open live streams; mint stream tokens.
    Read,
    /// Read the audit log: events, replay, verify.
    Audit,
    /// Execute, pause, resume, cancel.
    Operate,
    /// Create workflow definitions.
    Define,
    /// Register agents, poll, complete/fail/heartbeat leases.
    AgentWork,
    /// Create, list and revoke the tenant's keys.
    ManageKeys,
    /// Create and list tenants, and erase a tenant's data (the system administrator
    /// only).
    ManageTenants,
    /// Erase a finished execution's payloads (crypto-shredding).
    EraseData,
    /// Create, list (names only), rotate and delete the tenant's secrets.
    ManageSecrets,
    /// See the tenant's use of its quotas.
    ReadUsage,
}

impl Permission {
    /// The permission's name, for tables and error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Audit => "audit",
            Permission::Operate => "operate",
            Permission::Define => "define",
            Permission::AgentWork => "agent_work",
            Permission::ManageKeys => "manage_keys",
            Permission::ManageTenants => "manage_tenants",
            Permission::EraseData => "erase_data",
            Permission::ManageSecrets => "manage_secrets",
            Permission::ReadUsage => "read_usage",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_checked() {
        for ok in ["default", "a", "acme-2", &"x".repeat(63)] {
            assert!(TenantName::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Acme", "a_b", "a b", "é", &"x".repeat(64)] {
            assert!(TenantName::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles_grant_what_api_md_lists() {
        use Permission as P;
        let grants = |r: Role| {
            [
                P::Read,
                P::Audit,
                P::Operate,
                P::Define,
                P::AgentWork,
                P::ManageKeys,
                P::ManageTenants,
                P::EraseData,
                P::ManageSecrets,
                P::ReadUsage,
            ]
            .into_iter()
            .filter(|p| r.allows(*p))
            .collect::<Vec<_>>()
        };
        assert_eq!(grants(Role::Viewer), [P::Read]);
        assert_eq!(grants(Role::Auditor), [P::Read, P::Audit]);
        assert_eq!(grants(Role::Operator), [P::Read, P::Operate]);
        assert_eq!(
            grants(Role::Developer),
            [P::Read, P::Audit, P::Operate, P::Define, P::ManageSecrets]
        );
        assert_eq!(
            grants(Role::Admin),
            [
                P::Read,
                P::Audit,
                P::Operate,
                P::Define,
                P::AgentWork,
                P::ManageKeys,
                P::EraseData,
                P::ManageSecrets,
                P::ReadUsage
            ]
        );
        assert_eq!(grants(Role::Agent), [P::AgentWork]);
    }
}
