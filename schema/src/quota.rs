//! Per-tenant quotas: what one tenant may use of what every tenant shares. Pure data:
//! the names API.md and the configuration use, the limits, and how a tenant's own
//! limits combine with the configured defaults. The engine counts and enforces them.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Quota {
    /// Executions started and not yet completed, failed or cancelled.
    RunningExecutions,
    /// Executions started in the last 60 seconds.
    ExecutionsPerMinute,
    /// Workflow definitions (every version counts).
    Definitions,
    /// JSON bytes of one payload the API records: an execution's input, a definition, an
    /// agent's output or error.
    EventPayloadBytes,
    /// JSON bytes of every event the tenant's log holds.
    PayloadBytes,
    /// Registered agents.
    Agents,
    /// Schedules (created and not deleted).
    Schedules,
}

impl Quota {
    /// Every quota, in the order they are shown.
    pub const ALL: [Quota; 7] = [
        Quota::RunningExecutions,
        Quota::ExecutionsPerMinute,
        Quota::Definitions,
        Quota::EventPayloadBytes,
        Quota::PayloadBytes,
        Quota::Agents,
        Quota::Schedules,
    ];

    /// Its name in API bodies, errors and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Quota::RunningExecutions => "running_executions",
            Quota::ExecutionsPerMinute => "executions_per_minute",
            Quota::Definitions => "definitions",
            Quota::EventPayloadBytes => "event_payload_bytes",
            Quota::PayloadBytes => "payload_bytes",
            Quota::Agents => "agents",
            Quota::Schedules => "schedules",
        }
    }

    /// Whether going over it is about size (`413`) rather than count or rate (`429`).
    pub fn is_size(self) -> bool {
        matches!(self, Quota::EventPayloadBytes | Quota::PayloadBytes)
    }
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit for each quota; `None` is no limit. As a tenant's own limits, `None` means
/// "the configured default". Lenient about unknown fields, since it is part of a
/// stored event (`TenantPolicySet`) that a later version may extend; request bodies are
/// strict at the HTTP edge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotaLimits {
    /// Executions running at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running_executions: Option<u64>,
    /// Executions started in any 60 seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executions_per_minute: Option<u64>,
    /// Workflow definitions (every version counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definitions: Option<u64>,
    /// JSON bytes of one input, definition, output or error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_payload_bytes: Option<u64>,
    /// JSON bytes of the tenant's whole log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_bytes: Option<u64>,
    /// Registered agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agents: Option<u64>,
    /// Schedules (created and not deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedules: Option<u64>,
}

impl QuotaLimits {
    /// The limit of `quota` (None: none).
    pub fn get(&self, quota: Quota) -> Option<u64> {
        match quota {
            Quota::RunningExecutions => self.running_executions,
            Quota::ExecutionsPerMinute => self.executions_per_minute,
            Quota::Definitions => self.definitions,
            Quota::EventPayloadBytes => self.event_payload_bytes,
            Quota::PayloadBytes => self.payload_bytes,
            Quota::Agents => self.agents,
            Quota::Schedules => self.schedules,
        }
    }

    /// Sets the limit of `quota`.
    pub fn set(&mut self, quota: Quota, limit: Option<u64>) {
        let slot = match quota {
            Quota::RunningExecutions => &mut self.running_executions,
            Quota::ExecutionsPerMinute => &mut self.executions_per_minute,
            Quota::Definitions => &mut self.definitions,
            Quota::EventPayloadBytes => &mut self.event_payload_bytes,
            Quota::PayloadBytes => &mut self.payload_bytes,
            Quota::Agents => &mut self.agents,
            Quota::Schedules => &mut self.schedules,
        };
        *slot = limit;
    }

    /// These limits where set, `defaults` elsewhere.
    pub fn or(self, defaults: QuotaLimits) -> QuotaLimits {
        let mut out = defaults;
        for quota in Quota::ALL {
            if let Some(limit) = self.get(quota) {
                out.set(quota, Some(limit));
            }
        }
        out
    }

    /// Whether no quota has a limit.
    pub fn is_unlimited(&self) -> bool {
        Quota::ALL.iter().all(|q| self.get(*q).is_none())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_limits_win_over_defaults_quota_by_quota() {
        let defaults = QuotaLimits {
            running_executions: Some(100),
            agents: Some(5),
            ..QuotaLimits::default()
        };
        let own = QuotaLimits {
            running_executions: Some(3),
            definitions: Some(7),
            ..QuotaLimits::default()
        };
        let effective = own.or(defaults);
        assert_eq!(effective.running_executions, Some(3));
        assert_eq!(effective.definitions, Some(7));
        assert_eq!(effective.agents, Some(5));
        assert_eq!(effective.payload_bytes, None);
        assert!(QuotaLimits::default().is_unlimited());
        assert!(!effective.is_unlimited());
    }

    #[test]
    fn names_round_trip_and_sizes_are_413s() {
        for q in Quota::ALL {
            let json = serde_json::to_value(q).unwrap();
            assert_eq!(json, q.as_str());
            assert_eq!(serde_json::from_value::<Quota>(json).unwrap(), q);
        }
        assert!(Quota::PayloadBytes.is_size() && Quota::EventPayloadBytes.is_size());
        assert!(!Quota::RunningExecutions.is_size());
    }
}
