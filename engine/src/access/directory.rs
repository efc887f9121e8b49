//! The tenants and keys as the log says they are: a pure fold of `TenantCreated`,
//! `TenantPolicySet`, `ApiKeyCreated` and `ApiKeyRevoked`, and the one function that says who a bearer
//! token is. No I/O: [`super::Access`] feeds it from the store.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use conflux_schema::access::{Role, TenantName};
use conflux_schema::quota::QuotaLimits;
use conflux_schema::{Event, EventEnvelope};
use uuid::Uuid;

use super::token;
use crate::runner::egress::EgressPolicy;

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// As recorded in events' `metadata.actor`: `key:<key_id>` or `admin`.
    pub actor: String,
    /// The tenant it acts in.
    pub tenant: TenantName,
    /// What it may do: a key's role, or None for the system administrator (everything,
    /// in every tenant).
    pub role: Option<Role>,
    /// For agent keys: the agent roles it may serve.
    pub agent_roles: Vec<String>,
    /// The key behind it (None: the bootstrap admin token).
    pub key_id: Option<Uuid>,
    /// When the credential stops working (a key's `expires_at`, a JWT's `exp`, a stream
    /// token's expiry; None: never). Nothing minted from it outlives it.
    pub expires_at: Option<DateTime<Utc>>,
}

impl Principal {
    /// The system administrator (the bootstrap token), acting in `default`.
    pub fn system_admin() -> Self {
        Self {
            actor: "admin".to_owned(),
            tenant: TenantName::default_tenant(),
            role: None,
            agent_roles: Vec::new(),
            key_id: None,
            expires_at: None,
        }
    }

    /// Whether this caller may do `permission` (the system administrator may do all).
    pub fn allows(&self, permission: conflux_schema::access::Permission) -> bool {
        self.role.is_none_or(|r| r.allows(permission))
    }

    /// Whether this caller may serve agent role `role` (agent keys: only those on the
    /// key; every other caller allowed agent work: any).
    pub fn may_serve(&self, role: &str) -> bool {
        self.role != Some(Role::Agent) || self.agent_roles.iter().any(|r| r == role)
    }
}

/// One key as the log describes it (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// The key id.
    pub key_id: Uuid,
    /// For humans.
    pub name: String,
    /// Its tenant.
    pub tenant: TenantName,
    /// Its role.
    pub role: Role,
    /// For agent keys.
    pub agent_roles: Vec<String>,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was created (its event's time).
    pub created_at: DateTime<Utc>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    secret_sha256: String,
}

/// Why a token was refused (all of them are `401 unauthenticated` to the caller; the
/// reason is for logs, never the token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header (or an empty token).
    #[error("no bearer token")]
    Missing,
    /// Not a token this server issued, or the secret does not match.
    #[error("unknown token")]
    Unknown,
    /// The key was revoked.
    #[error("the key was revoked")]
    Revoked,
    /// The key expired.
    #[error("the key expired")]
    Expired,
}

/// A tenant's policy as the system administrator last set it.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantPolicyRecord {
    /// Its own egress allowlist, as written.
    pub egress_allow: Vec<String>,
    /// The same, parsed (entries that no longer parse are left out).
    pub egress: Arc<EgressPolicy>,
    /// Its own quota limits (None: the configured default).
    pub quotas: QuotaLimits,
    /// Its agents' routing weights (None: the defaults).
    pub routing_weights: Option<conflux_schema::routing::RoutingWeights>,
    /// When it was set.
    pub updated_at: DateTime<Utc>,
}

/// Tenants and keys, folded from the log.
#[derive(Debug, Clone, Default)]
pub struct KeyDirectory {
    tenants: BTreeMap<TenantName, DateTime<Utc>>,
    policies: BTreeMap<String, TenantPolicyRecord>,
    keys: BTreeMap<Uuid, KeyRecord>,
    /// The highest position folded.
    pub position: u64,
}

