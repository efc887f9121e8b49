//! The default quota of every tenant, from flags or the environment. Unset: no limit.
//! The system administrator sets a tenant's own limits with
//! `PUT /api/v1/tenants/{tenant}/policy`; a quota it leaves out takes these.

use clap::Args;
use conflux_schema::quota::QuotaLimits;
use serde_json::{json, Value};

/// Default per-tenant limits.
#[derive(Debug, Clone, Default, Args)]
pub struct QuotaDefaults {
    /// Executions one tenant may have running at once (more: 429 quota_exceeded).
    #[arg(long, global = true, env = "CONFLUX_QUOTA_RUNNING_EXECUTIONS")]
    pub quota_running_executions: Option<u64>,

    /// Executions one tenant may start in any 60 seconds (more: 429 with Retry-After).
    #[arg(long, global = true, env = "CONFLUX_QUOTA_EXECUTIONS_PER_MINUTE")]
    pub quota_executions_per_minute: Option<u64>,

    /// Workflow definitions one tenant may create, every version counting.
    #[arg(long, global = true, env = "CONFLUX_QUOTA_DEFINITIONS")]
    pub quota_definitions: Option<u64>,

    /// Largest execution input, definition, agent output or error, in JSON bytes
    /// (larger: 413 quota_exceeded).
    #[arg(long, global = true, env = "CONFLUX_QUOTA_EVENT_PAYLOAD_BYTES")]
    pub quota_event_payload_bytes: Option<u64>,

    /// JSON bytes of one tenant's whole log; at or over it, new executions,
    /// definitions and agents are refused (413 quota_exceeded).
    #[arg(long, global = true, env = "CONFLUX_QUOTA_PAYLOAD_BYTES")]
    pub quota_payload_bytes: Option<u64>,

    /// Agents one tenant may register.
    #[arg(long, global = true, env = "CONFLUX_QUOTA_AGENTS")]
    pub quota_agents: Option<u64>,

    /// Schedules one tenant may have (created and not deleted; more: 429 quota_exceeded).
    #[arg(long, global = true, env = "CONFLUX_QUOTA_SCHEDULES")]
    pub quota_schedules: Option<u64>,
}

impl QuotaDefaults {
    /// As limits.
    pub fn limits(&self) -> QuotaLimits {
        QuotaLimits {
            running_executions: self.quota_running_executions,
            executions_per_minute: self.quota_executions_per_minute,
            definitions: self.quota_definitions,
            event_payload_bytes: self.quota_event_payload_bytes,
            payload_bytes: self.quota_payload_bytes,
            agents: self.quota_agents,
            schedules: self.quota_schedules,
        }
    }

    /// For `--dump-config`: every quota, null where there is no limit.
    pub fn dump(&self) -> Value {
        let l = self.limits();
        json!({
            "running_executions": l.running_executions,
            "executions_per_minute": l.executions_per_minute,
            "definitions": l.definitions,
            "event_payload_bytes": l.event_payload_bytes,
            "payload_bytes": l.payload_bytes,
            "agents": l.agents,
            "schedules": l.schedules,
        })
    }
}
