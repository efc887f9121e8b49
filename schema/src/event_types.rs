//! The names of every event type, as a list: what a webhook's `events` filter is
//! checked against. The list is the `Event` enum's own — a unit test compares it with
//! the variants serde knows — so a new event type cannot be left out of it.

/// Every event type's name (`Event::type_name`).
pub const EVENT_TYPES: &[&str] = &[
    "WorkflowCreated",
    "ExecutionStarted",
    "TaskScheduled",
    "TaskDispatched",
    "TaskStarted",
    "TaskUnroutable",
    "TaskHeartbeat",
    "TaskCompleted",
    "TaskFailed",
    "TaskRetryScheduled",
    "TaskTimedOut",
    "TaskSkipped",
    "TaskCancelled",
    "ExecutionPaused",
    "ExecutionResumed",
    "ExecutionCancelled",
    "CompensationStarted",
    "TaskCompensated",
    "CompensationFailed",
    "ExecutionCompleted",
    "ExecutionFailed",
    "TaskDeadLettered",
    "ExecutionRedriven",
    "TaskRedriven",
    "DeadLetterAcknowledged",
    "TaskAnnotated",
    "AgentRegistered",
    "AgentDrained",
    "AgentDeregistered",
    "TenantCreated",
    "ApiKeyCreated",
    "ApiKeyRevoked",
    "TenantDataErased",
    "ExecutionDataErased",
    "MapExpanded",
    "TenantPolicySet",
    "SignalReceived",
    "UsageRecorded",
    "BudgetSet",
    "PrioritySet",
    "ExecutionQueued",
    "ExecutionAdmitted",
    "ConcurrencySlotTaken",
    "ConcurrencySlotAwaited",
    "ConcurrencySlotFreed",
    "ApprovalDecided",
    "ScheduleCreated",
    "SchedulePaused",
    "ScheduleResumed",
    "ScheduleDeleted",
    "ScheduleTicked",
    "HookCreated",
    "HookDeleted",
];

/// Whether `name` is the name of an event type.
pub fn is_event_type(name: &str) -> bool {
    EVENT_TYPES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Event;

    /// serde names every variant of the enum when it refuses an unknown one: that list
    /// and [`EVENT_TYPES`] must be the same, in the same order.
    #[test]
    fn the_list_is_the_enums_own() {
        let refused = Event::from_parts("NoSuchEventType", serde_json::json!({}))
            .expect_err("an unknown type")
            .to_string();
        let (_, expected) = refused
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("serde's message changed: {refused}"));
        let mut variants: Vec<&str> = expected
            .split(", ")
            .map(|v| v.trim().trim_matches('`'))
            .map(|v| v.split('`').next().unwrap_or(v))
            .collect();
        variants.sort_unstable();
        let mut listed = EVENT_TYPES.to_vec();
        listed.sort_unstable();
        assert_eq!(
            variants, listed,
            "EVENT_TYPES must list every Event variant"
        );
        assert!(is_event_type("ExecutionCompleted"));
        assert!(!is_event_type("executioncompleted"));
    }
}