impl KeyDirectory {
    /// Folds one event (others than tenants' and keys' are ignored); an event at or
    /// below what was folded is ignored too (a key's creation never undoes its
    /// revocation).
    pub fn apply(&mut self, e: &EventEnvelope) {
        if e.position <= self.position {
            return;
        }
        self.position = e.position;
        match &e.event {
            Event::TenantCreated { tenant } => {
                self.tenants.entry(tenant.clone()).or_insert(e.recorded_at);
            }
            Event::ApiKeyCreated {
                key_id,
                name,
                tenant,
                role,
                agent_roles,
                expires_at,
                secret_sha256,
            } => {
                self.keys.entry(*key_id).or_insert(KeyRecord {
                    key_id: *key_id,
                    name: name.clone(),
                    tenant: tenant.clone(),
                    role: *role,
                    agent_roles: agent_roles.clone(),
                    expires_at: *expires_at,
                    created_at: e.recorded_at,
                    revoked_at: None,
                    secret_sha256: secret_sha256.clone(),
                });
            }
            Event::TenantPolicySet {
                tenant,
                egress_allow,
                quotas,
                routing_weights,
            } => {
                let egress = EgressPolicy::parse_tenant(&egress_allow.join(",")).unwrap_or_else(|e| {
                    tracing::warn!(%tenant, error = %e, "a recorded egress allowlist does not parse; the tenant gets none");
                    EgressPolicy::public_only()
                });
                self.policies.insert(
                    tenant.as_str().to_owned(),
                    TenantPolicyRecord {
                        egress_allow: egress_allow.clone(),
                        egress: Arc::new(egress),
                        quotas: *quotas,
                        routing_weights: *routing_weights,
                        updated_at: e.recorded_at,
                    },
                );
            }
            Event::ApiKeyRevoked { key_id } => {
                if let Some(k) = self.keys.get_mut(key_id) {
                    k.revoked_at.get_or_insert(e.recorded_at);
                }
            }
            _ => {}
        }
    }

    /// Whether `tenant` exists (`default` always does).
    pub fn has_tenant(&self, tenant: &TenantName) -> bool {
        tenant.as_str() == conflux_schema::access::DEFAULT_TENANT
            || self.tenants.contains_key(tenant)
    }

    /// Every tenant with its creation time (`default` first, with no time).
    pub fn tenants(&self) -> Vec<(TenantName, Option<DateTime<Utc>>)> {
        let mut out = vec![(TenantName::default_tenant(), None)];
        out.extend(
            self.tenants
                .iter()
                .filter(|(t, _)| t.as_str() != conflux_schema::access::DEFAULT_TENANT)
                .map(|(t, at)| (t.clone(), Some(*at))),
        );
        out
    }

    /// `tenant`'s policy, if the system administrator ever set one.
    pub fn policy(&self, tenant: &str) -> Option<&TenantPolicyRecord> {
        self.policies.get(tenant)
    }

    /// The keys of `tenant` (all tenants: None), oldest first.
    pub fn keys(&self, tenant: Option<&TenantName>) -> Vec<KeyRecord> {
        self.keys
            .values()
            .filter(|k| tenant.is_none_or(|t| &k.tenant == t))
            .cloned()
            .collect()
    }

    /// One key.
    pub fn key(&self, key_id: Uuid) -> Option<&KeyRecord> {
        self.keys.get(&key_id)
    }

    /// Who `token` is, at `now`.
    pub fn authenticate(&self, token: &str, now: DateTime<Utc>) -> Result<Principal, AuthError> {
        let (key_id, secret) = token::parse(token).ok_or(AuthError::Unknown)?;
        let key = self.keys.get(&key_id).ok_or(AuthError::Unknown)?;
        if !token::secret_matches(&key.secret_sha256, secret) {
            return Err(AuthError::Unknown);
        }
        if key.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if key.expires_at.is_some_and(|at| at <= now) {
            return Err(AuthError::Expired);
        }
        Ok(Principal {
            actor: format!("key:{}", key.key_id.simple()),
            tenant: key.tenant.clone(),
            role: Some(key.role),
            agent_roles: key.agent_roles.clone(),
            key_id: Some(key.key_id),
            expires_at: key.expires_at,
        })
    }

    /// Every revoked key (live streams opened with one are closed).
    pub fn revoked_ids(&self) -> BTreeSet<Uuid> {
        self.keys
            .values()
            .filter(|k| k.revoked_at.is_some())
            .map(|k| k.key_id)
            .collect()
    }
}
