//! `agent`: executed by an external agent that leases it from `agent_role`'s queue
//! and reports its result; its input may hold secrets (revealed at lease time).

use super::{KindRules, Runs, TaskBody};

/// The table entry.
pub(super) const RULES: KindRules = KindRules {
    name: "agent",
    runs: Runs::Agent,
    secrets_in_input: true,
    compensates: true,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    if body.agent_role.is_none_or(|r| r.trim().is_empty()) {
        return Err(format!("{prefix}agent_role is required for an agent task"));
    }
    Ok(())
}
