//! Per-tenant usage counters, kept by the store in the same transaction as the events
//! they count: a quota check reads one row instead of scanning a tenant's history, and
//! the counters can never drift from the log (a rolled-back append rolls them back).
//!
//! What counts: `ExecutionStarted` (+1 running, +1 started), a terminal execution event
//! (−1 running), `WorkflowCreated` (+1 definition), `AgentRegistered` (+1 agent), and
//! every event's data as canonical JSON bytes.

use std::collections::BTreeMap;

use super::writer::Row;

/// A tenant's counters as the store keeps them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TenantCounters {
    /// Executions started and not yet completed, failed or cancelled.
    pub running_executions: u64,
    /// Executions ever started.
    pub executions_started: u64,
    /// Workflow definitions (every version).
    pub definitions: u64,
    /// Agent registrations ever (a restarted agent registers again).
    pub agents: u64,
    /// Bytes of event data (canonical JSON) in the tenant's log.
    pub payload_bytes: u64,
    /// Executions started at or after the `since` time the caller asked about.
    pub started_since: u64,
    /// When the oldest of those started.
    pub oldest_since: Option<chrono::DateTime<chrono::Utc>>,
    /// Distinct names agents registered under (the `agents` quota counts these).
    pub agent_names: u64,
    /// Whether an agent already registered under the name the caller asked about.
    pub agent_known: bool,
    /// Schedules created and not deleted (counted over a partial index of
    /// `ScheduleCreated`/`ScheduleDeleted`, like agent names).
    pub schedules: u64,
}

/// What one append batch adds to one tenant's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct UsageDelta {
    pub tenant: String,
    pub running: i64,
    pub started: i64,
    pub definitions: i64,
    pub agents: i64,
    pub bytes: i64,
}

/// The counter changes of `rows`, one per tenant they touch, sorted by tenant (so that
/// concurrent upserts take row locks in one order).
pub(crate) fn deltas(rows: &[&Row]) -> Vec<UsageDelta> {
    let mut by_tenant: BTreeMap<&str, UsageDelta> = BTreeMap::new();
    for row in rows {
        let d = by_tenant.entry(row.tenant()).or_default();
        d.bytes += row.data_json.len() as i64;
        match row.event_type {
            "ExecutionStarted" => {
                d.running += 1;
                d.started += 1;
            }
            "ExecutionCompleted" | "ExecutionFailed" | "ExecutionCancelled" => d.running -= 1,
            // A redrive reopens a failed execution: it runs (and will end) again.
            "ExecutionRedriven" => d.running += 1,
            "WorkflowCreated" => d.definitions += 1,
            "AgentRegistered" => d.agents += 1,
            _ => {}
        }
    }
    by_tenant
        .into_iter()
        .map(|(tenant, d)| UsageDelta {
            tenant: tenant.to_owned(),
            ..d
        })
        .collect()
}

/// The columns of `tenant_usage` a delta adds to, in bind order after the tenant.
pub(crate) const COUNTER_COLUMNS: &str =
    "running_executions, executions_started, definitions, agents, payload_bytes";

/// `SET` clause adding the proposed (`EXCLUDED`) values to the stored ones.
pub(crate) const ADD_EXCLUDED: &str =
    "running_executions = tenant_usage.running_executions + EXCLUDED.running_executions, \
     executions_started = tenant_usage.executions_started + EXCLUDED.executions_started, \
     definitions = tenant_usage.definitions + EXCLUDED.definitions, \
     agents = tenant_usage.agents + EXCLUDED.agents, \
     payload_bytes = tenant_usage.payload_bytes + EXCLUDED.payload_bytes";

/// The counters of one `tenant_usage` query row, whichever database read it:
/// `count_of(column)` reads a count column (NULL when the tenant has no row yet).
pub(crate) fn counters_of(
    count_of: impl Fn(&str) -> Result<Option<i64>, super::StoreError>,
    oldest_since: Option<chrono::DateTime<chrono::Utc>>,
    agent_known: bool,
) -> Result<TenantCounters, super::StoreError> {
    // Never negative in a consistent store; clamped if it were.
    let get = |name: &str| count_of(name).map(|v| v.unwrap_or(0).max(0) as u64);
    Ok(TenantCounters {
        running_executions: get("running_executions")?,
        executions_started: get("executions_started")?,
        definitions: get("definitions")?,
        agents: get("agents")?,
        payload_bytes: get("payload_bytes")?,
        started_since: get("started_since")?,
        agent_names: get("agent_names")?,
        schedules: get("schedules")?,
        agent_known,
        oldest_since,
    })
}
