//! `sleep`: waits `sleep_ms` milliseconds in the engine; output `{"slept_ms"}`.

use super::{KindRules, Runs, TaskBody};

/// The table entry.
pub(super) const RULES: KindRules = KindRules {
    name: "sleep",
    runs: Runs::Builtin,
    secrets_in_input: false,
    compensates: true,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    match body.sleep_ms {
        None => Err(format!("{prefix}sleep_ms is required for a sleep task")),
        Some(_) => Ok(()),
    }
}
