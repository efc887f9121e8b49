//! `signal`: waits for `POST /api/v1/executions/{id}/signals/{name}`; its output is the
//! signal's payload. The name is the task's `signal` field, or its id when absent. A
//! signal that arrives before the task is reached is kept for it.

use super::{KindRules, Runs, TaskBody};

/// The table entry. Nothing runs it: the attempt waits until a signal completes it.
pub(super) const RULES: KindRules = KindRules {
    name: "signal",
    runs: Runs::Waits,
    secrets_in_input: false,
    compensates: false,
    check,
};

fn check(body: &TaskBody<'_>, prefix: &str) -> Result<(), String> {
    match body.signal {
        Some(name) => check_signal_name(name).map_err(|e| format!("{prefix}signal: {e}")),
        None => Ok(()),
    }
}

/// Whether `name` may name a signal: 1 to 128 letters, digits, `_`, `-` and `.` (the
/// rules of a task id, so a task's id is always a valid default name). The error says
/// which rule it broke.
pub fn check_signal_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 {
        return Err(format!(
            "a signal name must be 1 to 128 characters, got {}",
            name.len()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.')))
    {
        return Err(format!(
            "signal name {name:?} contains {c:?}; allowed are letters, digits, '_', '-' and '.'"
        ));
    }
    Ok(())
}
